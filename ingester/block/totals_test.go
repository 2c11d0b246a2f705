package block

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/thanos-io/objstore"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
)

// bytesRead counts the bytes read from the objects whose names contain sub.
type bytesRead struct {
	objstore.Bucket
	sub     string
	n, syms atomic.Int64
}

type countReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r countReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}

func (b *bytesRead) wrap(name string, rc io.ReadCloser, err error) (io.ReadCloser, error) {
	if strings.Contains(name, SymbolsFile) {
		b.syms.Add(1)
	}
	if err != nil || !strings.Contains(name, b.sub) {
		return rc, err
	}
	return countReader{rc, &b.n}, nil
}

func (b *bytesRead) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	rc, err := b.Bucket.Get(ctx, name)
	return b.wrap(name, rc, err)
}

func (b *bytesRead) GetRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	rc, err := b.Bucket.GetRange(ctx, name, off, n)
	return b.wrap(name, rc, err)
}

type totalsKey struct {
	series string
	id     head.ProfileID
	time   int64
	total  int64
}

func totalsOf(tb testing.TB, sel head.Selection, wantSamples bool) []totalsKey {
	var out []totalsKey
	for _, s := range sel.Series {
		for _, p := range s.Profiles {
			if (len(p.Samples) > 0) != wantSamples {
				tb.Fatalf("row %x: %d bytes of samples, want samples: %v", p.ID, len(p.Samples), wantSamples)
			}
			out = append(out, totalsKey{s.Labels.String(), p.ID, p.TimeNanos, p.Total})
		}
	}
	return out
}

// TestSelectTotalsOnly (issue 21 finding 4): SelectSeries fetched whole row
// groups, samples included, and the block's symbols. Marked totals-only, a
// block's Select reads the series, time, id and total column chunks alone
// and no symbols, and returns the same rows with the same totals.
func TestSelectTotalsOnly(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 21))
	h := head.New(head.Options{})
	for i := 0; i < 120; i++ {
		ls := model.Labels{{Name: model.LabelServiceName, Value: fmt.Sprintf("svc%d", rng.IntN(5))}, {Name: model.LabelProfileName, Value: "process_cpu"}}.Sort()
		var id head.ProfileID
		for j := range id {
			id[j] = byte(rng.IntN(256))
		}
		if _, err := h.Append(testTenant, id, ls, synthetic(rng, 20+rng.IntN(40), ""), int64(1e18)+int64(i)*1e9); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	m := writeTenant(t, h, root, WriteOptions{RowGroupRows: 16})
	read := func(ctx context.Context, match func(model.Labels) bool, start, end int64) (head.Selection, *bytesRead) {
		b := &bytesRead{Bucket: fsBucket(t, root), sub: ProfilesFile}
		r, err := Open(context.Background(), b, testTenant+"/"+m.ULID.String(), ReaderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b.n.Store(0) // the footer read on open is the same for both
		sel, err := r.Select(ctx, "", match, start, end)
		if err != nil {
			t.Fatal(err)
		}
		return sel, b
	}
	svc1 := func(ls model.Labels) bool { return ls.Get(model.LabelServiceName) == "svc1" }
	for _, q := range []struct {
		name       string
		match      func(model.Labels) bool
		start, end int64
	}{{"all", nil, -1 << 63, 1<<63 - 1}, {"one service", svc1, -1 << 63, 1<<63 - 1}, {"a time range", nil, 1e18 + 30e9, 1e18 + 70e9}} {
		full, fb := read(context.Background(), q.match, q.start, q.end)
		totals, tb := read(head.WithTotalsOnly(context.Background()), q.match, q.start, q.end)
		want, got := totalsOf(t, full, true), totalsOf(t, totals, false)
		if len(want) == 0 || fmt.Sprint(want) != fmt.Sprint(got) {
			t.Fatalf("%s: totals-only rows differ:\n got %v\nwant %v", q.name, got, want)
		}
		if totals.Symbols != nil || tb.syms.Load() != 0 {
			t.Fatalf("%s: totals-only read the symbols (%d requests)", q.name, tb.syms.Load())
		}
		if tb.n.Load() >= fb.n.Load() { // the samples column left out (its share depends on the profiles)
			t.Fatalf("%s: totals-only read %d bytes of profiles.parquet, the full select %d", q.name, tb.n.Load(), fb.n.Load())
		}
		t.Logf("%s: %d rows, profiles.parquet bytes read: %d totals-only, %d full", q.name, len(got), tb.n.Load(), fb.n.Load())
	}
}
