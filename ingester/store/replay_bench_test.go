package store

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/wal"
)

// BenchmarkRestart fills a WAL with the corpus pushed to 50 series per file
// (as the standard load does), closes the store, and measures Open: the
// replay of that WAL into a fresh head, in MB of WAL per second.
func BenchmarkRestart(b *testing.B) {
	files := benchFiles(b)
	dir := b.TempDir()
	s, err := Open(Options{DataDir: dir, WALPolicy: wal.PolicyOff, Logger: slog.New(slog.DiscardHandler)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	h := push.NewHandler(benchLimits(), s, false, slog.New(slog.DiscardHandler), nil)
	for round := 0; round < 10; round++ {
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
	walBytes := s.ReplayBytes()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var cpu time.Duration
	var peak uint64
	for i := 0; i < b.N; i++ {
		runtime.GC() // the last iteration's head is garbage
		stop := samplePeakHeap(&peak)
		c0 := processCPU(b)
		s, err := Open(Options{DataDir: dir, WALPolicy: wal.PolicyOff, Logger: slog.New(slog.DiscardHandler)}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu += processCPU(b) - c0
		stop()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(walBytes)/1e6/(b.Elapsed().Seconds()/float64(b.N)), "walMB/s")
	b.ReportMetric(float64(walBytes)/1e6, "walMB")
	// Per CPU-second (every thread, the collector too): what two idle cores
	// would restore in about half a second, whatever else the machine runs.
	b.ReportMetric(float64(walBytes)/1e6/(cpu.Seconds()/float64(b.N)), "walMB/cpu-s")
	// The largest heap (objects, live or not yet collected) seen while replaying.
	b.ReportMetric(float64(peak)/1e6, "peakHeapMB")
}

// samplePeakHeap records the largest heap seen until stop is called (every
// 5 ms, from runtime/metrics: no stop-the-world).
func samplePeakHeap(peak *uint64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			*peak = max(*peak, sample[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
