package push

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
)

type fakeUsage struct {
	tenants, series int
	has             map[string]bool
}

func (f *fakeUsage) Usage() (int, int)       { return f.tenants, f.series }
func (f *fakeUsage) HasTenant(t string) bool { return f.has[t] }

func plain(w http.ResponseWriter, _ *http.Request, err *connect.Error) {
	http.Error(w, err.Error(), HTTPStatus(err.Code()))
}

func post(t *testing.T, url, tenant string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err) // a refusal must be an answer, never a reset
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestInstanceLimitsInflight: past the in-flight limit a push is answered 503,
// naming the limit, without the handler (which decodes) being called.
func TestInstanceLimitsInflight(t *testing.T) {
	il := NewInstanceLimiter(InstanceLimits{MaxInflightPushRequests: 1}, nil, nil)
	entered, release := make(chan struct{}, 4), make(chan struct{})
	calls := 0
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		_, _ = io.Copy(io.Discard, r.Body)
		entered <- struct{}{}
		<-release
	})
	srv := httptest.NewServer(il.Wrap(h, true, false, plain))
	defer srv.Close()
	done := make(chan int)
	go func() { code, _ := post(t, srv.URL, "", []byte("first")); done <- code }()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("first request never reached the handler")
	}
	big := bytes.Repeat([]byte("x"), 1<<20)
	code, body := post(t, srv.URL, "", big)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "ingester.instance-limits.max-inflight-push-requests") {
		t.Fatalf("second request: %d %q", code, body)
	}
	close(release)
	if c := <-done; c != http.StatusOK {
		t.Fatalf("first request: %d", c)
	}
	if code, _ := post(t, srv.URL, "", []byte("third")); code != http.StatusOK {
		t.Fatalf("after the first finished: %d", code)
	}
	if calls != 2 {
		t.Fatalf("handler called %d times, want 2 (the refused request must not reach it)", calls)
	}
}

func TestInstanceLimitsBytes(t *testing.T) {
	il := NewInstanceLimiter(InstanceLimits{MaxInflightPushRequestsBytes: 100}, nil, nil)
	release, err := il.admit(60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := il.admit(50); err == nil || !strings.Contains(err.Error(), "max-inflight-push-requests-bytes") {
		t.Fatalf("60+50 bytes of a 100-byte limit: %v", err)
	}
	if r2, err := il.admit(40); err != nil {
		t.Fatalf("60+40 bytes: %v", err)
	} else {
		r2()
	}
	release()
	if r3, err := il.admit(500); err != nil { // alone, a large request passes
		t.Fatalf("a request alone: %v", err)
	} else {
		r3()
	}
	if il.inflight.Load() != 0 || il.inflightBytes.Load() != 0 {
		t.Fatalf("leaked: %d requests, %d bytes", il.inflight.Load(), il.inflightBytes.Load())
	}
}

func TestInstanceLimitsSeriesTenantsAndRate(t *testing.T) {
	u := &fakeUsage{tenants: 2, series: 10, has: map[string]bool{"a": true, "b": true}}
	il := NewInstanceLimiter(InstanceLimits{MaxTenants: 2, MaxSeries: 11, MaxIngestionRate: 3}, u, nil)
	srv := httptest.NewServer(il.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), true, true, plain))
	defer srv.Close()
	if code, _ := post(t, srv.URL, "a", nil); code != http.StatusOK {
		t.Fatalf("known tenant: %d", code)
	}
	if code, body := post(t, srv.URL, "c", nil); code != http.StatusServiceUnavailable || !strings.Contains(body, "max-tenants") {
		t.Fatalf("a third tenant: %d %s", code, body)
	}
	// Replica appends carry the tenant in the body: the appender checks it.
	app := il.Appender(AppenderFunc(func(context.Context, string, []Profile) error { return nil }))
	if err := app.Append(context.Background(), "c", []Profile{{}}); err == nil {
		t.Fatal("a replica append of a third tenant was accepted")
	} else if code, _ := Classify(err); code != connect.CodeUnavailable {
		t.Fatalf("classified %v, want unavailable", code)
	}
	// One append of 4 profiles: this second's or the last second's count.
	if err := app.Append(context.Background(), "a", make([]Profile, 4)); err != nil {
		t.Fatal(err)
	}
	if code, body := post(t, srv.URL, "a", nil); code != http.StatusServiceUnavailable || !strings.Contains(body, "max-ingestion-rate") {
		t.Fatalf("over the rate (4 profiles in a second, limit 3): %d %s", code, body)
	}
	il2 := NewInstanceLimiter(InstanceLimits{MaxSeries: 10}, u, nil)
	if err := il2.checkUsage("a"); err == nil || !strings.Contains(err.Error(), "max-series") {
		t.Fatalf("10 series of 10: %v", err)
	}
}

// AppenderFunc adapts a function to Appender.
type AppenderFunc func(context.Context, string, []Profile) error

func (f AppenderFunc) Append(ctx context.Context, t string, ps []Profile) error { return f(ctx, t, ps) }

// TestDecodeGate: admitted requests beyond max-concurrent-decodes wait for a
// slot (they are not refused), at most that many decode at once, and the
// replica pool has slots of its own, so a replica append enters while the
// front door's are all held by pushes (which wait for their replicas).
func TestDecodeGate(t *testing.T) {
	const slots, requests = 2, 6
	il := NewInstanceLimiter(InstanceLimits{MaxInflightPushRequests: 16, MaxConcurrentDecodes: slots}, nil, nil)
	var inside, most atomic.Int32
	entered, release := make(chan struct{}, requests+1), make(chan struct{})
	decoder := func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		done, err := EnterDecode(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer done()
		n := inside.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		entered <- struct{}{}
		<-release
		inside.Add(-1)
	}
	front := httptest.NewServer(il.Wrap(http.HandlerFunc(decoder), true, false, plain))
	defer front.Close()
	replica := httptest.NewServer(il.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done, err := EnterDecode(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		done()
	}), false, false, plain))
	defer replica.Close()

	codes := make(chan int, requests)
	for i := 0; i < requests; i++ {
		go func() { code, _ := post(t, front.URL, "", []byte("profile")); codes <- code }()
	}
	for i := 0; i < slots; i++ {
		select {
		case <-entered:
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d requests decode, want %d", i, slots)
		}
	}
	// Every slot of the front door is held: a replica append still passes.
	if code, body := post(t, replica.URL, "", []byte("replica")); code != http.StatusOK {
		t.Fatalf("replica append while the front door's slots are held: %d %s", code, body)
	}
	select {
	case <-entered:
		t.Fatalf("a request decodes beyond the %d slots", slots)
	default:
	}
	close(release)
	for i := 0; i < requests; i++ {
		if code := <-codes; code != http.StatusOK {
			t.Fatalf("a request waiting for a slot was answered %d, want it to wait and pass", code)
		}
	}
	if m := most.Load(); m != slots {
		t.Fatalf("at most %d requests decoded at once, want %d", m, slots)
	}
}
