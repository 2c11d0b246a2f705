package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore/providers/filesystem"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/internal/load"
	"github.com/hearth-dev/hearth/internal/testutil"
	"github.com/hearth-dev/hearth/test/e2e/platform"
)

// compactionE2EArgs are added to every ingester of TestCompactionAfterRolloutAndScaleDown
// (the Ingester spec has no compactor fields; the blocks are cut every 2 s through
// spec.blocks.maxBlockDuration): ranges of 5 s and 20 s, each compacted 4 s after its
// end, marked blocks deleted 5 s after their mark, a pass every second.
var compactionE2EArgs = []string{
	"-compactor.block-ranges=5s,20s", "-compactor.compaction-interval=1s",
	"-compactor.first-level-compaction-wait-period=4s", "-compactor.deletion-delay=5s",
}

// TestCompactionAfterRolloutAndScaleDown is issue 12's end-to-end test on the operator
// platform: an Ingester of 4 pods (RF 3: a scale-down to 2 would go below the
// replication factor, so it is 4 → 3) cuts blocks every 2 s into a filesystem bucket
// shared by its pods, and every pod compacts it. Under a steady load the image changes
// (a rollout, one pod at a time) and the Ingester scales down to 3 (the leaving pod's
// stop is final: it uploads its blocks); no push fails. Then the load stops, and:
//   - every acknowledged profile is counted exactly once by a query after the rollout,
//     after the scale-down (both under load, compaction running), while the bucket
//     converges and after;
//   - the bucket converges (polled, bounded) to compacted blocks only, no deletion mark
//     left, one block per compacted range (no two live blocks' ranges overlap), a bucket
//     index, and at most 1.05 stored rows per acknowledged profile;
//   - the converged bucket alone (an ingester with an empty disk) counts the same.
func TestCompactionAfterRolloutAndScaleDown(t *testing.T) {
	testStart := time.Now()
	e := newCompactionEnv(t)
	const ns, name, tenant = "compaction", "hearth", "anonymous"
	e.apply(t, ns, name, 4, 3, map[string]any{"blocks": map[string]any{"maxBlockDuration": "2s"}})
	t.Logf("4 pods settled %s after the test began", time.Since(testStart).Round(time.Millisecond))
	rows := compactionRowsPerPush(t, e.corpus)
	bucketDir := e.bucket(ns)
	view := func(when string) compactionBucket {
		t.Helper()
		// The compactors delete blocks and marks while this reads: read again on
		// an error.
		var err error
		for i := 0; i < 5; i++ {
			var v compactionBucket
			if v, err = viewCompactionBucket(bucketDir, tenant); err == nil {
				return v
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s: reading the bucket: %v", when, err)
		return compactionBucket{}
	}
	queryURL := func() string {
		ips := e.readyIPsOf(ns, "")
		if len(ips) == 0 {
			t.Fatal("no Ready pod to query")
		}
		return "http://" + ips[0] + ":4040"
	}

	// A steady load (a bounded rate, so that two cores keep up with the pods, the
	// control plane and the compaction) against whichever pods are Ready, in runs that
	// abandon no push: stored profiles are then the acknowledged ones.
	b := e.startSteadyLoad(t, ns, 40)
	time.Sleep(3 * time.Second)

	// A rollout: a new image, one pod at a time.
	rollStart := time.Now()
	e.setImage(t, ns, name, "hearth:dev-2")
	e.waitSettled(t, ns, name, 4, 3*time.Minute)
	rolled := time.Since(rollStart)
	t.Logf("rollout of 4 pods to hearth:dev-2 took %s (under load); bucket: %s", rolled.Round(time.Millisecond), view("after the rollout"))
	e.checkExactlyOnce(t, "after the rollout (under load)", queryURL(), b)

	// A scale-down 4 → 3: hearth-3 stops for good (flushes and uploads, leaves the ring).
	leaving, err := e.p.Clientset.CoreV1().Pods(ns).Get(context.Background(), name+"-3", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	downStart := time.Now()
	e.patchSpec(t, ns, name, map[string]any{"replicas": int64(3)})
	e.waitSettled(t, ns, name, 3, 3*time.Minute)
	down := time.Since(downStart)
	stop := compactionLastStop(e.p.Agent.PodLog(ns, leaving.Name, "ingester"), string(leaving.UID))
	t.Logf("scale-down 4→3 took %s (under load); %s stopped with %q; bucket: %s", down.Round(time.Millisecond),
		leaving.Name, stop, view("after the scale-down"))
	if stop != "final=true" {
		t.Errorf("%s stopped with %q, not a final stop (flush, upload, leave the ring)", leaving.Name, stop)
	}
	e.checkExactlyOnce(t, "after the scale-down (under load)", queryURL(), b)

	time.Sleep(time.Second) // a little load on the 3 remaining pods
	b.end(t, "compaction")
	if n := b.errors.Load(); n > 0 {
		t.Errorf("%d pushes failed during the rollout and the scale-down: %v %v", n, b.codes, b.first)
	}
	var acked []string
	for _, a := range b.acks.Acks() {
		acked = append(acked, a.ID)
	}
	attempted := b.attempted.Load()
	stopped := time.Now()

	// The bucket converges while queries keep counting every profile once.
	url := queryURL()
	var v compactionBucket
	converged, checks := false, 0
	deadline := time.Now().Add(90 * time.Second)
	for i := 0; i < 1000 && time.Now().Before(deadline); i++ {
		v = view("converging")
		if v.converged() {
			converged = true
			break
		}
		if i%8 == 0 {
			checks++
			if msg := compactionCount(url, acked, attempted, e.perProfile); msg != "" {
				t.Errorf("while the bucket converges (%s after the load stopped; bucket %s): %s", time.Since(stopped).Round(time.Millisecond), v, msg)
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	convergedIn := time.Since(stopped)
	ratio := float64(v.rows) / (float64(len(acked)) * float64(rows))
	t.Logf("bucket %s %s after the load stopped: %s; %d acknowledged profiles (%d rows each), %.4f stored rows per acknowledged profile; %d exact counts while converging",
		map[bool]string{true: "converged", false: "NOT converged"}[converged], convergedIn.Round(time.Millisecond), v, len(acked), rows, ratio, checks)
	if !converged {
		t.Errorf("the bucket did not converge in %s after the load stopped: %s", convergedIn.Round(time.Second), v)
	}
	if ratio > 1.05 {
		t.Errorf("%.4f stored rows per acknowledged profile, want at most 1.05 (bucket %s)", ratio, v)
	}
	checkStored(t, "after compaction", url, b.acks, attempted, e.perProfile)
	// Pushes the load abandoned at the end of its runs may be stored too: per stored
	// profile, the bucket holds each row once (1.0000 when every copy was merged).
	all, _ := countProfiles(t, url, acked, e.perProfile)
	perStored := float64(v.rows) / (all * float64(rows))
	t.Logf("%.0f stored profiles: %.4f stored rows per stored profile", all, perStored)
	if perStored < 1 || perStored > 1.05 {
		t.Errorf("%.4f stored rows per stored profile (%d rows, %.0f profiles of %d rows), want between 1 and 1.05", perStored, v.rows, all, rows)
	}

	// The bucket alone counts the same: an ingester with an empty disk on it.
	fresh := testutil.StartIngester(t, testutil.FreePort(t), append([]string{"-data-dir=" + t.TempDir(), "-log.level=warn",
		"-storage.backend=filesystem", "-storage.filesystem.dir=" + bucketDir, "-compactor.enabled=false"}, compactionE2EArgs...)...)
	if msg := compactionCount(fresh.URL, acked, attempted, e.perProfile); msg != "" {
		t.Errorf("the bucket alone: %s", msg)
	}
	if alone, _ := countProfiles(t, fresh.URL, acked, e.perProfile); alone != all {
		t.Errorf("the bucket alone holds %.0f profiles, the Ingester counted %.0f", alone, all)
	}

	// What the compactors of the remaining pods did (a restarted pod's list starts over).
	jobs, in, out, dups := 0, int64(0), int64(0), int64(0)
	for _, ip := range e.readyIPsOf(ns, "") {
		st, err := compactorStatus("http://" + ip + ":4041")
		if err != nil {
			t.Errorf("compactor status of %s: %v", ip, err)
			continue
		}
		for _, j := range st.Jobs {
			if j.Result == "success" {
				jobs++
				in += j.RowsIn
				out += j.RowsOut
				dups += j.Duplicates
			}
		}
	}
	t.Logf("compactors of the remaining pods list %d successful jobs: %d rows in, %d out, %d duplicates dropped", jobs, in, out, dups)
	if jobs == 0 {
		t.Error("no compactor of the remaining pods lists a successful job")
	}
	t.Logf("scenario took %s (rollout %s, scale-down %s, convergence %s)", time.Since(testStart).Round(time.Millisecond),
		rolled.Round(time.Millisecond), down.Round(time.Millisecond), convergedIn.Round(time.Millisecond))
}

// newCompactionEnv starts a platform whose pods share a filesystem bucket per namespace
// and run the compactor with short ranges (compactionE2EArgs).
func newCompactionEnv(t testing.TB) *scenarioEnv {
	bucketRoot := t.TempDir()
	p, _ := startPlatform(t, func(o *platform.Options) {
		o.IngesterArgs = append([]string{"-storage.filesystem.dir=" + bucketRoot + "/$(POD_NAMESPACE)"}, compactionE2EArgs...)
	})
	dyn, err := dynamic.NewForConfig(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	dir, perProfile := heapCorpus(t)
	return &scenarioEnv{p: p, dyn: dyn, bucketRoot: bucketRoot, corpus: dir, perProfile: perProfile}
}

// checkExactlyOnce checks, under load, that every profile acknowledged so far is counted
// exactly once through url, and that the total is a whole number of profiles. (The
// total's upper bound, the pushes attempted, needs the load stopped: see checkStored.)
func (e *scenarioEnv) checkExactlyOnce(t testing.TB, when, url string, b *background) {
	t.Helper()
	var ids []string
	for _, a := range b.acks.Acks() {
		ids = append(ids, a.ID)
	}
	if msg := compactionCount(url, ids, math.MaxInt64, e.perProfile); msg != "" {
		t.Errorf("%s: %s", when, msg)
		return
	}
	t.Logf("%s: all %d acknowledged profiles counted exactly once", when, len(ids))
}

// compactionCount says "" when every one of ids is counted exactly once through url and
// the total is a whole number of profiles, at least len(ids) and at most attempted.
func compactionCount(url string, ids []string, attempted int64, perProfile int64) string {
	all, acked, err := countProfilesErr(url, ids, perProfile)
	switch {
	case err != nil:
		return err.Error()
	case acked != float64(len(ids)):
		return fmt.Sprintf("%d acknowledged profiles, %.3f counted", len(ids), acked)
	case all != math.Trunc(all):
		return fmt.Sprintf("%.3f profiles stored in all: one is partly there", all)
	case all < float64(len(ids)) || all > float64(attempted):
		return fmt.Sprintf("%.0f profiles stored in all, %d acknowledged, %d attempted", all, len(ids), attempted)
	}
	return ""
}

// compactionRowsPerPush is how many rows one push of the corpus stores: one per sample
// type of its profile.
func compactionRowsPerPush(t testing.TB, corpus string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(corpus, "heap.pb.gz"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := profile.ParseData(b)
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(p.SampleType))
}

// compactionBucket is a tenant's blocks in a filesystem bucket.
type compactionBucket struct {
	raw, marked, partial int
	levels               map[int]int // live compacted blocks by level
	rows                 int64       // rows of the live blocks, ingesters' and compacted
	overlap              string      // two live compacted blocks whose ranges overlap
	index                bool        // bucket-index.json exists
}

// converged: only compacted blocks, one per range, no marked block left, and an index.
func (v compactionBucket) converged() bool {
	n := 0
	for _, c := range v.levels {
		n += c
	}
	return v.raw == 0 && v.marked == 0 && v.overlap == "" && v.index && n > 0
}

func (v compactionBucket) String() string {
	var lv []string
	for l, n := range v.levels {
		lv = append(lv, fmt.Sprintf("L%d=%d", l, n))
	}
	sort.Strings(lv)
	s := fmt.Sprintf("ingesters' blocks %d, compacted [%s], marked %d, incomplete %d, rows %d, index %v",
		v.raw, strings.Join(lv, " "), v.marked, v.partial, v.rows, v.index)
	if v.overlap != "" {
		s += ", overlapping: " + v.overlap
	}
	return s
}

// viewCompactionBucket reads a tenant's blocks and deletion marks from a filesystem
// bucket, as a reader of the bucket sees them (a block without meta.json is incomplete).
func viewCompactionBucket(dir, tenant string) (compactionBucket, error) {
	v := compactionBucket{levels: map[int]int{}}
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		return v, err
	}
	ctx := context.Background()
	marks, err := block.ListDeletionMarks(ctx, bkt, tenant, nil)
	if err != nil {
		return v, err
	}
	type crange struct {
		id         ulid.ULID
		level      int
		start, end int64
	}
	var ranges []crange
	err = bkt.Iter(ctx, tenant+"/", func(name string) error {
		if name == block.IndexPath(tenant) {
			v.index = true
		}
		if !strings.HasSuffix(name, "/") {
			return nil
		}
		id, err := ulid.ParseStrict(path.Base(strings.TrimSuffix(name, "/")))
		if err != nil {
			return nil // markers/
		}
		m, err := block.ReadMeta(ctx, bkt, tenant, id)
		if err != nil {
			v.partial++ // being uploaded or deleted
			return nil
		}
		if marks[id] != nil {
			v.marked++
			return nil
		}
		v.rows += m.Stats.Profiles
		if m.Compaction == nil {
			v.raw++
			return nil
		}
		c := m.Compaction
		v.levels[c.Level]++
		for _, r := range ranges {
			if c.RangeStart < r.end && r.start < c.RangeEnd && v.overlap == "" {
				v.overlap = fmt.Sprintf("%s (L%d) and %s (L%d)", id, c.Level, r.id, r.level)
			}
		}
		ranges = append(ranges, crange{id, c.Level, c.RangeStart, c.RangeEnd})
		return nil
	})
	return v, err
}

type compactorJobs struct {
	Jobs []struct {
		Result     string `json:"result"`
		RowsIn     int64  `json:"rows_in"`
		RowsOut    int64  `json:"rows_out"`
		Duplicates int64  `json:"duplicates"`
	} `json:"jobs"`
}

// compactorStatus reads GET /compactor/status?format=json.
func compactorStatus(url string) (compactorJobs, error) {
	var st compactorJobs
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/compactor/status?format=json", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /compactor/status: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// compactionLastStop is what the last `ingester stopped` line of one pod incarnation (its
// UID) says: final=true or final=false ("" when there is none). PodLog concatenates the
// logs of every incarnation of a pod name (a rollout made a new one) in no set order.
func compactionLastStop(podLog, uid string) string {
	out := ""
	for _, section := range strings.Split(podLog, "== ")[1:] {
		header, body, _ := strings.Cut(section, "\n")
		if !strings.Contains(header, uid) {
			continue
		}
		for _, line := range strings.Split(body, "\n") {
			if strings.Contains(line, `msg="ingester stopped"`) {
				switch {
				case strings.Contains(line, "final=true"):
					out = "final=true"
				case strings.Contains(line, "final=false"):
					out = "final=false"
				}
			}
		}
	}
	return out
}

// startSteadyLoad is startLoadAt at rate pushes per second, in runs of rate pushes
// (about a second each) against whichever pod is Ready at the time: a run ends once its
// pushes are answered, so that no push is abandoned (and maybe stored unacknowledged)
// but at the very end. Stored profiles then hardly exceed acknowledged ones.
func (e *scenarioEnv) startSteadyLoad(t testing.TB, ns string, rate float64) *background {
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{acks: &load.AckLog{}, stop: cancel, done: make(chan struct{}), codes: map[string]int64{}, first: map[string]string{}}
	go func() {
		defer close(b.done)
		for i := 0; ctx.Err() == nil; i++ {
			ips := e.readyIPsOf(ns, "")
			if len(ips) == 0 {
				select {
				case <-ctx.Done():
				case <-time.After(250 * time.Millisecond):
				}
				continue
			}
			s, err := load.Run(ctx, load.Config{URL: "http://" + ips[i%len(ips)] + ":4040", Dir: e.corpus, Workers: 2, Series: 20,
				Rate: rate, MaxPushes: int64(math.Max(1, rate)), Acked: b.record})
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("load: %v", err)
				}
				return
			}
			b.attempted.Add(s.Pushes + s.Abandoned)
			b.pushes.Add(s.Pushes)
			b.errors.Add(s.Errors)
			b.mu.Lock()
			for k, v := range s.ErrorsByCode {
				b.codes[k] += v
				if _, seen := b.first[k]; !seen {
					b.first[k] = s.FirstErrors[k]
				}
			}
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() { b.stop(); <-b.done })
	return b
}
