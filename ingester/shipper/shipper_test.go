package shipper

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func fastOpts(dir string) Options {
	return Options{Dir: dir, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, RetentionInterval: time.Hour}
}

func TestUploadAndFlush(t *testing.T) {
	dir := t.TempDir()
	inner, _ := newFSBucket(t)
	bkt := newTestBucket(inner, dir, -1)
	var mu sync.Mutex
	var got []string
	reg := prometheus.NewRegistry()
	opts := fastOpts(dir)
	opts.Bucket, opts.Registerer = bkt, reg
	opts.OnUploaded = func(tenant string, id ulid.ULID) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, tenant+"/"+id.String())
	}
	s := New(opts)

	now := time.Now()
	blocks := []block{makeBlock(t, dir, "t1", now), makeBlock(t, dir, "t2", now), makeBlock(t, dir, "t1", now)}
	var want []string
	var total int64
	for _, b := range blocks {
		if err := s.Enqueue(b.tenant, b.dir); err != nil {
			t.Fatal(err)
		}
		want = append(want, b.tenant+"/"+b.id.String())
		total += b.size()
	}
	// Enqueueing twice queues once.
	if err := s.Enqueue(blocks[0].tenant, blocks[0].dir); err != nil {
		t.Fatal(err)
	}
	if s.PendingBlocks() != 3 || s.PendingBytes() != total {
		t.Fatalf("pending %d blocks %d bytes, want 3 and %d", s.PendingBlocks(), s.PendingBytes(), total)
	}
	if v := gaugeValue(t, reg, "hearth_shipper_pending_bytes"); v != float64(total) {
		t.Fatalf("pending_bytes gauge %v, want %d", v, total)
	}

	// Without Run nothing is uploaded: Flush gives up when its context ends, saying why.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err := s.Flush(ctx)
	cancel()
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "3 blocks") || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("Flush without Run: %v", err)
	}

	runShipper(t, s)
	flush(t, s)
	for _, b := range blocks {
		requireInBucket(t, inner, b)
		if !b.marked() {
			t.Fatalf("block %s not marked uploaded", b.dir)
		}
	}
	bkt.requireNoViolations(t)
	if n := len(bkt.uploaded()); n != 3*len(blocks[0].files) {
		t.Fatalf("%d uploads, want %d", n, 3*len(blocks[0].files))
	}
	if s.PendingBlocks() != 0 || s.PendingBytes() != 0 {
		t.Fatalf("pending after flush: %d blocks, %d bytes", s.PendingBlocks(), s.PendingBytes())
	}
	if ok, reason := s.Healthy(); !ok {
		t.Fatalf("unhealthy: %s", reason)
	}
	mu.Lock()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("OnUploaded calls %v, want %v", got, want)
	}
	mu.Unlock()
	if v := counter(s.metrics.uploads); v != 3 {
		t.Fatalf("uploads_total %v", v)
	}
	if n := testutil.CollectAndCount(s.metrics.duration); n != 1 {
		t.Fatalf("duration histogram: %d series", n)
	}

	// Enqueueing an uploaded block is a no-op; Flush with nothing queued returns at once.
	if err := s.Enqueue(blocks[1].tenant, blocks[1].dir); err != nil {
		t.Fatal(err)
	}
	if s.PendingBlocks() != 0 {
		t.Fatal("uploaded block queued again")
	}
	flush(t, s)
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestEnqueueRejectsNonBlocks(t *testing.T) {
	dir := t.TempDir()
	bkt, _ := newFSBucket(t)
	s := New(Options{Dir: dir, Bucket: bkt})
	b := makeBlock(t, dir, "t", time.Now())
	if err := s.Enqueue("t", b.dir+".tmp"); err == nil {
		t.Fatal("a .tmp directory was accepted")
	}
	incomplete := filepath.Join(dir, "t", newULID(time.Now()).String())
	if err := os.MkdirAll(incomplete, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue("t", incomplete); err == nil {
		t.Fatal("a block without meta.json was accepted")
	}
	for _, tenant := range []string{"", "a/b", ".."} {
		if err := s.Enqueue(tenant, b.dir); err == nil {
			t.Fatalf("tenant %q accepted", tenant)
		}
	}
	// b was found by New's scan already.
	if s.PendingBlocks() != 0 {
		t.Fatalf("%d pending before the block existed", s.PendingBlocks())
	}
	if err := s.Enqueue("t", b.dir); err != nil {
		t.Fatal(err)
	}
	if s.PendingBlocks() != 1 {
		t.Fatalf("%d pending", s.PendingBlocks())
	}
}

// TestRestartResumes kills the shipper (cancels Run) after every possible number of
// successful object uploads, restarts a new one on the same directory, and checks that
// no block ever has meta.json in the bucket without all its files, that blocks
// uploaded before the kill are not uploaded again, and that all blocks arrive.
func TestRestartResumes(t *testing.T) {
	probe := block{files: makeBlock(t, t.TempDir(), "x", time.Now()).files}
	perBlock := len(probe.files)
	const nBlocks = 2
	for n := 0; n <= nBlocks*perBlock; n++ {
		dir := t.TempDir()
		inner, _ := newFSBucket(t)
		now := time.Now()
		blocks := []block{makeBlock(t, dir, "a", now), makeBlock(t, dir, "b", now)}

		// First life: blocks found by the scan at start; the bucket fails after n objects.
		bkt := newTestBucket(inner, dir, n)
		opts := fastOpts(dir)
		opts.Bucket = bkt
		s := New(opts)
		if s.PendingBlocks() != nBlocks {
			t.Fatalf("n=%d: scan found %d blocks, want %d", n, s.PendingBlocks(), nBlocks)
		}
		stop := runShipper(t, s)
		if n < nBlocks*perBlock {
			waitFor(t, "a failed upload", func() bool { return counter(s.metrics.failures) >= 1 })
		} else {
			flush(t, s)
		}
		stop() // the kill: nothing after this point runs
		bkt.requireNoViolations(t)
		requireNoHalfBlocks(t, inner, blocks)
		var markedBefore []block
		for _, b := range blocks {
			if b.marked() {
				markedBefore = append(markedBefore, b)
			}
		}
		if want := n / perBlock; len(markedBefore) != want {
			t.Fatalf("n=%d: %d blocks marked, want %d", n, len(markedBefore), want)
		}

		// Second life: a healthy bucket.
		bkt2 := newTestBucket(inner, dir, -1)
		opts.Bucket = bkt2
		s2 := New(opts)
		if got, want := s2.PendingBlocks(), nBlocks-len(markedBefore); got != want {
			t.Fatalf("n=%d: restart queued %d blocks, want %d", n, got, want)
		}
		runShipper(t, s2)
		flush(t, s2)
		bkt2.requireNoViolations(t)
		for _, b := range blocks {
			requireInBucket(t, inner, b)
			if !b.marked() {
				t.Fatalf("n=%d: %s not marked", n, b.dir)
			}
		}
		for _, name := range bkt2.uploaded() {
			for _, b := range markedBefore {
				if strings.HasPrefix(name, b.tenant+"/"+b.id.String()+"/") {
					t.Fatalf("n=%d: %s uploaded again after the restart", n, name)
				}
			}
		}
	}
}

// A crash after meta.json reached the bucket but before the marker: the restarted
// shipper marks the block without uploading anything.
func TestCrashBeforeMarker(t *testing.T) {
	dir := t.TempDir()
	inner, _ := newFSBucket(t)
	b := makeBlock(t, dir, "t", time.Now())
	ctx := context.Background()
	for name, data := range b.files {
		if err := inner.Upload(ctx, b.tenant+"/"+b.id.String()+"/"+name, strings.NewReader(string(data))); err != nil {
			t.Fatal(err)
		}
	}
	bkt := newTestBucket(inner, dir, -1)
	var called int
	opts := fastOpts(dir)
	opts.Bucket = bkt
	opts.OnUploaded = func(string, ulid.ULID) { called++ }
	s := New(opts)
	if s.PendingBlocks() != 1 {
		t.Fatalf("%d pending", s.PendingBlocks())
	}
	runShipper(t, s)
	flush(t, s)
	if up := bkt.uploaded(); len(up) != 0 {
		t.Fatalf("uploaded again: %v", up)
	}
	if !b.marked() || called != 1 {
		t.Fatalf("marked=%v OnUploaded calls=%d", b.marked(), called)
	}
}

func TestScanIgnoresIncompleteAndTemp(t *testing.T) {
	dir := t.TempDir()
	bkt, _ := newFSBucket(t)
	good := makeBlock(t, dir, "t", time.Now())
	// A block still being written (<ULID>.tmp, even with a meta.json), a ULID directory
	// without meta.json, a stray file and a non-ULID directory.
	tmp := filepath.Join(dir, "t", newULID(time.Now()).String()+".tmp")
	noMeta := filepath.Join(dir, "t2", newULID(time.Now()).String())
	for _, d := range []string{tmp, noMeta, filepath.Join(dir, "t", "not-a-ulid")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "index.bin"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, MetaFile), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "t", "stray"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Dir: dir, Bucket: bkt})
	if s.PendingBlocks() != 1 || s.PendingBytes() != good.size() {
		t.Fatalf("pending %d blocks, %d bytes; want 1 and %d", s.PendingBlocks(), s.PendingBytes(), good.size())
	}
	blocks, err := s.LocalBlocks()
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 1 || blocks[0].ULID != good.id || blocks[0].Uploaded {
		t.Fatalf("LocalBlocks: %+v", blocks)
	}
}

// A block that appears without Enqueue (e.g. written just before a crash) is found by
// the periodic rescan while running.
func TestRescanFindsUnqueuedBlocks(t *testing.T) {
	dir := t.TempDir()
	inner, _ := newFSBucket(t)
	opts := fastOpts(dir)
	opts.Bucket = inner
	opts.RetentionInterval = 10 * time.Millisecond
	s := New(opts)
	runShipper(t, s)
	b := makeBlock(t, dir, "late", time.Now())
	waitFor(t, "the unqueued block to be uploaded", b.marked)
	requireInBucket(t, inner, b)
}

func TestRetention(t *testing.T) {
	dir := t.TempDir()
	inner, _ := newFSBucket(t)
	start := time.Now()
	old := makeBlock(t, dir, "t", start.Add(-7*time.Hour))
	oldPending := makeBlock(t, dir, "t", start.Add(-8*time.Hour))
	recent := makeBlock(t, dir, "u", start.Add(-time.Hour))
	for _, b := range []block{old, recent} {
		if err := writeMarker(b.dir, start); err != nil {
			t.Fatal(err)
		}
	}
	// A deletion interrupted by a crash is finished at start.
	halfDeleted := makeBlock(t, dir, "t", start.Add(-9*time.Hour))
	if err := os.Rename(halfDeleted.dir, halfDeleted.dir+deletingSuffix); err != nil {
		t.Fatal(err)
	}

	bkt := newTestBucket(inner, dir, 0) // every upload fails: oldPending stays pending
	opts := fastOpts(dir)
	opts.Bucket = bkt
	opts.LocalRetention = 6 * time.Hour
	opts.Now = func() time.Time { return start }
	s := New(opts)
	if _, err := os.Stat(halfDeleted.dir + deletingSuffix); !os.IsNotExist(err) {
		t.Fatalf("interrupted deletion not finished: %v", err)
	}
	if s.PendingBlocks() != 1 {
		t.Fatalf("%d pending, want 1", s.PendingBlocks())
	}
	if n := s.applyRetention(); n != 1 {
		t.Fatalf("deleted %d blocks, want 1", n)
	}
	exists := func(b block) bool { _, err := os.Stat(b.dir); return err == nil }
	if exists(old) || !exists(oldPending) || !exists(recent) {
		t.Fatalf("after retention: old=%v oldPending=%v recent=%v; want false true true", exists(old), exists(oldPending), exists(recent))
	}
	if v := counter(s.metrics.deleted); v != 1 {
		t.Fatalf("local_blocks_deleted_total %v", v)
	}

	// Once uploaded, the old pending block goes at the next retention pass.
	stop := runShipper(t, s)
	waitFor(t, "a failed upload", func() bool { return counter(s.metrics.failures) >= 1 })
	if n := s.applyRetention(); n != 0 || !exists(oldPending) {
		t.Fatalf("retention deleted a block that is not uploaded (%d)", n)
	}
	bkt.heal()
	flush(t, s)
	stop()
	if n := s.applyRetention(); n != 1 || exists(oldPending) || !exists(recent) {
		t.Fatalf("second pass deleted %d; oldPending exists=%v recent exists=%v", n, exists(oldPending), exists(recent))
	}
	requireInBucket(t, inner, oldPending)

	// Negative retention keeps everything.
	opts.LocalRetention = -1
	opts.Now = func() time.Time { return start.Add(1000 * time.Hour) }
	if n := New(opts).applyRetention(); n != 0 || !exists(recent) {
		t.Fatalf("negative retention deleted %d", n)
	}
}

func TestFailuresHealthAndBudget(t *testing.T) {
	dir := t.TempDir()
	inner, _ := newFSBucket(t)
	bkt := newTestBucket(inner, dir, 0)
	opts := fastOpts(dir)
	opts.Bucket = bkt
	s := New(opts)
	if ok, _ := s.Healthy(); !ok {
		t.Fatal("unhealthy before any attempt")
	}
	runShipper(t, s)
	var blocks []block
	var total int64
	for i := range 3 {
		b := makeBlock(t, dir, "t", time.Now())
		if err := s.Enqueue("t", b.dir); err != nil {
			t.Fatal(i, err)
		}
		blocks = append(blocks, b)
		total += b.size()
	}
	waitFor(t, "several failed attempts", func() bool { return counter(s.metrics.failures) >= 3 })
	ok, reason := s.Healthy()
	if ok || !strings.Contains(reason, "bucket unreachable for") || !strings.Contains(reason, errInjected.Error()) || !strings.Contains(reason, "in 3 blocks waiting to upload") {
		t.Fatalf("Healthy() = %v, %q", ok, reason)
	}
	st := s.Status()
	if !errors.Is(st.LastError, errInjected) || st.FailingSince.IsZero() || st.PendingBytes != total {
		t.Fatalf("status %+v", st)
	}
	if err := s.OverBudget(total); err != nil {
		t.Fatalf("at the budget: %v", err)
	}
	if err := s.OverBudget(0); err != nil {
		t.Fatalf("no budget: %v", err)
	}
	err := s.OverBudget(total - 1)
	if err == nil || !strings.Contains(err.Error(), "exceeds the disk budget") || !strings.Contains(err.Error(), errInjected.Error()) {
		t.Fatalf("over budget: %v", err)
	}
	for _, b := range blocks {
		if b.marked() {
			t.Fatal("marked while the bucket fails")
		}
	}
	bkt.heal()
	flush(t, s)
	if ok, reason := s.Healthy(); !ok {
		t.Fatalf("still unhealthy: %s", reason)
	}
	if s.PendingBytes() != 0 || s.OverBudget(1) != nil {
		t.Fatalf("pending %d after recovery", s.PendingBytes())
	}
	for _, b := range blocks {
		requireInBucket(t, inner, b)
	}
	bkt.requireNoViolations(t)
}

// A queued block whose directory disappears is dropped (logged and counted), not
// retried forever, and does not hold back the others.
func TestVanishedBlockIsDropped(t *testing.T) {
	dir := t.TempDir()
	inner, _ := newFSBucket(t)
	opts := fastOpts(dir)
	opts.Bucket = inner
	s := New(opts)
	gone := makeBlock(t, dir, "t", time.Now())
	kept := makeBlock(t, dir, "t", time.Now())
	for _, b := range []block{gone, kept} {
		if err := s.Enqueue("t", b.dir); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(gone.dir); err != nil {
		t.Fatal(err)
	}
	runShipper(t, s)
	flush(t, s)
	requireInBucket(t, inner, kept)
	if v := counter(s.metrics.dropped); v != 1 {
		t.Fatalf("dropped %v", v)
	}
}

func TestBackoffBounds(t *testing.T) {
	lo, hi := 100*time.Millisecond, 5*time.Second
	b := newBackoff(context.Background(), lo, hi)
	for n := 1; n <= 200; n++ {
		d := b.NextDelay()
		ceil := min(hi, lo<<min(n-1, 20))
		if d < ceil/2 || d > ceil {
			t.Fatalf("backoff(%d) = %s, want in [%s, %s]", n, d, ceil/2, ceil)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for in, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 3 << 30: "3.0 GiB"} {
		if got := formatBytes(in); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", in, got, want)
		}
	}
}
