package store

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/wal"
)

// BenchmarkRestartAfterSnapshot is BenchmarkRestart's WAL with a head
// snapshot written halfway: a restart loads it and replays the second half.
// walMB and walMB/cpu-s count the WAL replayed after the snapshot, to compare
// with BenchmarkRestart's rate (replaying into a restored head).
func BenchmarkRestartAfterSnapshot(b *testing.B) {
	files := benchFiles(b)
	dir := b.TempDir()
	s, err := Open(Options{DataDir: dir, WALPolicy: wal.PolicyOff, Logger: slog.New(slog.DiscardHandler)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	h := push.NewHandler(benchLimits(), s, false, slog.New(slog.DiscardHandler), nil)
	var after int64
	for round := 0; round < 10; round++ {
		if round == 5 {
			if err := s.Snapshot(context.Background()); err != nil {
				b.Fatal(err)
			}
			after = s.wal.SizeFrom(0)
		}
		for name, raw := range files {
			for inst := 0; inst < 50; inst += 5 {
				req := connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
					Labels:  []*typesv1.LabelPair{{Name: "service_name", Value: name}, {Name: "instance", Value: fmt.Sprint(inst + round%5)}},
					Samples: []*pushv1.RawSample{{RawProfile: raw, ID: uuid.NewString()}},
				}}})
				if _, err := h.Push(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	walBytes := s.ReplayBytes() - after
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var cpu time.Duration
	for i := 0; i < b.N; i++ {
		runtime.GC()
		c0 := processCPU(b)
		s, err := Open(Options{DataDir: dir, WALPolicy: wal.PolicyOff, Logger: slog.New(slog.DiscardHandler)}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu += processCPU(b) - c0
		if loads(s, "loaded") != 1 {
			b.Fatal("the snapshot was not loaded")
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(walBytes)/1e6/(b.Elapsed().Seconds()/float64(b.N)), "walMB/s")
	b.ReportMetric(float64(walBytes)/1e6, "walMB")
	b.ReportMetric(float64(walBytes)/1e6/(cpu.Seconds()/float64(b.N)), "walMB/cpu-s")
}
