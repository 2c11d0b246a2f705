package push

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/validation"
)

type recordingAppender struct {
	mu      sync.Mutex
	tenants []string
}

func (a *recordingAppender) Append(_ context.Context, t string, _ []Profile) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tenants = append(a.tenants, t)
	return nil
}

func testProfile(t *testing.T) []byte {
	p := &googlev1.Profile{
		StringTable: []string{"", "cpu", "nanoseconds", "main"},
		SampleType:  []*googlev1.ValueType{{Type: 1, Unit: 2}},
		Function:    []*googlev1.Function{{Id: 1, Name: 3}},
		Location:    []*googlev1.Location{{Id: 1, Line: []*googlev1.Line{{FunctionId: 1}}}},
		Sample:      []*googlev1.Sample{{LocationId: []uint64{1}, Value: []int64{1}}},
		TimeNanos:   time.Now().UnixNano(),
	}
	b, err := p.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A missing tenant is a 401; an invalid or federated one a 400 that says
// why; nothing is stored for either.
func TestTenantErrors(t *testing.T) {
	var lim validation.Limits
	lim.MaxProfileSizeBytes = 1 << 20
	app := &recordingAppender{}
	h := NewHandler(lim, app, true, nil, nil)
	raw := testProfile(t)

	cases := []struct {
		header   []string
		code     connect.Code
		status   int
		contains string
	}{
		{nil, connect.CodeUnauthenticated, http.StatusUnauthorized, "no tenant"},
		{[]string{"tenant-a|tenant-b"}, connect.CodeInvalidArgument, http.StatusBadRequest, "federated ids (a|b) are not supported"},
		{[]string{"../x"}, connect.CodeInvalidArgument, http.StatusBadRequest, "contains '/'"},
		{[]string{"a", "b"}, connect.CodeInvalidArgument, http.StatusBadRequest, "2 times"},
	}
	for _, c := range cases {
		req := connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
			Labels:  []*typesv1.LabelPair{{Name: "service_name", Value: "svc"}},
			Samples: []*pushv1.RawSample{{RawProfile: raw}},
		}}})
		for _, v := range c.header {
			req.Header().Add(tenant.Header, v)
		}
		_, err := h.Push(context.Background(), req)
		var ce *connect.Error
		if !asConnect(err, &ce) || ce.Code() != c.code || !bytes.Contains([]byte(ce.Message()), []byte(c.contains)) {
			t.Errorf("push.v1 with %q: %v, want %v containing %q", c.header, err, c.code, c.contains)
		}

		hr := httptest.NewRequest(http.MethodPost, "/ingest?name=svc&format=pprof", bytes.NewReader(raw))
		for _, v := range c.header {
			hr.Header.Add(tenant.Header, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, hr)
		if rec.Code != c.status || !bytes.Contains(rec.Body.Bytes(), []byte(c.contains)) {
			t.Errorf("/ingest with %q: %d %q, want %d containing %q", c.header, rec.Code, rec.Body.String(), c.status, c.contains)
		}
	}
	if len(app.tenants) != 0 {
		t.Fatalf("refused pushes were stored for %v", app.tenants)
	}
	// The valid tenant goes through, as itself.
	req := connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
		Labels:  []*typesv1.LabelPair{{Name: "service_name", Value: "svc"}},
		Samples: []*pushv1.RawSample{{RawProfile: raw}},
	}}})
	req.Header().Set(tenant.Header, "tenant-a")
	if _, err := h.Push(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if len(app.tenants) != 1 || app.tenants[0] != "tenant-a" {
		t.Fatalf("stored for %v, want [tenant-a]", app.tenants)
	}
}

func asConnect(err error, ce **connect.Error) bool {
	if err == nil {
		return false
	}
	e, ok := err.(*connect.Error)
	*ce = e
	return ok
}

// TestIdleLimitersForgotten: the rate limiter of a tenant idle past the
// cleanup's cutoff is dropped, an active tenant's is kept, and a tenant
// coming back gets a fresh one that enforces its limit.
func TestIdleLimitersForgotten(t *testing.T) {
	now := time.Unix(1000, 0)
	h := &Handler{Now: func() time.Time { return now }}
	lim := &validation.Limits{IngestionRateMB: 1, IngestionBurstSizeMB: 1}
	if !h.allow("idle", lim, 1000) {
		t.Fatal("first push refused")
	}
	now = now.Add(10 * time.Minute)
	if !h.allow("active", lim, 1000) {
		t.Fatal("first push refused")
	}
	h.forgetIdleLimiters(now.Add(-5 * time.Minute))
	count := func() (n int) {
		h.limiters.Range(func(any, any) bool { n++; return true })
		return n
	}
	if _, ok := h.limiters.Load("idle"); ok || count() != 1 {
		t.Fatalf("%d limiters left, the idle tenant's among them: %v", count(), ok)
	}
	if h.allow("idle", lim, 2e6) {
		t.Fatal("a returning tenant's fresh limiter let 2 MB through a 1 MB burst")
	}
	if !h.allow("idle", lim, 1e6) {
		t.Fatal("a returning tenant's fresh limiter refused its burst")
	}
}
