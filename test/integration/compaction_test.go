package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/bucket"
	"github.com/hearth-dev/hearth/internal/faultbucket"
	"github.com/hearth-dev/hearth/internal/s3test"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// compactionArgs: blocks cut every 2 s; ranges of 5 s and 20 s, compacted 4 s
// after their end; marked blocks deleted after 5 s; a pass every second.
var compactionArgs = []string{
	"-ingester.max-block-duration=2s",
	"-compactor.block-ranges=5s,20s", "-compactor.compaction-interval=1s",
	"-compactor.first-level-compaction-wait-period=4s", "-compactor.deletion-delay=5s",
}

// startBucketCluster runs n ingesters (RF 3) sharing the bucket given by bucketArgs.
func startBucketCluster(t *testing.T, n int, bucketArgs []string, extra ...string) *cluster {
	return startClusterOpts(t, n, clusterOptions{bucket: bucketArgs, extra: extra})
}

// internalURLs are the live nodes' internal listeners (flush and the other
// admin endpoints are served there only).
func (c *cluster) internalURLs() []string {
	var out []string
	for _, nd := range c.nodes {
		if nd.proc != nil && !nd.proc.Exited() {
			out = append(out, nd.proc.InternalURL)
		}
	}
	return out
}

func (c *cluster) urls() []string {
	var out []string
	for _, nd := range c.nodes {
		if nd.proc != nil && !nd.proc.Exited() {
			out = append(out, nd.proc.URL)
		}
	}
	return out
}

// rowsPerPush is how many rows one push of the heap corpus stores: one per sample type.
func rowsPerPush(t *testing.T, p *pusher) int64 {
	pp, err := profile.ParseData(p.raw)
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(pp.SampleType))
}

// bucketView is a tenant's bucket as the compactor leaves it.
type bucketView struct {
	live, raw, marked int
	rows              int64 // rows of the live blocks
	overlapping       bool  // two live blocks share a compaction range
	index             bool
}

func viewBucket(t *testing.T, bkt objstore.Bucket, tenant string) bucketView {
	t.Helper()
	ctx := context.Background()
	var v bucketView
	marks, err := block.ListDeletionMarks(ctx, bkt, tenant, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ranges [][2]int64
	err = bkt.Iter(ctx, tenant+"/", func(name string) error {
		if name == tenant+"/"+block.IndexObject {
			v.index = true
		}
		if len(name) < 27 || name[len(name)-1] != '/' {
			return nil
		}
		id, err := parseULIDDir(name)
		if err != nil {
			return nil
		}
		m, err := block.ReadMeta(ctx, bkt, tenant, id)
		if err != nil {
			return nil // incomplete: being uploaded or deleted
		}
		if marks[id] != nil {
			v.marked++
			return nil
		}
		v.live++
		v.rows += m.Stats.Profiles
		if m.Compaction == nil {
			v.raw++
			return nil
		}
		for _, r := range ranges {
			if m.Compaction.RangeStart < r[1] && r[0] < m.Compaction.RangeEnd {
				v.overlapping = true
			}
		}
		ranges = append(ranges, [2]int64{m.Compaction.RangeStart, m.Compaction.RangeEnd})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func parseULIDDir(name string) (id [16]byte, err error) {
	u, err := parseULID(filepath.Base(name[:len(name)-1]))
	return u, err
}

// compactionRun pushes through a 3-ingester cluster for a while, checking
// during the pushes that every acknowledged profile is counted exactly once,
// then waits for the bucket to converge: only compacted blocks, one per range,
// at most 1.05 stored rows per stored profile, sources deleted.
func compactionRun(t *testing.T, c *cluster, bkt objstore.Bucket, kills int, between func(round int)) {
	p, per := newPusher(t)
	k := rowsPerPush(t, p)
	// Each push carries the time it is sent, so the profiles spread over
	// several ranges of every level.
	base, err := profile.ParseData(p.raw)
	if err != nil {
		t.Fatal(err)
	}
	var stampMu sync.Mutex
	p.stamp = func() []byte {
		stampMu.Lock()
		defer stampMu.Unlock()
		base.TimeNanos = time.Now().UnixNano()
		var b bytes.Buffer
		if err := base.Write(&b); err != nil {
			panic(err)
		}
		return b.Bytes()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx, c.urls, true); close(done) }()
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	rounds := max(3, kills)
	for r := 0; r < rounds; r++ {
		time.Sleep(time.Duration(2500+rng.IntN(1500)) * time.Millisecond)
		if between != nil {
			between(r)
		}
		if r < kills {
			// kill -9 the ingester running a compaction job (downloading, merging,
			// uploading, or between upload and marking) when one is caught within 3 s,
			// else one at random.
			want := []string{"download", "merge", "upload", "mark"}[r%4]
			i, stage := c.compacting(3*time.Second, want)
			if i < 0 {
				i, stage = rng.IntN(len(c.nodes)), "none seen"
			}
			t.Logf("round %d: kill -9 %s (compaction stage: %s)", r, c.nodes[i].id, stage)
			c.nodes[i].proc.Kill()
			time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
			c.restart(i)
			c.waitRing(3, 3)
		}
		ids, _, _ := p.snapshot()
		all, got := countProfiles(t, c.urls()[0], ids, per)
		_, _, tried := p.snapshot()
		t.Logf("round %d: %d acknowledged, counted %.2f of them, %.2f stored in all; bucket %+v", r, len(ids), got, all, viewBucket(t, bkt, "anonymous"))
		// Pushes in flight (3 workers) may be stored before they are counted as tried.
		if got != float64(len(ids)) || all != float64(int64(all)) || all > float64(tried+3) {
			diagnose(t, c, bkt, ids, per)
			t.Fatalf("during compaction: acknowledged %d, counted %.3f of them, %.3f in all (attempted %d)", len(ids), got, all, tried)
		}
	}
	cancel()
	<-done
	acked, _, tried := p.snapshot()
	for _, u := range c.internalURLs() {
		flush(t, u)
	}
	// Converged: nothing but compacted blocks, one per range, nothing marked left.
	var v bucketView
	for i := 0; i < 600; i++ {
		v = viewBucket(t, bkt, "anonymous")
		if v.raw == 0 && v.marked == 0 && !v.overlapping && v.live > 0 && v.index {
			break
		}
		if i%10 == 0 {
			all, got := countProfiles(t, c.urls()[0], acked, per)
			if got != float64(len(acked)) || all != float64(int64(all)) || all > float64(tried) {
				diagnose(t, c, bkt, acked, per)
				t.Fatalf("while converging: acknowledged %d, counted %.3f of them, %.3f in all", len(acked), got, all)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	all, got := countProfiles(t, c.urls()[0], acked, per)
	ratio := float64(v.rows) / (all * float64(k))
	t.Logf("converged: %+v; %d acknowledged, %.0f stored profiles, %.3f stored rows per stored profile", v, len(acked), all, ratio)
	if v.raw != 0 || v.marked != 0 || v.overlapping || !v.index {
		t.Fatalf("the bucket did not converge: %+v", v)
	}
	if got != float64(len(acked)) || all != float64(int64(all)) || all > float64(tried) {
		diagnose(t, c, bkt, acked, per)
		t.Fatalf("after compaction: acknowledged %d, counted %.3f of them, %.3f in all (attempted %d)", len(acked), got, all, tried)
	}
	if ratio > 1.05 || ratio < 1 {
		t.Fatalf("%.3f stored rows per stored profile, want at most 1.05", ratio)
	}
	// The bucket alone (a fresh ingester with an empty disk) counts the same.
	fresh := testutil.StartIngester(t, testutil.FreePort(t), append(append([]string{"-data-dir=" + t.TempDir(), "-log.level=warn", "-compactor.enabled=false"}, compactionArgs...), c.nodes[0].bucketArgs()...)...)
	all2, got2 := countProfiles(t, fresh.URL, acked, per)
	if got2 != got || all2 != all {
		t.Fatalf("from the bucket alone: %.3f acknowledged, %.3f in all; the cluster said %.3f and %.3f", got2, all2, got, all)
	}
	// Some compactor ran jobs and lists them.
	jobs := 0
	for _, u := range c.internalURLs() {
		var st struct {
			Jobs []struct {
				Result string `json:"result"`
			} `json:"jobs"`
		}
		resp, err := http.Get(u + "/compactor/status?format=json")
		if err != nil {
			t.Fatal(err)
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, j := range st.Jobs {
			if j.Result == "success" {
				jobs++
			}
		}
	}
	if jobs == 0 {
		t.Fatal("no compactor lists a successful job")
	}
	var in, out float64
	for _, u := range c.urls() {
		in += metric(t, u, "hearth_compactor_blocks_in_total")
		out += metric(t, u, "hearth_compactor_blocks_out_total")
	}
	t.Logf("compactors: %d jobs listed, %.0f blocks in, %.0f out", jobs, in, out)
	if in == 0 || out == 0 {
		t.Fatalf("hearth_compactor_blocks_in_total %.0f, _out_total %.0f", in, out)
	}
}

// compacting polls the nodes' /compactor/status for a job running in stage
// want, up to timeout, and returns the node and the stage; failing that, the
// last node seen running a job in any stage (-1 when none was seen).
func (c *cluster) compacting(timeout time.Duration, want string) (int, string) {
	deadline := time.Now().Add(timeout)
	any, anyStage := -1, ""
	for n := 0; n < 10000 && time.Now().Before(deadline); n++ {
		for i, nd := range c.nodes {
			var st struct {
				Running *struct {
					Stage string `json:"stage"`
				} `json:"running"`
			}
			resp, err := http.Get(nd.proc.InternalURL + "/compactor/status?format=json")
			if err != nil {
				continue
			}
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && st.Running != nil {
				if st.Running.Stage == want {
					return i, want
				}
				any, anyStage = i, st.Running.Stage
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return any, anyStage
}

// bucketArgs are the node's storage flags.
func (nd *node) bucketArgs() []string {
	var out []string
	for _, a := range nd.args {
		if len(a) > 10 && a[:10] == "-storage.s" || len(a) > 16 && a[:16] == "-storage.backend" || len(a) > 19 && a[:19] == "-storage.filesystem" {
			out = append(out, a)
		}
	}
	return out
}

// TestCompactionRF3Filesystem: 3 ingesters (RF 3) sharing a filesystem bucket
// with short block durations: every acknowledged profile is counted exactly once
// during and after compaction, and the bucket converges to one block per range
// holding each profile once.
func TestCompactionRF3Filesystem(t *testing.T) {
	dir := t.TempDir()
	c := startBucketCluster(t, 3, []string{"-storage.filesystem.dir=" + dir}, compactionArgs...)
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	compactionRun(t, c, bkt, 0, nil)
}

// TestCompactionRF3S3 is the same on a real S3 server, with a bucket outage
// in the middle: pushes go on, compaction fails and resumes.
func TestCompactionRF3S3(t *testing.T) {
	s3 := s3test.Start(t)
	s3.SetEnv(t)
	c := startBucketCluster(t, 3, s3Args(s3), compactionArgs...)
	bkt, err := bucket.New(context.Background(), bucket.Config{Backend: "s3", S3: bucket.S3Config{
		BucketName: s3.Bucket, Endpoint: s3.Endpoint, Region: s3.Region, Insecure: true, ForcePathStyle: true,
	}}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer bkt.Close()
	outage := func(r int) {
		if r != 1 {
			return
		}
		s3.Stop()
		time.Sleep(3 * time.Second) // compaction passes every second fail meanwhile
		s3.Restart()
	}
	compactionRun(t, c, bkt, 0, outage)
	var failures float64
	for _, u := range c.urls() {
		failures += metric(t, u, "hearth_compactor_failures_total")
	}
	// Whether a pass failed or waited out the outage in the S3 client's retries
	// depends on timing: only logged. What must hold held above: pushes were
	// acknowledged throughout, and the bucket converged afterwards.
	t.Logf("compactor failures counted during the outage: %.0f", failures)
}

// TestCompactionKill9: the same with an ingester killed with SIGKILL at a
// random moment in each of several rounds, while compaction jobs run every
// second (downloading, merging, uploading, marking, deleting).
func TestCompactionKill9(t *testing.T) {
	dir := t.TempDir()
	c := startBucketCluster(t, 3, []string{"-storage.filesystem.dir=" + dir}, compactionArgs...)
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	compactionRun(t, c, bkt, 4, nil)
}

// TestCompactionRetention: blocks older than the retention period are marked
// and deleted, and queries then return nothing for their range.
func TestCompactionRetention(t *testing.T) {
	dir := t.TempDir()
	c := startBucketCluster(t, 3, []string{"-storage.filesystem.dir=" + dir}, append(compactionArgs, "-compactor.blocks-retention-period=6s")...)
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, per := newPusher(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	p.run(ctx, c.urls, true)
	cancel()
	acked, _, _ := p.snapshot()
	if len(acked) == 0 {
		t.Fatal("nothing acknowledged")
	}
	for _, u := range c.internalURLs() {
		flush(t, u)
	}
	// Each ingester keeps its own uploaded blocks for -ingester.local-retention:
	// an ingester with an empty disk reads the bucket alone.
	fresh := testutil.StartIngester(t, testutil.FreePort(t), append([]string{"-data-dir=" + t.TempDir(), "-log.level=warn", "-compactor.enabled=false", "-storage.filesystem.dir=" + dir}, compactionArgs...)...)
	var all float64
	var v bucketView
	var left map[string][]string
	// A block stops being live when its meta.json goes, before the rest of
	// its files: wait for those too.
	for i := 0; i < 300; i++ {
		all, _ = countProfiles(t, fresh.URL, acked, per)
		v = viewBucket(t, bkt, "anonymous")
		left = blockFilesLeft(filepath.Join(dir, "anonymous"))
		if all == 0 && v.live == 0 && v.marked == 0 && len(left) == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d acknowledged; after the retention period the bucket holds %+v and a query counts %.0f", len(acked), v, all)
	if all != 0 || v.live != 0 || v.marked != 0 {
		t.Fatalf("after the retention period: %.0f profiles counted, bucket %+v", all, v)
	}
	for id, files := range left {
		t.Errorf("block %s still has files %v", id, files)
	}
}

// blockFilesLeft names the files under each block directory of a tenant's
// directory in a filesystem bucket (the directories that hold none aside).
func blockFilesLeft(tenantDir string) map[string][]string {
	left := map[string][]string{}
	entries, _ := os.ReadDir(tenantDir)
	for _, e := range entries {
		if _, err := parseULID(e.Name()); err == nil {
			files, _ := os.ReadDir(filepath.Join(tenantDir, e.Name()))
			for _, f := range files {
				left[e.Name()] = append(left[e.Name()], f.Name())
			}
		}
	}
	return left
}

func parseULID(s string) ([16]byte, error) {
	u, err := ulid.ParseStrict(s)
	return u, err
}

// diagnose names, for a few acknowledged profiles a query misses, every block
// (in the bucket, marked or not, and on each ingester's disk) that holds them.
func diagnose(t *testing.T, c *cluster, bkt objstore.Bucket, acked []string, per int64) {
	t.Helper()
	var missing []string
	for i := 0; i < len(acked) && len(missing) < 3; i += 50 {
		chunk := acked[i:min(i+50, len(acked))]
		if _, got, err := testutil.CountProfiles(c.urls()[0], chunk, per); err != nil || got == float64(len(chunk)) {
			continue
		}
		for _, id := range chunk {
			if _, got, err := testutil.CountProfiles(c.urls()[0], []string{id}, per); err == nil && got != 1 {
				missing = append(missing, id)
			}
		}
	}
	t.Logf("missing (first): %v", missing)
	want := map[[16]byte]string{}
	for _, s := range missing {
		u, err := uuid.Parse(s)
		if err == nil {
			want[u] = s
		}
	}
	scan := func(where string, b objstore.Bucket, marks map[ulid.ULID]*block.DeletionMark) {
		ctx := context.Background()
		_ = b.Iter(ctx, "anonymous/", func(name string) error {
			id, err := parseULIDDir(name)
			if err != nil {
				return nil
			}
			m, err := block.ReadMeta(ctx, b, "anonymous", id)
			if err != nil {
				t.Logf("%s: block %s: %v", where, ulid.ULID(id), err)
				return nil
			}
			r, err := block.Open(ctx, b, "anonymous/"+ulid.ULID(id).String()+"/", block.ReaderOptions{Meta: m})
			if err != nil {
				t.Logf("%s: block %s: %v", where, ulid.ULID(id), err)
				return nil
			}
			sel, err := r.Select(ctx, "", nil, -1<<63, 1<<63-1)
			if err != nil {
				t.Logf("%s: block %s: %v", where, ulid.ULID(id), err)
				return nil
			}
			for _, s := range sel.Series {
				for _, p := range s.Profiles {
					if w, ok := want[p.ID]; ok {
						t.Logf("%s: %s in block %s level %d source %q marked %+v", where, w, ulid.ULID(id), m.Level(), m.Source, marks[ulid.ULID(id)])
					}
				}
			}
			return nil
		})
	}
	marks, _ := block.ListDeletionMarks(context.Background(), bkt, "anonymous", nil)
	scan("bucket", bkt, marks)
	for _, nd := range c.nodes {
		for _, a := range nd.args {
			if strings.HasPrefix(a, "-data-dir=") {
				lb, err := filesystem.NewBucket(filepath.Join(strings.TrimPrefix(a, "-data-dir="), "blocks"))
				if err == nil {
					scan(nd.id+" local", lb, nil)
				}
			}
		}
	}
}

// TestCompactionRF3S3Faults (issue 21): 3 ingesters (RF 3) on a real S3
// server behind a fault-injecting proxy (503 answers, bodies cut off midway,
// delays, uploads and deletes that land and answer 500), short compaction
// ranges, pushes for about a minute with the faults on through the cuts,
// uploads and compaction: every acknowledged profile is counted exactly once
// whenever a query answers; once the faults stop the bucket converges to at
// most 1.05 rows per profile; no block is left with an unreadable meta.json.
func TestCompactionRF3S3Faults(t *testing.T) {
	s3 := s3test.Start(t)
	s3.SetEnv(t)
	proxy, err := faultbucket.StartProxy(s3.Endpoint, faultbucket.Config{Seed: 21, ErrorRate: 0.05, CutRate: 0.01, LandedErrorRate: 0.05, MaxDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	viaProxy := s3Args(s3)
	for i, a := range viaProxy {
		if strings.HasPrefix(a, "-storage.s3.endpoint=") {
			viaProxy[i] = "-storage.s3.endpoint=" + proxy.Addr
		}
	}
	c := startBucketCluster(t, 3, viaProxy, append(compactionArgs, "-storage.operation-timeout=20s", "-compactor.job-timeout=30s")...)
	bkt, err := bucket.New(context.Background(), bucket.Config{Backend: "s3", S3: bucket.S3Config{
		BucketName: s3.Bucket, Endpoint: s3.Endpoint, Region: s3.Region, Insecure: true, ForcePathStyle: true,
	}}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer bkt.Close()
	countTries = 50
	t.Cleanup(func() { countTries = 1 })
	proxy.SetEnabled(true)
	stretch := func(r int) {
		time.Sleep(15 * time.Second) // about a minute of pushes over the 3 rounds
		if r == 2 {
			proxy.SetEnabled(false)
			req, errs, cut, landed := proxy.Stats()
			t.Logf("faults off: %d requests, %d answered 503, %d bodies cut, %d writes landed then 500", req, errs, cut, landed)
			if errs+cut+landed == 0 {
				t.Fatal("no fault injected")
			}
		}
	}
	compactionRun(t, c, bkt, 0, stretch)
	// No block is left unreadable: every block directory's meta.json reads
	// (or is absent: a partial upload waiting for its grace), and no compactor
	// counts one.
	ctx := context.Background()
	err = bkt.Iter(ctx, "anonymous/", func(name string) error {
		id, err := ulid.ParseStrict(filepath.Base(strings.TrimSuffix(name, "/")))
		if err != nil || !strings.HasSuffix(name, "/") {
			return nil
		}
		if _, err := block.ReadMeta(ctx, bkt, "anonymous", id); err != nil && !errors.Is(err, block.ErrIncomplete) {
			t.Errorf("block %s: %v", id, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range c.urls() {
		if n := metric(t, u, "hearth_compactor_unreadable_blocks"); n != 0 {
			t.Errorf("%s: hearth_compactor_unreadable_blocks = %.0f", u, n)
		}
	}
}
