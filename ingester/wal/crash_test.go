package wal

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	envCrashDir    = "HEARTH_WAL_CRASH_CHILD_DIR"
	envCrashRound  = "HEARTH_WAL_CRASH_CHILD_ROUND"
	envCrashPolicy = "HEARTH_WAL_CRASH_CHILD_POLICY"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envCrashDir); dir != "" {
		crashChild(dir)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashPayload is self-describing: round, appender, sequence, then a filler
// that depends on all three and a CRC of everything before it, so a record
// that is half there (or mixed up with another) is detected independently of
// the WAL's own CRCs.
func crashPayload(round, g, n int) []byte {
	size := 16 + (round*7919+g*104729+n*31)%20000
	p := make([]byte, size)
	binary.LittleEndian.PutUint32(p[0:], uint32(round))
	binary.LittleEndian.PutUint32(p[4:], uint32(g))
	binary.LittleEndian.PutUint32(p[8:], uint32(n))
	for i := 12; i < size-4; i++ {
		p[i] = byte(round + g*3 + n*5 + i)
	}
	binary.LittleEndian.PutUint32(p[size-4:], crc32.ChecksumIEEE(p[:size-4]))
	return p
}

func checkCrashPayload(p []byte) (round, g, n int, ok bool) {
	if len(p) < 16 {
		return 0, 0, 0, false
	}
	round, g, n = int(binary.LittleEndian.Uint32(p[0:])), int(binary.LittleEndian.Uint32(p[4:])), int(binary.LittleEndian.Uint32(p[8:]))
	want := crashPayload(round, g, n)
	return round, g, n, string(want) == string(p)
}

// crashChild appends from several goroutines and prints one line per
// acknowledged record until it is killed (or, as a bound, for 10 s).
func crashChild(dir string) {
	round, _ := strconv.Atoi(os.Getenv(envCrashRound))
	pol, err := ParsePolicy(os.Getenv(envCrashPolicy))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	w, err := Open(dir, Options{SegmentSize: 256 << 10, Policy: pol, SyncInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	deadline := time.Now().Add(10 * time.Second)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(deadline); n++ {
				pos, err := w.Append(context.Background(), crashPayload(round, g, n))
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(3)
				}
				line := fmt.Sprintf("ACK %d %d %d %d %d\n", round, g, n, pos.Segment, pos.Offset)
				mu.Lock()
				os.Stdout.WriteString(line) // unbuffered: printed means acknowledged
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	w.Close()
}

type crashKey struct{ round, g, n int }

// TestCrashKill9 runs a child process that appends in a loop, SIGKILLs it at
// a random moment, replays, and checks that every acknowledged record is
// there exactly once, at its acknowledged position, and nothing is half
// there. Each round reopens the same WAL. A process crash loses nothing
// acknowledged under every policy (the kernel keeps written data), so all
// three are exercised.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	acked := map[crashKey]Pos{}
	policies := []Policy{PolicyAlways, PolicyInterval, PolicyOff, PolicyAlways}
	totalTruncated := int64(0)
	for round, pol := range policies {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashRound+"="+strconv.Itoa(round), envCrashPolicy+"="+pol.String())
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1<<16)
		readDone := make(chan error, 1)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
			readDone <- sc.Err()
		}()
		// Kill at a random moment after the child has started acknowledging.
		var got []string
		first := time.NewTimer(10 * time.Second)
		select {
		case l, ok := <-lines:
			if ok {
				got = append(got, l)
			}
		case <-first.C:
		}
		first.Stop()
		time.Sleep(time.Duration(rng.IntN(700)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		for l := range lines {
			got = append(got, l)
		}
		if err := <-readDone; err != nil && err != io.EOF {
			t.Fatal(err)
		}
		werr := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child was not killed by SIGKILL (%v); stderr:\n%s", round, werr, stderr.String())
		}
		if len(got) == 0 {
			t.Fatalf("round %d: child acknowledged nothing; stderr:\n%s", round, stderr.String())
		}
		for _, l := range got {
			var k crashKey
			var p Pos
			if _, err := fmt.Sscanf(l, "ACK %d %d %d %d %d", &k.round, &k.g, &k.n, &p.Segment, &p.Offset); err != nil {
				t.Fatalf("round %d: bad line %q: %v", round, l, err)
			}
			acked[k] = p
		}

		// Replay and check.
		lg, _ := newLogger()
		seen := map[crashKey]Pos{}
		maxN := map[[2]int]int{}
		st, err := Replay(dir, ReplayOptions{Logger: lg}, func(pos Pos, p []byte) error {
			r, g, n, ok := checkCrashPayload(p)
			if !ok {
				return fmt.Errorf("record at %v is not a whole record written by the child", pos)
			}
			k := crashKey{r, g, n}
			if prev, dup := seen[k]; dup {
				return fmt.Errorf("record %v replayed twice (%v and %v)", k, prev, pos)
			}
			seen[k] = pos
			// Each appender waits for its ack before the next append, so its
			// records are replayed as 0, 1, 2, ... with no gap.
			rg := [2]int{r, g}
			last, okN := maxN[rg]
			if (!okN && n != 0) || (okN && n != last+1) {
				return fmt.Errorf("appender %v: record %d after %d", rg, n, last)
			}
			maxN[rg] = n
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if st.CorruptSegments != 0 {
			t.Fatalf("round %d: kill -9 produced corruption: %+v", round, st)
		}
		totalTruncated += st.TruncatedBytes
		for k, p := range acked {
			rp, ok := seen[k]
			if !ok {
				t.Fatalf("round %d (%v): acknowledged record %v at %v lost", round, pol, k, p)
			}
			if rp != p {
				t.Fatalf("round %d: record %v replayed at %v, acknowledged at %v", round, k, rp, p)
			}
		}
		// At most one unacknowledged record per appender (the one in flight).
		if extra := len(seen) - len(acked); extra < 0 || extra > 4*(round+1) {
			t.Fatalf("round %d: %d replayed records were never acknowledged", round, extra)
		}
		t.Logf("round %d (%s): %d acks this round, %d records replayed, %d segments, %d torn bytes truncated",
			round, pol, len(got), st.Records, st.Segments, st.TruncatedBytes)
	}
	t.Logf("torn bytes truncated over all rounds: %d", totalTruncated)
}
