package testutil

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"
)

// workload is a small real program to profile: hashing and allocating, until
// this process has used cpu of CPU time (the profiler samples CPU time: on a
// busy machine a wall-clock bound could leave the profile without a sample),
// or at most ten times that in wall time.
func workload(cpu time.Duration) {
	start := cpuTime()
	deadline := time.Now().Add(10 * cpu)
	buf := make([]byte, 64<<10)
	for cpuTime()-start < cpu && time.Now().Before(deadline) {
		for i := 0; i < 50; i++ {
			h := sha256.Sum256(buf)
			buf = append(buf[:0:0], bytes.Repeat(h[:], 2048)...)
		}
		runtime.KeepAlive(buf)
	}
}

// cpuTime is the CPU time this process has used (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
