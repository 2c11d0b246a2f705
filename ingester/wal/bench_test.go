package wal

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchDir returns a fresh directory for a benchmark: under
// $HEARTH_WAL_BENCH_DIR if set (to measure a particular disk), else the
// test's temporary directory.
func benchDir(b *testing.B) string {
	if d := os.Getenv("HEARTH_WAL_BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "walbench")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

const benchPayloadSize = 30 << 10

func benchPayload() []byte {
	p := make([]byte, benchPayloadSize)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// BenchmarkAppend measures append throughput of ~30 KB records per fsync
// policy and number of concurrent appenders. One op is one record.
func BenchmarkAppend(b *testing.B) {
	for _, pol := range []Policy{PolicyAlways, PolicyInterval, PolicyOff} {
		for _, appenders := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("fsync=%s/appenders=%d", pol, appenders), func(b *testing.B) {
				benchAppend(b, pol, appenders)
			})
		}
	}
}

func benchAppend(b *testing.B, pol Policy, appenders int) {
	dir := benchDir(b)
	m := NewMetrics(nil)
	w, err := Open(dir, Options{Policy: pol, SegmentSize: 64 << 20, Metrics: m, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	p := benchPayload()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(benchPayloadSize)
	b.ResetTimer()
	start := time.Now()
	for g := 0; g < appenders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				pos, err := w.Append(context.Background(), p)
				if err != nil {
					b.Error(err)
					return
				}
				// Keep the disk footprint bounded: drop old segments.
				if i%4096 == 0 {
					w.Truncate(Pos{Segment: pos.Segment})
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(toFloat(b, m.fsyncs)/float64(b.N), "fsyncs/record")
}

// BenchmarkReplay measures replay of 128 MiB of ~30 KB records, with the
// segments in the page cache (hot) and evicted from it before each replay
// (cold, posix_fadvise DONTNEED: a real disk read).
func BenchmarkReplay(b *testing.B) {
	dir := benchDir(b)
	w, err := Open(dir, Options{Policy: PolicyOff, SegmentSize: 32 << 20, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	p := benchPayload()
	const total = 128 << 20
	n := total / benchPayloadSize
	for i := 0; i < n; i++ {
		if _, err := w.Append(context.Background(), p); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	segs, _ := listSegments(dir)
	var size int64
	for _, s := range segs {
		f, err := os.Open(filepath.Join(dir, segmentName(s)))
		if err != nil {
			b.Fatal(err)
		}
		f.Sync() // make the pages clean so they can be evicted
		fi, _ := f.Stat()
		size += fi.Size()
		f.Close()
	}
	for _, mode := range []string{"hot", "cold"} {
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(size)
			for i := 0; i < b.N; i++ {
				if mode == "cold" {
					b.StopTimer()
					for _, s := range segs {
						evict(b, filepath.Join(dir, segmentName(s)))
					}
					b.StartTimer()
				}
				var records int
				st, err := Replay(dir, ReplayOptions{Logger: quietLogger()}, func(Pos, []byte) error {
					records++
					return nil
				})
				if err != nil || records != n || st.Bytes != size {
					b.Fatalf("replay: %v, %d records (want %d), %d bytes (want %d)", err, records, n, st.Bytes, size)
				}
			}
		})
	}
}
