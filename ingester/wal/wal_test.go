package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// logBuf captures structured log output.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLogger() (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	return slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// payload returns a deterministic payload of size n for record i.
func payload(i, n int) []byte {
	p := make([]byte, n)
	for k := range p {
		p[k] = byte(i*31 + k*7 + k>>8)
	}
	return p
}

type rec struct {
	pos     Pos
	payload []byte
}

func replayAll(t testing.TB, dir string, opts ReplayOptions) ([]rec, Stats) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger, _ = newLogger()
	}
	var out []rec
	st, err := Replay(dir, opts, func(pos Pos, p []byte) error {
		out = append(out, rec{pos, bytes.Clone(p)})
		return nil
	})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	return out, st
}

func openT(t testing.TB, dir string, opts Options) *WAL {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger, _ = newLogger()
	}
	w, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func appendAll(t testing.TB, w *WAL, payloads [][]byte) []Pos {
	t.Helper()
	var ps []Pos
	for _, p := range payloads {
		pos, err := w.Append(context.Background(), p)
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		ps = append(ps, pos)
	}
	return ps
}

func checkRecords(t testing.TB, got []rec, want [][]byte, wantPos []Pos) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("replayed %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].payload, want[i]) {
			t.Fatalf("record %d: payload mismatch (len %d vs %d)", i, len(got[i].payload), len(want[i]))
		}
		if wantPos != nil && got[i].pos != wantPos[i] {
			t.Fatalf("record %d: pos %v, want %v", i, got[i].pos, wantPos[i])
		}
	}
}

func segPath(dir string, idx uint64) string { return filepath.Join(dir, segmentName(idx)) }

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestAppendReplayRoundTrip(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{})
	var want [][]byte
	for i, n := range []int{0, 1, 15, 16, 17, 1000, 100 << 10, 3 << 20, 7} {
		want = append(want, payload(i, n))
	}
	ps := appendAll(t, w, want)
	for i := 1; i < len(ps); i++ {
		if !ps[i-1].Less(ps[i]) {
			t.Fatalf("positions not increasing: %v then %v", ps[i-1], ps[i])
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, st := replayAll(t, dir, ReplayOptions{})
	checkRecords(t, got, want, ps)
	var total int64
	for _, p := range want {
		total += headerSize + int64(len(p))
	}
	if st.Records != int64(len(want)) || st.Bytes != total || st.Segments != 1 || st.CorruptSegments != 0 || st.TruncatedBytes != 0 {
		t.Fatalf("stats %+v, want %d records, %d bytes", st, len(want), total)
	}
	if fileSize(t, segPath(dir, 1)) != total {
		t.Fatalf("segment size %d, want %d", fileSize(t, segPath(dir, 1)), total)
	}
	// Reopen continues the same segment at its end.
	w2 := openT(t, dir, Options{})
	p, err := w2.Append(context.Background(), []byte("more"))
	if err != nil {
		t.Fatal(err)
	}
	if p != (Pos{1, total}) {
		t.Fatalf("append after reopen at %v, want 1:%d", p, total)
	}
}

func TestReplayMissingAndEmptyDir(t *testing.T) {
	got, st := replayAll(t, filepath.Join(t.TempDir(), "nope"), ReplayOptions{})
	if len(got) != 0 || st.Segments != 0 {
		t.Fatalf("missing dir: %d records, %+v", len(got), st)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "0000000x.wal"), []byte("x"), 0o644)
	got, st = replayAll(t, dir, ReplayOptions{})
	if len(got) != 0 || st.Segments != 0 {
		t.Fatalf("dir without segments: %d records, %+v", len(got), st)
	}
}

func TestRotationBySizeAndOnDemand(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	w := openT(t, dir, Options{SegmentSize: 4096, Policy: PolicyOff, Metrics: m})
	var want [][]byte
	for i := 0; i < 40; i++ {
		want = append(want, payload(i, 500+i))
	}
	// A record larger than the segment size gets a segment of its own.
	want = append(want, payload(99, 10000), payload(100, 10))
	ps := appendAll(t, w, want)
	for i, p := range ps {
		end := p.Offset + headerSize + int64(len(want[i]))
		if p.Offset > 0 && end > 4096 {
			t.Fatalf("record %d at %v ends at %d, past the segment size", i, p, end)
		}
	}
	if ps[len(ps)-2].Offset != 0 || ps[len(ps)-1].Segment != ps[len(ps)-2].Segment+1 {
		t.Fatalf("oversized record at %v, next at %v", ps[len(ps)-2], ps[len(ps)-1])
	}
	rp, err := w.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rp != (Pos{ps[len(ps)-1].Segment + 1, 0}) {
		t.Fatalf("rotate returned %v after last record at %v", rp, ps[len(ps)-1])
	}
	// Rotating an empty segment is a no-op.
	rp2, err := w.Rotate(context.Background())
	if err != nil || rp2 != rp {
		t.Fatalf("second rotate: %v, %v (want %v)", rp2, err, rp)
	}
	p, err := w.Append(context.Background(), []byte("after rotate"))
	if err != nil || p != rp {
		t.Fatalf("append after rotate at %v (%v), want %v", p, err, rp)
	}
	want, ps = append(want, []byte("after rotate")), append(ps, p)
	segs := w.Segments()
	if uint64(len(segs)) != rp.Segment || segs[len(segs)-1] != rp.Segment {
		t.Fatalf("segments %v, want 1..%d", segs, rp.Segment)
	}
	if g := toFloat(t, m.segments); int(g) != len(segs) {
		t.Fatalf("segments gauge %v, want %d", g, len(segs))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, st := replayAll(t, dir, ReplayOptions{})
	checkRecords(t, got, want, ps)
	if st.Segments != len(segs) {
		t.Fatalf("replayed %d segments, want %d", st.Segments, len(segs))
	}
	if toFloat(t, m.recordsAppended) != float64(len(want)) {
		t.Fatalf("records_appended_total %v, want %d", toFloat(t, m.recordsAppended), len(want))
	}
}

// writeRecords writes a WAL with the given payloads in one segment and
// returns the segment path and the record offsets (plus the end offset).
func writeRecords(t testing.TB, dir string, payloads [][]byte) (string, []int64) {
	t.Helper()
	var b []byte
	var offs []int64
	for _, p := range payloads {
		offs = append(offs, int64(len(b)))
		b = appendRecord(b, p)
	}
	offs = append(offs, int64(len(b)))
	os.MkdirAll(dir, 0o755)
	path := segPath(dir, 1)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, offs
}

// TestTornTailEveryOffset cuts the last record at every byte offset: replay
// must return exactly the records before it, truncate the file there, and a
// reopened WAL must append cleanly after them.
func TestTornTailEveryOffset(t *testing.T) {
	base := t.TempDir()
	payloads := [][]byte{payload(1, 300), payload(2, 50), payload(3, 200)}
	_, offs := writeRecords(t, filepath.Join(base, "orig"), payloads)
	full, _ := os.ReadFile(segPath(filepath.Join(base, "orig"), 1))
	lastStart, lastEnd := offs[2], offs[3]
	for cut := lastStart; cut < lastEnd; cut++ {
		dir := filepath.Join(base, fmt.Sprint(cut))
		os.MkdirAll(dir, 0o755)
		if err := os.WriteFile(segPath(dir, 1), full[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		got, st := replayAll(t, dir, ReplayOptions{})
		checkRecords(t, got, payloads[:2], nil)
		if st.TruncatedBytes != cut-lastStart || st.CorruptSegments != 0 {
			t.Fatalf("cut %d: stats %+v, want %d truncated bytes and no corruption", cut, st, cut-lastStart)
		}
		if sz := fileSize(t, segPath(dir, 1)); sz != lastStart {
			t.Fatalf("cut %d: file size after replay %d, want %d", cut, sz, lastStart)
		}
		// Reopen, append, replay: the new record follows the good ones.
		lg, _ := newLogger()
		w, err := Open(dir, Options{Policy: PolicyOff, Logger: lg})
		if err != nil {
			t.Fatal(err)
		}
		p, err := w.Append(context.Background(), []byte("next"))
		if err != nil || p != (Pos{1, lastStart}) {
			t.Fatalf("cut %d: append at %v (%v), want 1:%d", cut, p, err, lastStart)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		got, st = replayAll(t, dir, ReplayOptions{})
		checkRecords(t, got, [][]byte{payloads[0], payloads[1], []byte("next")}, nil)
		if st.TruncatedBytes != 0 || st.CorruptSegments != 0 {
			t.Fatalf("cut %d: second replay stats %+v", cut, st)
		}
		os.RemoveAll(dir)
	}
}

// TestTornTailWithoutReplay: Open alone repairs a torn tail before appending.
func TestTornTailWithoutReplay(t *testing.T) {
	dir := t.TempDir()
	payloads := [][]byte{payload(1, 100), payload(2, 100)}
	path, offs := writeRecords(t, dir, payloads)
	os.Truncate(path, offs[2]-7)
	w := openT(t, dir, Options{Policy: PolicyOff})
	if p, err := w.Append(context.Background(), []byte("x")); err != nil || p.Offset != offs[1] {
		t.Fatalf("append at %v (%v), want offset %d", p, err, offs[1])
	}
	w.Close()
	got, st := replayAll(t, dir, ReplayOptions{})
	checkRecords(t, got, [][]byte{payloads[0], []byte("x")}, nil)
	if st.TruncatedBytes != 0 || st.CorruptSegments != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestTornTailGarbage: a bad last record with nothing valid after it (bad
// CRC at the very end, zero fill, random garbage) is a torn tail.
func TestTornTailGarbage(t *testing.T) {
	payloads := [][]byte{payload(1, 100), payload(2, 100), payload(3, 100)}
	cases := map[string]func(b []byte, offs []int64) []byte{
		"bad crc in last payload": func(b []byte, offs []int64) []byte { b[offs[2]+headerSize+50] ^= 1; return b },
		"bad last header":         func(b []byte, offs []int64) []byte { b[offs[2]+1] ^= 0x80; return b },
		"zero fill":               func(b []byte, offs []int64) []byte { return append(b, make([]byte, 4096)...) },
		"zeroed last record": func(b []byte, offs []int64) []byte {
			clear(b[offs[2]:])
			return b
		},
		"garbage": func(b []byte, offs []int64) []byte {
			return append(b, bytes.Repeat([]byte("garbage!"), 100)...)
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path, offs := writeRecords(t, dir, payloads)
			b, _ := os.ReadFile(path)
			b = mutate(b, offs)
			os.WriteFile(path, b, 0o644)
			wantRecs := payloads
			if int64(len(b)) == offs[3] {
				wantRecs = payloads[:2]
			}
			good := offs[len(wantRecs)]
			got, st := replayAll(t, dir, ReplayOptions{})
			checkRecords(t, got, wantRecs, nil)
			if st.CorruptSegments != 0 || st.TruncatedBytes != int64(len(b))-good {
				t.Fatalf("stats %+v, want %d truncated bytes", st, int64(len(b))-good)
			}
			if fileSize(t, path) != good {
				t.Fatalf("file size %d, want %d", fileSize(t, path), good)
			}
		})
	}
}

// TestCorruptMiddleOfLastSegment: a corrupt record followed by good ones
// skips the rest of the segment loudly, without truncating, and Open then
// continues in a new segment.
func TestCorruptMiddleOfLastSegment(t *testing.T) {
	for _, where := range []string{"payload", "length", "header crc"} {
		t.Run(where, func(t *testing.T) {
			dir := t.TempDir()
			var payloads [][]byte
			for i := 0; i < 10; i++ {
				payloads = append(payloads, payload(i, 200))
			}
			path, offs := writeRecords(t, dir, payloads)
			b, _ := os.ReadFile(path)
			switch where {
			case "payload":
				b[offs[4]+headerSize+100] ^= 0x10
			case "length":
				b[offs[4]] ^= 0x01
			case "header crc":
				b[offs[4]+13] ^= 0xff
			}
			os.WriteFile(path, b, 0o644)
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			lg, logs := newLogger()
			got, st := replayAll(t, dir, ReplayOptions{Logger: lg, Metrics: m})
			checkRecords(t, got, payloads[:4], nil)
			if st.CorruptSegments != 1 || st.TruncatedBytes != 0 {
				t.Fatalf("stats %+v, want 1 corrupt segment, nothing truncated", st)
			}
			if fileSize(t, path) != int64(len(b)) {
				t.Fatalf("corrupt segment was modified: size %d, want %d", fileSize(t, path), len(b))
			}
			if !strings.Contains(logs.String(), `"level":"ERROR","msg":"WAL CORRUPTION`) || !strings.Contains(logs.String(), `"offset":`+fmt.Sprint(offs[4])) {
				t.Fatalf("no structured corruption error logged:\n%s", logs.String())
			}
			if v := toFloat(t, m.corruptRecords); v != 1 {
				t.Fatalf("corrupt_records_total = %v, want 1", v)
			}
			w := openT(t, dir, Options{Policy: PolicyOff, Metrics: m})
			p, err := w.Append(context.Background(), []byte("after"))
			if err != nil || p != (Pos{2, 0}) {
				t.Fatalf("append after corruption at %v (%v), want 2:0", p, err)
			}
			w.Close()
			got, st = replayAll(t, dir, ReplayOptions{})
			checkRecords(t, got, append(payloads[:4:4], []byte("after")), nil)
			if st.CorruptSegments != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestCorruptSegmentAmongSeveral: damage in a segment that is not the last
// (corrupt record, or a short record at its end) skips the rest of that
// segment only; the segments after it replay fully.
func TestCorruptSegmentAmongSeveral(t *testing.T) {
	for _, kind := range []string{"corrupt byte", "short tail"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			w := openT(t, dir, Options{Policy: PolicyOff})
			var bySeg [3][][]byte
			var posBySeg [3][]Pos
			for s := 0; s < 3; s++ {
				for i := 0; i < 8; i++ {
					p := payload(s*100+i, 100+i)
					pos, err := w.Append(context.Background(), p)
					if err != nil {
						t.Fatal(err)
					}
					bySeg[s] = append(bySeg[s], p)
					posBySeg[s] = append(posBySeg[s], pos)
				}
				if _, err := w.Rotate(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			w.Close()
			path := segPath(dir, 2)
			b, _ := os.ReadFile(path)
			switch kind {
			case "corrupt byte":
				b[posBySeg[1][3].Offset+headerSize+5] ^= 0x40
			case "short tail":
				b = b[:posBySeg[1][7].Offset+20]
				bySeg[1] = append(bySeg[1][:3:3], bySeg[1][3:7]...) // only the last record is lost
			}
			os.WriteFile(path, b, 0o644)
			got, st := replayAll(t, dir, ReplayOptions{})
			var want [][]byte
			want = append(want, bySeg[0]...)
			if kind == "corrupt byte" {
				want = append(want, bySeg[1][:3]...)
			} else {
				want = append(want, bySeg[1][:7]...)
			}
			want = append(want, bySeg[2]...)
			checkRecords(t, got, want, nil)
			if st.CorruptSegments != 1 || st.TruncatedBytes != 0 || st.Segments != 4 {
				t.Fatalf("stats %+v", st)
			}
			if fileSize(t, path) != int64(len(b)) {
				t.Fatal("non-last segment was modified")
			}
		})
	}
}

// TestConcurrentAppenders: many goroutines append; every record is replayed
// exactly once, in order per appender, at the position Append returned.
func TestConcurrentAppenders(t *testing.T) {
	dir := t.TempDir()
	const G, N = 16, 150
	w := openT(t, dir, Options{SegmentSize: 64 << 10, Policy: PolicyAlways})
	type key struct{ g, n int }
	var mu sync.Mutex
	acked := map[key]Pos{}
	var wg sync.WaitGroup
	errs := make(chan error, G)
	for g := 0; g < G; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last Pos
			for n := 0; n < N; n++ {
				p := make([]byte, 8+(g*N+n)%700)
				binary.LittleEndian.PutUint32(p[0:], uint32(g))
				binary.LittleEndian.PutUint32(p[4:], uint32(n))
				pos, err := w.Append(context.Background(), p)
				if err != nil {
					errs <- err
					return
				}
				if n > 0 && !last.Less(pos) {
					errs <- fmt.Errorf("appender %d: position %v not after %v", g, pos, last)
					return
				}
				last = pos
				mu.Lock()
				acked[key{g, n}] = pos
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := replayAll(t, dir, ReplayOptions{})
	if len(got) != G*N {
		t.Fatalf("replayed %d records, want %d", len(got), G*N)
	}
	next := make([]int, G)
	seen := map[key]bool{}
	for i, r := range got {
		if i > 0 && !got[i-1].pos.Less(r.pos) {
			t.Fatalf("replay positions not increasing at %d", i)
		}
		g, n := int(binary.LittleEndian.Uint32(r.payload[0:])), int(binary.LittleEndian.Uint32(r.payload[4:]))
		k := key{g, n}
		if seen[k] {
			t.Fatalf("record %v replayed twice", k)
		}
		seen[k] = true
		if n != next[g] {
			t.Fatalf("appender %d: replayed record %d, want %d (out of order)", g, n, next[g])
		}
		next[g]++
		if acked[k] != r.pos {
			t.Fatalf("record %v at %v, Append returned %v", k, r.pos, acked[k])
		}
		if len(r.payload) != 8+(g*N+n)%700 {
			t.Fatalf("record %v has length %d", k, len(r.payload))
		}
	}
	if len(w.Segments()) < 3 {
		t.Fatalf("expected several segments, got %v", w.Segments())
	}
}

// TestGroupCommit: appends queued while the writer is busy share one write
// and one fsync.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	m := NewMetrics(nil)
	gate := make(chan struct{})
	first := true
	lg, _ := newLogger()
	w, err := open(dir, Options{Metrics: m, Logger: lg}, func() {
		if first {
			first = false
			<-gate
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const N = 20
	var wg sync.WaitGroup
	poss := make([]Pos, N)
	for i := 0; i < N; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := w.Append(context.Background(), payload(i, 1000))
			if err != nil {
				t.Error(err)
			}
			poss[i] = p
		}()
	}
	// Wait until all N requests are queued (bounded).
	for i := 0; i < 2000 && len(w.reqs) < N-1; i++ {
		time.Sleep(time.Millisecond)
	}
	if len(w.reqs) < N-1 {
		close(gate)
		wg.Wait()
		t.Skip("appenders did not queue up (machine too busy)")
	}
	close(gate)
	wg.Wait()
	// The writer held one request while blocked; the other N-1 queued
	// behind it and all N went out as one write and one fsync.
	if f := toFloat(t, m.fsyncs); f != 1 {
		t.Fatalf("%v fsyncs for %d queued records, want 1", f, N)
	}
	if c, sum := histCount(t, m.batchRecords); c != 1 || sum != N {
		t.Fatalf("batches: %d with %v records, want 1 with %d", c, sum, N)
	}
	for i := 1; i < N; i++ {
		if poss[i] == poss[0] {
			t.Fatalf("duplicate position %v", poss[i])
		}
	}
}

func TestTruncate(t *testing.T) {
	dir := t.TempDir()
	m := NewMetrics(nil)
	w := openT(t, dir, Options{Policy: PolicyOff, Metrics: m})
	for s := 0; s < 4; s++ {
		appendAll(t, w, [][]byte{payload(s, 10), payload(s, 20)})
		if _, err := w.Rotate(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// Segments 1..5, 5 current and empty.
	if got := w.Segments(); len(got) != 5 {
		t.Fatalf("segments %v", got)
	}
	n, err := w.Truncate(Pos{Segment: 3, Offset: 12})
	if err != nil || n != 2 {
		t.Fatalf("truncate deleted %d (%v), want 2", n, err)
	}
	for idx := uint64(1); idx <= 5; idx++ {
		_, err := os.Stat(segPath(dir, idx))
		if exists := err == nil; exists != (idx >= 3) {
			t.Fatalf("segment %d exists=%v after Truncate(3:12)", idx, exists)
		}
	}
	// Truncate never deletes the segment being written, even past it.
	n, err = w.Truncate(Pos{Segment: 100})
	if err != nil || n != 2 {
		t.Fatalf("truncate past the end deleted %d (%v), want 2", n, err)
	}
	if got := w.Segments(); len(got) != 1 || got[0] != 5 {
		t.Fatalf("segments after truncating everything: %v", got)
	}
	if _, err := os.Stat(segPath(dir, 5)); err != nil {
		t.Fatal("current segment deleted")
	}
	if toFloat(t, m.segments) != 1 || toFloat(t, m.segmentsDeleted) != 4 {
		t.Fatalf("segment metrics: %v %v", toFloat(t, m.segments), toFloat(t, m.segmentsDeleted))
	}
	p, err := w.Append(context.Background(), []byte("x"))
	if err != nil || p != (Pos{5, 0}) {
		t.Fatalf("append after truncate: %v %v", p, err)
	}
	w.Close()
	got, _ := replayAll(t, dir, ReplayOptions{})
	checkRecords(t, got, [][]byte{[]byte("x")}, []Pos{{5, 0}})
	// Reopen after truncation continues numbering.
	w2 := openT(t, dir, Options{Policy: PolicyOff})
	if rp, err := w2.Rotate(context.Background()); err != nil || rp != (Pos{6, 0}) {
		t.Fatalf("rotate after reopen: %v %v", rp, err)
	}
}

// TestReopenAfterCrash: a WAL abandoned without Close (its appends
// acknowledged) plus a torn write is reopened, appended to, and replayed.
func TestReopenAfterCrash(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, Options{SegmentSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	for i := 0; i < 20; i++ {
		want = append(want, payload(i, 150))
	}
	appendAll(t, w, want)
	// "Crash": no Close; a half-written record at the end of the last segment.
	segs := w.Segments()
	last := segPath(dir, segs[len(segs)-1])
	half := appendRecord(nil, payload(77, 300))[:120]
	f, _ := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
	f.Write(half)
	f.Close()
	defer w.Close() // release the abandoned writer at the end

	got, st := replayAll(t, dir, ReplayOptions{})
	checkRecords(t, got, want, nil)
	if st.TruncatedBytes != 120 {
		t.Fatalf("truncated %d bytes, want 120", st.TruncatedBytes)
	}
	dir2 := dir // same directory; the abandoned WAL no longer writes
	w2 := openT(t, dir2, Options{SegmentSize: 2048})
	more := [][]byte{payload(100, 10), payload(101, 1500), payload(102, 10)}
	appendAll(t, w2, more)
	w2.Close()
	got, st = replayAll(t, dir, ReplayOptions{})
	checkRecords(t, got, append(want, more...), nil)
	if st.CorruptSegments != 0 || st.TruncatedBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestReplayCallbackErrorAndProgress(t *testing.T) {
	dir := t.TempDir()
	writeRecords(t, dir, [][]byte{payload(1, 10), payload(2, 10), payload(3, 10)})
	boom := errors.New("boom")
	n := 0
	_, err := Replay(dir, ReplayOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, func(Pos, []byte) error {
		n++
		if n == 2 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || n != 2 {
		t.Fatalf("err %v after %d records, want boom after 2", err, n)
	}
	lg, logs := newLogger()
	replayAll(t, dir, ReplayOptions{Logger: lg, ProgressInterval: 1})
	s := logs.String()
	if strings.Count(s, `"msg":"wal replay progress"`) < 1 || !strings.Contains(s, `"msg":"wal replay done"`) || !strings.Contains(s, `"records":3`) {
		t.Fatalf("missing progress/summary log lines:\n%s", s)
	}
}

func TestCloseAndContext(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.Append(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with cancelled ctx: %v", err)
	}
	if _, err := w.Append(context.Background(), make([]byte, DefaultMaxRecordSize+1)); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("oversized append: %v", err)
	}
	if _, err := w.Append(context.Background(), []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := w.Append(context.Background(), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if _, err := w.Rotate(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("rotate after close: %v", err)
	}
	if _, err := w.Truncate(Pos{Segment: 9}); !errors.Is(err, ErrClosed) {
		t.Fatalf("truncate after close: %v", err)
	}
	got, _ := replayAll(t, dir, ReplayOptions{})
	checkRecords(t, got, [][]byte{[]byte("ok")}, nil)
}

func TestPolicyIntervalAndOff(t *testing.T) {
	for _, pol := range []Policy{PolicyInterval, PolicyOff} {
		t.Run(pol.String(), func(t *testing.T) {
			dir := t.TempDir()
			m := NewMetrics(nil)
			w := openT(t, dir, Options{Policy: pol, SyncInterval: 5 * 1e6, Metrics: m, SegmentSize: 1 << 12})
			var want [][]byte
			for i := 0; i < 50; i++ {
				want = append(want, payload(i, 300))
			}
			ps := appendAll(t, w, want)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			fs := toFloat(t, m.fsyncs)
			if pol == PolicyOff && fs != 0 {
				t.Fatalf("policy off did %v fsyncs", fs)
			}
			if pol == PolicyInterval && (fs < 1 || fs >= 50) {
				// At least the final fsync on Close; never one per record.
				t.Fatalf("policy interval did %v fsyncs for 50 records", fs)
			}
			got, _ := replayAll(t, dir, ReplayOptions{})
			checkRecords(t, got, want, ps)
		})
	}
}

func TestPolicyFlag(t *testing.T) {
	var p Policy
	if p != PolicyAlways || p.String() != "always" {
		t.Fatalf("zero policy %v", p)
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(&p, "wal.fsync", "")
	for _, c := range []struct {
		in   string
		want Policy
	}{{"interval", PolicyInterval}, {"OFF", PolicyOff}, {"always", PolicyAlways}} {
		if err := fs.Parse([]string{"-wal.fsync=" + c.in}); err != nil || p != c.want {
			t.Fatalf("parse %q: %v %v", c.in, p, err)
		}
		if p.String() != strings.ToLower(c.in) {
			t.Fatalf("String() = %q", p.String())
		}
	}
	if err := fs.Parse([]string{"-wal.fsync=sometimes"}); err == nil {
		t.Fatal("invalid policy accepted")
	}
	var q Policy
	if err := q.UnmarshalText([]byte("off")); err != nil || q != PolicyOff {
		t.Fatal(q, err)
	}
	if b, _ := PolicyInterval.MarshalText(); string(b) != "interval" {
		t.Fatal(string(b))
	}
}

// faultyFile injects failures into segment writes.
type faultyFile struct {
	segFile
	mu            sync.Mutex
	failWrites    int  // next N writes fail (after writing half)
	failSyncs     int  // next N fsyncs fail
	failTruncates int  // next N truncates fail
	partial       bool // failing writes write half the buffer first
}

func (f *faultyFile) WriteAt(b []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWrites > 0 {
		f.failWrites--
		n := 0
		if f.partial {
			n, _ = f.segFile.WriteAt(b[:len(b)/2], off)
		}
		return n, &os.PathError{Op: "write", Path: "segment", Err: syscall.ENOSPC}
	}
	return f.segFile.WriteAt(b, off)
}

func (f *faultyFile) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failSyncs > 0 {
		f.failSyncs--
		return &os.PathError{Op: "fdatasync", Path: "segment", Err: syscall.EIO}
	}
	return f.segFile.Sync()
}

func (f *faultyFile) Truncate(n int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failTruncates > 0 {
		f.failTruncates--
		return &os.PathError{Op: "truncate", Path: "segment", Err: syscall.ENOSPC}
	}
	return f.segFile.Truncate(n)
}

func (f *faultyFile) set(fn func(f *faultyFile)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// TestWriteErrors: a failed write (disk full, half written), a failed fsync
// and a failed cut-back return errors to the appender, leave nothing that
// replay reads, and the WAL keeps working afterwards.
func TestWriteErrors(t *testing.T) {
	var ff *faultyFile
	testWrapFile = func(f segFile) segFile { ff = &faultyFile{segFile: f}; return ff }
	defer func() { testWrapFile = nil }()
	dir := t.TempDir()
	m := NewMetrics(nil)
	w := openT(t, dir, Options{Metrics: m})
	var want [][]byte
	ok := func(p []byte) {
		t.Helper()
		if _, err := w.Append(context.Background(), p); err != nil {
			t.Fatalf("append: %v", err)
		}
		want = append(want, p)
	}
	fail := func(p []byte, target error) {
		t.Helper()
		_, err := w.Append(context.Background(), p)
		if !errors.Is(err, target) {
			t.Fatalf("append: %v, want %v", err, target)
		}
	}
	ok(payload(1, 1000))
	ff.set(func(f *faultyFile) { f.failWrites, f.partial = 1, true })
	fail(payload(2, 1000), syscall.ENOSPC)
	// The half-written record was cut back already.
	if sz := fileSize(t, segPath(dir, 1)); sz != headerSize+1000 {
		t.Fatalf("segment size after failed write %d, want %d", sz, headerSize+1000)
	}
	ok(payload(3, 1000))
	// Write fails and so does the cut-back: the next append repairs first.
	ff.set(func(f *faultyFile) { f.failWrites, f.partial, f.failTruncates = 1, true, 1 })
	fail(payload(4, 1000), syscall.ENOSPC)
	if sz := fileSize(t, segPath(dir, 1)); sz != 2*(headerSize+1000)+(headerSize+1000)/2 {
		t.Fatalf("segment size with pending repair %d", sz)
	}
	// The repair itself fails once more: the append fails cleanly.
	ff.set(func(f *faultyFile) { f.failTruncates = 1 })
	fail(payload(5, 1000), syscall.ENOSPC)
	ok(payload(6, 1000))
	// fsync failure under always: error, records removed.
	ff.set(func(f *faultyFile) { f.failSyncs = 1 })
	fail(payload(7, 1000), syscall.EIO)
	ok(payload(8, 1000))
	if v := toFloat(t, m.appendErrors); v != 4 {
		t.Fatalf("append_errors_total %v, want 4", v)
	}
	w.Close()
	got, st := replayAll(t, dir, ReplayOptions{})
	checkRecords(t, got, want, nil)
	if st.CorruptSegments != 0 || st.TruncatedBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func histCount(t testing.TB, h prometheus.Histogram) (uint64, float64) {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// toFloat reads a counter or gauge.
func toFloat(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}
