package integration

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/internal/testutil"
)

// TestRingQueriesAtTheConcurrencyLimit: 3 real ingesters (RF 3) with one
// query slot each (-querier.max-concurrent=1) answer two queries at each of
// them at once, exactly: each query holds its ingester's only slot while
// it asks the other two, whose selects run in the peer reads' own pool.
// Sharing one pool, the selects would wait for the slots of the queries
// waiting for them, until -querier.timeout failed every query.
func TestRingQueriesAtTheConcurrencyLimit(t *testing.T) {
	t0 := time.Now()
	c := startClusterOpts(t, 3, clusterOptions{extra: []string{"-querier.max-concurrent=1", "-querier.max-queued=16", "-querier.timeout=30s"}})
	t.Logf("ring ready in %s", time.Since(t0).Round(time.Millisecond))
	p, per := newPusher(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		p.run(ctx, func() []string { return []string{c.url(0), c.url(1), c.url(2)} }, false)
		close(done)
	}()
	time.Sleep(1500 * time.Millisecond)
	cancel()
	<-done
	acked, fails, tried := p.snapshot()
	if len(fails) > 0 {
		t.Fatalf("%d pushes failed: %v", len(fails), fails[0])
	}
	if len(acked) == 0 {
		t.Fatal("nothing acknowledged")
	}
	type result struct {
		node     int
		all, got float64
		err      error
	}
	t1 := time.Now()
	results := make(chan result, 2*len(c.nodes))
	var wg sync.WaitGroup
	for i := range c.nodes {
		for range 2 {
			wg.Go(func() {
				all, got, err := testutil.CountProfiles(c.url(i), acked, per)
				results <- result{i, all, got, err}
			})
		}
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.err != nil {
			t.Errorf("query on ingester-%d: %v", r.node, r.err)
			continue
		}
		if r.got != float64(len(acked)) || r.all != float64(int64(r.all)) || r.all < float64(len(acked)) || r.all > float64(tried) {
			t.Errorf("query on ingester-%d: acknowledged counted %.3f times (want %d), stored %.3f (want a whole number in [%d, %d])", r.node, r.got, len(acked), r.all, len(acked), tried)
		}
	}
	t.Logf("%d acknowledged of %d; 6 queries at once answered in %s", len(acked), tried, time.Since(t1).Round(time.Millisecond))
}
