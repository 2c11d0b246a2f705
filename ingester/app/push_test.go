package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/internal/testutil"
)

// smallProfile is a valid CPU profile with two stacks, stamped now.
func smallProfile(t testing.TB) []byte {
	p := &googlev1.Profile{
		StringTable: []string{"", "cpu", "nanoseconds", "main", "work", "main.go"},
		SampleType:  []*googlev1.ValueType{{Type: 1, Unit: 2}},
		PeriodType:  &googlev1.ValueType{Type: 1, Unit: 2},
		Function:    []*googlev1.Function{{Id: 1, Name: 3, Filename: 5}, {Id: 2, Name: 4, Filename: 5}},
		Location:    []*googlev1.Location{{Id: 1, Line: []*googlev1.Line{{FunctionId: 1, Line: 10}}}, {Id: 2, Line: []*googlev1.Line{{FunctionId: 2, Line: 20}}}},
		Sample:      []*googlev1.Sample{{LocationId: []uint64{2, 1}, Value: []int64{300}}, {LocationId: []uint64{1}, Value: []int64{100}}},
		TimeNanos:   time.Now().UnixNano(),
		Period:      10000000,
	}
	b, err := p.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pushReq(labels map[string]string, raw []byte) *connect.Request[pushv1.PushRequest] {
	var ls []*typesv1.LabelPair
	for k, v := range labels {
		ls = append(ls, &typesv1.LabelPair{Name: k, Value: v})
	}
	return connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
		Labels: ls, Samples: []*pushv1.RawSample{{RawProfile: raw, ID: uuid.NewString()}},
	}}})
}

func cpuTotal(t *testing.T, ing *testIngester, sel string, header map[string]string) int64 {
	t.Helper()
	req := connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{
		ProfileTypeID: "process_cpu:cpu:nanoseconds:cpu:nanoseconds", LabelSelector: sel,
		Start: time.Now().Add(-time.Hour).UnixMilli(), End: time.Now().Add(time.Hour).UnixMilli(),
	})
	for k, v := range header {
		req.Header().Set(k, v)
	}
	resp, err := ing.Querier.SelectMergeStacktraces(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg.Flamegraph.Total
}

func TestPushValidationErrorsNameTheLimit(t *testing.T) {
	ing := startIngester(t, "-limits.max-label-names-per-series=4", "-limits.max-profile-stacktrace-samples=1", "-limits.max-series-per-tenant=10")
	ctx := context.Background()
	good := smallProfile(t)
	cases := []struct {
		name   string
		labels map[string]string
		raw    []byte
		code   connect.Code
		msg    string
	}{
		{"not a profile", map[string]string{"service_name": "a"}, []byte("definitely not pprof"), connect.CodeInvalidArgument, "cannot decode"},
		{"bad label name", map[string]string{"service_name": "a", "0bad": "x"}, good, connect.CodeInvalidArgument, `label name "0bad" is invalid`},
		{"too many samples", map[string]string{"service_name": "a"}, good, connect.CodeInvalidArgument, "limits.max-profile-stacktrace-samples"},
		{"too many labels", map[string]string{"service_name": "a", "a1": "1", "a2": "2", "a3": "3", "a4": "4", "a5": "5"}, good, connect.CodeInvalidArgument, "limits.max-label-names-per-series"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ing.Push.Push(ctx, pushReq(c.labels, c.raw))
			if connectCode(err) != c.code || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, want %v containing %q", err, c.code, c.msg)
			}
		})
	}
	if got := cpuTotal(t, ing, `{}`, nil); got != 0 {
		t.Fatalf("refused pushes stored %d", got)
	}
}

func TestPushOldProfileRefused(t *testing.T) {
	ing := startIngester(t)
	p := &googlev1.Profile{}
	if err := p.UnmarshalVT(smallProfile(t)); err != nil {
		t.Fatal(err)
	}
	p.TimeNanos = time.Now().Add(-3 * time.Hour).UnixNano()
	b, _ := p.MarshalVT()
	_, err := ing.Push.Push(context.Background(), pushReq(map[string]string{"service_name": "old"}, b))
	if connectCode(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "limits.reject-older-than") {
		t.Fatalf("got %v", err)
	}
}

func TestSeriesLimitIs429(t *testing.T) {
	ing := startIngester(t, "-limits.max-series-per-tenant=2")
	ctx := context.Background()
	for i, want := range []connect.Code{0, 0, connect.CodeResourceExhausted} {
		_, err := ing.Push.Push(ctx, pushReq(map[string]string{"service_name": "s", "i": string(rune('a' + i))}, smallProfile(t)))
		if connectCode(err) != want {
			t.Fatalf("push %d: got %v, want %v", i, err, want)
		}
	}
}

// TestInstanceMaxSeriesBoundsEveryTenant: -ingester.instance-limits.max-series
// counts the series of all tenants: once the head holds that many, a push of
// any tenant is refused 503 (Unavailable) and the head holds no more.
func TestInstanceMaxSeriesBoundsEveryTenant(t *testing.T) {
	ing := startIngester(t, "-auth.multitenancy-enabled", "-ingester.instance-limits.max-series=3")
	push := func(tenant, instance string) error {
		req := pushReq(map[string]string{"service_name": "s", "instance": instance}, smallProfile(t))
		req.Header().Set("X-Scope-OrgID", tenant)
		_, err := ing.Push.Push(context.Background(), req)
		return err
	}
	for _, p := range [][2]string{{"team-a", "1"}, {"team-a", "2"}, {"team-b", "1"}} {
		if err := push(p[0], p[1]); err != nil {
			t.Fatalf("push %v below the limit: %v", p, err)
		}
	}
	for _, p := range [][2]string{{"team-b", "2"}, {"team-c", "1"}, {"team-a", "1"}} {
		if err := push(p[0], p[1]); connectCode(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "max-series") {
			t.Fatalf("push %v at the limit: got %v, want Unavailable naming max-series", p, err)
		}
	}
	resp, err := http.Get(ing.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	series := 0
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "hearth_head_series{") {
			var n float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &n); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			series += int(n)
		}
	}
	if series != 3 {
		t.Fatalf("the head holds %d series, want the limit, 3", series)
	}
}

func TestRetriedPushCountsOnce(t *testing.T) {
	ing := startIngester(t)
	req := pushReq(map[string]string{"service_name": "retry"}, smallProfile(t))
	for i := 0; i < 3; i++ {
		if _, err := ing.Push.Push(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if got := cpuTotal(t, ing, `{service_name="retry"}`, nil); got != 400 {
		t.Fatalf("a push retried with the same profile id counted %d, want 400", got)
	}
}

func TestMultitenancy(t *testing.T) {
	ing := startIngester(t, "-auth.multitenancy-enabled")
	_, err := ing.Push.Push(context.Background(), pushReq(map[string]string{"service_name": "a"}, smallProfile(t)))
	if connectCode(err) != connect.CodeUnauthenticated {
		t.Fatalf("push without tenant: got %v", err)
	}
	for _, tn := range []string{"team-a", "team-b"} {
		req := pushReq(map[string]string{"service_name": "a"}, smallProfile(t))
		req.Header().Set("X-Scope-OrgID", tn)
		if _, err := ing.Push.Push(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	req := pushReq(map[string]string{"service_name": "a"}, smallProfile(t))
	req.Header().Set("X-Scope-OrgID", "team-a")
	if _, err := ing.Push.Push(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got := cpuTotal(t, ing, `{}`, map[string]string{"X-Scope-OrgID": "team-a"}); got != 800 {
		t.Fatalf("team-a sees %d, want 800", got)
	}
	if got := cpuTotal(t, ing, `{}`, map[string]string{"X-Scope-OrgID": "team-b"}); got != 400 {
		t.Fatalf("team-b sees %d, want 400", got)
	}
}

func TestPushOverGRPCAndGRPCWeb(t *testing.T) {
	ing := startIngester(t)
	h2c := &http.Client{Transport: &http.Transport{Protocols: func() *http.Protocols {
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		return p
	}()}}
	for name, c := range map[string]pushv1connect.PusherServiceClient{
		"grpc":    pushv1connect.NewPusherServiceClient(h2c, ing.URL, connect.WithGRPC()),
		"grpcweb": pushv1connect.NewPusherServiceClient(http.DefaultClient, ing.URL, connect.WithGRPCWeb()),
	} {
		if _, err := c.Push(context.Background(), pushReq(map[string]string{"service_name": name}, smallProfile(t))); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := cpuTotal(t, ing, `{service_name="`+name+`"}`, nil); got != 400 {
			t.Fatalf("%s: stored %d", name, got)
		}
	}
}

func postIngest(t *testing.T, url, query, contentType string, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(url+"/ingest?"+query, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestIngestAPI(t *testing.T) {
	ing := startIngester(t)
	now := time.Now().Unix()
	from := "&from=" + itoa(now-10) + "&until=" + itoa(now)

	code, body := postIngest(t, ing.URL, "name=shop.cpu{env=prod}"+from+"&format=folded&sampleRate=100", "text/plain", []byte("main;work 30\nmain 10\n"))
	if code != 200 {
		t.Fatalf("folded: %d %s", code, body)
	}
	code, body = postIngest(t, ing.URL, "name=shop.cpu{env=prod}"+from+"&format=jfr", "application/octet-stream", []byte("x"))
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "invalid JFR recording") {
		t.Fatalf("corrupt jfr: %d %s", code, body)
	}
	code, body = postIngest(t, ing.URL, "name=shop{env=prod}"+from+"&format=pprof", "application/octet-stream", []byte("garbage"))
	if code != http.StatusUnprocessableEntity { // Pyroscope: 422
		t.Fatalf("garbage pprof: %d %s", code, body)
	}
	code, body = postIngest(t, ing.URL, "name=shop{env=prod"+from, "application/octet-stream", smallProfile(t))
	if code != http.StatusBadRequest {
		t.Fatalf("bad name: %d %s", code, body)
	}
	code, body = postIngest(t, ing.URL, "name=web{env=prod}"+from, "application/octet-stream", smallProfile(t))
	if code != 200 {
		t.Fatalf("pprof: %d %s", code, body)
	}
	if got := cpuTotal(t, ing, `{service_name="web", env="prod"}`, nil); got != 400 {
		t.Fatalf("pprof via /ingest stored %d, want 400", got)
	}
	types, err := ing.Querier.ProfileTypes(context.Background(), connect.NewRequest(&querierv1.ProfileTypesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, pt := range types.Msg.ProfileTypes {
		ids = append(ids, pt.ID)
	}
	if !strings.Contains(strings.Join(ids, " "), "process_cpu:cpu:nanoseconds:cpu:nanoseconds") {
		t.Fatalf("folded cpu profile type missing: %v", ids)
	}
}

// TestIngestFromTheGoSDK runs the demo workload's SDK path: a real Go program
// profiled by the Pyroscope Go SDK would push multipart pprof; here the test
// process's own profiles are sent the way the SDK does (multipart, gzip).
func TestIngestCorpusFileAsSDK(t *testing.T) {
	ing := startIngester(t)
	files := testutil.WriteProfiles(t, t.TempDir())
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	mw := multipartWriter(&buf)
	part, _ := mw.CreateFormFile("profile", "profile.pprof")
	_, _ = part.Write(raw)
	_ = mw.Close()
	now := time.Now()
	code, body := postIngest(t, ing.URL, "name=selfprof{}&from="+itoa(now.Add(-time.Second).UnixNano())+"&until="+itoa(now.UnixNano())+"&spyName=gospy", mw.FormDataContentType(), buf.Bytes())
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	resp, err := ing.Querier.LabelValues(context.Background(), connect.NewRequest(&typesv1.LabelValuesRequest{Name: "service_name"}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(resp.Msg.Names, ",") != "selfprof" {
		t.Fatalf("service names %v", resp.Msg.Names)
	}
}
