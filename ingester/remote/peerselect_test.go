package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/querier"
	"github.com/hearth-dev/hearth/ingester/store"
	"github.com/hearth-dev/hearth/ingester/wal"
)

// TestPeerSelectMatchesEager: a peer's select, answered from packed rows one
// series at a time, decodes to exactly what the eager path (every row
// unpacked into a copy, pruned into another, compressed at once) answered on
// the same head: same series, rows, samples bytes and pruned symbols (so
// the same flame graphs).
func TestPeerSelectMatchesEager(t *testing.T) {
	const rounds = 3*head.PackRows + 5 // three packed blocks and an unpacked tail per series
	st := storeOf(t, seriesRoundsAt(t, rounds, every10s, true))
	th := st.Head().Tenant("anonymous")
	packed := 0
	for _, sr := range th.SelectPacked("", nil, math.MinInt64, math.MaxInt64).Series {
		for _, p := range sr.Profiles {
			if p.Samples == nil {
				packed++
			}
		}
	}
	if packed == 0 {
		t.Fatal("no packed rows: the test would not read any")
	}
	h := NewSelectHandler(st, HandlerOptions{Logger: discard})
	// The rows' times are seriesRounds': first + r*10s.
	first := th.Stats().MinTime
	at := func(r int) int64 { return first + int64(r)*int64(10*time.Second) }
	for _, tc := range []struct {
		name string
		req  Request
	}{
		{"all", Request{Start: math.MinInt64, End: math.MaxInt64}},
		{"rows 3-13 (mid-block)", Request{Start: at(3), End: at(13)}},
		{"tail only", Request{Start: at(3*head.PackRows + 1), End: math.MaxInt64}},
		{"one service", Request{Start: math.MinInt64, End: math.MaxInt64, Selectors: []string{`{service_name="svc-1"}`}}},
		{"one type", Request{ProfileType: "process_cpu:cpu:nanoseconds:cpu:nanoseconds", Start: math.MinInt64, End: math.MaxInt64}},
	} {
		t.Run(tc.name, func(t *testing.T) { comparePeerSelect(t, st, h, tc.req) })
	}
}

// TestPeerSelectOutOfOrderRows: series whose rows did not arrive in time
// order, so that a time range selects rows that are not one run of the
// series' rows (packed rows among them): the same answer as the eager path.
func TestPeerSelectOutOfOrderRows(t *testing.T) {
	const rounds = 3 * head.PackRows
	// Even rounds in the first 10 minutes, odd ones in the next.
	st := storeOf(t, seriesRoundsAt(t, rounds, func(r int) time.Duration { return time.Duration(r)*time.Second + time.Duration(r%2)*10*time.Minute }, true))
	h := NewSelectHandler(st, HandlerOptions{Logger: discard})
	th := st.Head().Tenant("anonymous")
	first := th.Stats().MinTime
	// The even rows are not one run: they stay packed all the same.
	kept := 0
	for _, sr := range th.SelectPacked("", nil, first, first+int64(5*time.Minute)).Series {
		if len(sr.Profiles) != rounds/2 {
			t.Fatalf("series %s: %d rows in the first 5 minutes, want %d", sr.Labels, len(sr.Profiles), rounds/2)
		}
		for _, p := range sr.Profiles {
			if p.Samples == nil {
				kept++
			}
		}
	}
	if kept == 0 {
		t.Fatal("no row of the out-of-order selection stayed packed")
	}
	comparePeerSelect(t, st, h, Request{Start: first, End: first + int64(5*time.Minute)})
	comparePeerSelect(t, st, h, Request{Start: first + int64(5*time.Minute), End: math.MaxInt64})
	comparePeerSelect(t, st, h, Request{Start: first + int64(3*time.Second), End: first + int64(10*time.Minute+13*time.Second)})
}

// comparePeerSelect asks h (serving st) for req and compares the answer
// with the eager encoding of st's eager selection.
func comparePeerSelect(t *testing.T, st *store.Store, h http.Handler, req Request) {
	t.Helper()
	req.Tenant = "anonymous"
	got, err := DecodeSelections(serveSelect(t, h, req), 0)
	if err != nil {
		t.Fatal(err)
	}
	match, err := querier.Matcher(req.Selectors...)
	if err != nil {
		t.Fatal(err)
	}
	eager, err := st.Select(context.Background(), "anonymous", req.ProfileType, match, req.Start, req.End)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := encodeSelectionsReference(eager)
	if err != nil {
		t.Fatal(err)
	}
	want, err := DecodeSelections(ref, 0)
	if err != nil {
		t.Fatal(err)
	}
	var nrows int
	for _, sel := range want {
		for _, sr := range sel.Series {
			nrows += len(sr.Profiles)
		}
	}
	if nrows == 0 {
		t.Fatal("the reference selected no rows")
	}
	if len(got) != len(want) {
		t.Fatalf("%d selections, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i].Series, want[i].Series) {
			t.Errorf("selection %d: series or rows differ from the eager answer", i)
		}
		if !reflect.DeepEqual(got[i].Symbols, want[i].Symbols) {
			t.Errorf("selection %d: symbols differ from the eager answer", i)
		}
	}
	t.Logf("%d rows", nrows)
}

// TestPeerSelectWhilePushing: peers' selects from the active head while
// pushes append rows and pack blocks (copy on write under the selection):
// every answer decodes, none has fewer rows than the one before, and the
// last matches the eager path.
func TestPeerSelectWhilePushing(t *testing.T) {
	st, err := store.Open(store.Options{DataDir: t.TempDir(), WALPolicy: wal.PolicyOff, Logger: discard}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reqs := seriesRoundsAt(t, 3*head.PackRows, every10s, true)
	ph := push.NewHandler(limits(), st, false, discard, nil)
	done := make(chan error, 1)
	go func() { done <- pushAll(t, ph, reqs) }()
	h := NewSelectHandler(st, HandlerOptions{Logger: discard})
	req := Request{Tenant: "anonymous", Start: math.MinInt64, End: math.MaxInt64}
	body, _ := json.Marshal(req)
	prev, answers := 0, 0
	for pushing := true; pushing && answers < 1000; answers++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			pushing = false
		default:
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, SelectPath, bytes.NewReader(body)))
		if rec.Code == http.StatusBadRequest && st.Head().Tenant("anonymous") == nil {
			continue // before the first push
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("select %d: %d %s", answers, rec.Code, rec.Body.String())
		}
		sels, err := DecodeSelections(rec.Body.Bytes(), 0)
		if err != nil {
			t.Fatalf("select %d: %v", answers, err)
		}
		n := 0
		for _, sel := range sels {
			for _, sr := range sel.Series {
				n += len(sr.Profiles)
			}
		}
		if n < prev {
			t.Fatalf("select %d: %d rows, fewer than the %d before", answers, n, prev)
		}
		prev = n
	}
	t.Logf("%d answers while pushing %d profiles", answers, len(reqs))
	comparePeerSelect(t, st, h, req)
}
