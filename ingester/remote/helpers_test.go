package remote

import (
	"bytes"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-dev/hearth/ingester/distributor"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/normalize"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/querier"
	"github.com/hearth-dev/hearth/ingester/store"
	"github.com/hearth-dev/hearth/ingester/symdb"
	"github.com/hearth-dev/hearth/ingester/validation"
	"github.com/hearth-dev/hearth/ingester/wal"
	"github.com/hearth-dev/hearth/internal/testutil"
)

var discard = slog.New(slog.DiscardHandler)

// node is one in-process ingester: a real store behind a real loopback listener.
type node struct {
	id  string
	st  *store.Store
	srv *httptest.Server
}

func (n *node) inst() distributor.Instance {
	return distributor.Instance{ID: n.id, Addr: n.srv.Listener.Addr().String()}
}

// stop closes the listener: the instance refuses connections from now on.
func (n *node) stop() { n.srv.Close() }

func startNodes(tb testing.TB, count, maxSeries int) []*node {
	tb.Helper()
	var nodes []*node
	for i := range count {
		st, err := store.Open(store.Options{DataDir: tb.TempDir(), WALPolicy: wal.PolicyOff, MaxSeriesPerTenant: maxSeries, Logger: discard}, nil)
		if err != nil {
			tb.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle(distributor.AppendPath, distributor.NewInternalHandler(st, distributor.HandlerOptions{Logger: discard}))
		sh := NewSelectHandler(st, HandlerOptions{Logger: discard})
		mux.Handle(SelectPath, sh)
		mux.Handle(SeriesLabelsPath, sh)
		n := &node{id: fmt.Sprintf("ingester-%d", i), st: st, srv: httptest.NewServer(mux)}
		tb.Cleanup(func() { n.srv.Close(); _ = st.Close() })
		nodes = append(nodes, n)
	}
	return nodes
}

// fakeRing places a token on rf consecutive nodes (all of them when rf >= len).
type fakeRing struct {
	nodes []*node
	rf    int
}

func (r fakeRing) set(start int, n int) distributor.ReplicationSet {
	var rs distributor.ReplicationSet
	for i := range n {
		rs.Instances = append(rs.Instances, r.nodes[(start+i)%len(r.nodes)].inst())
	}
	rs.MaxErrors = n - distributor.Quorum(n)
	return rs
}

func (r fakeRing) ReplicationSet(tok uint32) (distributor.ReplicationSet, error) {
	return r.set(int(tok%uint32(len(r.nodes))), min(r.rf, len(r.nodes))), nil
}

func (r fakeRing) ReadSet() (distributor.ReplicationSet, error) {
	rs := r.set(0, len(r.nodes))
	rs.MaxErrors = r.rf / 2
	return rs, nil
}

func newDistributor(nodes []*node, self int, rf int, reg prometheus.Registerer) *distributor.Distributor {
	return distributor.New(distributor.Options{
		Ring: fakeRing{nodes: nodes, rf: rf}, Self: nodes[self].id, Local: nodes[self].st,
		ReplicaTimeout: 20 * time.Second, Logger: discard, Registerer: reg,
	})
}

func limits() validation.Limits {
	var l validation.Limits
	l.RegisterFlags(flag.NewFlagSet("test", flag.ContinueOnError))
	l.MaxSeriesPerTenant = 0
	return l
}

// testProfiles are the corpus files (else this process's own profiles),
// re-stamped to recent times and gzipped when they came gzipped.
func testProfiles(tb testing.TB) [][]byte {
	tb.Helper()
	files := testutil.Corpus(tb)
	if files == nil {
		files = testutil.WriteProfiles(tb, tb.TempDir())
	}
	var out [][]byte
	now := time.Now().Add(-time.Minute)
	for i, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		p, err := pprofdec.DecodePprof(raw, 0)
		if err != nil || symdb.Validate(p) != nil || normalize.Check(p) != nil || normalize.CheckUTF8(p) != nil {
			continue
		}
		p.TimeNanos = now.Add(time.Duration(i) * time.Second).UnixNano()
		pb, _ := p.MarshalVT()
		if pprofdec.IsGzip(raw) {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			_, _ = zw.Write(pb)
			_ = zw.Close()
			pb = buf.Bytes()
		}
		out = append(out, pb)
	}
	if len(out) == 0 {
		tb.Fatal("no usable profiles")
	}
	return out
}

// pushRequests builds one request per profile, each its own service with a
// fixed profile ID (so a retry sends the same IDs).
func pushRequests(profiles [][]byte, round int) []*pushv1.PushRequest {
	var out []*pushv1.PushRequest
	for i, raw := range profiles {
		out = append(out, &pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
			Labels:  []*typesv1.LabelPair{{Name: "service_name", Value: fmt.Sprintf("svc-%d", i)}, {Name: "round", Value: fmt.Sprint(round)}},
			Samples: []*pushv1.RawSample{{RawProfile: raw, ID: uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "%d/%d", round, i)).String()}},
		}}})
	}
	return out
}

func pushAll(tb testing.TB, h *push.Handler, reqs []*pushv1.PushRequest) error {
	tb.Helper()
	for _, r := range reqs {
		if _, err := h.Push(context.Background(), connect.NewRequest(r)); err != nil {
			return err
		}
	}
	return nil
}

// totals sums every profile type's merged values through a querier over srcs.
func totals(tb testing.TB, srcs ...querier.Source) (map[string]int64, error) {
	tb.Helper()
	return totalsCtx(context.Background(), srcs...)
}

// totalsCtx is totals within ctx (a query limiter's: its timeout).
func totalsCtx(ctx context.Context, srcs ...querier.Source) (map[string]int64, error) {
	q := &querier.Service{Sources: srcs}
	types, err := q.ProfileTypes(ctx, connect.NewRequest(&querierv1.ProfileTypesRequest{}))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, pt := range types.Msg.ProfileTypes {
		// Through the interceptor's context, as the connect handler does.
		ctx := WithSelectors(ctx, `{service_name=~"svc-.*"}`)
		resp, err := q.SelectMergeProfile(ctx, connect.NewRequest(&querierv1.SelectMergeProfileRequest{
			ProfileTypeID: pt.ID, LabelSelector: `{service_name=~"svc-.*"}`, Start: 1, End: time.Now().Add(time.Hour).UnixMilli(),
		}))
		if err != nil {
			return nil, err
		}
		out[pt.ID] = sumValues(resp.Msg)
	}
	return out, nil
}

func sumValues(p *googlev1.Profile) int64 {
	var n int64
	for _, s := range p.Sample {
		for _, v := range s.Value {
			n += v
		}
	}
	return n
}

// reference is a single head holding every profile once.
func reference(tb testing.TB, reqs []*pushv1.PushRequest) (*head.Head, querier.Source) {
	tb.Helper()
	h := head.New(head.Options{})
	ph := push.NewHandler(limits(), headAppender{h}, false, discard, nil)
	if err := pushAll(tb, ph, reqs); err != nil {
		tb.Fatal(err)
	}
	return h, querier.HeadSource{Head: h}
}

type headAppender struct{ h *head.Head }

func (a headAppender) Append(_ context.Context, tenant string, ps []push.Profile) error {
	for _, p := range ps {
		if _, err := a.h.Append(tenant, p.ID, p.Labels, p.Profile, p.TimeNanos); err != nil {
			return err
		}
	}
	return nil
}

func rows(h *head.Head) int64 {
	if t := h.Tenant("anonymous"); t != nil {
		return t.Stats().Profiles
	}
	return 0
}
