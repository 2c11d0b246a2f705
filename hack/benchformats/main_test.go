package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	collectorv1 "go.opentelemetry.io/proto/otlp/collector/profiles/v1development"
	profilesv1 "go.opentelemetry.io/proto/otlp/profiles/v1development"
	"google.golang.org/protobuf/proto"
)

func TestExpandPath(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	got := expandPath("/ingest?name=a%7Bi%3D$SERIES%7D&from=$FROM&until=$UNTIL", 13, now, 5)
	want := "/ingest?name=a%7Bi%3D3%7D&from=1699999990&until=1700000000"
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestRestampOTLP(t *testing.T) {
	req := &collectorv1.ExportProfilesServiceRequest{ResourceProfiles: []*profilesv1.ResourceProfiles{{
		ScopeProfiles: []*profilesv1.ScopeProfiles{{Profiles: []*profilesv1.Profile{{TimeUnixNano: 1}, {TimeUnixNano: 2}}}},
	}}}
	now := time.Unix(1_700_000_000, 5)
	b, err := restampOTLP(req, now)
	if err != nil {
		t.Fatal(err)
	}
	var back collectorv1.ExportProfilesServiceRequest
	if err := proto.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for i, p := range back.ResourceProfiles[0].ScopeProfiles[0].Profiles {
		if p.TimeUnixNano != uint64(now.UnixNano()) {
			t.Errorf("profile %d: time %d, want %d", i, p.TimeUnixNano, now.UnixNano())
		}
	}
}

// TestRunCounts runs the tool against a real HTTP server that refuses every
// third request: the report must count both, and every request carries the body.
func TestRunCounts(t *testing.T) {
	var mu sync.Mutex
	var seen int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen++
		n := seen
		mu.Unlock()
		if string(b) != "payload" || r.Header.Get("Content-Type") != "application/x-test" {
			http.Error(w, "bad request body or type", http.StatusBadRequest)
			return
		}
		if n%3 == 0 {
			http.Error(w, "refused on purpose", http.StatusUnprocessableEntity)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	f := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(f, []byte("payload"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := run(context.Background(), config{url: srv.URL, path: "/x?from=$FROM", file: f, contentType: "application/x-test",
		requests: 30, workers: 3, series: 2, duration: 30 * time.Second, timeout: 10 * time.Second}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "RESULT accepted=20 refused=10 errors=0 abandoned=0") {
		t.Fatalf("report:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "refused 422 x10, first: refused on purpose") {
		t.Fatalf("report:\n%s", out.String())
	}
}

func TestMultipartBody(t *testing.T) {
	b, ct, err := multipartBody("jfr", []byte("recording"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "/", bytes.NewReader(b))
	req.Header.Set("Content-Type", ct)
	if err := req.ParseMultipartForm(1 << 20); err != nil {
		t.Fatal(err)
	}
	f, _, err := req.FormFile("jfr")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	if string(got) != "recording" {
		t.Fatalf("part jfr = %q", got)
	}
}
