package compactor

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/querier"
)

// bytesBucket counts the bytes read from a bucket and the requests.
type bytesBucket struct {
	objstore.Bucket
	bytes, reqs atomic.Int64
}

type countedReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r countedReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}

func (b *bytesBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	b.reqs.Add(1)
	rc, err := b.Bucket.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return countedReader{rc, &b.bytes}, nil
}

func (b *bytesBucket) GetRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	b.reqs.Add(1)
	rc, err := b.Bucket.GetRange(ctx, name, off, n)
	if err != nil {
		return nil, err
	}
	return countedReader{rc, &b.bytes}, nil
}

// BenchmarkFleetMonthQuery: a month of one tenant of the fleet compacted
// into day blocks (each: 100 ingesters' services, their own 400 functions,
// a profile every 6 hours), queried over the whole month by a fresh reader:
// a merge (flame graph) and SelectSeries. Reports the query's peak live heap
// above the baseline and the bytes and requests it read from the bucket.
func BenchmarkFleetMonthQuery(b *testing.B) {
	dir := b.TempDir()
	for d := 0; d < fleetDays; d++ {
		h := head.New(head.Options{})
		day := fleetStart.Add(time.Duration(d) * 24 * time.Hour)
		for k := 0; k < fleetIngesters; k++ {
			rng := rand.New(rand.NewPCG(uint64(k), uint64(d)))
			ls := model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: fmt.Sprint("svc", k)}}.Sort()
			for i := 0; i < 4; i++ {
				var id head.ProfileID
				id[0], id[1], id[2] = byte(k), byte(d), byte(i)
				if _, err := h.Append(benchTenant, id, ls, fleetProfile(rng, k), day.Add(time.Duration(i)*6*time.Hour).UnixNano()); err != nil {
					b.Fatal(err)
				}
			}
		}
		if _, err := block.Write(filepath.Join(dir, benchTenant), h.Tenant(benchTenant).Select("", nil, -1<<63, 1<<63-1), block.WriteOptions{Tenant: benchTenant}); err != nil {
			b.Fatal(err)
		}
	}
	fs, err := filesystem.NewBucket(dir)
	if err != nil {
		b.Fatal(err)
	}
	start, end := fleetStart.UnixMilli(), fleetStart.Add(fleetDays*24*time.Hour).UnixMilli()
	const ptype, sel = "process_cpu:cpu:nanoseconds:cpu:nanoseconds", `{service_name=~"svc.*"}`
	queries := map[string]func(q *querier.Service) error{
		"merge": func(q *querier.Service) error {
			resp, err := q.SelectMergeStacktraces(context.Background(), connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{ProfileTypeID: ptype, LabelSelector: sel, Start: start, End: end}))
			if err == nil && resp.Msg.Flamegraph.Total == 0 {
				err = fmt.Errorf("empty flame graph")
			}
			return err
		},
		"series": func(q *querier.Service) error {
			resp, err := q.SelectSeries(context.Background(), connect.NewRequest(&querierv1.SelectSeriesRequest{ProfileTypeID: ptype, LabelSelector: sel, Start: start, End: end, Step: 3600, GroupBy: []string{"service_name"}}))
			if err == nil && len(resp.Msg.Series) != fleetIngesters {
				err = fmt.Errorf("%d series", len(resp.Msg.Series))
			}
			return err
		},
	}
	for _, name := range []string{"merge", "series"} {
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				bb := &bytesBucket{Bucket: fs}
				src := &block.BucketSource{Bucket: bb, SyncInterval: time.Hour}
				runtime.GC()
				base := heapNow()
				peak, stop := samplePeakHeap()
				err := queries[name](newQuerier(src))
				stop()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(*peak-min(*peak, base))/(1<<20), "peakHeapMiB")
				b.ReportMetric(float64(bb.bytes.Load())/(1<<20), "readMiB")
				b.ReportMetric(float64(bb.reqs.Load()), "requests")
			}
		})
	}
}
