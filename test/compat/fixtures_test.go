package compat

import (
	"bytes"
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/pprof/profile"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/store"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/validation"
	"github.com/hearth-dev/hearth/ingester/wal"
)

var update = flag.Bool("update", false, "write testdata/"+release+" again (once per release: never rewrite a released directory)")

// release is the release whose files this package writes with -update.
const release = "v0.2.0"

// Layout of testdata/<release>/:
//
//	data/                    an ingester's data directory after one cut
//	  wal/00000001.wal       the records of the cut (covered by the checkpoint)
//	  wal/00000002.wal       the records after it
//	  wal/checkpoint         2
//	bucket/<tenant>/<ULID>/  the cut's block per tenant (meta.json, index, profiles.parquet, symbols.bin)
//	blocks.txt               every profile of the blocks (dump)
//	head.txt                 every profile the WAL replays into the head (dump)
const (
	dataDir   = "data"
	bucketDir = "bucket"
	blocksTxt = "blocks.txt"
	headTxt   = "head.txt"
)

// base is the fixtures' time: profiles carry it, not the clock.
var base = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// testProfile is profile n: two sample types, stacks from a small call
// tree, some samples with a span id (sample label span_id), n's own values.
func testProfile(n int) *profile.Profile {
	fns := []*profile.Function{
		{ID: 1, Name: "main", SystemName: "main", Filename: "main.go"},
		{ID: 2, Name: "serve", SystemName: "serve", Filename: "server.go"},
		{ID: 3, Name: "parse", SystemName: "parse", Filename: "parse.go"},
		{ID: 4, Name: fmt.Sprintf("work%d", n%3), SystemName: "work", Filename: "work.go"},
	}
	m := &profile.Mapping{ID: 1, Start: 0x1000, Limit: 0x9000, File: "/bin/app", HasFunctions: true}
	var locs []*profile.Location
	for i, f := range fns {
		locs = append(locs, &profile.Location{ID: uint64(i + 1), Mapping: m, Address: uint64(0x1000 + 0x100*i), Line: []profile.Line{{Function: f, Line: int64(10 * (i + 1))}}})
	}
	p := &profile.Profile{
		SampleType:    []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType:    &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:        10_000_000,
		TimeNanos:     base.Add(time.Duration(n) * time.Second).UnixNano(),
		DurationNanos: int64(10 * time.Second),
		Mapping:       []*profile.Mapping{m},
		Location:      locs,
		Function:      fns,
	}
	stacks := [][]*profile.Location{{locs[3], locs[1], locs[0]}, {locs[2], locs[1], locs[0]}, {locs[3], locs[2], locs[1], locs[0]}}
	for i, st := range stacks {
		v := int64(n*7 + i + 1)
		s := &profile.Sample{Location: st, Value: []int64{v, v * 10_000_000}}
		if (n+i)%2 == 0 {
			s.Label = map[string][]string{"span_id": {fmt.Sprintf("%016x", uint64(0xabc0+n*3+i))}}
		}
		p.Sample = append(p.Sample, s)
	}
	return p
}

// pushAll pushes profiles [from, to) through the push API's handler: tenants
// team-a and team-b, two services, gzip and uncompressed bodies, two
// profiles per request for every third request.
func pushAll(t *testing.T, h *push.Handler, from, to int) {
	t.Helper()
	for n := from; n < to; n++ {
		var series []*pushv1.RawProfileSeries
		for k := 0; k < 1+boolInt(n%3 == 0); k++ {
			p := testProfile(n*2 + k)
			var b bytes.Buffer
			var err error
			if (n+k)%2 == 0 {
				err = p.Write(&b)
			} else {
				err = p.WriteUncompressed(&b)
			}
			if err != nil {
				t.Fatal(err)
			}
			series = append(series, &pushv1.RawProfileSeries{
				Labels: []*typesv1.LabelPair{
					{Name: "__name__", Value: "process_cpu"},
					{Name: "service_name", Value: fmt.Sprintf("svc-%d", n%2)},
					{Name: "env", Value: "fixture"},
				},
				Samples: []*pushv1.RawSample{{RawProfile: b.Bytes(), ID: fmt.Sprintf("00000000-0000-4000-8000-%012x", n*2+k)}},
			})
		}
		req := connect.NewRequest(&pushv1.PushRequest{Series: series})
		req.Header().Set(tenant.Header, []string{"team-a", "team-b"}[n%2])
		if _, err := h.Push(context.Background(), req); err != nil {
			t.Fatalf("push %d: %v", n, err)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestWriteFixtures writes testdata/<release> with -update: pushes through a
// real store (WAL policy always), a cut into blocks, more pushes, a clean
// close; then the blocks move into a bucket layout.
func TestWriteFixtures(t *testing.T) {
	if !*update {
		t.Skip("writes testdata/" + release + " only with -update")
	}
	out := filepath.Join("testdata", release)
	if _, err := os.Stat(out); err == nil {
		t.Fatalf("%s exists: a release's fixtures are written once (delete it by hand if this release is not out yet)", out)
	}
	tmp := t.TempDir()
	data := filepath.Join(tmp, dataDir)
	logger := slog.New(slog.DiscardHandler)
	s, err := store.Open(store.Options{
		DataDir: data, WALPolicy: wal.PolicyAlways, Logger: logger,
		WriteBlock: func(dir, tn string, sel head.Selection) (string, error) {
			meta, err := block.Write(dir, sel, block.WriteOptions{Tenant: tn, Source: "fixture-" + release})
			return meta.ULID.String(), err
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var lim validation.Limits
	lim.RegisterFlags(flag.NewFlagSet("limits", flag.ContinueOnError))
	lim.RejectOlderThan, lim.CreationGracePeriod = 0, 0
	h := push.NewHandler(lim, s, true, logger, nil)
	pushAll(t, h, 0, 12)
	blocksDump := dumpHead(t, s.Head())
	if err := s.Cut(context.Background(), "fixture"); err != nil {
		t.Fatal(err)
	}
	pushAll(t, h, 12, 20)
	headDump := dumpHead(t, s.Head())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The cut's blocks, as the shipper lays them out in the bucket.
	bkt := filepath.Join(tmp, bucketDir)
	if err := os.Rename(filepath.Join(data, "blocks"), bkt); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, blocksTxt), []byte(blocksDump), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, headTxt), []byte(headDump), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(out, os.DirFS(tmp)); err != nil {
		t.Fatal(err)
	}
}

// dumpHead is every profile of every tenant of h.
func dumpHead(t *testing.T, h *head.Head) string {
	var b strings.Builder
	for _, tn := range h.Tenants() {
		dumpSelection(t, &b, tn, h.Tenant(tn).Select("", nil, math.MinInt64, math.MaxInt64))
	}
	return sortLines(b.String())
}

// dumpSelection writes one line per row: tenant, series, id, time, total,
// every sample with its stack resolved to function names, every span sample.
func dumpSelection(t *testing.T, b *strings.Builder, tn string, sel head.Selection) {
	t.Helper()
	sn := sel.Symbols
	stack := func(id uint32) string {
		var names []string
		for _, loc := range sn.Stack(nil, id) {
			for _, l := range sn.Locations[loc].Lines {
				names = append(names, sn.Strings[sn.Functions[l.Function].Name])
			}
		}
		return strings.Join(names, ";")
	}
	for _, sr := range sel.Series {
		for _, p := range sr.Unpacked(0, len(sr.Profiles)) {
			var samples []string
			if err := head.DecodeSamples(p.Samples, func(st uint32, v int64) { samples = append(samples, fmt.Sprintf("%s=%d", stack(st), v)) }); err != nil {
				t.Fatal(err)
			}
			slices.Sort(samples)
			var spans []string
			if head.HasSpans(p.Samples) {
				if err := head.DecodeSpans(p.Samples, func(span uint64, st uint32, v int64) {
					spans = append(spans, fmt.Sprintf("%016x:%s=%d", span, stack(st), v))
				}); err != nil {
					t.Fatal(err)
				}
				slices.Sort(spans)
			}
			fmt.Fprintf(b, "%s %s id=%s t=%d total=%d samples=[%s] spans=[%s]\n", tn, sr.Labels, hex.EncodeToString(p.ID[:]),
				p.TimeNanos, p.Total, strings.Join(samples, " "), strings.Join(spans, " "))
		}
	}
}

func sortLines(s string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n") + "\n"
}

// copyFixture copies testdata/<rel>/<sub> into a temporary directory (tests
// must not change the committed files) and returns it.
func copyFixture(t *testing.T, rel, sub string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), sub)
	if err := os.CopyFS(dst, os.DirFS(filepath.Join("testdata", rel, sub))); err != nil {
		t.Fatal(err)
	}
	return dst
}

func readFixture(t *testing.T, rel, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", rel, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// releases are the fixture directories: every one must read.
func releases(t *testing.T) []string {
	ents, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), "v") {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 {
		t.Fatal("no fixtures in testdata")
	}
	return out
}

// TestFixturesWAL replays each release's data directory (the WAL from the
// checkpoint on) into a store and requires exactly the profiles that release
// had in its head: every id, time, series, sample and span.
func TestFixturesWAL(t *testing.T) {
	for _, rel := range releases(t) {
		t.Run(rel, func(t *testing.T) {
			data := copyFixture(t, rel, dataDir)
			s, err := store.Open(store.Options{DataDir: data, WALPolicy: wal.PolicyOff, Logger: slog.New(slog.DiscardHandler)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got, want := dumpHead(t, s.Head()), readFixture(t, rel, headTxt)
			if got != want {
				t.Fatalf("the WAL replays into\n%s\nwant\n%s", got, want)
			}
			if n := strings.Count(want, "\n"); n < 10 {
				t.Fatalf("only %d profiles in the fixture", n)
			}
		})
	}
}

// TestFixturesBlocks reads each release's blocks from its bucket (one per
// tenant) and requires exactly the profiles of its cut.
func TestFixturesBlocks(t *testing.T) {
	for _, rel := range releases(t) {
		t.Run(rel, func(t *testing.T) {
			dir := copyFixture(t, rel, bucketDir)
			bkt, err := filesystem.NewBucket(dir)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			tenants, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			blocks := 0
			for _, te := range tenants {
				ids, err := os.ReadDir(filepath.Join(dir, te.Name()))
				if err != nil {
					t.Fatal(err)
				}
				for _, ie := range ids {
					id, err := ulid.Parse(ie.Name())
					if err != nil {
						continue
					}
					r, err := block.Open(context.Background(), bkt, te.Name()+"/"+id.String(), block.ReaderOptions{})
					if err != nil {
						t.Fatalf("block %s/%s: %v", te.Name(), id, err)
					}
					sel, err := r.Select(context.Background(), "", nil, math.MinInt64, math.MaxInt64)
					if err != nil {
						t.Fatal(err)
					}
					dumpSelection(t, &b, te.Name(), sel)
					blocks++
				}
			}
			if blocks < 2 {
				t.Fatalf("%d blocks, want one per tenant", blocks)
			}
			if got, want := sortLines(b.String()), readFixture(t, rel, blocksTxt); got != want {
				t.Fatalf("the blocks hold\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// snapshot is every file under dir with its contents.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
