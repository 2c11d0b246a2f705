package ring

import (
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/hearth-dev/hearth/ingester/model"
)

func newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func TestFlagsAndDefaults(t *testing.T) {
	var c Config
	fs := newFlagSet()
	c.RegisterFlags(fs)
	host, _ := os.Hostname()
	want := map[string]string{
		"ingester.ring.instance-id":            host,
		"ingester.ring.instance-addr":          "127.0.0.1",
		"ingester.ring.instance-zone":          "",
		"ingester.ring.zone-awareness-enabled": "false",
		"ingester.ring.replication-factor":     "3",
		"ingester.ring.num-tokens":             "128",
		"ingester.ring.tokens-file-path":       "",
		"ingester.ring.heartbeat-period":       "5s",
		"ingester.ring.heartbeat-timeout":      "1m0s",
		"ingester.ring.min-ready-duration":     "15s",
		"memberlist.join":                      "",
		"memberlist.bind-addr":                 "127.0.0.1",
		"memberlist.bind-port":                 "7946",
		"memberlist.advertise-addr":            "127.0.0.1",
		"memberlist.advertise-port":            "0",
		"memberlist.tls-enabled":               "false",
		"memberlist.tls-accept-plain":          "false",
		"memberlist.tls-dial-plain":            "false",
		"memberlist.tls-cert-path":             "",
		"memberlist.tls-key-path":              "",
		"memberlist.tls-ca-path":               "",
		"memberlist.tls-server-name":           "",
		"memberlist.tls-insecure-skip-verify":  "false",
		"memberlist.tls-cipher-suites":         "",
		"memberlist.tls-min-version":           "",
	}
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		w, ok := want[f.Name]
		if !ok {
			t.Errorf("unexpected flag -%s", f.Name)
		} else if f.DefValue != w {
			t.Errorf("-%s default %q, want %q", f.Name, f.DefValue, w)
		}
	})
	if n != len(want) {
		t.Errorf("%d flags, want %d", n, len(want))
	}
	if err := fs.Parse([]string{"-memberlist.join=a:7946", "-memberlist.join", "dns+b.svc:7946", "-ingester.ring.instance-zone=z1"}); err != nil {
		t.Fatal(err)
	}
	if got := []string(c.Memberlist.JoinMembers); len(got) != 2 || got[0] != "a:7946" || got[1] != "dns+b.svc:7946" {
		t.Fatalf("join members %v", got)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if p := c.Ring.tokensPath("/data"); p != filepath.Join("/data", "tokens") {
		t.Fatalf("default tokens path %q", p)
	}

	// Addresses are never left for memberlist to pick.
	bad := c
	bad.Memberlist.AdvertiseAddr = ""
	bad.Ring.InstanceAddr = ""
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "advertise-addr") || !strings.Contains(err.Error(), "instance-addr") {
		t.Fatalf("validate without addresses: %v", err)
	}
	bad = c
	bad.Ring.HeartbeatTimeout = time.Second
	bad.Ring.HeartbeatPeriod = 2 * time.Second
	if err := bad.Validate(); err == nil {
		t.Fatal("heartbeat timeout shorter than the period accepted")
	}
}

// The YAML layout the application uses: ingester.ring.* and memberlist.*.
func TestYAMLLayout(t *testing.T) {
	var doc struct {
		Ingester struct {
			Ring RingConfig `yaml:"ring"`
		} `yaml:"ingester"`
		Memberlist MemberlistConfig `yaml:"memberlist"`
	}
	src := `
ingester:
  ring:
    instance_id: ing-0
    instance_addr: 10.0.0.7
    instance_zone: z1
    zone_awareness_enabled: true
    replication_factor: 3
    num_tokens: 64
    tokens_file_path: /data/tokens
    heartbeat_period: 2s
    heartbeat_timeout: 30s
    min_ready_duration: 5s
memberlist:
  join_members: [hearth-ingester-headless:7946, 10.0.0.8:7946]
  bind_addr: 10.0.0.7
  bind_port: 7947
  advertise_addr: 10.0.0.7
  advertise_port: 7948
`
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	r, m := doc.Ingester.Ring, doc.Memberlist
	if r.InstanceID != "ing-0" || r.InstanceAddr != "10.0.0.7" || r.InstanceZone != "z1" || !r.ZoneAwarenessEnabled || r.NumTokens != 64 ||
		r.TokensFilePath != "/data/tokens" || r.HeartbeatPeriod != 2*time.Second || r.HeartbeatTimeout != 30*time.Second || r.MinReadyDuration != 5*time.Second {
		t.Fatalf("ring %+v", r)
	}
	if len(m.JoinMembers) != 2 || m.BindAddr != "10.0.0.7" || m.BindPort != 7947 || m.AdvertiseAddr != "10.0.0.7" || m.AdvertisePort != 7948 {
		t.Fatalf("memberlist %+v", m)
	}
}

func TestTokenFor(t *testing.T) {
	ls := model.Labels{{Name: "service_name", Value: "api"}, {Name: "__name__", Value: "process_cpu"}}
	sorted := ls.Clone().Sort()
	k := TokenFor("acme", ls)
	if TokenFor("acme", sorted) != k {
		t.Fatal("label order changes the token")
	}
	if ls[0].Name != "service_name" {
		t.Fatal("TokenFor sorted its argument in place")
	}
	if TokenFor("other", ls) == k {
		t.Fatal("tenant does not change the token")
	}
	if TokenFor("acme", sorted.Set("pod", "x")) == k {
		t.Fatal("labels do not change the token")
	}
	// The tenant/label boundary is unambiguous.
	if TokenFor("a", model.Labels{{Name: "b", Value: "c"}}) == TokenFor("ab", model.Labels{{Name: "", Value: "c"}}) {
		t.Fatal("tenant and label name run together")
	}
	// Stable across releases: replicas of one series must agree on its owners.
	if got, want := TokenFor("acme", ls), uint32(goldenToken); got != want {
		t.Fatalf("TokenFor changed: %d, was %d", got, want)
	}
}

func TestPrepareShutdownMarker(t *testing.T) {
	dir := t.TempDir()
	p := NewPrepareShutdown(dir)
	do := func(method string) (int, string) {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest(method, "/ingester/prepare-shutdown", nil))
		return rec.Code, strings.TrimSpace(rec.Body.String())
	}
	if code, body := do(http.MethodGet); code != 200 || body != "unset" {
		t.Fatalf("GET: %d %q", code, body)
	}
	if code, _ := do(http.MethodPost); code != http.StatusNoContent {
		t.Fatalf("POST: %d", code)
	}
	if code, body := do(http.MethodGet); code != 200 || body != "set" {
		t.Fatalf("GET after POST: %d %q", code, body)
	}
	if _, err := os.Stat(filepath.Join(dir, "prepare-shutdown")); err != nil {
		t.Fatal(err)
	}
	// Persisted: a new process (a new marker) sees it, and so does a Ring.
	if !NewPrepareShutdown(dir).IsSet() {
		t.Fatal("marker not persisted")
	}
	n := &node{id: "x", dir: dir, mlPort: 7946, httpPort: 4040, rf: 3}
	r, err := New(n.config(), 4040, dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r.PrepareShutdownSet() {
		t.Fatal("Ring does not see the marker")
	}
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, "/ingester/prepare-shutdown", nil))
	if rec.Code != http.StatusNoContent || r.PrepareShutdownSet() {
		t.Fatalf("DELETE through the ring handler: %d, set=%v", rec.Code, r.PrepareShutdownSet())
	}
	if code, _ := do(http.MethodDelete); code != http.StatusNoContent {
		t.Fatalf("DELETE when unset: %d", code)
	}
	if code, _ := do(http.MethodPut); code != http.StatusMethodNotAllowed {
		t.Fatalf("PUT: %d", code)
	}
	// prepare-stop on a ring that never started is refused (prestop ignores it).
	rec = httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, PathPrepareStop, nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("prepare-stop before start: %d", rec.Code)
	}
	_ = r.Stop()
}

const goldenToken = 3237678235
