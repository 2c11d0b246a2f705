package querier

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/validation"
)

const renderCPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"

// renderServer serves render and render-diff over a head holding CPU
// profiles of three services stamped a minute ago, limited by cfg and l.
func renderServer(t *testing.T, cfg Config, l validation.Limits) (*httptest.Server, *Limiter) {
	t.Helper()
	h := head.New(head.Options{})
	rng := rand.New(rand.NewPCG(3, 3))
	ts := time.Now().Add(-time.Minute).UnixNano()
	for i, svc := range []string{"a", "b", "c"} {
		ls := model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: svc}}.Sort()
		if _, err := h.Append(tenant.Anonymous, head.ProfileID{byte(i + 1)}, ls, randomProfile(rng), ts); err != nil {
			t.Fatal(err)
		}
	}
	lim := NewLimiter(cfg, l, false)
	s := &Service{Sources: []Source{HeadSource{Head: h}}, Limiter: lim}
	mux := http.NewServeMux()
	mux.HandleFunc(RenderPath, s.Render)
	mux.HandleFunc(RenderDiffPath, s.RenderDiff)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, lim
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// renderURLs are the three render entry points over [from, until].
func renderURLs(base, from, until, extra string) map[string]string {
	q := url.QueryEscape(renderCPU + "{}")
	return map[string]string{
		"render":      base + RenderPath + "?query=" + q + "&from=" + from + "&until=" + until + extra,
		"render-dot":  base + RenderPath + "?format=dot&query=" + q + "&from=" + from + "&until=" + until + extra,
		"render-diff": base + RenderDiffPath + "?leftQuery=" + q + "&rightQuery=" + q + "&leftFrom=" + from + "&leftUntil=" + until + "&rightFrom=" + from + "&rightUntil=" + until + extra,
	}
}

// TestRenderLimits: every plain-HTTP render endpoint applies the query
// limits querier.v1 applies (one Limiter): max_query_length refused with
// 400 naming it, a range entirely before max_query_lookback answers nothing,
// max_flamegraph_nodes_max, max_fetched_series_per_query, and the
// concurrency limit (429 beyond the queue) and timeout (504) shared with
// querier.v1's calls.
func TestRenderLimits(t *testing.T) {
	l := validation.Limits{MaxQueryLength: 24 * time.Hour, MaxQueryLookback: 7 * 24 * time.Hour, MaxFlameGraphNodesDefault: 100, MaxFlameGraphNodesMax: 1000, MaxFetchedSeriesPerQuery: 2}
	srv, _ := renderServer(t, Config{}, l)
	for name, u := range renderURLs(srv.URL, "now-48h", "now", "") {
		if code, body := get(t, u); code != http.StatusBadRequest || !strings.Contains(body, "max_query_length") {
			t.Errorf("%s over 48h: %d %s", name, code, body)
		}
	}
	for name, u := range renderURLs(srv.URL, "now-1h", "now", "") {
		if code, body := get(t, u); code != http.StatusBadRequest || !strings.Contains(body, "max_fetched_series_per_query") {
			t.Errorf("%s over three series (limit 2): %d %s", name, code, body)
		}
	}
	for name, u := range renderURLs(srv.URL, "now-1h", "now", "&max-nodes=5000") {
		if name == "render-dot" {
			continue // a DOT graph is drawn from the pprof: the flame graph limits leave it alone
		}
		if code, body := get(t, u); code != http.StatusBadRequest || !strings.Contains(body, "max_flamegraph_nodes_max") {
			t.Errorf("%s with 5000 nodes: %d %s", name, code, body)
		}
	}

	l.MaxFetchedSeriesPerQuery = 0
	srv, lim := renderServer(t, Config{MaxConcurrent: 1, MaxQueued: 0, Timeout: time.Minute}, l)
	for name, u := range renderURLs(srv.URL, "now-1h", "now", "") {
		if code, body := get(t, u); code != http.StatusOK {
			t.Fatalf("%s within every limit: %d %s", name, code, body)
		}
	}
	// Entirely before the lookback: nothing (not an error).
	old := strconv.FormatInt(time.Now().Add(-10*24*time.Hour).Unix(), 10)
	older := strconv.FormatInt(time.Now().Add(-11*24*time.Hour).Unix(), 10)
	for name, u := range renderURLs(srv.URL, older, old, "") {
		if name == "render-dot" {
			continue
		}
		code, body := get(t, u)
		var fb FlamebearerProfile
		if code != http.StatusOK || json.Unmarshal([]byte(body), &fb) != nil || fb.Flamebearer.NumTicks != 0 {
			t.Errorf("%s before the lookback: %d %.200s", name, code, body)
		}
	}
	// The one slot held by another query (as a querier.v1 call would hold
	// it), no queue: every render endpoint is refused with 429.
	release, held := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- lim.Run(context.Background(), http.Header{}, nil, func(context.Context) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	for name, u := range renderURLs(srv.URL, "now-1h", "now", "") {
		if code, body := get(t, u); code != http.StatusTooManyRequests || !strings.Contains(body, "querier.max-queued") {
			t.Errorf("%s while the slot is held: %d %s", name, code, body)
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A queue of one and a short timeout: a render waiting for the held
	// slot gives up with 504 naming the timeout.
	srv, lim = renderServer(t, Config{MaxConcurrent: 1, MaxQueued: 1, Timeout: 50 * time.Millisecond}, l)
	release, held = make(chan struct{}), make(chan struct{})
	go func() {
		done <- lim.Run(context.Background(), http.Header{}, nil, func(context.Context) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	for name, u := range renderURLs(srv.URL, "now-1h", "now", "") {
		if code, body := get(t, u); code != http.StatusGatewayTimeout || !strings.Contains(body, "querier.timeout") {
			t.Errorf("%s waiting past the timeout: %d %s", name, code, body)
		}
	}
	close(release)
	<-done
}
