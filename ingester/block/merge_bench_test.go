package block

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/ingest"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/ingester/querier"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// heapSeriesHead pushes heap_go_truncated_1 n times into one series (as the
// comparison with Pyroscope in ../shared/PERFORMANCE.md does: one service,
// one instance, a fresh profile id and timestamp each push).
func heapSeriesHead(b *testing.B, n int) (*head.Head, int64) {
	dir := testutil.CorpusDir()
	if dir == "" {
		b.Skip("corpus tests did not run: ../shared/testdata/pprof is not beside the project")
	}
	raw, err := os.ReadFile(filepath.Join(dir, "heap_go_truncated_1.pb.gz"))
	if err != nil {
		b.Fatal(err)
	}
	p, err := pprofdec.DecodePprof(raw, 0)
	if err != nil {
		b.Fatal(err)
	}
	h := head.New(head.Options{})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	ls := model.Labels{
		{Name: model.LabelProfileName, Value: ingest.ProfileName(p)},
		{Name: model.LabelServiceName, Value: "heap"},
	}.Sort()
	for i := 0; i < n; i++ {
		var id head.ProfileID
		id[0], id[1], id[2] = byte(i), byte(i>>8), 0x42
		if _, err := h.Append(testTenant, id, ls, p, base+int64(i)*int64(time.Second)); err != nil {
			b.Fatal(err)
		}
	}
	return h, base
}

// reportCPU reports the process CPU time per op (user + system, every
// thread: the query and the collector) next to the wall time, which a
// shared, busy machine inflates: call it before the loop, defer the result.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ResetTimer()
	start := cpu()
	return func() {
		b.StopTimer()
		b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkMergeHeapSeries is the issue-17 query shape: 700 pushes of
// heap_go_truncated_1 into one series, merged by SelectMergeProfile and by
// SelectMergeStacktraces (flame graph) through querier.Service, from the
// head and from its block (local filesystem bucket, warm caches).
func BenchmarkMergeHeapSeries(b *testing.B) {
	const pushes = 700
	h, base := heapSeriesHead(b, pushes)
	root := b.TempDir()
	writeTenant(b, h, root, WriteOptions{})
	const ptype = "memory:inuse_space:bytes:space:bytes"
	start, end := base/1e6, base/1e6+pushes*1000
	for _, c := range []struct {
		name string
		src  querier.Source
	}{
		{"head", querier.HeadSource{Head: h}},
		{"block", &BucketSource{Bucket: fsBucket(b, filepath.Clean(root))}},
	} {
		q := &querier.Service{Sources: []querier.Source{c.src}}
		b.Run(c.name+"/profile", func(b *testing.B) {
			req := &querierv1.SelectMergeProfileRequest{ProfileTypeID: ptype, LabelSelector: `{service_name="heap"}`, Start: start, End: end}
			defer reportCPU(b)()
			for i := 0; i < b.N; i++ {
				resp, err := q.SelectMergeProfile(context.Background(), connect.NewRequest(req))
				if err != nil || len(resp.Msg.Sample) == 0 {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/flamegraph", func(b *testing.B) {
			req := &querierv1.SelectMergeStacktracesRequest{ProfileTypeID: ptype, LabelSelector: `{service_name="heap"}`, Start: start, End: end}
			defer reportCPU(b)()
			for i := 0; i < b.N; i++ {
				resp, err := q.SelectMergeStacktraces(context.Background(), connect.NewRequest(req))
				if err != nil || resp.Msg.Flamegraph == nil || resp.Msg.Flamegraph.Total == 0 {
					b.Fatal(err)
				}
			}
		})
	}
}
