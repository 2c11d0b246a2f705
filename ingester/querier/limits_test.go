package querier

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"

	"github.com/hearth-dev/hearth/ingester/validation"
)

func queryLimits() *validation.Limits {
	return &validation.Limits{MaxQueryLength: 24 * time.Hour, MaxQueryLookback: 7 * 24 * time.Hour, MaxFlameGraphNodesDefault: 100, MaxFlameGraphNodesMax: 1000}
}

func TestApplyQueryLimits(t *testing.T) {
	now := time.Now()
	ms := func(d time.Duration) int64 { return now.Add(-d).UnixMilli() }
	l := queryLimits()

	r := &querierv1.SelectMergeStacktracesRequest{Start: ms(10 * 24 * time.Hour), End: ms(6*24*time.Hour + 12*time.Hour)}
	if err := ApplyQueryLimits(r.ProtoReflect(), l, now); err != nil {
		t.Fatal(err)
	}
	if r.Start != ms(7*24*time.Hour) || r.GetMaxNodes() != 100 {
		t.Fatalf("start not moved to the lookback or max_nodes not defaulted: %v", r)
	}
	r = &querierv1.SelectMergeStacktracesRequest{Start: ms(20 * 24 * time.Hour), End: ms(10 * 24 * time.Hour)}
	if err := ApplyQueryLimits(r.ProtoReflect(), l, now); err != nil || r.End >= r.Start {
		t.Fatalf("a range before the lookback must become empty: %v %v", r, err)
	}
	r = &querierv1.SelectMergeStacktracesRequest{Start: ms(48 * time.Hour), End: ms(0)}
	if err := ApplyQueryLimits(r.ProtoReflect(), l, now); connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "max_query_length") {
		t.Fatalf("48h range: %v", err)
	}
	n := int64(5000)
	r = &querierv1.SelectMergeStacktracesRequest{Start: ms(time.Hour), End: ms(0), MaxNodes: &n}
	if err := ApplyQueryLimits(r.ProtoReflect(), l, now); connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "max_flamegraph_nodes_max") {
		t.Fatalf("5000 nodes: %v", err)
	}
	d := &querierv1.DiffRequest{Left: &querierv1.SelectMergeStacktracesRequest{Start: ms(48 * time.Hour), End: ms(0)}, Right: &querierv1.SelectMergeStacktracesRequest{Start: ms(time.Hour), End: ms(0)}}
	if err := ApplyQueryLimits(d.ProtoReflect(), l, now); err == nil {
		t.Fatal("a diff whose left side is too long passed")
	}
	p := &querierv1.SelectMergeProfileRequest{Start: ms(time.Hour), End: ms(0)}
	if err := ApplyQueryLimits(p.ProtoReflect(), l, now); err != nil || p.MaxNodes != nil {
		t.Fatalf("SelectMergeProfile's max_nodes is not the flame graph limits' business: %v %v", p, err)
	}
	ln := &querierv1.ProfileTypesRequest{}
	if err := ApplyQueryLimits(ln.ProtoReflect(), l, now); err != nil {
		t.Fatalf("no range: %v", err)
	}
}

func TestLimitsInterceptorQueue(t *testing.T) {
	// One slot, no queue: while one query runs, the next is refused.
	ic := NewLimiter(Config{MaxConcurrent: 1, MaxQueued: 0}, *queryLimits(), false).Interceptor()
	release, entered := make(chan struct{}), make(chan struct{}, 2)
	call := ic.WrapUnary(func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		entered <- struct{}{}
		<-release
		return nil, nil
	})
	req := func() connect.AnyRequest {
		return connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{Start: time.Now().Add(-time.Hour).UnixMilli(), End: time.Now().UnixMilli()})
	}
	errs := make(chan error, 1)
	go func() { _, err := call(context.Background(), req()); errs <- err }()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the first query never ran")
	}
	if _, err := call(context.Background(), req()); connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "querier.max-queued") {
		t.Fatalf("second query: %v", err)
	}
	close(release)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if _, err := call(context.Background(), req()); err != nil {
		t.Fatalf("after the first finished: %v", err)
	}
}

// TestPeerReadsHaveTheirOwnPool: a query holding every query slot does not
// keep a peer's read from running (it may be waiting for that read), and the
// peer reads' own pool, once full, refuses the next read with a retryable
// ResourceExhausted while queries still run.
func TestPeerReadsHaveTheirOwnPool(t *testing.T) {
	l := NewLimiter(Config{MaxConcurrent: 1, MaxQueued: 0}, *queryLimits(), false)
	hold := func(run func(context.Context, func(context.Context) error) error) (release func()) {
		held, done, errs := make(chan struct{}), make(chan struct{}), make(chan error, 1)
		go func() {
			errs <- run(context.Background(), func(context.Context) error { close(held); <-done; return nil })
		}()
		select {
		case <-held:
		case err := <-errs:
			t.Fatalf("could not take a slot: %v", err)
		}
		return func() {
			close(done)
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	}
	runQuery := func(ctx context.Context, fn func(context.Context) error) error {
		return l.Run(ctx, http.Header{}, nil, fn)
	}
	ran := func(run func(context.Context, func(context.Context) error) error) error {
		return run(context.Background(), func(context.Context) error { return nil })
	}

	releaseQuery := hold(runQuery)
	if err := ran(runQuery); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("a second query with the only slot held: %v, want ResourceExhausted", err)
	}
	if err := ran(l.RunPeer); err != nil {
		t.Fatalf("a peer read while the queries' slot is held: %v", err)
	}
	releasePeer := hold(l.RunPeer)
	err := ran(l.RunPeer)
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "querier.max-concurrent") || !strings.Contains(err.Error(), "other ingesters") {
		t.Fatalf("a second peer read with the only peer slot held: %v, want ResourceExhausted naming the limit", err)
	}
	releaseQuery()
	if err := ran(runQuery); err != nil {
		t.Fatalf("a query while the peer slot is held: %v", err)
	}
	releasePeer()
	if err := ran(l.RunPeer); err != nil {
		t.Fatalf("a peer read once the slot is free: %v", err)
	}
}
