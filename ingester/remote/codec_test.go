package remote

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
)

// staticSource serves fixed selections.
type staticSource []head.Selection

func (s staticSource) Select(context.Context, string, string, func(model.Labels) bool, int64, int64) ([]head.Selection, error) {
	return s, nil
}

func (s staticSource) SeriesLabels(context.Context, string, func(model.Labels) bool, int64, int64) ([]model.Labels, error) {
	var out []model.Labels
	for _, sel := range s {
		for _, sr := range sel.Series {
			out = append(out, sr.Labels)
		}
	}
	return out, nil
}

func corpusHead(tb testing.TB) *head.Head {
	h, _ := reference(tb, append(pushRequests(testProfiles(tb), 0), pushRequests(testProfiles(tb), 1)...))
	return h
}

func TestSelectionRoundTrip(t *testing.T) {
	h := corpusHead(t)
	all := h.Tenant("anonymous").Select("", nil, math.MinInt64, math.MaxInt64)
	// One service only: pruning must drop the others' symbols.
	one := h.Tenant("anonymous").Select("", func(ls model.Labels) bool { return ls.Get("service_name") == "svc-0" }, math.MinInt64, math.MaxInt64)
	for name, sel := range map[string]head.Selection{"all": all, "one service": one} {
		t.Run(name, func(t *testing.T) {
			b, err := EncodeSelections([]head.Selection{sel, {Symbols: sel.Symbols}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeSelections(b, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 {
				t.Fatalf("%d selections, want 1 (the empty one is left out)", len(got))
			}
			g := got[0]
			if len(g.Series) != len(sel.Series) {
				t.Fatalf("%d series, want %d", len(g.Series), len(sel.Series))
			}
			for i, sr := range sel.Series {
				if !g.Series[i].Labels.Equal(sr.Labels) || len(g.Series[i].Profiles) != len(sr.Profiles) {
					t.Fatalf("series %d: %s with %d rows, want %s with %d", i, g.Series[i].Labels, len(g.Series[i].Profiles), sr.Labels, len(sr.Profiles))
				}
				for j, p := range sr.Profiles {
					q := g.Series[i].Profiles[j]
					if q.ID != p.ID || q.TimeNanos != p.TimeNanos || q.Total != p.Total {
						t.Fatalf("series %d row %d differs", i, j)
					}
				}
			}
			if name == "one service" && len(g.Symbols.Strings) >= len(sel.Symbols.Strings) {
				t.Errorf("symbols not pruned: %d strings of %d", len(g.Symbols.Strings), len(sel.Symbols.Strings))
			}
			// Same answers through the querier: stacks resolve to the same frames.
			want, err := totals(t, staticSource{sel})
			if err != nil {
				t.Fatal(err)
			}
			gotT, err := totals(t, staticSource{g})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(want) != fmt.Sprint(gotT) {
				t.Errorf("totals %v, want %v", gotT, want)
			}
			t.Logf("%d series, %d bytes on the wire", len(sel.Series), len(b))
		})
	}
}

func TestLabelsRoundTrip(t *testing.T) {
	h := corpusHead(t)
	ls := h.Tenant("anonymous").SeriesLabels(nil, math.MinInt64, math.MaxInt64)
	got, err := DecodeLabels(EncodeLabels(ls), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ls) {
		t.Fatalf("%d label sets, want %d", len(got), len(ls))
	}
	for i := range ls {
		if !got[i].Equal(ls[i]) {
			t.Fatalf("%d: %s, want %s", i, got[i], ls[i])
		}
	}
}

func TestDecodeLimits(t *testing.T) {
	h := corpusHead(t)
	sel := h.Tenant("anonymous").Select("", nil, math.MinInt64, math.MaxInt64)
	b, err := EncodeSelections([]head.Selection{sel})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeSelections(b, 1024); !errors.Is(err, ErrTooLarge) {
		t.Errorf("decode within 1 KiB: %v, want ErrTooLarge", err)
	}
	for _, n := range []int{0, 3, 5, len(b) / 2, len(b) - 1} {
		if _, err := DecodeSelections(b[:n], 0); err == nil {
			t.Errorf("truncated at %d: no error", n)
		}
	}
	if _, err := DecodeSelections(append(b[:len(b):len(b)], 0), 0); err == nil {
		t.Error("trailing byte: no error")
	}
}

// TestResponseLimit: an answer over the serving side's limit is refused with
// a message naming the setting, and the query fails when too many do.
func TestResponseLimit(t *testing.T) {
	c := newCluster(t, 3, 3, 0)
	if err := pushAll(t, c.push, pushRequests(testProfiles(t), 0)); err != nil {
		t.Fatal(err)
	}
	c.drain(t)
	small := NewSource(SourceOptions{Ring: fakeRing{nodes: c.nodes, rf: 1}, Self: c.nodes[0].id, MaxResponseBytes: 64, Logger: discard})
	_, err := totals(t, small)
	if err == nil || !errorsContain(err, "querier.max-remote-response-bytes") {
		t.Fatalf("query over the response limit: %v", err)
	}
	// The serving side's own limit.
	sh := NewSelectHandler(c.nodes[1].st, HandlerOptions{MaxResponseBytes: 64, Logger: discard})
	c.nodes[1].srv.Config.Handler = sh
	_, err = totals(t, NewSource(SourceOptions{Ring: fakeRing{nodes: c.nodes[:2], rf: 1}, Self: c.nodes[0].id, Logger: discard}))
	if err == nil || !errorsContain(err, "querier.max-remote-response-bytes") || !errorsContain(err, "narrow the query") {
		t.Fatalf("query over the serving limit: %v", err)
	}
}

func errorsContain(err error, s string) bool {
	return err != nil && strings.Contains(err.Error(), s)
}

// TestWriteFuzzSeeds regenerates testdata/fuzz seeds when HEARTH_WRITE_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("HEARTH_WRITE_SEEDS") != "1" {
		t.Skip("set HEARTH_WRITE_SEEDS=1 to rewrite the fuzz seeds")
	}
	h := corpusHead(t)
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeSelections")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	th := h.Tenant("anonymous")
	for i := range 4 {
		svc := fmt.Sprintf("svc-%d", i)
		sel := th.Select("", func(ls model.Labels) bool { return ls.Get("service_name") == svc }, math.MinInt64, math.MaxInt64)
		b, err := EncodeSelections([]head.Selection{sel})
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 64<<10 {
			continue
		}
		content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d", i)), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func FuzzDecodeSelections(f *testing.F) {
	f.Add([]byte("HSEL\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sels, err := DecodeSelections(b, 16<<20)
		if err != nil {
			return
		}
		// Whatever decodes must be safe to query.
		for _, sel := range sels {
			for _, sr := range sel.Series {
				for _, p := range sr.Profiles {
					if err := head.DecodeSamples(p.Samples, func(st uint32, _ int64) { sel.Symbols.Stack(nil, st) }); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	})
}

func FuzzDecodeLabels(f *testing.F) {
	f.Add(EncodeLabels([]model.Labels{{{Name: "a", Value: "b"}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeLabels(b, 16<<20)
	})
}
