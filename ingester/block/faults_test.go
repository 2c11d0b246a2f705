package block

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
	"github.com/thanos-io/objstore"

	"github.com/hearth-dev/hearth/ingester/querier"
)

// gateBucket holds reads of objects whose name contains sub until release
// is closed (or the read's context ends), and signals each such read on entered.
type gateBucket struct {
	objstore.Bucket
	sub     string
	entered chan struct{}
	release chan struct{}
}

func (g *gateBucket) wait(ctx context.Context, name string) error {
	if !strings.Contains(name, g.sub) {
		return nil
	}
	select {
	case g.entered <- struct{}{}:
	default:
	}
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gateBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := g.wait(ctx, name); err != nil {
		return nil, err
	}
	return g.Bucket.Get(ctx, name)
}

func (g *gateBucket) GetRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	if err := g.wait(ctx, name); err != nil {
		return nil, err
	}
	return g.Bucket.GetRange(ctx, name, off, n)
}

// TestCancelledQueryDoesNotFailOthers (issue 21 finding 6): opening a block
// and loading its symbols ran under the first caller's context, so its
// cancellation failed every query waiting for the same block.
func TestCancelledQueryDoesNotFailOthers(t *testing.T) {
	for _, file := range []string{IndexFile, SymbolsFile} {
		t.Run(file, func(t *testing.T) {
			root := t.TempDir()
			writeTenant(t, oneProfileHead(t, 1000, "a"), root, WriteOptions{})
			g := &gateBucket{Bucket: fsBucket(t, root), sub: "/" + file, entered: make(chan struct{}, 1), release: make(chan struct{})}
			src := &BucketSource{Bucket: g}
			if _, err := src.Blocks(context.Background(), testTenant); err != nil {
				t.Fatal(err)
			}
			ctxA, cancelA := context.WithCancel(context.Background())
			errA := make(chan error, 1)
			go func() {
				_, err := src.Select(ctxA, testTenant, "", nil, 0, 1<<62)
				errA <- err
			}()
			select {
			case <-g.entered:
			case <-time.After(10 * time.Second):
				t.Fatal("the first query never read " + file)
			}
			type res struct {
				n   int
				err error
			}
			resB := make(chan res, 1)
			go func() {
				sels, err := src.Select(context.Background(), testTenant, "", nil, 0, 1<<62)
				resB <- res{len(sels), err}
			}()
			time.Sleep(100 * time.Millisecond) // let B wait for the shared load
			cancelA()
			if err := <-errA; !errors.Is(err, context.Canceled) {
				t.Fatalf("the cancelled query: %v", err)
			}
			close(g.release)
			select {
			case r := <-resB:
				if r.err != nil || r.n != 1 {
					t.Fatalf("the other query: %d selections, %v", r.n, r.err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the other query never answered")
			}
		})
	}
}

// TestIdleTenantsForgotten (issue 21 finding 7): the source kept the listing
// of every tenant id ever queried.
func TestIdleTenantsForgotten(t *testing.T) {
	root := t.TempDir()
	now := time.Unix(1e9, 0)
	src := &BucketSource{Bucket: fsBucket(t, root), Now: func() time.Time { return now }}
	for i := 0; i < 50; i++ {
		if _, err := src.Blocks(context.Background(), fmt.Sprint("tenant-", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := src.Tenants(); n != 50 {
		t.Fatalf("%d tenants kept, want 50", n)
	}
	now = now.Add(2 * time.Hour)
	if _, err := src.Blocks(context.Background(), "tenant-0"); err != nil {
		t.Fatal(err)
	}
	if n := src.Tenants(); n != 1 {
		t.Fatalf("after two idle hours %d tenants kept, want 1", n)
	}
}

// countIter counts listings of one prefix and slows them down.
type countIter struct {
	objstore.Bucket
	prefix string
	n      atomic.Int64
}

func (c *countIter) Iter(ctx context.Context, dir string, f func(string) error, opts ...objstore.IterOption) error {
	if dir == c.prefix {
		c.n.Add(1)
		time.Sleep(20 * time.Millisecond)
	}
	return c.Bucket.Iter(ctx, dir, f, opts...)
}

// TestStaleListingListedOnce (issue 21 finding 4): concurrent queries that
// found the listing stale listed the bucket one after another.
func TestStaleListingListedOnce(t *testing.T) {
	root := t.TempDir()
	writeTenant(t, oneProfileHead(t, 1000, "a"), root, WriteOptions{})
	cb := &countIter{Bucket: fsBucket(t, root), prefix: testTenant + "/"}
	src := &BucketSource{Bucket: cb, IndexMaxAge: -1}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ms, err := src.Blocks(context.Background(), testTenant); err != nil || len(ms) != 1 {
				t.Errorf("%d blocks, %v", len(ms), err)
			}
		}()
	}
	wg.Wait()
	if n := cb.n.Load(); n != 1 {
		t.Fatalf("8 concurrent queries listed the tenant %d times, want 1", n)
	}
}

// TestTimeSpanFromMeta (issue 21 finding 4): the tenant's time span (what
// GetProfileStats answers) comes from meta.json; no row is read.
func TestTimeSpanFromMeta(t *testing.T) {
	root := t.TempDir()
	for _, ts := range []int64{3000, 1000, 2000} {
		writeTenant(t, oneProfileHead(t, ts, "a"), root, WriteOptions{})
	}
	cb := newCounting(fsBucket(t, root))
	src := &BucketSource{Bucket: cb}
	oldest, newest, ok, err := src.TimeSpan(context.Background(), testTenant)
	if err != nil || !ok || oldest != 1000 || newest != 3000 {
		t.Fatalf("span [%d, %d] ok=%v err=%v", oldest, newest, ok, err)
	}
	if n := cb.touched(ProfilesFile) + cb.touched(IndexFile) + cb.touched(SymbolsFile); n != 0 {
		t.Fatalf("%d reads of block files other than meta.json", n)
	}
	if _, _, ok, err := src.View(func(*Meta) bool { return false }).TimeSpan(context.Background(), testTenant); ok || err != nil {
		t.Fatalf("an empty view: ok=%v err=%v", ok, err)
	}
}

// TestProfileStatsFromMeta: GetProfileStats over blocks reads meta.json only
// (it read every row of every block) and agrees with the head's answer.
func TestProfileStatsFromMeta(t *testing.T) {
	root := t.TempDir()
	ms := int64(time.Millisecond)
	for _, ts := range []int64{3000 * ms, 1000 * ms, 2000 * ms} {
		writeTenant(t, oneProfileHead(t, ts, "a"), root, WriteOptions{})
	}
	cb := newCounting(fsBucket(t, root))
	q := &querier.Service{Sources: []querier.Source{&BucketSource{Bucket: cb}, querier.HeadSource{Head: oneProfileHead(t, 4000*ms, "b")}}}
	resp, err := q.GetProfileStats(context.Background(), connect.NewRequest(&typesv1.GetProfileStatsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.Msg; !r.DataIngested || r.OldestProfileTime != 1000 || r.NewestProfileTime != 4000 {
		t.Fatalf("stats %+v, want [1000, 4000] ms", r)
	}
	if n := cb.touched(ProfilesFile) + cb.touched(IndexFile) + cb.touched(SymbolsFile); n != 0 {
		t.Fatalf("%d reads of block files other than meta.json", n)
	}
}
