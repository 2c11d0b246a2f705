package compactor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/internal/faultbucket"
)

// testPushes: 600 profiles over 200 minutes from start.
func testPushes(start time.Time) []pushed {
	rng := rand.New(rand.NewPCG(1, 2))
	var ps []pushed
	for i := 0; i < 600; i++ {
		var id head.ProfileID
		for j := range id {
			id[j] = byte(rng.IntN(256))
		}
		ls := model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: "svc"}, {Name: "pod", Value: fmt.Sprint(i % 5)}}.Sort()
		ps = append(ps, pushed{id: id, ls: ls, ts: start.Add(time.Duration(i) * 20 * time.Second).UnixNano()})
	}
	return ps
}

var faultCfg = Config{BlockRanges: DurationList{time.Hour, 4 * time.Hour}, CompactionInterval: time.Minute, FirstLevelWait: 10 * time.Minute, DeletionDelay: time.Hour, JobTimeout: 30 * time.Minute}

// converged returns a bucket whose 3 replicas' blocks of testPushes are
// compacted into one level-2 block, its sources deleted.
func converged(t *testing.T) (string, objstore.Bucket, int, *block.Meta) {
	t.Helper()
	dir := t.TempDir()
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	ps := testPushes(start)
	writeReplicas(t, dir, ps, 3, start.UnixNano(), 17*time.Minute, 5*time.Minute)
	now := start.Add(5 * time.Hour)
	c, err := New(Options{Config: faultCfg, Bucket: bkt, Dir: t.TempDir(), Instance: "test", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for pass := 0; pass < 4; pass++ {
		if pass == 3 {
			now = now.Add(2 * time.Hour)
		}
		if err := c.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	st, err := c.list(context.Background(), "t")
	if err != nil || len(st.metas) != 1 || st.metas[0].Level() != 2 {
		t.Fatalf("setup: %v, %d blocks", err, len(st.metas))
	}
	return dir, bkt, len(ps), st.metas[0]
}

func exists(t *testing.T, bkt objstore.Bucket, name string) bool {
	t.Helper()
	ok, err := bkt.Exists(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestUnreadableMetaKept (finding 1): a compacted block (it keeps the
// compactor's marker) whose meta.json cannot be read on a fresh compactor's
// first pass (a connection reset, a newer format after a rollback) was taken
// for a crashed upload and deleted: its sources long gone, the range lost.
// It must be kept, named in the pass's error and counted; and a large
// meta.json (many sources) is readable.
func TestUnreadableMetaKept(t *testing.T) {
	for _, tc := range []string{"read error", "cut body", "newer format", "large"} {
		t.Run(tc, func(t *testing.T) {
			dir, bkt, n, m := converged(t)
			metaName := "t/" + m.ULID.String() + "/" + block.MetaFile
			fb := faultbucket.Wrap(bkt, faultbucket.Config{})
			switch tc {
			case "read error", "cut body":
				f := map[string]faultbucket.Fault{"read error": faultbucket.Error, "cut body": faultbucket.CutBody}[tc]
				fb.SetHook(func(op faultbucket.Op, name string) faultbucket.Fault {
					if name == metaName && (op == faultbucket.OpGet || op == faultbucket.OpGetRange) {
						return f
					}
					return faultbucket.None
				})
			case "newer format", "large":
				mm := *m
				if tc == "newer format" {
					mm.Version = block.FormatVersion + 1
				} else {
					c := *m.Compaction
					for i := 0; i < 80000; i++ { // about 2.4 MB of sources
						c.Sources = append(c.Sources, ulid.ULID{0: 1, 14: byte(i >> 8), 15: byte(i)})
					}
					mm.Compaction = &c
				}
				b, err := block.MarshalMeta(&mm)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(metaName)), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			reg := prometheus.NewRegistry()
			later := time.Now().Add(24 * time.Hour) // the block is far older than any grace
			c, err := New(Options{Config: faultCfg, Bucket: fb, Dir: t.TempDir(), Registerer: reg, Now: func() time.Time { return later }})
			if err != nil {
				t.Fatal(err)
			}
			err = c.RunOnce(context.Background())
			if tc == "large" {
				if err != nil {
					t.Fatalf("a large meta.json: %v", err)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), metaName) {
					t.Fatalf("pass error %v: want one naming %s", err, metaName)
				}
				if got := gauge(t, reg, "hearth_compactor_unreadable_blocks"); got != 1 {
					t.Fatalf("hearth_compactor_unreadable_blocks = %v, want 1", got)
				}
			}
			for _, f := range []string{block.MetaFile, block.IndexFile, block.ProfilesFile, block.SymbolsFile} {
				if !exists(t, bkt, "t/"+m.ULID.String()+"/"+f) {
					t.Fatalf("%s of the unreadable block was deleted", f)
				}
			}
			if tc == "read error" || tc == "cut body" {
				fb.SetHook(nil)
				if err := c.RunOnce(context.Background()); err != nil {
					t.Fatal(err)
				}
				if got := gauge(t, reg, "hearth_compactor_unreadable_blocks"); got != 0 {
					t.Fatalf("after the fault: hearth_compactor_unreadable_blocks = %v", got)
				}
				if rows, distinct := countRows(t, bkt); rows != n || distinct != n {
					t.Fatalf("after the fault: %d rows, %d distinct, want %d", rows, distinct, n)
				}
			}
		})
	}
}

// TestMarkedBlockWithUnreadableMetaKept (finding 1): a marked block past its
// deletion delay whose meta.json cannot be read was taken for an
// interrupted deletion and deleted.
func TestMarkedBlockWithUnreadableMetaKept(t *testing.T) {
	dir := t.TempDir()
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	id := ulid.MustNew(ulid.Timestamp(now.Add(-5*time.Hour)), ulid.DefaultEntropy())
	m := &block.Meta{Version: block.FormatVersion + 1, ULID: id, Tenant: "t", Files: []block.File{{Name: block.IndexFile, Size: 1}, {Name: block.ProfilesFile, Size: 1}, {Name: block.SymbolsFile, Size: 1}}}
	b, _ := block.MarshalMeta(m)
	for name, body := range map[string]string{OwnerMarker: "x", block.MetaFile: string(b), block.IndexFile: "x", block.ProfilesFile: "x", block.SymbolsFile: "x"} {
		if err := bkt.Upload(ctx, "t/"+id.String()+"/"+name, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	mark, _ := block.MarshalDeletionMark(&block.DeletionMark{Version: 1, ID: id, Tenant: "t", MarkedAt: now.Add(-4 * time.Hour), Reason: block.ReasonRetention})
	if err := bkt.Upload(ctx, block.DeletionMarkPath("t", id), strings.NewReader(string(mark))); err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{Config: faultCfg, Bucket: bkt, Dir: t.TempDir(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RunOnce(ctx); err == nil {
		t.Fatal("no error for an unreadable meta.json")
	}
	if !exists(t, bkt, "t/"+id.String()+"/"+block.IndexFile) {
		t.Fatal("a marked block whose meta.json could not be read was deleted")
	}
}

// TestDeleteOnlyWithReplacement (finding 1): the planner deleted marked
// blocks without checking that what replaces them is still there.
func TestDeleteOnlyWithReplacement(t *testing.T) {
	h := time.Hour
	cfg := PlanConfig{Ranges: []time.Duration{h, 4 * h}, Wait: 10 * time.Minute, DeletionDelay: h}
	now := t0.Add(10 * h)
	mark := func(n byte, by ...byte) map[ulid.ULID]*block.DeletionMark {
		return map[ulid.ULID]*block.DeletionMark{id(n): {Version: 1, ID: id(n), Tenant: "t", MarkedAt: now.Add(-2 * h), Reason: block.ReasonCompacted, ReplacedBy: ids(by...)}}
	}
	for _, tc := range []struct {
		name  string
		metas []*block.Meta
		marks map[ulid.ULID]*block.DeletionMark
		del   bool
	}{
		{"replacement present", []*block.Meta{raw(1, 0, 50*time.Minute), comp(9, 1, 0, h, 1)}, mark(1, 9), true},
		{"replacement unreadable or gone", []*block.Meta{raw(1, 0, 50*time.Minute)}, mark(1, 9), false},
		{"replacement replaced in turn", []*block.Meta{raw(1, 0, 50*time.Minute), comp(10, 2, 0, 4*h, 1, 2)}, mark(1, 9), true},
		{"a compacted block's replacement gone", []*block.Meta{comp(8, 1, 0, h, 1, 2)}, mark(8, 9), false},
		{"a compacted block's replacement replaced", []*block.Meta{comp(8, 1, 0, h, 1, 2), comp(10, 2, 0, 4*h, 1, 2, 3)}, mark(8, 9), true},
		{"a straddling block half covered", []*block.Meta{raw(1, 30*time.Minute, 90*time.Minute), comp(10, 1, 0, h, 1)}, mark(1, 9, 11), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := PlanTenant("t", tc.metas, tc.marks, now, cfg)
			if got := len(p.Deletes) > 0; got != tc.del {
				t.Fatalf("deletes %v, want deletion %v", short(p.Deletes), tc.del)
			}
		})
	}
}

// TestPartialGraceFollowsJobTimeout (finding 2): a compactor's upload in
// progress (marker, no meta.json yet) of a job slower than an hour was
// deleted under it.
func TestPartialGraceFollowsJobTimeout(t *testing.T) {
	dir := t.TempDir()
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	slow := ulid.MustNew(ulid.Timestamp(now.Add(-2*time.Hour)), ulid.DefaultEntropy())
	crashed := ulid.MustNew(ulid.Timestamp(now.Add(-7*time.Hour)), ulid.DefaultEntropy())
	for _, id := range []ulid.ULID{slow, crashed} {
		for _, name := range []string{OwnerMarker, block.IndexFile} {
			if err := bkt.Upload(ctx, "t/"+id.String()+"/"+name, strings.NewReader("x")); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg := faultCfg
	cfg.JobTimeout = 3 * time.Hour
	c, err := New(Options{Config: cfg, Bucket: bkt, Dir: t.TempDir(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if !exists(t, bkt, "t/"+slow.String()+"/"+block.IndexFile) {
		t.Fatal("a job's upload younger than its timeout was deleted")
	}
	if exists(t, bkt, "t/"+crashed.String()+"/"+block.IndexFile) {
		t.Fatal("a crashed job's upload older than twice the timeout is still there")
	}
}

// TestAbandonedIngesterUpload (finding 7): an ingester's partial upload
// whose ingester never came back stayed forever.
func TestAbandonedIngesterUpload(t *testing.T) {
	dir := t.TempDir()
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	abandoned := ulid.MustNew(ulid.Timestamp(now.Add(-10*24*time.Hour)), ulid.DefaultEntropy())
	retrying := ulid.MustNew(ulid.Timestamp(now.Add(-10*24*time.Hour)), ulid.DefaultEntropy())
	for _, id := range []ulid.ULID{abandoned, retrying} {
		if err := bkt.Upload(ctx, "t/"+id.String()+"/"+block.IndexFile, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
	}
	old := now.Add(-8 * 24 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "t", abandoned.String(), block.IndexFile), old, old); err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{Config: faultCfg, Bucket: bkt, Dir: t.TempDir(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if exists(t, bkt, "t/"+abandoned.String()+"/"+block.IndexFile) {
		t.Fatal("an upload idle for longer than -compactor.abandoned-upload-grace is still there")
	}
	if !exists(t, bkt, "t/"+retrying.String()+"/"+block.IndexFile) {
		t.Fatal("an upload written to recently was deleted")
	}
}

// TestCompactionUnderFaults: passes over a bucket answering errors, cut
// bodies and uploads that land but fail never lose a profile (a reader on
// the healthy bucket sees every one after every pass), and once the faults
// stop the bucket converges to one row per profile.
func TestCompactionUnderFaults(t *testing.T) {
	dir := t.TempDir()
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	ps := testPushes(start)
	writeReplicas(t, dir, ps, 3, start.UnixNano(), 17*time.Minute, 5*time.Minute)
	fb := faultbucket.Wrap(bkt, faultbucket.Config{Seed: 42, ErrorRate: 0.05, CutRate: 0.05, LandedErrorRate: 0.1})
	now := start.Add(5 * time.Hour)
	cfg := faultCfg
	cfg.DeletionDelay = 10 * time.Minute
	for pass := 0; pass < 40; pass++ {
		if pass == 30 {
			fb.SetEnabled(false)
		}
		// A fresh compactor every few passes: an empty meta cache, as after a restart.
		c, err := New(Options{Config: cfg, Bucket: fb, Dir: t.TempDir(), Instance: "test", Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		err = c.RunOnce(context.Background())
		if pass >= 31 && err != nil {
			t.Fatalf("pass %d without faults: %v", pass, err)
		}
		if _, distinct := countRows(t, bkt); distinct != len(ps) {
			t.Fatalf("pass %d: %d distinct profiles visible, want %d (err %v)", pass, distinct, len(ps), err)
		}
		now = now.Add(15 * time.Minute)
	}
	rows, _ := countRows(t, bkt)
	t.Logf("%d faults injected in %d calls; %d rows for %d profiles at the end", fb.Injected(), fb.Calls(), rows, len(ps))
	if rows != len(ps) {
		t.Fatalf("converged to %d rows for %d profiles", rows, len(ps))
	}
}

// TestReaderFailsOnUnreadableMeta (finding 1, read path): a reader whose read
// of a compacted block's meta.json failed skipped the block silently (its
// sources long gone: a wrong answer without an error).
func TestReaderFailsOnUnreadableMeta(t *testing.T) {
	_, bkt, n, m := converged(t)
	metaName := "t/" + m.ULID.String() + "/" + block.MetaFile
	fb := faultbucket.Wrap(bkt, faultbucket.Config{})
	fb.SetHook(func(op faultbucket.Op, name string) faultbucket.Fault {
		if name == metaName {
			return faultbucket.Error
		}
		return faultbucket.None
	})
	src := &block.BucketSource{Bucket: fb, SyncInterval: -1, IndexMaxAge: -1}
	sels, err := src.Select(context.Background(), "t", "", nil, -1<<63, 1<<63-1)
	if err == nil || !strings.Contains(err.Error(), metaName) {
		t.Fatalf("select: %d selections, err %v; want an error naming %s", len(sels), err, metaName)
	}
	fb.SetHook(nil)
	if rows, _ := countRows(t, fb); rows != n {
		t.Fatalf("after the fault: %d rows, want %d", rows, n)
	}
}

// TestTenantGaugesForgotten (finding 7): the per-tenant series stayed after
// the tenant's last block left the bucket.
func TestTenantGaugesForgotten(t *testing.T) {
	dir := t.TempDir()
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	writeReplicas(t, dir, testPushes(start)[:30], 2, start.UnixNano(), time.Hour, 0)
	reg := prometheus.NewRegistry()
	now := start.Add(5 * time.Hour)
	c, err := New(Options{Config: faultCfg, Bucket: bkt, Dir: t.TempDir(), Registerer: reg, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	series := func() int {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "hearth_compactor_last_successful_job_timestamp_seconds" {
				return len(mf.Metric)
			}
		}
		return 0
	}
	if err := c.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if series() != 1 {
		t.Fatalf("%d series after a job, want 1", series())
	}
	if err := os.RemoveAll(filepath.Join(dir, "t")); err != nil {
		t.Fatal(err)
	}
	if err := c.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := series(); n != 0 {
		t.Fatalf("%d series of a tenant gone from the bucket", n)
	}
}

// markReads counts reads of deletion marks.
type markReads struct {
	objstore.Bucket
	n atomic.Int64
}

func (m *markReads) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	// Block marks only: the tenant deletion mark is read every pass (it
	// changes: the compactor gives it its finished time).
	if strings.Contains(name, "/"+block.MarkersDir+"/") && !strings.HasSuffix(name, block.TenantDeletionMarkObject) {
		m.n.Add(1)
	}
	return m.Bucket.Get(ctx, name)
}

// TestMarksReadOnce (finding 4): every pass read every deletion mark again;
// marks are immutable, so a pass reads only the new ones.
func TestMarksReadOnce(t *testing.T) {
	dir := t.TempDir()
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	writeReplicas(t, dir, testPushes(start)[:60], 1, start.UnixNano(), 2*time.Minute, 0)
	ctx := context.Background()
	mr := &markReads{Bucket: bkt}
	now := time.Now()
	c, err := New(Options{Config: faultCfg, Bucket: mr, Dir: t.TempDir(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.list(ctx, "t")
	if err != nil || len(st.metas) < 5 {
		t.Fatalf("%d blocks, %v", len(st.metas), err)
	}
	for _, m := range st.metas {
		b, _ := block.MarshalDeletionMark(&block.DeletionMark{Version: 1, ID: m.ULID, Tenant: "t", MarkedAt: now, Reason: block.ReasonRetention})
		if err := bkt.Upload(ctx, block.DeletionMarkPath("t", m.ULID), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	first := mr.n.Load()
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if again := mr.n.Load() - first; again != 0 || first < int64(len(st.metas)) {
		t.Fatalf("first pass read %d marks (of %d), the next %d", first, len(st.metas), again)
	}
	if st, err := c.list(ctx, "t"); err != nil || len(st.marks) != len(st.metas) {
		t.Fatalf("cached marks: %d for %d blocks, %v", len(st.marks), len(st.metas), err)
	}
}

// listCount counts listings of a prefix.
type listCount struct {
	objstore.Bucket
	prefix string
	n      atomic.Int64
}

func (l *listCount) Iter(ctx context.Context, dir string, f func(string) error, opts ...objstore.IterOption) error {
	if strings.HasPrefix(dir, l.prefix) {
		l.n.Add(1)
	}
	return l.Bucket.Iter(ctx, dir, f, opts...)
}

// TestNonOwnerReadsOnlyTheIndex (finding 4): every ingester listed every
// tenant's blocks and marks on every pass before knowing whether it owned
// anything. An instance that owns neither the tenant nor any of its jobs
// now reads the tenant's bucket index only.
func TestNonOwnerReadsOnlyTheIndex(t *testing.T) {
	dir := t.TempDir()
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	writeReplicas(t, dir, testPushes(start)[:60], 2, start.UnixNano(), 7*time.Minute, time.Minute)
	now := start.Add(30 * time.Minute) // no range complete yet: no job
	owner, err := New(Options{Config: faultCfg, Bucket: bkt, Dir: t.TempDir(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := owner.RunOnce(context.Background()); err != nil { // writes the index
		t.Fatal(err)
	}
	lc := &listCount{Bucket: bkt, prefix: "t/"}
	other, err := New(Options{Config: faultCfg, Bucket: lc, Dir: t.TempDir(), Now: func() time.Time { return now },
		Owns: func(string, uint32) (bool, error) { return false, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := lc.n.Load(); n != 0 {
		t.Fatalf("an instance owning nothing of the tenant listed it %d times", n)
	}
	// Once a job exists, an instance owning it (not the tenant) lists the
	// tenant and runs it.
	now = start.Add(2 * time.Hour)
	tenantOnly, err := New(Options{Config: faultCfg, Bucket: bkt, Dir: t.TempDir(), Now: func() time.Time { return now },
		Owns: func(_ string, key uint32) (bool, error) { return key == TenantToken("t"), nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := tenantOnly.RunOnce(context.Background()); err != nil { // the index, with the jobs to plan
		t.Fatal(err)
	}
	jobOwner, err := New(Options{Config: faultCfg, Bucket: lc, Dir: t.TempDir(), Now: func() time.Time { return now },
		Owns: func(_ string, key uint32) (bool, error) { return key != TenantToken("t"), nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := jobOwner.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if js := jobOwner.Status().Jobs; len(js) == 0 || js[0].Result != "success" || lc.n.Load() == 0 {
		t.Fatalf("the jobs' owner: jobs %+v, %d listings", js, lc.n.Load())
	}
	// A stale index (its writer down) is not trusted: the tenant is listed.
	before := lc.n.Load()
	now = now.Add(time.Hour)
	if err := other.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if lc.n.Load() == before {
		t.Fatal("with a stale index the tenant was not listed")
	}
}
