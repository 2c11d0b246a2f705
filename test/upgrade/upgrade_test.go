// Package upgrade runs the previous release and this one together, as a
// rollout does (docs/upgrading.md): a ring of the previous release under
// load, upgraded member by member on the same data directories and bucket,
// then one member rolled back.
package upgrade

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/pprof/profile"
	"github.com/google/uuid"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// proc is one running `hearth ingester` of either release.
type proc struct {
	bin  string
	args []string
	cmd  *exec.Cmd
	log  *testutil.SyncBuffer
	done chan struct{}
	err  error
}

// member is one ingester of the ring: its ports, data directory and
// identity stay the same whichever release runs it.
type member struct {
	id               string
	port, internal   int
	memberlist       int
	dataDir          string
	release          string // "previous" or "current"
	p                *proc
	url, internalURL string // internalURL: the internal listener (current), the public one (previous)
}

type ring struct {
	t       *testing.T
	members []*member
	bucket  string
	prev    string // the previous release's binary
	cur     string // this tree's binary
}

// compactionArgs (current release): blocks cut every 2 s; ranges of 5 s and
// 20 s compacted 4 s after their end; marked blocks deleted after 5 s.
var compactionArgs = []string{
	"-compactor.block-ranges=5s,20s", "-compactor.compaction-interval=1s",
	"-compactor.first-level-compaction-wait-period=4s", "-compactor.deletion-delay=5s",
}

// args are m's flags for release rel: what both releases know, plus the
// internal listener and the compactor for this one.
func (r *ring) args(m *member, rel string) []string {
	a := []string{"ingester",
		"-server.http-listen-address=127.0.0.1", "-server.http-listen-port=" + strconv.Itoa(m.port),
		"-data-dir=" + m.dataDir, "-log.level=warn", "-storage.filesystem.dir=" + r.bucket,
		"-ingester.ring.instance-id=" + m.id, "-ingester.ring.instance-addr=127.0.0.1",
		"-memberlist.bind-addr=127.0.0.1", "-memberlist.advertise-addr=127.0.0.1", "-memberlist.bind-port=" + strconv.Itoa(m.memberlist),
		"-ingester.ring.heartbeat-period=500ms", "-ingester.ring.heartbeat-timeout=5s", "-ingester.ring.min-ready-duration=0s",
		"-ingester.max-block-duration=2s",
	}
	for _, o := range r.members {
		if o != m {
			a = append(a, "-memberlist.join=127.0.0.1:"+strconv.Itoa(o.memberlist))
		}
	}
	if rel == "current" {
		a = append(a, "-server.internal-listen-address=127.0.0.1", "-server.internal-listen-port="+strconv.Itoa(m.internal))
		a = append(a, compactionArgs...)
	}
	return a
}

// start runs m as release rel and waits for /ready.
func (r *ring) start(m *member, rel string) {
	r.t.Helper()
	bin := r.prev
	m.internalURL = fmt.Sprintf("http://127.0.0.1:%d", m.port)
	if rel == "current" {
		bin = r.cur
		m.internalURL = fmt.Sprintf("http://127.0.0.1:%d", m.internal)
	}
	m.release, m.url = rel, fmt.Sprintf("http://127.0.0.1:%d", m.port)
	p := &proc{bin: bin, args: r.args(m, rel), log: &testutil.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	m.p = p
	r.t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		if r.t.Failed() {
			r.t.Logf("log of %s (%s release):\n%s", m.id, rel, p.log.String())
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for n := 0; ; n++ {
		select {
		case <-p.done:
			r.t.Fatalf("%s (%s release) exited before it was ready: %v\n%s", m.id, rel, p.err, p.log.String())
		default:
		}
		if resp, err := http.Get(m.url + "/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) || n > 2000 {
			r.t.Fatalf("%s (%s release) not ready after 90 s\n%s", m.id, rel, p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM (a restart: tokens and WAL stay) and waits for the exit.
func (r *ring) stop(m *member) {
	r.t.Helper()
	_ = m.p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.p.done:
		if m.p.err != nil {
			r.t.Fatalf("%s (%s release) stopped with %v\n%s", m.id, m.release, m.p.err, m.p.log.String())
		}
	case <-time.After(2 * time.Minute):
		r.t.Fatalf("%s (%s release) did not stop within 2 minutes of SIGTERM", m.id, m.release)
	}
}

func (r *ring) live() []string {
	var out []string
	for _, m := range r.members {
		if m.p != nil {
			select {
			case <-m.p.done:
			default:
				out = append(out, m.url)
			}
		}
	}
	return out
}

// waitActive waits until member via sees n ACTIVE members.
func (r *ring) waitActive(via *member, n int) {
	r.t.Helper()
	var last string
	for i := 0; i < 600; i++ {
		req, _ := http.NewRequest(http.MethodGet, via.url+"/ring", nil)
		req.Header.Set("Accept", "application/json")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			var page struct {
				Shards []struct {
					ID    string `json:"id"`
					State string `json:"state"`
				} `json:"shards"`
			}
			err = json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			active := 0
			last = fmt.Sprint(page.Shards)
			for _, s := range page.Shards {
				if s.State == "ACTIVE" {
					active++
				}
			}
			if err == nil && active == n && len(page.Shards) == n {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("%s does not see %d ACTIVE members: %s", via.id, n, last)
}

// pusher pushes the heap profile, stamped with the time of the push, through
// the live members round-robin (a failure is retried once on the next), and
// records what was acknowledged.
type pusher struct {
	base  *profile.Profile
	mu    sync.Mutex
	acked []string
	tried int
	fails []string
}

func (p *pusher) body() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.base.TimeNanos = time.Now().UnixNano()
	var b bytes.Buffer
	if err := p.base.Write(&b); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func (p *pusher) run(ctx context.Context, urls func() []string) {
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 100000; i++ {
				us := urls()
				if len(us) == 0 {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				id := uuid.NewString()
				req := &pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
					Labels:  []*typesv1.LabelPair{{Name: "service_name", Value: "heap"}, {Name: "instance", Value: strconv.Itoa(i % 10)}, {Name: "worker", Value: strconv.Itoa(w)}},
					Samples: []*pushv1.RawSample{{RawProfile: p.body(), ID: id}},
				}}}
				var err error
				for attempt := 0; attempt < 2; attempt++ {
					cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					_, err = pushv1connect.NewPusherServiceClient(http.DefaultClient, us[(i+w+attempt)%len(us)]).Push(cctx, connect.NewRequest(req))
					cancel()
					if err == nil {
						break
					}
				}
				p.mu.Lock()
				p.tried++
				if err == nil {
					p.acked = append(p.acked, id)
				} else if len(p.fails) < 20 {
					p.fails = append(p.fails, err.Error())
				}
				p.mu.Unlock()
				time.Sleep(25 * time.Millisecond)
			}
		}(w)
	}
	wg.Wait()
}

func (p *pusher) snapshot() (acked []string, tried int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.acked...), p.tried
}

// exactlyOnce asks m for the stored heap profiles: every acknowledged one
// counted once, nothing counted that was never attempted (pushes in flight
// may be stored before they are counted as tried). A query can meet a block
// the compactor just deleted: the test's deletion delay (5 s) is shorter than
// the previous release's bucket list interval (30 s, no flag), so it may read
// a listed block that is gone until it lists again. Such an error is retried
// for one list interval, a wrong count is not.
func (r *ring) exactlyOnce(p *pusher, m *member, per int64, what string) {
	r.t.Helper()
	acked, _ := p.snapshot()
	var all, got float64
	var err error
	for i := 0; i < 35; i++ {
		if all, got, err = testutil.CountProfiles(m.url, acked, per); err == nil {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		r.t.Fatalf("%s: querying %s (%s release): %v", what, m.id, m.release, err)
	}
	_, tried := p.snapshot()
	r.t.Logf("%s: via %s (%s release): %d acknowledged, counted %.2f of them, %.2f stored of %d attempted", what, m.id, m.release, len(acked), got, all, tried)
	if got != float64(len(acked)) || all != float64(int64(all)) || all > float64(tried+3) || len(acked) == 0 {
		r.t.Fatalf("%s: via %s (%s release): acknowledged %d, counted %.3f of them, %.3f in all (attempted %d)", what, m.id, m.release, len(acked), got, all, tried)
	}
}

// metric sums a metric family at url/metrics.
func metric(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// bucketState counts a tenant's live blocks by kind, the deletion-marked
// ones, and whether the bucket index exists.
func bucketState(t *testing.T, dir, tenant string) (raw, compacted, marked int, index bool) {
	t.Helper()
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	marks, err := block.ListDeletionMarks(ctx, bkt, tenant, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(filepath.Join(dir, tenant, block.IndexObject))
	index = err == nil
	ents, _ := os.ReadDir(filepath.Join(dir, tenant))
	for _, e := range ents {
		id, err := ulid.Parse(e.Name())
		if err != nil {
			continue
		}
		m, err := block.ReadMeta(ctx, bkt, tenant, id)
		if err != nil {
			continue // being uploaded or deleted
		}
		switch {
		case marks[m.ULID] != nil:
			marked++
		case m.Compaction == nil:
			raw++
		default:
			compacted++
		}
	}
	return raw, compacted, marked, index
}

// TestRollingUpgradeFromPreviousRelease: a 3-ingester ring (RF 3) of the
// previous release under load; each member stopped and started as this
// build on the same data directory and bucket, one at a time, with old and
// new members serving together; every acknowledged profile counted exactly
// once after each step, and after this build's compactor has merged the
// blocks of both releases; then one member rolled back to the previous
// release, which reads everything (its WAL and blocks written by this
// build) and counts the same.
func TestRollingUpgradeFromPreviousRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("a rollout of real processes of two releases")
	}
	r := &ring{t: t, bucket: t.TempDir(), prev: releaseBinary(t, previousRelease, previousReleaseName), cur: testutil.Hearth(t)}
	for i := 0; i < 3; i++ {
		r.members = append(r.members, &member{id: fmt.Sprintf("ingester-%d", i), port: testutil.FreePort(t), internal: testutil.FreePort(t),
			memberlist: testutil.FreePort(t), dataDir: filepath.Join(t.TempDir(), "data")})
	}
	// The previous release's ring, started together (readiness waits for the ring).
	var wg sync.WaitGroup
	for _, m := range r.members {
		wg.Add(1)
		go func(m *member) { defer wg.Done(); r.start(m, "previous") }(m)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	r.waitActive(r.members[0], 3)

	dir, per := testutil.HeapCorpus(t)
	raw, err := os.ReadFile(filepath.Join(dir, "heap.pb.gz"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := profile.ParseData(raw)
	if err != nil {
		t.Fatal(err)
	}
	p := &pusher{base: base}
	ctx, cancel := context.WithCancel(context.Background())
	var urlsMu sync.Mutex
	urls := func() []string { urlsMu.Lock(); defer urlsMu.Unlock(); return r.live() }
	loadDone := make(chan struct{})
	go func() { p.run(ctx, urls); close(loadDone) }()
	defer func() { cancel(); <-loadDone }()

	time.Sleep(5 * time.Second) // a few cuts (2 s blocks) uploaded by the previous release
	r.exactlyOnce(p, r.members[0], per, "previous release only")
	for i := 0; ; i++ {
		// Blocks of the previous release in the bucket, for the new compactor to merge.
		if n, _, _, _ := bucketState(t, r.bucket, "anonymous"); n > 0 {
			t.Logf("the previous release uploaded %d blocks", n)
			break
		}
		if i == 100 {
			t.Fatal("the previous release uploaded no block in 15 s (2 s blocks)")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Upgrade one member at a time, under load.
	for i, m := range r.members {
		urlsMu.Lock()
		r.stop(m)
		urlsMu.Unlock()
		r.start(m, "current")
		r.waitActive(m, 3)
		time.Sleep(3 * time.Second)
		r.exactlyOnce(p, m, per, fmt.Sprintf("%d of 3 upgraded", i+1))
		if i < 2 {
			r.exactlyOnce(p, r.members[2], per, fmt.Sprintf("%d of 3 upgraded", i+1))
		}
	}
	time.Sleep(3 * time.Second)
	cancel()
	<-loadDone
	acked, tried := p.snapshot()
	t.Logf("load: %d acknowledged of %d attempted; first failures: %v", len(acked), tried, p.fails)

	// The new compactor merges the blocks of both releases.
	prevBlocks, _, _, _ := bucketState(t, r.bucket, "anonymous")
	for _, m := range r.members {
		flush(t, m.internalURL)
	}
	var rawN, compN, markN int
	var index bool
	for i := 0; i < 900; i++ {
		rawN, compN, markN, index = bucketState(t, r.bucket, "anonymous")
		if rawN == 0 && markN == 0 && compN > 0 && index {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("bucket: %d ingester blocks before compaction; after: %d ingester blocks, %d compacted, %d marked, index %v", prevBlocks, rawN, compN, markN, index)
	if rawN != 0 || markN != 0 || compN == 0 || !index {
		t.Fatalf("the bucket did not converge: %d ingester blocks, %d compacted, %d marked, index %v", rawN, compN, markN, index)
	}
	for _, m := range r.members {
		r.exactlyOnce(p, m, per, "after compaction")
		if n := metric(t, m.url, "hearth_unsupported_format_version_total"); n != 0 {
			t.Fatalf("%s refused %v files or messages", m.id, n)
		}
	}

	// Roll one member back: the previous release reads the WAL, tokens and
	// local blocks this build wrote, and the compacted bucket.
	back := r.members[0]
	r.stop(back)
	r.start(back, "previous")
	r.waitActive(back, 3)
	r.exactlyOnce(p, back, per, "one member rolled back")
	r.exactlyOnce(p, r.members[1], per, "one member rolled back")
	// And it takes writes again, replicated to and from this build.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel2()
	before := len(acked)
	p.run(ctx2, urls)
	acked, _ = p.snapshot()
	if len(acked) <= before {
		t.Fatal("no push acknowledged after the rollback")
	}
	for _, m := range r.members {
		r.exactlyOnce(p, m, per, "pushes after the rollback")
	}
}

func flush(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/ingester/flush?wait=true", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("flush: %s", resp.Status)
	}
}
