package remote

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/store"
	"github.com/hearth-dev/hearth/ingester/wal"
)

// seriesRounds builds rounds pushes of every corpus profile into the same
// series (one per profile), 10 s apart: each series gets rounds rows, so the
// head packs them (head.PackRows at a time), as a long-running service's are.
func seriesRounds(tb testing.TB, rounds int) []*pushv1.PushRequest {
	return seriesRoundsAt(tb, rounds, every10s, false)
}

func every10s(r int) time.Duration { return time.Duration(r) * 10 * time.Second }

// seriesRoundsAt is seriesRounds with round r at half an hour ago + at(r);
// vary makes every round's rows differ (values times r+1, one sample left
// out), so that a row read from the wrong place shows.
func seriesRoundsAt(tb testing.TB, rounds int, at func(r int) time.Duration, vary bool) []*pushv1.PushRequest {
	tb.Helper()
	profiles := testProfiles(tb)
	base := time.Now().Add(-30 * time.Minute)
	var out []*pushv1.PushRequest
	for i, raw := range profiles {
		p, err := pprofdec.DecodePprof(raw, 0)
		if err != nil {
			tb.Fatal(err)
		}
		orig := p.Sample
		values := make([][]int64, len(orig))
		for j, smp := range orig {
			values[j] = slices.Clone(smp.Value)
		}
		for r := range rounds {
			p.TimeNanos = base.Add(at(r)).UnixNano()
			if vary {
				for j, smp := range orig {
					for k := range smp.Value {
						smp.Value[k] = values[j][k] * int64(r+1)
					}
				}
				p.Sample = orig
				if k := r % len(orig); len(orig) > 1 {
					p.Sample = append(slices.Clone(orig[:k]), orig[k+1:]...)
				}
			}
			pb, err := p.MarshalVT()
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, &pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
				Labels:  []*typesv1.LabelPair{{Name: "service_name", Value: fmt.Sprintf("svc-%d", i)}},
				Samples: []*pushv1.RawSample{{RawProfile: pb, ID: uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "rounds/%d/%d", r, i)).String()}},
			}}})
		}
	}
	return out
}

// storeOf is a real store (WAL off) holding reqs.
func storeOf(tb testing.TB, reqs []*pushv1.PushRequest) *store.Store {
	tb.Helper()
	st, err := store.Open(store.Options{DataDir: tb.TempDir(), WALPolicy: wal.PolicyOff, Logger: discard}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	if err := pushAll(tb, push.NewHandler(limits(), st, false, discard, nil), reqs); err != nil {
		tb.Fatal(err)
	}
	return st
}

// serveSelect asks h what a peer asks: every series of the tenant.
func serveSelect(tb testing.TB, h http.Handler, req Request) []byte {
	tb.Helper()
	body, _ := json.Marshal(req)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, SelectPath, bytes.NewReader(body)))
	if rec.Code != http.StatusOK {
		tb.Fatalf("select: %d %s", rec.Code, rec.Body.String())
	}
	return rec.Body.Bytes()
}

func heapObjects() uint64 {
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}

// peakHeapDuring runs fn and returns the largest heap (objects, live or not
// yet collected) seen while it ran, above the heap before it (every 500 µs,
// from runtime/metrics: no stop-the-world).
func peakHeapDuring(fn func()) uint64 {
	base := heapObjects()
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(500 * time.Microsecond)
		defer t.Stop()
		for {
			peak = max(peak, heapObjects())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	fn()
	close(done)
	wg.Wait()
	peak = max(peak, heapObjects())
	if peak < base {
		return 0
	}
	return peak - base
}

// BenchmarkPeerSelect serves /internal/v1/select (the whole tenant: what a
// peer asks for a flame graph over everything) from a real store, in
// process: the corpus with 96 rows per series (14 series), and 8 instances
// of it with 32 rows per series (more, smaller series). The head packs the
// rows. peakHeapMB is the largest heap above the store's while answering (5
// runs after a GC, with GOGC=5 so that it follows the live heap); B/op every
// byte allocated; unpackedMB the selection's samples unpacked,
// largestSeriesMB its largest series'.
func BenchmarkPeerSelect(b *testing.B) {
	for _, bc := range []struct{ instances, rounds int }{{1, 96}, {8, 32}} {
		b.Run(fmt.Sprintf("instances=%d,rows=%d", bc.instances, bc.rounds), func(b *testing.B) {
			var reqs []*pushv1.PushRequest
			for k := range bc.instances {
				for _, r := range seriesRounds(b, bc.rounds) {
					if bc.instances > 1 {
						r.Series[0].Labels = append(r.Series[0].Labels, &typesv1.LabelPair{Name: "instance", Value: fmt.Sprint(k)})
						r.Series[0].Samples[0].ID = uuid.NewSHA1(uuid.MustParse(r.Series[0].Samples[0].ID), fmt.Append(nil, k)).String()
					}
					reqs = append(reqs, r)
				}
			}
			benchPeerSelect(b, storeOf(b, reqs))
		})
	}
}

func benchPeerSelect(b *testing.B, st *store.Store) {
	h := NewSelectHandler(st, HandlerOptions{Logger: discard})
	th := st.Head().Tenant("anonymous")
	stats := th.Stats()
	// The selection's samples unpacked, and its largest series'.
	var all, largest int
	sel := th.SelectPacked("", nil, math.MinInt64, math.MaxInt64)
	for i := range sel.Series {
		n := 0
		for _, p := range sel.Series[i].Unpacked(0, len(sel.Series[i].Profiles)) {
			n += len(p.Samples)
		}
		all, largest = all+n, max(largest, n)
	}
	req := Request{Tenant: "anonymous", Start: math.MinInt64, End: math.MaxInt64}
	// The peak with the collector running often (GOGC=5): what the answer
	// keeps alive, not when the pacer happens to collect.
	var peak uint64
	var wire int
	old := debug.SetGCPercent(5)
	for range 5 {
		runtime.GC()
		peak = max(peak, peakHeapDuring(func() { wire = len(serveSelect(b, h, req)) }))
	}
	debug.SetGCPercent(old)
	b.ResetTimer()
	for b.Loop() {
		serveSelect(b, h, req)
	}
	b.ReportMetric(float64(peak)/1e6, "peakHeapMB")
	b.ReportMetric(float64(wire)/1e6, "wireMB")
	b.ReportMetric(float64(stats.Profiles), "rows")
	b.ReportMetric(float64(stats.Series), "series")
	b.ReportMetric(float64(stats.Bytes)/1e6, "headMB")
	b.ReportMetric(float64(all)/1e6, "unpackedMB")
	b.ReportMetric(float64(largest)/1e6, "largestSeriesMB")
}
