package remote

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/querier"
)

type cluster struct {
	nodes  []*node
	reg    *prometheus.Registry
	push   *push.Handler
	remote *Source
}

// newCluster starts count nodes; pushes and queries go through node 0.
func newCluster(t *testing.T, count, rf, maxSeries int) *cluster {
	nodes := startNodes(t, count, maxSeries)
	reg := prometheus.NewRegistry()
	d := newDistributor(nodes, 0, rf, reg)
	t.Cleanup(d.Drain)
	src := NewSource(SourceOptions{Ring: fakeRing{nodes: nodes, rf: rf}, Self: nodes[0].id, Logger: discard, Registerer: reg})
	return &cluster{nodes: nodes, reg: reg, push: push.NewHandler(limits(), d, false, discard, nil), remote: src}
}

func (c *cluster) counter(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := c.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.Metric {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return v
}

func assertTotals(t *testing.T, want map[string]int64, srcs ...querier.Source) {
	t.Helper()
	got, err := totals(t, srcs...)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 {
		t.Fatal("the reference has no profile types")
	}
	nonzero := 0
	for _, w := range want {
		if w != 0 {
			nonzero++
		}
	}
	if nonzero < len(want)/2 {
		t.Fatalf("only %d of %d profile types have values in the reference", nonzero, len(want))
	}
	for pt, w := range want {
		if got[pt] != w {
			t.Errorf("%s: total %d, want %d (each profile once)", pt, got[pt], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d profile types, want %d", len(got), len(want))
	}
}

func TestReplicatedPushAndQuery(t *testing.T) {
	c := newCluster(t, 3, 3, 0)
	reqs := pushRequests(testProfiles(t), 0)
	ref, refSrc := reference(t, reqs)
	want, err := totals(t, refSrc)
	if err != nil {
		t.Fatal(err)
	}
	if err := pushAll(t, c.push, reqs); err != nil {
		t.Fatal(err)
	}
	// The distributor returns at quorum; wait for the third replica.
	c.drain(t)
	for _, n := range c.nodes {
		if got, w := rows(n.st.Head()), rows(ref); got != w {
			t.Errorf("%s holds %d rows, want all %d (RF 3 of 3)", n.id, got, w)
		}
	}
	assertTotals(t, want, c.nodes[0].st, c.remote) // three replicas, counted once
	assertTotals(t, want, c.remote)                // two replicas, counted once

	// Labels from the remote source: every service, once.
	q := &querier.Service{Sources: []querier.Source{c.nodes[0].st, c.remote}}
	lv, err := q.LabelValues(WithSelectors(context.Background()), connect.NewRequest(&typesv1.LabelValuesRequest{Name: "service_name", Start: 1, End: time.Now().Add(time.Hour).UnixMilli()}))
	if err != nil {
		t.Fatal(err)
	}
	if len(lv.Msg.Names) != len(reqs) {
		t.Errorf("%d services, want %d: %v", len(lv.Msg.Names), len(reqs), lv.Msg.Names)
	}
	if v := c.counter(t, "hearth_distributor_tolerated_replica_failures_total"); v != 0 {
		t.Errorf("tolerated failures %v with every replica up", v)
	}
}

func (c *cluster) drain(t *testing.T) {
	t.Helper()
	for _, src := range []any{c.push.Appender} {
		if d, ok := src.(interface{ Drain() }); ok {
			d.Drain()
		}
	}
}

func TestRetryDeduplicates(t *testing.T) {
	c := newCluster(t, 3, 3, 0)
	reqs := pushRequests(testProfiles(t), 0)
	ref, refSrc := reference(t, reqs)
	want, err := totals(t, refSrc)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := pushAll(t, c.push, reqs); err != nil {
			t.Fatal(err)
		}
	}
	c.drain(t)
	for _, n := range c.nodes {
		if got, w := rows(n.st.Head()), rows(ref); got != w {
			t.Errorf("%s holds %d rows after a retry, want %d", n.id, got, w)
		}
	}
	assertTotals(t, want, c.nodes[0].st, c.remote)
}

func TestQuorumWithOneReplicaDown(t *testing.T) {
	c := newCluster(t, 3, 3, 0)
	reqs := pushRequests(testProfiles(t), 0)
	ref, refSrc := reference(t, reqs)
	want, err := totals(t, refSrc)
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[2].stop()
	if err := pushAll(t, c.push, reqs); err != nil {
		t.Fatalf("push with 2 of 3 replicas up: %v", err)
	}
	c.drain(t)
	if v := c.counter(t, "hearth_distributor_tolerated_replica_failures_total"); v != float64(len(reqs)) {
		t.Errorf("tolerated replica failures %v, want one per push (%d)", v, len(reqs))
	}
	for _, n := range c.nodes[:2] {
		if got, w := rows(n.st.Head()), rows(ref); got != w {
			t.Errorf("%s holds %d rows, want %d", n.id, got, w)
		}
	}
	if got := rows(c.nodes[2].st.Head()); got != 0 {
		t.Errorf("the stopped replica got %d rows", got)
	}
	// Reads tolerate the stopped replica.
	assertTotals(t, want, c.nodes[0].st, c.remote)
	if v := c.counter(t, "hearth_querier_tolerated_replica_failures_total"); v == 0 {
		t.Error("the read did not count the failed replica")
	}
}

func TestQuorumFailsWithTwoReplicasDown(t *testing.T) {
	c := newCluster(t, 3, 3, 0)
	reqs := pushRequests(testProfiles(t), 0)
	c.nodes[1].stop()
	c.nodes[2].stop()
	err := pushAll(t, c.push, reqs[:1])
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeUnavailable {
		t.Fatalf("push with 1 of 3 replicas up: %v, want Unavailable", err)
	}
	for _, s := range []string{"2 of 3 replicas failed", c.nodes[1].id, c.nodes[2].id, "quorum is 2"} {
		if !strings.Contains(ce.Message(), s) {
			t.Errorf("error %q does not say %q", ce.Message(), s)
		}
	}
	if v := c.counter(t, "hearth_distributor_quorum_failures_total"); v != 1 {
		t.Errorf("quorum failures %v, want 1", v)
	}
	// The local replica still has it: a retry after recovery deduplicates.
	_, err = totals(t, c.nodes[0].st, c.remote)
	if err == nil || !strings.Contains(err.Error(), "2 of 3 ingesters failed") || !strings.Contains(err.Error(), c.nodes[2].id) {
		t.Fatalf("read with two ingesters down: %v, want a failure naming them", err)
	}
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Errorf("read error code %v, want unavailable", connect.CodeOf(err))
	}
}

// TestRouting: 5 nodes, RF 3: every profile is on exactly 3 of them, and
// a query from any node counts it once.
func TestRouting(t *testing.T) {
	c := newCluster(t, 5, 3, 0)
	// Enough series (8 without the corpus) that the ring's placement, not
	// chance, spreads them over more than one replica set.
	var reqs []*pushv1.PushRequest
	for round := 0; round < 4; round++ {
		reqs = append(reqs, pushRequests(testProfiles(t), round)...)
	}
	ref, refSrc := reference(t, reqs)
	want, err := totals(t, refSrc)
	if err != nil {
		t.Fatal(err)
	}
	if err := pushAll(t, c.push, reqs); err != nil {
		t.Fatal(err)
	}
	c.drain(t)
	var sum int64
	owners := 0
	for _, n := range c.nodes {
		sum += rows(n.st.Head())
		if rows(n.st.Head()) > 0 {
			owners++
		}
	}
	if sum != 3*rows(ref) {
		t.Errorf("%d rows over the 5 nodes, want 3 × %d", sum, rows(ref))
	}
	if owners < 4 {
		t.Errorf("only %d nodes own series: the ring placement is not used", owners)
	}
	assertTotals(t, want, c.nodes[0].st, c.remote)
}

// TestClientErrorPropagates: a limit every replica enforces comes back with
// its code and message, not as Unavailable.
func TestClientErrorPropagates(t *testing.T) {
	c := newCluster(t, 3, 3, 1)
	reqs := pushRequests(testProfiles(t), 0)
	var err error
	for _, r := range reqs { // a profile may make several series: the first push may already fail
		if err = pushAll(t, c.push, []*pushv1.PushRequest{r}); err != nil {
			break
		}
	}
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "max-series-per-tenant") {
		t.Fatalf("push over the series limit: %v, want resource_exhausted naming the limit", err)
	}
}
