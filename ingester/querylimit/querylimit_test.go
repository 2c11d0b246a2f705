package querylimit

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/thanos-io/objstore/providers/filesystem"
)

// TestBucketCharges: reads under a budget are charged (a whole object as it
// is read, a range before it is made); a range over the budget is refused
// naming the limit; a lenient context charges without refusing; a context
// without a budget is not counted.
func TestBucketCharges(t *testing.T) {
	fs, err := filesystem.NewBucket(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := fs.Upload(ctx, "obj", bytes.NewReader(make([]byte, 1000))); err != nil {
		t.Fatal(err)
	}
	bkt := Bucket(fs)
	b := New(1500, 0)
	qctx := With(ctx, b)

	rc, err := bkt.Get(qctx, "obj")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, rc); err != nil || n != 1000 {
		t.Fatalf("read %d: %v", n, err)
	}
	rc.Close()
	if b.Bytes() != 1000 {
		t.Fatalf("charged %d bytes for a 1000-byte object", b.Bytes())
	}
	if _, err := bkt.GetRange(qctx, "obj", 0, 600); !IsExceeded(err) || !strings.Contains(err.Error(), "max_fetched_bytes_per_query") {
		t.Fatalf("a range over the budget: %v", err)
	}
	if err := b.Check(); !IsExceeded(err) {
		t.Fatalf("Check after going over: %v", err)
	}
	lb := New(100, 0)
	rc, err = bkt.GetRange(Lenient(With(ctx, lb)), "obj", 0, 600)
	if err != nil {
		t.Fatalf("a lenient read refused: %v", err)
	}
	rc.Close()
	if lb.Bytes() != 600 || lb.Check() == nil {
		t.Fatalf("lenient read charged %d, check %v", lb.Bytes(), lb.Check())
	}
	rc, err = bkt.GetRange(ctx, "obj", 0, 600)
	if err != nil {
		t.Fatalf("no budget: %v", err)
	}
	rc.Close()
}

// TestSeriesBudget: distinct series are counted once; one more than the
// limit is refused naming it.
func TestSeriesBudget(t *testing.T) {
	b := New(0, 2)
	if err := b.AddSeries(1, 2, 1, 2); err != nil || b.Series() != 2 {
		t.Fatalf("two distinct series: %v (%d)", err, b.Series())
	}
	if err := b.AddSeries(3); !IsExceeded(err) || !strings.Contains(err.Error(), "max_fetched_series_per_query") {
		t.Fatalf("a third series: %v", err)
	}
}
