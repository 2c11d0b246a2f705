// Package integration runs real hearth processes on loopback ports: crash,
// restart and (later) ring tests.
package integration

import (
	"context"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/pprof/profile"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/ingester/load"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// heapCorpus writes one real heap profile (of this test process) into a
// directory for `hearth load`, and returns the dir and the profile's
// alloc_objects total, the value every pushed copy must add to a query.
func heapCorpus(t *testing.T) (string, int64) {
	t.Helper()
	dir := t.TempDir()
	files := testutil.WriteProfiles(t, t.TempDir())
	heap := files[1]
	b, err := os.ReadFile(heap)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "heap.pb.gz"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := profile.ParseData(b)
	if err != nil {
		t.Fatal(err)
	}
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "alloc_objects" {
			idx = i
		}
	}
	if idx < 0 {
		t.Fatalf("heap profile has no alloc_objects: %v", p.SampleType)
	}
	var total int64
	for _, s := range p.Sample {
		total += s.Value[idx]
	}
	if total == 0 {
		t.Fatal("heap profile has no allocations")
	}
	return dir, total
}

const allocObjects = "memory:alloc_objects:count:space:bytes"

// countProfiles asks the ingester for the sum over every stored profile and
// over the given ids, each divided by the per-profile total.
func countProfiles(t *testing.T, url string, ids []string, perProfile int64) (all, acked float64) {
	t.Helper()
	q := querierv1connect.NewQuerierServiceClient(http.DefaultClient, url)
	ctx := context.Background()
	now := time.Now()
	start, end := now.Add(-time.Hour).UnixMilli(), now.Add(time.Hour).UnixMilli()
	sum := typesv1.TimeSeriesAggregationType_TIME_SERIES_AGGREGATION_TYPE_SUM
	ss, err := q.SelectSeries(ctx, connect.NewRequest(&querierv1.SelectSeriesRequest{
		ProfileTypeID: allocObjects, LabelSelector: `{service_name="heap"}`, Start: start, End: end, Step: 7200, Aggregation: &sum,
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss.Msg.Series {
		for _, p := range s.Points {
			all += p.Value
		}
	}
	fg, err := q.SelectMergeStacktraces(ctx, connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{
		ProfileTypeID: allocObjects, LabelSelector: `{service_name="heap"}`, Start: start, End: end, ProfileIdSelector: ids,
	}))
	if err != nil {
		t.Fatal(err)
	}
	return all / float64(perProfile), float64(fg.Msg.Flamegraph.Total) / float64(perProfile)
}

// TestKill9LosesNothingAcknowledged pushes with the load client while the
// ingester is killed with SIGKILL at random moments, restarts it each time,
// and checks that every acknowledged profile is there exactly once and that
// nothing unacknowledged is half there.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	dir, perProfile := heapCorpus(t)
	data := t.TempDir()
	port := testutil.FreePort(t)
	args := []string{"-data-dir=" + data, "-log.level=warn"}
	proc := testutil.StartIngester(t, port, args...)

	acks := &load.AckLog{}
	var attempted int64
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	const rounds = 4
	for round := 0; round < rounds; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		sumc := make(chan load.Summary, 1)
		go func() {
			s, _ := load.Run(ctx, load.Config{URL: proc.URL, Dir: dir, Workers: 4, Series: 20, Duration: 10 * time.Second, Acked: acks.Record})
			sumc <- s
		}()
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		proc.Kill()
		time.Sleep(100 * time.Millisecond) // let in-flight pushes fail
		cancel()
		s := <-sumc
		attempted += s.Pushes + s.Abandoned
		t.Logf("round %d: %d pushes, %d acknowledged so far, errors %v", round, s.Pushes, len(acks.Acks()), s.ErrorsByCode)
		proc = testutil.StartIngester(t, port, args...)
	}
	ids := make([]string, 0, len(acks.Acks()))
	for _, a := range acks.Acks() {
		ids = append(ids, a.ID)
	}
	if len(ids) == 0 {
		t.Fatal("no push was acknowledged")
	}
	all, acked := countProfiles(t, proc.URL, ids, perProfile)
	t.Logf("acknowledged %d, attempted %d; stored: %.2f profiles, of which %.2f acknowledged", len(ids), attempted, all, acked)
	if acked != float64(len(ids)) {
		t.Errorf("acknowledged profiles: %d pushed, %.3f found", len(ids), acked)
	}
	if all != float64(int64(all)) {
		t.Errorf("stored total is %.3f profiles: a profile is half there", all)
	}
	if all < float64(len(ids)) || all > float64(attempted) {
		t.Errorf("stored %.2f profiles, want between %d acknowledged and %d attempted", all, len(ids), attempted)
	}
}
