package store

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/ingester/normalize"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/symdb"
	"github.com/hearth-dev/hearth/ingester/validation"
	"github.com/hearth-dev/hearth/ingester/wal"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// benchFiles are the corpus files (else this process's own profiles),
// re-stamped to now and compressed as they came.
func benchFiles(b testing.TB) map[string][]byte {
	files := testutil.Corpus(b)
	if files == nil {
		files = testutil.WriteProfiles(b, b.TempDir())
	}
	out := map[string][]byte{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		p, err := pprofdec.DecodePprof(raw, 0)
		if err != nil || symdb.Validate(p) != nil || normalize.Check(p) != nil || normalize.CheckUTF8(p) != nil {
			continue // refused cleanly by the ingester: nothing to measure
		}
		p.TimeNanos = time.Now().UnixNano()
		pb, _ := p.MarshalVT()
		if pprofdec.IsGzip(raw) {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			_, _ = zw.Write(pb)
			_ = zw.Close()
			pb = buf.Bytes()
		}
		out[filepath.Base(f)] = pb
	}
	return out
}

func openBenchStore(b *testing.B, policy wal.Policy) *Store {
	s, err := Open(Options{DataDir: b.TempDir(), WALPolicy: policy, Logger: slog.New(slog.DiscardHandler)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func benchLimits() validation.Limits {
	var l validation.Limits
	fs := newFlagSet()
	l.RegisterFlags(fs)
	l.MaxSeriesPerTenant = 0
	return l
}

// BenchmarkIngest compares, per corpus file, decoding alone (gunzip +
// protobuf) with the whole push path: decode, validate, write ahead (policy
// off, so the disk is not measured) and append to the head.
func BenchmarkIngest(b *testing.B) {
	files := benchFiles(b)
	for name, raw := range files {
		b.Run(name+"/decode", func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			for i := 0; i < b.N; i++ {
				if _, err := pprofdec.DecodePprof(raw, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/ingest", func(b *testing.B) {
			s := openBenchStore(b, wal.PolicyOff)
			h := push.NewHandler(benchLimits(), s, false, slog.New(slog.DiscardHandler), nil)
			b.SetBytes(int64(len(raw)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req := connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
					Labels:  []*typesv1.LabelPair{{Name: "service_name", Value: name}, {Name: "instance", Value: fmt.Sprint(i % 50)}},
					Samples: []*pushv1.RawSample{{RawProfile: raw, ID: uuid.NewString()}},
				}}})
				if _, err := h.Push(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHeadMemory reports the heap the head holds per active series and
// per profile after pushing every file to 50 series each: "wide", 20 rounds
// over rotating instances (2 rows a series: the head's rows never fill a
// packed block), and "deep", 40 rounds to the same 50 series (40 rows a
// series, as the standard load gives them in 60 s: packed blocks).
func BenchmarkHeadMemory(b *testing.B) {
	b.Run("wide", func(b *testing.B) { benchHeadMemory(b, 20, func(round int) int { return round % 10 }) })
	b.Run("deep", func(b *testing.B) { benchHeadMemory(b, 40, func(int) int { return 0 }) })
}

func benchHeadMemory(b *testing.B, rounds int, shift func(round int) int) {
	files := benchFiles(b)
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s := openBenchStore(b, wal.PolicyOff)
		h := push.NewHandler(benchLimits(), s, false, slog.New(slog.DiscardHandler), nil)
		n := 0
		for round := 0; round < rounds; round++ {
			for name, raw := range files {
				for inst := 0; inst < 50; inst += 10 {
					req := connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
						Labels:  []*typesv1.LabelPair{{Name: "service_name", Value: name}, {Name: "instance", Value: fmt.Sprint(inst + shift(round))}},
						Samples: []*pushv1.RawSample{{RawProfile: raw, ID: uuid.NewString()}},
					}}})
					if _, err := h.Push(context.Background(), req); err != nil {
						b.Fatal(err)
					}
					n++
				}
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		var series int64
		for _, t := range s.Head().Tenants() {
			series += s.Head().Tenant(t).Stats().Series
		}
		heap := float64(after.HeapInuse) - float64(before.HeapInuse)
		b.ReportMetric(heap/float64(series), "heap-B/series")
		b.ReportMetric(heap/float64(n), "heap-B/push")
		b.ReportMetric(float64(s.Head().Bytes())/heap, "accounted/heap")
		runtime.KeepAlive(s)
	}
}
