package integration

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/internal/load"
)

// TestRingOverload: a 3-ingester ring (RF 3) with a small in-flight limit
// (4 pushes, so that overload is cheap to reach) under 60 clients spread over
// its ingesters: every push is answered 200 or a retryable 503/429, never
// with a reset or another code; the ring keeps acknowledging (replica appends
// have a pool of their own: pushes waiting for their replicas cannot starve
// them); every acknowledged profile is there once afterwards. Correctness,
// not speed: the figures are hack/bench-overload-ring.sh's.
func TestRingOverload(t *testing.T) {
	c := startClusterOpts(t, 3, clusterOptions{extra: []string{"-ingester.instance-limits.max-inflight-push-requests=4"}})
	dir, per := heapCorpus(t)
	acks := &load.AckLog{}
	var mu sync.Mutex
	var sums []load.Summary
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s, err := load.Run(context.Background(), load.Config{URL: c.url(i), Dir: dir, Workers: 20, Series: 20, Duration: 6 * time.Second, Acked: acks.Record})
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			sums = append(sums, s)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	var tried int64
	codes := map[string]int64{}
	for _, s := range sums {
		tried += s.Pushes + s.Abandoned
		for code, n := range s.ErrorsByCode {
			codes[code] += n
			if code != "unavailable" && code != "resource_exhausted" {
				t.Errorf("%d pushes answered %s (want only 200, 503 or 429): %s", n, code, s.FirstErrors[code])
			}
		}
	}
	ids := ackIDs(acks)
	t.Logf("attempted %d, acknowledged %d, refused %v", tried, len(ids), codes)
	if codes["unavailable"] == 0 {
		t.Fatalf("no push was refused with 503: the ring was not overloaded (codes %v)", codes)
	}
	if len(ids) == 0 {
		t.Fatal("the overloaded ring acknowledged nothing")
	}
	checkExactlyOnce(t, c.url(1), ids, int(tried), per)
}
