package testutil

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/pprof/profile"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
)

// AllocObjects is the profile type the counting tests query.
const AllocObjects = "memory:alloc_objects:count:space:bytes"

// HeapCorpus writes one real heap profile (of the test process) as
// heap.pb.gz into a directory for `hearth load`, and returns the directory
// and the profile's alloc_objects total: what every stored copy adds to a query.
func HeapCorpus(t testing.TB) (dir string, perProfile int64) {
	t.Helper()
	dir = t.TempDir()
	b, err := os.ReadFile(WriteProfiles(t, t.TempDir())[1])
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
	idx := slices.IndexFunc(p.SampleType, func(st *profile.ValueType) bool { return st.Type == "alloc_objects" })
	if idx < 0 {
		t.Fatalf("heap profile has no alloc_objects: %v", p.SampleType)
	}
	for _, s := range p.Sample {
		perProfile += s.Value[idx]
	}
	if perProfile == 0 {
		t.Fatal("heap profile has no allocations")
	}
	return dir, perProfile
}

// CountProfiles asks an ingester (which reads the others and the bucket)
// how many heap profiles it stores, and how many of those are among ids,
// each counted as a sum divided by the per-profile total.
func CountProfiles(url string, ids []string, perProfile int64) (all, acked float64, err error) {
	q := querierv1connect.NewQuerierServiceClient(http.DefaultClient, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now()
	start, end := now.Add(-time.Hour).UnixMilli(), now.Add(time.Hour).UnixMilli()
	sum := typesv1.TimeSeriesAggregationType_TIME_SERIES_AGGREGATION_TYPE_SUM
	ss, err := q.SelectSeries(ctx, connect.NewRequest(&querierv1.SelectSeriesRequest{
		ProfileTypeID: AllocObjects, LabelSelector: `{service_name="heap"}`, Start: start, End: end, Step: 7200, Aggregation: &sum,
	}))
	if err != nil {
		return 0, 0, err
	}
	for _, s := range ss.Msg.Series {
		for _, p := range s.Points {
			all += p.Value
		}
	}
	fg, err := q.SelectMergeStacktraces(ctx, connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{
		ProfileTypeID: AllocObjects, LabelSelector: `{service_name="heap"}`, Start: start, End: end, ProfileIdSelector: ids,
	}))
	if err != nil {
		return 0, 0, err
	}
	return all / float64(perProfile), float64(fg.Msg.Flamegraph.Total) / float64(perProfile), nil
}
