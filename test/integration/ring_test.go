package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/internal/testutil"
)

// node is one ingester of a test cluster; its flags stay the same across restarts.
type node struct {
	id   string
	port int
	args []string
	proc *testutil.Process
}

type cluster struct {
	t      *testing.T
	nodes  []*node
	bucket string
}

// startCluster runs n ingesters on loopback ports forming one ring (RF 3),
// sharing a filesystem bucket; zones, when given, name each node's zone.
func startCluster(t *testing.T, n int, zones ...string) *cluster {
	return startClusterOpts(t, n, clusterOptions{zones: zones})
}

// clusterOptions shape a test cluster: zones name each node's zone, bucket
// replaces the shared filesystem bucket's flags (e.g. an S3 server's), extra
// flags go to every node.
type clusterOptions struct {
	zones  []string
	bucket []string
	extra  []string
}

// startClusterOpts is the one way the tests start a ring of real ingesters.
func startClusterOpts(t *testing.T, n int, o clusterOptions) *cluster {
	c := &cluster{t: t}
	if o.bucket == nil {
		c.bucket = t.TempDir()
		o.bucket = []string{"-storage.filesystem.dir=" + c.bucket}
	}
	ml := make([]int, n)
	for i := range ml {
		ml[i] = testutil.FreePort(t)
	}
	for i := 0; i < n; i++ {
		nd := &node{id: fmt.Sprintf("ingester-%d", i), port: testutil.FreePort(t)}
		nd.args = []string{
			"-data-dir=" + t.TempDir(), "-log.level=warn",
			"-ingester.ring.instance-id=" + nd.id, "-memberlist.bind-port=" + strconv.Itoa(ml[i]),
			"-ingester.ring.heartbeat-period=500ms", "-ingester.ring.heartbeat-timeout=5s",
		}
		nd.args = append(append(nd.args, o.bucket...), o.extra...)
		for j := 0; j < n; j++ {
			if j != i {
				nd.args = append(nd.args, "-memberlist.join=127.0.0.1:"+strconv.Itoa(ml[j]))
			}
		}
		if len(o.zones) > 0 {
			nd.args = append(nd.args, "-ingester.ring.instance-zone="+o.zones[i], "-ingester.ring.zone-awareness-enabled")
		}
		c.nodes = append(c.nodes, nd)
	}
	// Start them together: readiness waits for the ring to settle.
	var wg sync.WaitGroup
	for _, nd := range c.nodes {
		wg.Add(1)
		go func(nd *node) { defer wg.Done(); nd.proc = testutil.StartIngester(t, nd.port, nd.args...) }(nd)
	}
	wg.Wait()
	c.waitRing(n, n)
	return c
}

func (c *cluster) restart(i int) {
	nd := c.nodes[i]
	nd.proc = testutil.StartIngester(c.t, nd.port, nd.args...)
}

func (c *cluster) url(i int) string { return c.nodes[i].proc.URL }

type ringPage struct {
	Shards []struct {
		ID     string   `json:"id"`
		State  string   `json:"state"`
		Tokens []uint32 `json:"tokens"`
	} `json:"shards"`
}

func ringOf(t *testing.T, url string) ringPage {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/ring?tokens=true", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p ringPage
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p ringPage) states() map[string]string {
	out := map[string]string{}
	for _, s := range p.Shards {
		out[s.ID] = s.State
	}
	return out
}

func (p ringPage) tokens(id string) []uint32 {
	for _, s := range p.Shards {
		if s.ID == id {
			return s.Tokens
		}
	}
	return nil
}

// waitRing waits until the first live node sees members members, active of them ACTIVE.
func (c *cluster) waitRing(members, active int) ringPage {
	c.t.Helper()
	var last ringPage
	for i := 0; i < 300; i++ {
		for _, nd := range c.nodes {
			if nd.proc == nil || nd.proc.Exited() {
				continue
			}
			last = ringOf(c.t, nd.proc.URL)
			n := 0
			for _, s := range last.Shards {
				if s.State == "ACTIVE" {
					n++
				}
			}
			if len(last.Shards) == members && n == active {
				return last
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("ring did not reach %d members with %d ACTIVE: %v", members, active, last.states())
	return last
}

// pusher pushes the heap profile through the given ingesters round-robin,
// retrying a failed push once on the next one, and records what was acknowledged.
type pusher struct {
	raw   []byte
	stamp func() []byte // when set, the profile to push (e.g. re-stamped with the time of the push)
	mu    sync.Mutex
	acked []string
	fails []error
	tried int
}

func (p *pusher) run(ctx context.Context, urls func() []string, retry bool) {
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 100000; i++ {
				us := urls()
				id := uuid.NewString()
				req := &pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
					Labels:  []*typesv1.LabelPair{{Name: "service_name", Value: "heap"}, {Name: "instance", Value: strconv.Itoa(i % 20)}, {Name: "worker", Value: strconv.Itoa(w)}},
					Samples: []*pushv1.RawSample{{RawProfile: p.profile(), ID: id}},
				}}}
				var err error
				for attempt := 0; attempt < 2; attempt++ {
					u := us[(i+w+attempt)%len(us)]
					cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					_, err = pushv1connect.NewPusherServiceClient(http.DefaultClient, u).Push(cctx, connect.NewRequest(req))
					cancel()
					if err == nil || !retry {
						break
					}
				}
				p.mu.Lock()
				p.tried++
				if err == nil {
					p.acked = append(p.acked, id)
				} else {
					p.fails = append(p.fails, err)
				}
				p.mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}(w)
	}
	wg.Wait()
}

func (p *pusher) profile() []byte {
	if p.stamp != nil {
		return p.stamp()
	}
	return p.raw
}

func (p *pusher) snapshot() (acked []string, fails []error, tried int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.acked...), append([]error(nil), p.fails...), p.tried
}

func newPusher(t *testing.T) (*pusher, int64) {
	dir, perProfile := heapCorpus(t)
	raw, err := os.ReadFile(filepath.Join(dir, "heap.pb.gz"))
	if err != nil {
		t.Fatal(err)
	}
	return &pusher{raw: raw}, perProfile
}

// checkExactlyOnce queries through url: every acknowledged profile is counted
// once, and nothing is counted that was never attempted.
func checkExactlyOnce(t *testing.T, url string, acked []string, tried int, perProfile int64) {
	t.Helper()
	all, got := countProfiles(t, url, acked, perProfile)
	t.Logf("acknowledged %d of %d attempted; stored %.2f, of the acknowledged %.2f", len(acked), tried, all, got)
	if got != float64(len(acked)) {
		t.Fatalf("acknowledged profiles counted %.3f times in all, want %d", got, len(acked))
	}
	if all != float64(int64(all)) || all > float64(tried) || all < float64(len(acked)) {
		t.Fatalf("stored %.3f profiles: want a whole number between %d and %d", all, len(acked), tried)
	}
}

func sameTokens(a, b []uint32) bool {
	if len(a) == 0 || len(a) != len(b) {
		return false
	}
	a, b = append([]uint32(nil), a...), append([]uint32(nil), b...)
	sort.Slice(a, func(i, j int) bool { return a[i] < a[j] })
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// 1. RF 3: kill -9 one ingester under load; pushes keep succeeding; it comes
// back with its tokens and WAL; every acknowledged profile counted once.
func TestRingKillOneReplica(t *testing.T) {
	c := startCluster(t, 3)
	p, per := newPusher(t)
	tokens := ringOf(t, c.url(0)).tokens("ingester-2")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx, func() []string { return []string{c.url(0), c.url(1)} }, false); close(done) }()
	time.Sleep(1500 * time.Millisecond)
	c.nodes[2].proc.Kill()
	time.Sleep(2 * time.Second)
	ackedDown, failsDown, _ := p.snapshot()
	c.restart(2)
	c.waitRing(3, 3)
	time.Sleep(time.Second)
	cancel()
	<-done
	acked, fails, tried := p.snapshot()
	if len(failsDown) > 0 || len(fails) > 0 {
		t.Fatalf("%d pushes failed with one replica down: %v", len(fails), fails[0])
	}
	if after := ringOf(t, c.url(0)).tokens("ingester-2"); !sameTokens(tokens, after) {
		t.Fatalf("ingester-2 came back with other tokens (%d before, %d after)", len(tokens), len(after))
	}
	t.Logf("%d acknowledged while a replica was down", len(ackedDown))
	checkExactlyOnce(t, c.url(2), acked, tried, per)
}

// 2. kill -9 two of three: pushes fail with a clear quorum error; nothing
// acknowledged is lost once they are back.
func TestRingKillTwoReplicas(t *testing.T) {
	c := startCluster(t, 3)
	p, per := newPusher(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx, func() []string { return []string{c.url(0)} }, false); close(done) }()
	time.Sleep(time.Second)
	c.nodes[1].proc.Kill()
	c.nodes[2].proc.Kill()
	time.Sleep(2 * time.Second)
	cancel()
	<-done
	acked, fails, tried := p.snapshot()
	if len(fails) == 0 {
		t.Fatal("pushes succeeded with two of three replicas dead")
	}
	msg := fails[len(fails)-1].Error()
	if connect.CodeOf(fails[len(fails)-1]) != connect.CodeUnavailable || !strings.Contains(msg, "replicas failed") {
		t.Fatalf("want a quorum error naming the replicas, got %v", msg)
	}
	t.Logf("quorum error: %s", msg)
	c.restart(1)
	c.restart(2)
	c.waitRing(3, 3)
	checkExactlyOnce(t, c.url(1), acked, tried, per)
}

// 3. Rolling restart (SIGTERM) of all three, one at a time: a client that
// retries once sees no failure, and nothing is lost.
func TestRingRollingRestart(t *testing.T) {
	c := startCluster(t, 3)
	p, per := newPusher(t)
	tokens := ringOf(t, c.url(0))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var urlsMu sync.Mutex
	live := []string{c.url(0), c.url(1), c.url(2)}
	urls := func() []string { urlsMu.Lock(); defer urlsMu.Unlock(); return append([]string(nil), live...) }
	go func() { p.run(ctx, urls, true); close(done) }()
	for i := range c.nodes {
		time.Sleep(time.Second)
		urlsMu.Lock()
		live = nil
		for j := range c.nodes {
			if j != i {
				live = append(live, c.url(j))
			}
		}
		urlsMu.Unlock()
		start := time.Now()
		if err := c.nodes[i].proc.Stop(30 * time.Second); err != nil {
			t.Fatalf("stopping %s: %v", c.nodes[i].id, err)
		}
		t.Logf("%s stopped in %s", c.nodes[i].id, time.Since(start).Round(time.Millisecond))
		c.restart(i)
		c.waitRing(3, 3)
		urlsMu.Lock()
		live = []string{c.url(0), c.url(1), c.url(2)}
		urlsMu.Unlock()
	}
	time.Sleep(time.Second)
	cancel()
	<-done
	acked, fails, tried := p.snapshot()
	if len(fails) > 0 {
		t.Fatalf("%d pushes failed even with a retry: %v", len(fails), fails[0])
	}
	after := ringOf(t, c.url(0))
	for _, nd := range c.nodes {
		if !sameTokens(tokens.tokens(nd.id), after.tokens(nd.id)) {
			t.Fatalf("%s changed its tokens across the restart", nd.id)
		}
	}
	checkExactlyOnce(t, c.url(0), acked, tried, per)
}

// 4. Scale 5 → 3: prepare-shutdown on the two leaving, then stop them: they
// flush to the bucket and leave the ring; every profile still counted once.
func TestRingScaleDown(t *testing.T) {
	c := startCluster(t, 5)
	p, per := newPusher(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		p.run(ctx, func() []string { return []string{c.url(0), c.url(1), c.url(2)} }, true)
		close(done)
	}()
	time.Sleep(2 * time.Second)
	cancel()
	<-done
	acked, fails, tried := p.snapshot()
	if len(fails) > 0 {
		t.Fatalf("pushes failed: %v", fails[0])
	}
	for _, i := range []int{3, 4} {
		resp, err := http.Post(c.nodes[i].proc.InternalURL+"/ingester/prepare-shutdown", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("prepare-shutdown on %s: %s", c.nodes[i].id, resp.Status)
		}
	}
	for _, i := range []int{3, 4} {
		if err := c.nodes[i].proc.Stop(2 * time.Minute); err != nil {
			t.Fatalf("final stop of %s: %v\n%s", c.nodes[i].id, err, c.nodes[i].proc.Log())
		}
	}
	page := c.waitRing(3, 3)
	for id := range page.states() {
		if id == "ingester-3" || id == "ingester-4" {
			t.Fatalf("%s is still in the ring: %v", id, page.states())
		}
	}
	entries, _ := os.ReadDir(filepath.Join(c.bucket, "anonymous"))
	if len(entries) == 0 {
		t.Fatal("the leaving ingesters uploaded nothing to the bucket")
	}
	for _, i := range []int{3, 4} {
		if _, err := os.Stat(filepath.Join(strings.TrimPrefix(c.nodes[i].args[0], "-data-dir="), "tokens")); !os.IsNotExist(err) {
			t.Fatalf("%s kept its tokens file after a final stop: %v", c.nodes[i].id, err)
		}
	}
	checkExactlyOnce(t, c.url(0), acked, tried, per)
}

// 5. Zones: 3 zones × 1 ingester; with one zone down writes and reads go on.
func TestRingZoneDown(t *testing.T) {
	c := startCluster(t, 3, "zone-a", "zone-b", "zone-c")
	p, per := newPusher(t)
	c.nodes[2].proc.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p.run(ctx, func() []string { return []string{c.url(0), c.url(1)} }, false)
	acked, fails, tried := p.snapshot()
	if len(fails) > 0 || len(acked) == 0 {
		t.Fatalf("with zone-c down: %d acknowledged, %d failed (%v)", len(acked), len(fails), fails)
	}
	checkExactlyOnce(t, c.url(1), acked, tried, per)
}
