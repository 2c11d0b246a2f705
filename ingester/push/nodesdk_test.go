package push_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// nodeSDKDir installs the Pyroscope Node.js SDK (0.6.4, with its native
// profiler) once into a cache directory outside the work tree.
func nodeSDKDir(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("the Pyroscope Node.js SDK test needs node and npm: node not found")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("the Pyroscope Node.js SDK test needs node and npm: npm not found")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Skip("the Pyroscope Node.js SDK test needs a cache directory:", err)
	}
	dir := filepath.Join(cache, "hearth", "npm")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@pyroscope", "nodejs", "package.json")); err == nil {
		return dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "@pyroscope/nodejs@0.6.4").CombinedOutput()
	if err != nil {
		t.Skipf("npm install @pyroscope/nodejs@0.6.4 failed (no registry?): %v\n%s", err, out)
	}
	return dir
}

const nodeProgram = `
const Pyroscope = require('@pyroscope/nodejs');
Pyroscope.init({ serverAddress: process.env.SERVER, appName: 'nodeapp', flushIntervalMs: 1000,
  wall: { samplingDurationMs: 1000, samplingIntervalMicros: 1000 } });
Pyroscope.start();
function work(n) { let x = 0; for (let i = 0; i < n; i++) { x += Math.sqrt(i) * Math.sin(i); } return x; }
const until = Date.now() + 3000;
const keep = [];
(function loop() {
  work(200000);
  keep.push(new Array(1000).fill(Math.random()));
  if (Date.now() < until) { setImmediate(loop); return; }
  Pyroscope.stop().then(() => process.exit(0));
})();
`

// TestNodeSDKLabels runs a small program under the real Pyroscope Node.js
// SDK against a real ingester and checks that the series labels stored are
// the ones Pyroscope stores for it: the SDK's OpenTelemetry-style labels
// with underscores, pyroscope_spy and __service_name__.
func TestNodeSDKLabels(t *testing.T) {
	dir := nodeSDKDir(t)
	s := startServer(t)
	script := filepath.Join(t.TempDir(), "app.js")
	if err := os.WriteFile(script, []byte(nodeProgram), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Env = append(os.Environ(), "SERVER="+s.url, "NODE_PATH="+filepath.Join(dir, "node_modules"), "DEBUG=pyroscope")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	nodeVersion, err := exec.Command("node", "-p", "process.versions.node").Output()
	if err != nil {
		t.Fatal(err)
	}
	series := s.seriesLabels(`{service_name="nodeapp"}`)
	if len(series) == 0 {
		t.Fatalf("no series stored; node said:\n%s", out)
	}
	// Pyroscope's label set for the SDK's series (besides the profile type
	// labels every series has).
	want := map[string]string{
		"otel_scope_name":         "com.grafana.pyroscope/nodejs",
		"otel_scope_version":      "0.6.4",
		"process_runtime_name":    "nodejs",
		"process_runtime_version": strings.TrimSpace(string(nodeVersion)),
		"pyroscope_spy":           "nodespy",
		"service_name":            "nodeapp",
		"__service_name__":        "nodeapp",
	}
	wantNames := []string{"__name__", "__period_type__", "__period_unit__", "__profile_type__", "__type__", "__unit__"}
	for k := range want {
		wantNames = append(wantNames, k)
	}
	sort.Strings(wantNames)
	names := map[string]bool{}
	for _, ls := range series {
		var got []string
		for k := range ls {
			got = append(got, k)
		}
		sort.Strings(got)
		if !slices.Equal(got, wantNames) {
			t.Errorf("label names %v\nPyroscope's %v", got, wantNames)
		}
		for k, v := range want {
			if ls[k] != v {
				t.Errorf("%s=%q, Pyroscope stores %q", k, ls[k], v)
			}
		}
		names[ls["__name__"]] = true
	}
	if !names["wall"] {
		t.Errorf("no wall series: %v", series)
	}
}
