package otlp

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/pprof/profile"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/validation"
)

type storeAll struct{ n atomic.Int64 }

func (s *storeAll) Append(_ context.Context, _ string, ps []push.Profile) error {
	s.n.Add(int64(len(ps)))
	return nil
}

// sum adds the samples of a counter whose labels include want.
func sum(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.Metric {
			have := map[string]string{}
			for _, l := range m.Label {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue metrics
				}
			}
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

func cpuProfile(now time.Time, value int64) *profile.Profile {
	fn := &profile.Function{ID: 1, Name: "main.work"}
	loc := &profile.Location{ID: 1, Line: []profile.Line{{Function: fn}}}
	return &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"}, Period: 10_000_000,
		Sample:   []*profile.Sample{{Location: []*profile.Location{loc}, Value: []int64{value}}},
		Location: []*profile.Location{loc}, Function: []*profile.Function{fn},
		TimeNanos: now.UnixNano(),
	}
}

func uncompressed(t *testing.T, p *profile.Profile) []byte {
	var b bytes.Buffer
	if err := p.WriteUncompressed(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestUsageCountsEveryPath pushes valid and invalid profiles of two tenants
// through push.v1, /ingest and OTLP/HTTP of one front door on a real HTTP
// server, and reads the usage counters: every refusal counted once with its
// reason, every byte received counted once, each usage group's bytes adding
// up to its tenant's.
func TestUsageCountsEveryPath(t *testing.T) {
	var d validation.Limits
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	d.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	rc, err := validation.LoadRuntimeConfig(strings.NewReader(`
overrides:
  team:
    distributor_usage_groups:
      checkout: '{service_name="checkout"}'
      svc/${labels.service_name}: '{service_name=~"pay.*"}'
  slow:
    ingestion_rate_mb: 0.000001
    ingestion_burst_size_mb: 0.000001
`), d)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	store := &storeAll{}
	var current atomic.Pointer[validation.RuntimeConfig] // swapped as a reload does
	current.Store(rc)
	h := push.NewHandler(validation.NewOverrides(d, current.Load), store, true, nil, reg)
	mux := http.NewServeMux()
	path, ph := pushv1connect.NewPusherServiceHandler(h)
	mux.Handle(path, ph)
	mux.Handle("/ingest", h)
	mux.Handle(HTTPPath, (&Server{Push: h}).Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	now := time.Now()
	good := uncompressed(t, cpuProfile(now, 10_000_000))
	old := uncompressed(t, cpuProfile(now.Add(-3*time.Hour), 10_000_000))
	garbage := []byte("not a profile")
	client := pushv1connect.NewPusherServiceClient(http.DefaultClient, srv.URL)
	pushV1 := func(tenant, service string, raws ...[]byte) error {
		s := &pushv1.RawProfileSeries{Labels: []*typesv1.LabelPair{{Name: "service_name", Value: service}, {Name: "__name__", Value: "process_cpu"}}}
		for _, r := range raws {
			s.Samples = append(s.Samples, &pushv1.RawSample{RawProfile: r})
		}
		req := connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{s}})
		if tenant != "" {
			req.Header().Set("X-Scope-OrgID", tenant)
		}
		_, err := client.Push(context.Background(), req)
		return err
	}
	post := func(tenant, path, contentType string, body []byte) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		if tenant != "" {
			req.Header.Set("X-Scope-OrgID", tenant)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Logf("%s: %d %s", path, resp.StatusCode, msg)
		}
		return resp.StatusCode
	}
	otlpBody, err := proto.Marshal(genRequest(cpuProfile(now, 3), now)) // a sample of 3 events
	if err != nil {
		t.Fatal(err)
	}

	sent := 0 // bytes tenant team sent
	// push.v1: one stored; a request of two whose second does not decode: both discarded.
	if err := pushV1("team", "checkout", good); err != nil {
		t.Fatal(err)
	}
	if err := pushV1("team", "payments", good, garbage); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("push.v1 with a broken profile: %v", err)
	}
	sent += 2*len(good) + len(garbage)
	// /ingest: one stored, one in a format nobody reads, one too old.
	for _, c := range []struct {
		query string
		body  []byte
		code  int
	}{
		{"name=checkout&format=pprof", good, http.StatusOK},
		{"name=checkout&format=bogus", garbage, http.StatusUnsupportedMediaType},
		{"name=payments&format=pprof", old, http.StatusUnprocessableEntity},
	} {
		if code := post("team", "/ingest?"+c.query, "application/octet-stream", c.body); code != c.code {
			t.Fatalf("/ingest?%s: %d, want %d", c.query, code, c.code)
		}
		sent += len(c.body)
	}
	// OTLP/HTTP: one stored, one that does not decode, one of a content type it does not read.
	for _, c := range []struct {
		contentType string
		body        []byte
		code        int
	}{
		{contentProtobuf, otlpBody, http.StatusOK},
		{contentProtobuf, garbage, http.StatusBadRequest},
		{"text/plain", garbage, http.StatusUnsupportedMediaType},
	} {
		if code := post("team", HTTPPath, c.contentType, c.body); code != c.code {
			t.Fatalf("OTLP %s: %d, want %d", c.contentType, code, c.code)
		}
		sent += len(c.body)
	}
	// Another tenant over its rate, and pushes without a tenant: not counted.
	if err := pushV1("slow", "checkout", good); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("push over the rate: %v", err)
	}
	if err := pushV1("", "checkout", good); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("push without a tenant: %v", err)
	}
	if code := post("", HTTPPath, "text/plain", garbage); code != http.StatusUnauthorized {
		t.Fatalf("OTLP without a tenant: %d", code)
	}
	if n := store.n.Load(); n != 5 { // the OTLP request carries three
		t.Fatalf("%d profiles stored, want 5", n)
	}

	team := map[string]string{"tenant": "team"}
	for reason, want := range map[string]float64{"malformed_profile": 3, "unsupported_format": 2, "not_in_ingestion_window": 1} {
		if got := sum(t, reg, "hearth_discarded_profiles_total", map[string]string{"tenant": "team", "reason": reason}); got != want {
			t.Errorf("discarded profiles of team for %s: %v, want %v", reason, got, want)
		}
	}
	if got := sum(t, reg, "hearth_discarded_profiles_total", team); got != 6 {
		t.Errorf("discarded profiles of team: %v, want 6 (each refusal once)", got)
	}
	if got := sum(t, reg, "hearth_discarded_profiles_total", map[string]string{"tenant": "slow", "reason": "rate_limited"}); got != 1 {
		t.Errorf("rate-limited profiles of slow: %v, want 1", got)
	}
	if got := sum(t, reg, "hearth_received_profiles_total", team); got != 11 {
		t.Errorf("received profiles of team: %v, want 11", got)
	}
	if got := sum(t, reg, "hearth_received_compressed_bytes_total", team); got != float64(sent) {
		t.Errorf("received bytes of team: %v, want %d (every byte sent, once)", got, sent)
	}
	if got := sum(t, reg, "hearth_received_compressed_bytes_total", map[string]string{"tenant": "team", "type": UsageType}); got != float64(len(otlpBody)+2*len(garbage)) {
		t.Errorf("OTLP bytes of team: %v, want %d", got, len(otlpBody)+2*len(garbage))
	}
	if got := sum(t, reg, "hearth_received_compressed_bytes_total", map[string]string{"tenant": "team", "type": "process_cpu"}); got != float64(4*len(good)+len(garbage)) {
		t.Errorf("process_cpu bytes of team: %v, want push.v1's and /ingest's pprof %d", got, 4*len(good)+len(garbage))
	}
	// push.v1's refused pair: the decoded one by its size, the other as received.
	if got, want := sum(t, reg, "hearth_discarded_bytes_total", map[string]string{"tenant": "team", "reason": "malformed_profile"}), float64(len(good)+2*len(garbage)); got != want {
		t.Errorf("malformed bytes of team: %v, want %v", got, want)
	}
	if got := sum(t, reg, "hearth_usage_group_discarded_bytes_total", map[string]string{"tenant": "team", "usage_group": "svc/payments", "reason": "malformed_profile"}); got != float64(len(good)+len(garbage)) {
		t.Errorf("malformed bytes of svc/payments: %v, want %d", got, len(good)+len(garbage))
	}
	if got := sum(t, reg, "hearth_usage_group_discarded_bytes_total", map[string]string{"tenant": "team", "usage_group": "checkout", "reason": "unsupported_format"}); got != float64(len(garbage)) {
		t.Errorf("/ingest's unsupported format in checkout: %v, want %d (the name's labels)", got, len(garbage))
	}
	// The OTLP request's service.name is checkout too, its worker's is not.
	if got := sum(t, reg, "hearth_usage_group_received_decompressed_total", map[string]string{"tenant": "team", "usage_group": "checkout"}); got <= float64(2*len(good)+len(garbage)) {
		t.Errorf("checkout received: %v, want more than push.v1's and /ingest's %d", got, 2*len(good)+len(garbage))
	}
	// The groups do not overlap: they add up to the tenant, other included.
	recv, disc := sum(t, reg, "hearth_received_decompressed_bytes_total", team), sum(t, reg, "hearth_discarded_bytes_total", team)
	if g := sum(t, reg, "hearth_usage_group_received_decompressed_total", team); g != recv || recv == 0 {
		t.Errorf("usage groups received %v, tenant %v", g, recv)
	}
	if g := sum(t, reg, "hearth_usage_group_discarded_bytes_total", team); g != disc || disc == 0 {
		t.Errorf("usage groups discarded %v, tenant %v", g, disc)
	}
	if sum(t, reg, "hearth_usage_group_received_decompressed_total", map[string]string{"tenant": "team", "usage_group": "other"}) == 0 {
		t.Error("nothing in usage group other (the OTLP worker's profiles match no group)")
	}
	if got := sum(t, reg, "hearth_received_profiles_total", map[string]string{"tenant": ""}); got != 0 {
		t.Errorf("%v profiles counted without a tenant", got)
	}

	// A reload's new groups count the next request (the handler asks per request).
	rc2, err := validation.LoadRuntimeConfig(strings.NewReader("overrides:\n  team:\n    distributor_usage_groups:\n      everything: '{}'\n"), d)
	if err != nil {
		t.Fatal(err)
	}
	current.Store(rc2)
	if err := pushV1("team", "checkout", good); err != nil {
		t.Fatal(err)
	}
	if got := sum(t, reg, "hearth_usage_group_received_decompressed_total", map[string]string{"tenant": "team", "usage_group": "everything"}); got != float64(len(good)) {
		t.Errorf("after the reload, group everything received %v, want %d", got, len(good))
	}

	// The tenants go quiet: their series are deleted.
	if gone := h.Usage.Cleanup(time.Now().Add(time.Hour), 15*time.Minute); len(gone) != 2 {
		t.Errorf("cleanup removed %v, want team and slow", gone)
	}
	fams, _ := reg.Gather()
	if len(fams) != 0 {
		t.Errorf("%d metric families left after the cleanup, e.g. %s", len(fams), fams[0].GetName())
	}
}
