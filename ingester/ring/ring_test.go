package ring

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/dskit/kv/memberlist"
	dskitring "github.com/grafana/dskit/ring"

	"github.com/hearth-dev/hearth/internal/testutil"

	"github.com/hearth-dev/hearth/ingester/model"
)

func init() {
	// Stopped peers are the point of these tests: do not wait long for them.
	tuneMemberlist = func(c *memberlist.KVConfig) {
		c.BroadcastTimeoutForLocalUpdatesOnShutdown = time.Second
		c.LeaveTimeout = time.Second
	}
}

// Short ring timings for tests.
const (
	testHeartbeat = 200 * time.Millisecond
	testTimeout   = 2 * time.Second
	testMinReady  = 300 * time.Millisecond
)

// freePort is a loopback port no other freePort of this process returned.
func freePort(t *testing.T) int { return testutil.FreePort(t) }

// node is one ingester's ring in the test process: its own data dir, memberlist
// port and (fake) HTTP port.
type node struct {
	id       string
	zone     string
	dir      string
	mlPort   int
	httpPort int
	join     []string
	rf       int
	zoneAw   bool
	minReady time.Duration // 0: testMinReady
	ml       func(*MemberlistConfig)
	r        *Ring
}

func newNode(t *testing.T, id, zone string) *node {
	t.Helper()
	return &node{id: id, zone: zone, dir: filepath.Join(t.TempDir(), id), mlPort: freePort(t), httpPort: freePort(t), rf: 3}
}

func (n *node) mlAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.mlPort)) }

func (n *node) config() Config {
	fs := newFlagSet()
	var c Config
	c.RegisterFlags(fs)
	c.Ring.InstanceID = n.id
	c.Ring.InstanceZone = n.zone
	c.Ring.ZoneAwarenessEnabled = n.zoneAw
	c.Ring.ReplicationFactor = n.rf
	c.Ring.HeartbeatPeriod = testHeartbeat
	c.Ring.HeartbeatTimeout = testTimeout
	c.Ring.MinReadyDuration = testMinReady
	if n.minReady > 0 {
		c.Ring.MinReadyDuration = n.minReady
	}
	c.Memberlist.BindPort = n.mlPort
	c.Memberlist.JoinMembers = append(StringList(nil), n.join...)
	if n.ml != nil {
		n.ml(&c.Memberlist)
	}
	return c
}

var logLevel = func() slog.Level {
	if os.Getenv("RING_TEST_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelWarn + 4 // quiet: memberlist warns about peers the tests stop on purpose
}()

// start builds a fresh Ring on the node's data dir and ports and starts it.
func (n *node) start(t *testing.T) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel})).With("node", n.id)
	r, err := New(n.config(), n.httpPort, n.dir, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := r.Start(ctx); err != nil {
		t.Fatalf("%s: start: %v", n.id, err)
	}
	t.Logf("%s started in %v", n.id, time.Since(start))
	n.r = r
	t.Cleanup(func() { _ = r.Stop() })
}

func (n *node) stop(t *testing.T) {
	t.Helper()
	start := time.Now()
	defer func() { t.Logf("%s stopped in %v", n.id, time.Since(start)) }()
	if err := n.r.Stop(); err != nil {
		t.Fatalf("%s: stop: %v", n.id, err)
	}
}

// waitFor polls cond every 50ms until it returns nil, at most for d (and at
// most d/50ms times), and fails with cond's last error.
func waitFor(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for i := 0; i < int(d/(50*time.Millisecond))+1; i++ {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("waiting for %s: %v", what, err)
}

// states is the ring as n sees it, id → state.
func states(n *node) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ms, err := n.r.Members(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range ms {
		out[m.ID] = m.State
	}
	return out, nil
}

// seesStates checks that every observer sees exactly want.
func seesStates(observers []*node, want map[string]string) func() error {
	return func() error {
		for _, o := range observers {
			got, err := states(o)
			if err != nil {
				return err
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("%s sees %v, want %v", o.id, got, want)
			}
		}
		return nil
	}
}

// seesStored checks that every observer has the states stored in the ring
// (ignoring heartbeat age) for the given members.
func seesStored(observers []*node, want map[string]dskitring.InstanceState) func() error {
	return func() error {
		for _, o := range observers {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			desc, err := o.r.desc(ctx)
			cancel()
			if err != nil {
				return err
			}
			for id, st := range want {
				in, ok := desc.Ingesters[id]
				if !ok {
					return fmt.Errorf("%s does not see %s", o.id, id)
				}
				if in.State != st {
					return fmt.Errorf("%s sees %s %v, want %v", o.id, id, in.State, st)
				}
			}
		}
		return nil
	}
}

// clientSees checks that the ring client (what lookups use) of every observer
// has n instances.
func clientSees(observers []*node, count int) func() error {
	return func() error {
		for _, o := range observers {
			if c := o.r.Client().InstancesCount(); c != count {
				return fmt.Errorf("%s's ring client has %d instances, want %d", o.id, c, count)
			}
		}
		return nil
	}
}

func readTokensFile(t *testing.T, path string) dskitring.Tokens {
	t.Helper()
	toks, err := dskitring.LoadTokensFromFile(path)
	if err != nil {
		t.Fatalf("tokens file: %v", err)
	}
	return toks
}

func getRingJSON(t *testing.T, h http.Handler, query string) Page {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/ring"+query, nil)
	req.Header.Set("Accept", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /ring: %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("GET /ring content type %q", ct)
	}
	var p Page
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("decoding /ring: %v\n%s", err, rec.Body)
	}
	return p
}

// TestLifecycle runs three ingesters joined by a static list through join,
// normal stop (LEAVING, then UNHEALTHY), restart with the same tokens, forget,
// restart from the tokens file, prepare-stop and the final Unregister.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	a, b, c := newNode(t, "ing-a", ""), newNode(t, "ing-b", ""), newNode(t, "ing-c", "")
	static := []string{a.mlAddr(), b.mlAddr(), c.mlAddr()}
	for _, n := range []*node{a, b, c} {
		n.join = static
	}

	// PENDING before Start, and not ready.
	pre, err := New(a.config(), a.httpPort, a.dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := pre.State(); st != dskitring.PENDING {
		t.Fatalf("state before start: %v", st)
	}
	if pre.Ready() == nil {
		t.Fatal("ready before start")
	}
	_ = pre.Stop()

	all := []*node{a, b, c}
	for _, n := range all {
		n.start(t)
		if st := n.r.State(); st != dskitring.ACTIVE {
			t.Fatalf("%s after Start: %v", n.id, st)
		}
	}
	waitFor(t, 15*time.Second, "three ACTIVE members everywhere", seesStates(all, map[string]string{"ing-a": "ACTIVE", "ing-b": "ACTIVE", "ing-c": "ACTIVE"}))
	waitFor(t, 10*time.Second, "ring clients with three instances", clientSees(all, 3))

	// Tokens: 128 each, persisted, disjoint.
	seen := map[uint32]string{}
	for _, n := range all {
		toks := n.r.Tokens()
		if len(toks) != 128 {
			t.Fatalf("%s has %d tokens", n.id, len(toks))
		}
		if f := readTokensFile(t, filepath.Join(n.dir, "tokens")); !f.Equals(toks) {
			t.Fatalf("%s: tokens file differs from the ring", n.id)
		}
		for _, tk := range toks {
			if o, dup := seen[tk]; dup {
				t.Fatalf("token %d owned by %s and %s", tk, o, n.id)
			}
			seen[tk] = n.id
		}
	}
	// Addresses are instance-addr:http-port.
	p := getRingJSON(t, a.r.Handler(), "")
	if p.Self != "ing-a" || len(p.Shards) != 3 {
		t.Fatalf("/ring JSON: %+v", p)
	}
	for i, n := range all {
		m := p.Shards[i]
		if m.ID != n.id || m.Address != "127.0.0.1:"+strconv.Itoa(n.httpPort) || m.NumTokens != 128 || m.Tokens != nil || m.Timestamp.IsZero() || m.RegisteredTimestamp.IsZero() {
			t.Fatalf("/ring shard %d: %+v", i, m)
		}
	}
	if p := getRingJSON(t, a.r.Handler(), "?tokens=true"); len(p.Shards[1].Tokens) != 128 {
		t.Fatalf("/ring?tokens=true: %d tokens", len(p.Shards[1].Tokens))
	}

	for _, n := range all {
		waitFor(t, 10*time.Second, n.id+" ready", n.r.Ready)
	}

	// Every key has three owners, quorum 2.
	rs, err := a.r.ReplicationSet(12345)
	if err != nil || len(rs.Instances) != 3 || rs.MaxErrors != 1 {
		t.Fatalf("replication set: %+v %v", rs, err)
	}

	// Normal stop of c: LEAVING, tokens kept, then UNHEALTHY once its heartbeat is stale.
	cTokens := c.r.Tokens()
	c.stop(t)
	if st := c.r.State(); st != dskitring.LEAVING {
		t.Fatalf("c after Stop: %v", st)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "tokens")); err != nil {
		t.Fatalf("tokens file after a normal stop: %v", err)
	}
	live := []*node{a, b}
	waitFor(t, 10*time.Second, "c LEAVING", seesStored(live, map[string]dskitring.InstanceState{"ing-c": dskitring.LEAVING}))
	waitFor(t, 10*time.Second, "c UNHEALTHY", seesStates(live, map[string]string{"ing-a": "ACTIVE", "ing-b": "ACTIVE", "ing-c": "UNHEALTHY"}))
	// Writes and reads go on with two of three.
	rs, err = a.r.ReplicationSet(12345)
	if err != nil || len(rs.Instances) != 2 || rs.MaxErrors != 0 {
		t.Fatalf("replication set with c down: %+v %v", rs, err)
	}
	for _, in := range rs.Instances {
		if in.Id == "ing-c" {
			t.Fatal("replication set holds the UNHEALTHY member")
		}
	}
	read, err := a.r.ReadSet()
	if err != nil || len(read.Instances) != 2 || read.MaxErrors != 0 {
		t.Fatalf("read set with c down: %+v %v", read, err)
	}

	// Restart c: same tokens, ACTIVE again for everyone.
	c.start(t)
	if !c.r.Tokens().Equals(cTokens) {
		t.Fatal("c came back with other tokens")
	}
	waitFor(t, 10*time.Second, "c ACTIVE again", seesStates(all, map[string]string{"ing-a": "ACTIVE", "ing-b": "ACTIVE", "ing-c": "ACTIVE"}))

	// Stop c again and forget it through POST /ring on a.
	c.stop(t)
	waitFor(t, 10*time.Second, "c UNHEALTHY again", seesStates(live, map[string]string{"ing-a": "ACTIVE", "ing-b": "ACTIVE", "ing-c": "UNHEALTHY"}))
	form := url.Values{"forget": {"ing-c"}}
	req := httptest.NewRequest(http.MethodPost, "/ring", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	a.r.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusFound {
		t.Fatalf("POST /ring forget: %d %s", rec.Code, rec.Body)
	}
	waitFor(t, 10*time.Second, "c forgotten", seesStates(live, map[string]string{"ing-a": "ACTIVE", "ing-b": "ACTIVE"}))
	waitFor(t, 10*time.Second, "ring clients with two instances", clientSees(live, 2))

	// Restart c: the ring forgot its tokens, the file still has them.
	c.start(t)
	if !c.r.Tokens().Equals(cTokens) {
		t.Fatal("c did not load its tokens from the file")
	}
	waitFor(t, 10*time.Second, "c back after forget", seesStates(all, map[string]string{"ing-a": "ACTIVE", "ing-b": "ACTIVE", "ing-c": "ACTIVE"}))

	// prepare-stop (the preStop hook) moves b to LEAVING and keeps it registered.
	rec = httptest.NewRecorder()
	b.r.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, PathPrepareStop, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("prepare-stop: %d %s", rec.Code, rec.Body)
	}
	if b.r.State() != dskitring.LEAVING || b.r.Ready() == nil {
		t.Fatalf("b after prepare-stop: %v, ready=%v", b.r.State(), b.r.Ready())
	}
	waitFor(t, 10*time.Second, "b LEAVING", seesStates(all, map[string]string{"ing-a": "ACTIVE", "ing-b": "LEAVING", "ing-c": "ACTIVE"}))
	// Writes skip b; reads still include it.
	rs, err = a.r.ReplicationSet(12345)
	if err != nil || len(rs.Instances) != 2 || slices.ContainsFunc(rs.Instances, func(in dskitring.InstanceDesc) bool { return in.Id == "ing-b" }) {
		t.Fatalf("write set with b LEAVING: %+v %v", rs, err)
	}
	waitFor(t, 5*time.Second, "read set with b", func() error {
		read, err := a.r.ReadSet()
		if err != nil || len(read.Instances) != 3 {
			return fmt.Errorf("read set %+v %v", read, err)
		}
		return nil
	})
	b.stop(t)

	// Final leave of c: gone from the ring, tokens file deleted.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.r.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "tokens")); !os.IsNotExist(err) {
		t.Fatalf("tokens file after Unregister: %v", err)
	}
	c.stop(t)
	waitFor(t, 10*time.Second, "c gone", func() error {
		got, err := states(a)
		if err != nil {
			return err
		}
		if _, ok := got["ing-c"]; ok || len(got) != 2 {
			return fmt.Errorf("a sees %v", got)
		}
		return nil
	})
}

// TestReadiness: a new instance is not ready while another member is not
// ACTIVE, and becomes ready (after min-ready-duration) once that member is
// forgotten; ReadinessCheckSelfOnly only looks at the instance itself.
func TestReadiness(t *testing.T) {
	t.Parallel()
	a, b := newNode(t, "ing-a", ""), newNode(t, "ing-b", "")
	b.join = []string{a.mlAddr()}
	a.start(t)
	b.start(t)
	waitFor(t, 10*time.Second, "both ACTIVE", seesStates([]*node{a, b}, map[string]string{"ing-a": "ACTIVE", "ing-b": "ACTIVE"}))
	b.stop(t)
	waitFor(t, 10*time.Second, "b LEAVING", seesStored([]*node{a}, map[string]dskitring.InstanceState{"ing-b": dskitring.LEAVING}))

	c := newNode(t, "ing-c", "")
	c.join = []string{a.mlAddr()}
	c.start(t)
	waitFor(t, 10*time.Second, "c sees b", seesStored([]*node{c}, map[string]dskitring.InstanceState{"ing-b": dskitring.LEAVING}))
	// b is LEAVING, or past its heartbeat timeout: either way not ready.
	if err := c.r.Ready(); err == nil || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(b.httpPort)) {
		t.Fatalf("c ready with b LEAVING in the ring: %v", err)
	}

	self := newNode(t, "ing-s", "")
	self.join = []string{a.mlAddr()}
	cfg := self.config()
	cfg.Ring.ReadinessCheckSelfOnly = true
	rs, err := New(cfg, self.httpPort, self.dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := rs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer rs.Stop()
	waitFor(t, 10*time.Second, "self-only readiness", rs.Ready)

	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/ring", strings.NewReader("forget=ing-b"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	a.r.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusFound {
		t.Fatalf("forget: %d", rec.Code)
	}
	waitFor(t, 10*time.Second, "c ready once b is forgotten", c.r.Ready)
}

// serve serves the node's ring page on its HTTP port (where the ring advertises
// it) until stopped.
func (n *node) serve(t *testing.T) (stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(n.httpPort)))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: n.r.Handler()}
	go func() { _ = srv.Serve(ln) }()
	var once sync.Once
	stop = func() { once.Do(func() { _ = srv.Close() }) }
	t.Cleanup(stop)
	return stop
}

// TestReadyOnceEveryPeerSeesIt: with a min-ready-duration of minutes, an
// instance reports ready as soon as every other member has it ACTIVE (alone:
// at once), asked over their ring pages; while one member cannot confirm it,
// it waits (the clock would end the wait after min-ready-duration).
func TestReadyOnceEveryPeerSeesIt(t *testing.T) {
	t.Parallel()
	a, b, c := newNode(t, "ing-a", ""), newNode(t, "ing-b", ""), newNode(t, "ing-c", "")
	for _, n := range []*node{a, b, c} {
		n.minReady = 10 * time.Minute
	}
	a.start(t)
	stopA := a.serve(t)
	waitFor(t, 10*time.Second, "a ready alone", a.r.Ready)

	b.join = []string{a.mlAddr()}
	b.start(t)
	b.serve(t)
	waitFor(t, 10*time.Second, "b ready once a sees it ACTIVE", b.r.Ready)

	stopA() // a can no longer be asked
	c.join = []string{a.mlAddr()}
	c.start(t)
	c.serve(t)
	waitFor(t, 10*time.Second, "all ACTIVE", seesStates([]*node{a, b, c}, map[string]string{"ing-a": "ACTIVE", "ing-b": "ACTIVE", "ing-c": "ACTIVE"}))
	for i := 0; i < 10; i++ {
		err := c.r.Ready()
		if err == nil {
			t.Fatal("c ready although a could not confirm that it sees c ACTIVE")
		}
		if !strings.Contains(err.Error(), "min-ready-duration") {
			t.Fatalf("c not ready for another reason: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	a.serve(t)
	waitFor(t, 10*time.Second, "c ready once a answers", c.r.Ready)
}

// TestZoneAwareReplication: 3 zones × 2 ingesters, RF 3: every replication set
// has one instance per zone, and a zone down still leaves a quorum.
func TestZoneAwareReplication(t *testing.T) {
	t.Parallel()
	var nodes []*node
	for _, z := range []string{"z1", "z2", "z3"} {
		for i := 0; i < 2; i++ {
			n := newNode(t, fmt.Sprintf("ing-%s-%d", z, i), z)
			n.zoneAw = true
			nodes = append(nodes, n)
		}
	}
	for i, n := range nodes {
		if i > 0 {
			n.join = []string{nodes[0].mlAddr()}
		}
		n.start(t)
	}
	waitFor(t, 15*time.Second, "six instances", clientSees(nodes, 6))
	want := map[string]string{}
	for _, n := range nodes {
		want[n.id] = "ACTIVE"
	}
	waitFor(t, 10*time.Second, "all ACTIVE", seesStates(nodes, want))

	owners := map[string]int{}
	for i := 0; i < 500; i++ {
		key := TokenFor("tenant", model.Labels{{Name: "service_name", Value: "svc-" + strconv.Itoa(i)}})
		rs, err := nodes[i%len(nodes)].r.ReplicationSet(key)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs.Instances) != 3 || rs.MaxErrors != 1 {
			t.Fatalf("key %d: %d instances, max errors %d", key, len(rs.Instances), rs.MaxErrors)
		}
		zones := map[string]bool{}
		for _, in := range rs.Instances {
			zones[in.Zone] = true
			owners[in.Id]++
		}
		if len(zones) != 3 {
			t.Fatalf("key %d: replicas in zones %v", key, zones)
		}
	}
	if len(owners) != 6 {
		t.Fatalf("only %d of 6 instances own keys: %v", len(owners), owners)
	}

	// Zone z3 down: writes keep a quorum in z1 and z2; reads tolerate the zone.
	nodes[4].stop(t)
	nodes[5].stop(t)
	want["ing-z3-0"], want["ing-z3-1"] = "UNHEALTHY", "UNHEALTHY"
	waitFor(t, 10*time.Second, "z3 UNHEALTHY", seesStates(nodes[:1], want))
	for i := 0; i < 100; i++ {
		rs, err := nodes[0].r.ReplicationSet(uint32(i) * 42949673)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs.Instances) != 2 || rs.MaxErrors != 0 {
			t.Fatalf("write set with z3 down: %+v", rs)
		}
		for _, in := range rs.Instances {
			if in.Zone == "z3" {
				t.Fatal("write set holds an instance of the dead zone")
			}
		}
	}
	read, err := nodes[0].r.ReadSet()
	if err != nil {
		t.Fatal(err)
	}
	if len(read.Instances) != 4 || read.MaxUnavailableZones != 0 || !read.ZoneAwarenessEnabled {
		t.Fatalf("read set with z3 down: %d instances, %+v", len(read.Instances), read)
	}
}

// TestWriteSkipsLeaving: 4 ingesters, RF 3: a LEAVING owner is left out of
// write sets, which extend to the next ACTIVE instance; reads still include it.
func TestWriteSkipsLeaving(t *testing.T) {
	t.Parallel()
	var nodes []*node
	for i := 0; i < 4; i++ {
		n := newNode(t, "ing-"+strconv.Itoa(i), "")
		if i > 0 {
			n.join = []string{nodes[0].mlAddr()}
		}
		n.start(t)
		nodes = append(nodes, n)
	}
	waitFor(t, 15*time.Second, "four instances", clientSees(nodes, 4))
	want := map[string]string{"ing-0": "ACTIVE", "ing-1": "ACTIVE", "ing-2": "ACTIVE", "ing-3": "ACTIVE"}
	waitFor(t, 10*time.Second, "all ACTIVE", seesStates(nodes, want))

	keys := make([]uint32, 300)
	var ownedBy3 []uint32
	for i := range keys {
		keys[i] = TokenFor("t", model.Labels{{Name: "i", Value: strconv.Itoa(i)}})
		rs, err := nodes[0].r.ReplicationSet(keys[i])
		if err != nil || len(rs.Instances) != 3 {
			t.Fatalf("%+v %v", rs, err)
		}
		if slices.ContainsFunc(rs.Instances, func(in dskitring.InstanceDesc) bool { return in.Id == "ing-3" }) {
			ownedBy3 = append(ownedBy3, keys[i])
		}
	}
	if len(ownedBy3) == 0 {
		t.Fatal("ing-3 owns none of the keys: the test proves nothing")
	}

	if err := nodes[3].r.SetLeaving(context.Background()); err != nil {
		t.Fatal(err)
	}
	want["ing-3"] = "LEAVING"
	waitFor(t, 10*time.Second, "ing-3 LEAVING", seesStates(nodes, want))
	waitFor(t, 10*time.Second, "ring client sees LEAVING", func() error {
		st, err := nodes[0].r.Client().GetInstanceState("ing-3")
		if err != nil || st != dskitring.LEAVING {
			return fmt.Errorf("state %v, %v", st, err)
		}
		return nil
	})
	for _, k := range ownedBy3 {
		rs, err := nodes[0].r.ReplicationSet(k)
		if err != nil {
			t.Fatal(err)
		}
		// The quorum stays a majority of RF (2 of the 3 ACTIVE owners); dskit's
		// default would count it on the extended set (3 of 4), so that every
		// ACTIVE owner would have to answer while a member leaves.
		if len(rs.Instances) != 3 || rs.MaxErrors != 1 {
			t.Fatalf("key %d: write set did not extend: %+v", k, rs)
		}
		for _, in := range rs.Instances {
			if in.Id == "ing-3" || in.State != dskitring.ACTIVE {
				t.Fatalf("key %d: write set holds %s (%v)", k, in.Id, in.State)
			}
		}
	}
	read, err := nodes[0].r.ReadSet()
	if err != nil {
		t.Fatal(err)
	}
	if len(read.Instances) != 4 || read.MaxErrors != 1 {
		t.Fatalf("read set: %d instances, max errors %d", len(read.Instances), read.MaxErrors)
	}
}

// TestSingleInstanceClamp: one ingester with RF 3 takes writes and reads.
func TestSingleInstanceClamp(t *testing.T) {
	t.Parallel()
	n := newNode(t, "solo", "")
	n.start(t)
	waitFor(t, 5*time.Second, "ring client", clientSees([]*node{n}, 1))
	rs, err := n.r.ReplicationSet(7)
	if err != nil || len(rs.Instances) != 1 || rs.MaxErrors != 0 || rs.Instances[0].Id != "solo" {
		t.Fatalf("write set: %+v %v", rs, err)
	}
	read, err := n.r.ReadSet()
	if err != nil || len(read.Instances) != 1 || read.MaxErrors != 0 {
		t.Fatalf("read set: %+v %v", read, err)
	}
	waitFor(t, 5*time.Second, "ready", n.r.Ready)

	// HTML status page by default.
	rec := httptest.NewRecorder()
	n.r.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ring", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Header().Get("Content-Type"), "text/html") || !strings.Contains(rec.Body.String(), "solo") {
		t.Fatalf("HTML /ring: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	// POST /ring without forget is refused.
	rec = httptest.NewRecorder()
	n.r.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/ring", nil))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("POST /ring without forget: %d", rec.Code)
	}
}
