package block

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/querier"
)

// loadHead pushes the corpus n times like `hearth load` (rotating timestamps,
// 50 instance values).
func loadHead(b *testing.B, n int) (*head.Head, int64) {
	corpus := loadCorpus(b)
	if corpus == nil {
		b.Skip("no corpus")
	}
	h := head.New(head.Options{})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	pushLoad(b, h, corpus, n, 50, base, int64(100*time.Millisecond), rand.New(rand.NewPCG(1, 1)))
	return h, base
}

// BenchmarkBlockSize reports block bytes per pushed profile, per row
// (one series' share of a profile) and per sample, per compression codec.
func BenchmarkBlockSize(b *testing.B) {
	const pushes = 3000
	h, _ := loadHead(b, pushes)
	for _, c := range []struct {
		name  string
		codec compress.Codec
	}{{"zstd", &parquet.Zstd}, {"snappy", &parquet.Snappy}, {"none", &parquet.Uncompressed}} {
		b.Run(c.name, func(b *testing.B) {
			var m Meta
			for i := 0; i < b.N; i++ {
				m = writeTenant(b, h, b.TempDir(), WriteOptions{Compression: c.codec})
			}
			bytes := float64(m.Bytes())
			b.ReportMetric(bytes/pushes, "B/profile")
			b.ReportMetric(bytes/float64(m.Stats.Profiles), "B/row")
			b.ReportMetric(bytes/float64(m.Stats.Samples), "B/sample")
			b.ReportMetric(float64(m.FileSize(ProfilesFile))/float64(m.Stats.Samples), "parquetB/sample")
			b.ReportMetric(float64(m.FileSize(SymbolsFile)), "symbolsB")
			b.ReportMetric(float64(m.Stats.Profiles), "rows")
		})
	}
}

// BenchmarkWrite reports block write throughput over the head's in-memory size.
func BenchmarkWrite(b *testing.B) {
	h, _ := loadHead(b, 10000)
	headBytes := h.Tenant(testTenant).Bytes()
	b.ResetTimer()
	var m Meta
	for i := 0; i < b.N; i++ {
		m = writeTenant(b, h, b.TempDir(), WriteOptions{})
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(headBytes)/1e6/sec, "headMB/s")
	b.ReportMetric(float64(headBytes)/(1<<20), "headMiB")
	b.ReportMetric(float64(m.Bytes())/(1<<20), "blockMiB")
	b.ReportMetric(float64(m.Stats.Profiles), "rows")
}

// BenchmarkSelectMergeProfile compares the same query from the head and from
// the block (local filesystem bucket, warm symbols cache).
func BenchmarkSelectMergeProfile(b *testing.B) {
	const pushes = 3000
	h, base := loadHead(b, pushes)
	root := b.TempDir()
	writeTenant(b, h, root, WriteOptions{})
	req := &querierv1.SelectMergeProfileRequest{
		ProfileTypeID: "process_cpu:cpu:nanoseconds:cpu:nanoseconds", LabelSelector: `{}`,
		Start: base / 1e6, End: base/1e6 + pushes*100,
	}
	for _, c := range []struct {
		name string
		src  querier.Source
	}{
		{"head", querier.HeadSource{Head: h}},
		{"block", &BucketSource{Bucket: fsBucket(b, filepath.Clean(root))}},
	} {
		b.Run(c.name, func(b *testing.B) {
			q := &querier.Service{Sources: []querier.Source{c.src}}
			for i := 0; i < b.N; i++ {
				resp, err := q.SelectMergeProfile(context.Background(), connect.NewRequest(req))
				if err != nil || len(resp.Msg.Sample) == 0 {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLongRangeQueries: a flame graph and a SelectSeries (group_by
// instance, hourly step) over every row of one block, through the querier,
// as a week-long query reads a day block (hack/bench-longrange.sh measures
// the servers; this isolates the block read and the merge, allocations
// included).
func BenchmarkLongRangeQueries(b *testing.B) {
	const pushes = 20000 // 50 instances: ~400 rows per series and profile type
	h, base := loadHead(b, pushes)
	root := b.TempDir()
	writeTenant(b, h, root, WriteOptions{})
	start, end := base/1e6, base/1e6+pushes*100
	const ptype = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
	q := &querier.Service{Sources: []querier.Source{&BucketSource{Bucket: fsBucket(b, filepath.Clean(root))}}}
	b.Run("flamegraph", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			resp, err := q.SelectMergeStacktraces(context.Background(), connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{
				ProfileTypeID: ptype, LabelSelector: `{}`, Start: start, End: end,
			}))
			if err != nil || resp.Msg.Flamegraph.GetTotal() == 0 {
				b.Fatal(err)
			}
		}
	})
	b.Run("series", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			resp, err := q.SelectSeries(context.Background(), connect.NewRequest(&querierv1.SelectSeriesRequest{
				ProfileTypeID: ptype, LabelSelector: `{}`, Start: start, End: end, GroupBy: []string{"instance"}, Step: 1,
			}))
			if err != nil || len(resp.Msg.Series) == 0 {
				b.Fatal(err)
			}
		}
	})
}
