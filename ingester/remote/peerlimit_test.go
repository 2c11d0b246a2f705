package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/hearth-dev/hearth/ingester/distributor"
	"github.com/hearth-dev/hearth/ingester/querier"
	"github.com/hearth-dev/hearth/ingester/transport"
)

// limitNodes serves every node's internal endpoints again, its reads in a
// querier.Limiter of cfg (as the app wires them), and returns the limiters.
func limitNodes(nodes []*node, cfg querier.Config) []*querier.Limiter {
	var out []*querier.Limiter
	for _, n := range nodes {
		lim := querier.NewLimiter(cfg, limits(), false)
		mux := http.NewServeMux()
		mux.Handle(distributor.AppendPath, distributor.NewInternalHandler(n.st, distributor.HandlerOptions{Logger: discard}))
		sh := NewSelectHandler(n.st, HandlerOptions{Logger: discard, Run: lim.RunPeer})
		mux.Handle(SelectPath, sh)
		mux.Handle(SeriesLabelsPath, sh)
		n.srv.Config.Handler = mux
		out = append(out, lim)
	}
	return out
}

// holdPeerSlot occupies one of lim's peer-read slots until the test ends or
// the returned release is called.
func holdPeerSlot(t *testing.T, lim *querier.Limiter) (release func()) {
	t.Helper()
	held, done := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(done) }) }
	t.Cleanup(release)
	errc := make(chan error, 1)
	go func() {
		errc <- lim.RunPeer(context.Background(), func(context.Context) error { close(held); <-done; return nil })
	}()
	select {
	case <-held:
	case err := <-errc:
		t.Fatalf("could not take a peer slot: %v", err)
	}
	return release
}

type selectResult struct {
	status int
	code   connect.Code
	body   []byte
}

func postSelect(addr string) selectResult {
	body, _ := json.Marshal(Request{Tenant: "anonymous", Start: math.MinInt64, End: math.MaxInt64})
	resp, err := http.Post("http://"+addr+SelectPath, "application/json", bytes.NewReader(body))
	if err != nil {
		return selectResult{body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var code connect.Code
	_ = code.UnmarshalText([]byte(resp.Header.Get(transport.CodeHeader)))
	return selectResult{status: resp.StatusCode, code: code, body: b}
}

// TestPeerSelectBeyondTheLimit: a peer's select beyond the ingester's slots
// waits in the queue and is answered once a slot frees; beyond the queue it is
// refused at once with a retryable 429 naming the limits. The asking
// ingester counts a refusing peer as a failed instance of its read set: the
// query answers exactly while the replicas cover it, and fails with
// Unavailable naming the refusals when they do not.
func TestPeerSelectBeyondTheLimit(t *testing.T) {
	c := newCluster(t, 3, 3, 0)
	reqs := pushRequests(testProfiles(t), 0)
	if err := pushAll(t, c.push, reqs); err != nil {
		t.Fatal(err)
	}
	c.drain(t)
	_, refSrc := reference(t, reqs)
	want, err := totals(t, refSrc)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("queued then refused", func(t *testing.T) {
		lims := limitNodes(c.nodes, querier.Config{MaxConcurrent: 1, MaxQueued: 1, Timeout: time.Minute})
		release := holdPeerSlot(t, lims[1])
		// Two selects at once: one waits in the queue, the other finds it full.
		results := make(chan selectResult, 2)
		for range 2 {
			go func() { results <- postSelect(c.nodes[1].inst().Addr) }()
		}
		refused := <-results // the queued one cannot answer while the slot is held
		if refused.status != http.StatusTooManyRequests || refused.code != connect.CodeResourceExhausted ||
			!strings.Contains(string(refused.body), "querier.max-concurrent") || !strings.Contains(string(refused.body), "retry later") {
			t.Fatalf("select beyond the queue: %d %v %q, want 429 ResourceExhausted naming the limits", refused.status, refused.code, refused.body)
		}
		select {
		case r := <-results:
			t.Fatalf("the queued select answered (%d %q) while the only slot was held", r.status, r.body)
		default:
		}
		release()
		queued := <-results
		if queued.status != http.StatusOK {
			t.Fatalf("queued select: %d %q", queued.status, queued.body)
		}
		sels, err := DecodeSelections(queued.body, 0)
		if err != nil || len(sels) == 0 {
			t.Fatalf("queued select's answer: %d selections, %v", len(sels), err)
		}
	})

	t.Run("the read set tolerates a refusing peer", func(t *testing.T) {
		lims := limitNodes(c.nodes, querier.Config{MaxConcurrent: 1, MaxQueued: 0, Timeout: time.Minute})
		before := c.counter(t, "hearth_querier_tolerated_replica_failures_total")
		release1 := holdPeerSlot(t, lims[1])
		assertTotals(t, want, c.nodes[0].st, c.remote)
		if v := c.counter(t, "hearth_querier_tolerated_replica_failures_total"); v <= before {
			t.Error("the query did not count the refusing peer as a tolerated failure")
		}
		release2 := holdPeerSlot(t, lims[2])
		_, err := totals(t, c.nodes[0].st, c.remote)
		if connect.CodeOf(err) != connect.CodeUnavailable {
			t.Fatalf("query with 2 of 3 ingesters refusing: %v, want Unavailable", err)
		}
		for _, s := range []string{"2 of 3 ingesters failed", c.nodes[1].id, c.nodes[2].id, "querier.max-concurrent"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not say %q", err, s)
			}
		}
		release1()
		release2()
		assertTotals(t, want, c.nodes[0].st, c.remote)
	})
}

// TestQueriesOnEveryIngesterAtOnce: each of 3 ingesters (RF 3, one query
// slot each) runs a query at once, holding its only slot while it asks the
// other two: their selects run in the peer reads' pool, so every query
// answers exactly. Sharing the queries' pool, each select would wait for a
// slot held by a query waiting for it, until the query timeout.
func TestQueriesOnEveryIngesterAtOnce(t *testing.T) {
	c := newCluster(t, 3, 3, 0)
	reqs := pushRequests(testProfiles(t), 0)
	if err := pushAll(t, c.push, reqs); err != nil {
		t.Fatal(err)
	}
	c.drain(t)
	_, refSrc := reference(t, reqs)
	want, err := totals(t, refSrc)
	if err != nil {
		t.Fatal(err)
	}
	// A deadlock would end at the query timeout, failing every query (a
	// shared pool fails them so: checked).
	lims := limitNodes(c.nodes, querier.Config{MaxConcurrent: 1, MaxQueued: 4, Timeout: time.Minute})
	var all sync.WaitGroup // every query holds its slot before any asks its peers
	all.Add(len(c.nodes))
	errs := make([]error, len(c.nodes))
	got := make([]map[string]int64, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		src := NewSource(SourceOptions{Ring: fakeRing{nodes: c.nodes, rf: 3}, Self: n.id, Logger: discard})
		wg.Go(func() {
			errs[i] = lims[i].Run(context.Background(), http.Header{}, nil, func(ctx context.Context) error {
				all.Done()
				all.Wait()
				var err error
				got[i], err = totalsCtx(ctx, n.st, src)
				return err
			})
		})
	}
	wg.Wait()
	for i := range c.nodes {
		if errs[i] != nil {
			t.Errorf("query on %s: %v", c.nodes[i].id, errs[i])
			continue
		}
		if fmt.Sprint(got[i]) != fmt.Sprint(want) {
			t.Errorf("query on %s: totals %v, want %v", c.nodes[i].id, got[i], want)
		}
	}
}
