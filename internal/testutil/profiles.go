package testutil

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"
)

// workload is a small real program to profile: hashing and allocating.
func workload(d time.Duration) {
	deadline := time.Now().Add(d)
	buf := make([]byte, 64<<10)
	for time.Now().Before(deadline) {
		for i := 0; i < 50; i++ {
			h := sha256.Sum256(buf)
			buf = append(buf[:0:0], bytes.Repeat(h[:], 2048)...)
		}
		runtime.KeepAlive(buf)
	}
}

// WriteProfiles profiles a real workload in this process and writes a CPU
// and a heap profile (gzipped pprof, as Go writes them) into dir. Tests and
// benchmarks that must not depend on ../shared use them.
func WriteProfiles(t testing.TB, dir string) []string {
	t.Helper()
	cpu := filepath.Join(dir, "cpu.pprof")
	f, err := os.Create(cpu)
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		t.Fatal(err)
	}
	workload(300 * time.Millisecond)
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	heap := filepath.Join(dir, "heap.pprof")
	hf, err := os.Create(heap)
	if err != nil {
		t.Fatal(err)
	}
	defer hf.Close()
	if err := pprof.Lookup("allocs").WriteTo(hf, 0); err != nil {
		t.Fatal(err)
	}
	return []string{cpu, heap}
}
