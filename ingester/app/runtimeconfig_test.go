package app

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"

	"github.com/hearth-dev/hearth/internal/testutil"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Write then rename: the reloader never reads a half-written file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func httpGet(t *testing.T, url string, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls cond every 50ms, at most 600 times (30 s).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 600; i++ {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("still not true after 30s: %s", what)
}

// TestRuntimeOverridesReload runs a real `hearth ingester` with a runtime
// config, changes the file and sees the new limit enforced, without a restart.
func TestRuntimeOverridesReload(t *testing.T) {
	dir := t.TempDir()
	base, teamFile := filepath.Join(dir, "base.yaml"), filepath.Join(dir, "team.yaml")
	writeFile(t, base, "overrides:\n  team-a:\n    max_series_per_tenant: 1\n    max_label_names_per_series: 8\n")
	writeFile(t, teamFile, "overrides:\n  team-b:\n    ingestion_rate_mb: 5\n")
	p := testutil.StartIngester(t, testutil.FreePort(t), "-data-dir="+filepath.Join(dir, "data"), "-auth.multitenancy-enabled=true",
		"-runtime-config.file="+base+","+teamFile, "-runtime-config.reload-period=100ms", "-limits.max-series-per-tenant=100")
	client := pushv1connect.NewPusherServiceClient(http.DefaultClient, p.URL)
	push := func(tenant, series string) error {
		req := pushReq(map[string]string{"service_name": "svc", "series": series}, smallProfile(t))
		req.Header().Set("X-Scope-OrgID", tenant)
		_, err := client.Push(context.Background(), req)
		return err
	}
	if err := push("team-a", "1"); err != nil {
		t.Fatal(err)
	}
	if err := push("team-a", "2"); connectCode(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "limit of 1 active series") {
		t.Fatalf("team-a's second series: %v, want its override of 1 series enforced", err)
	}
	for i := 0; i < 3; i++ { // another tenant keeps the default
		if err := push("team-c", strconv.Itoa(i)); err != nil {
			t.Fatalf("team-c: %v", err)
		}
	}

	// The caller's effective limits, on the public port.
	code, body := httpGet(t, p.URL+PathTenantLimits, map[string]string{"X-Scope-OrgID": "team-a"})
	var lim map[string]any
	if err := json.Unmarshal([]byte(body), &lim); code != 200 || err != nil || lim["max_series_per_tenant"] != 1.0 || lim["max_profile_size_bytes"] != float64(16<<20) {
		t.Fatalf("tenant_limits of team-a: %d %s", code, body)
	}
	if code, _ := httpGet(t, p.URL+PathTenantLimits, nil); code != http.StatusUnauthorized {
		t.Fatalf("tenant_limits without a tenant: %d", code)
	}
	// The merged files, only what differs, on the internal port only.
	code, body = httpGet(t, p.InternalURL+PathRuntimeConfig+"?mode=diff", nil)
	if code != 200 || !strings.Contains(body, "team-b:\n        ingestion_rate_mb: 5") || !strings.Contains(body, "max_series_per_tenant: 1") || strings.Contains(body, "max_profile_size_bytes") {
		t.Fatalf("runtime_config?mode=diff: %d\n%s", code, body)
	}
	if code, _ := httpGet(t, p.URL+PathRuntimeConfig, nil); code != http.StatusNotFound {
		t.Fatalf("runtime_config on the public port: %d", code)
	}
	_, metrics := httpGet(t, p.URL+"/metrics", nil)
	for _, want := range []string{`hearth_runtime_config_last_reload_successful{config="hearth"} 1`, `hearth_limits_overrides{limit_name="max_series_per_tenant",tenant="team-a"} 1`,
		`hearth_limits_defaults{limit_name="max_series_per_tenant"} 100`, `hearth_runtime_config_hash{config="hearth",sha256=`} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("metrics lack %s", want)
		}
	}

	// Raise team-a's limit: enforced once reloaded, no restart.
	writeFile(t, base, "overrides:\n  team-a:\n    max_series_per_tenant: 3\n")
	eventually(t, "team-a's raised series limit applies", func() bool { return push("team-a", "2") == nil })
	if err := push("team-a", "3"); err != nil {
		t.Fatal(err)
	}
	if err := push("team-a", "4"); connectCode(err) != connect.CodeResourceExhausted {
		t.Fatalf("team-a's fourth series: %v, want the new limit of 3", err)
	}

	// A bad reload keeps the last good config and says so.
	writeFile(t, base, "overrides:\n  team-a:\n    max_series_per_tenant: 10\n    no_such_limit: 1\n")
	eventually(t, "the failed reload is reported", func() bool {
		_, m := httpGet(t, p.URL+"/metrics", nil)
		return strings.Contains(m, `hearth_runtime_config_last_reload_successful{config="hearth"} 0`)
	})
	if err := push("team-a", "4"); connectCode(err) != connect.CodeResourceExhausted {
		t.Fatalf("after a bad reload: %v, want the last good limit of 3", err)
	}
	if !strings.Contains(p.Log(), "no_such_limit") {
		t.Fatalf("the failed reload is not logged with its reason:\n%s", p.Log())
	}
	if p.Exited() {
		t.Fatal("a bad reload stopped the ingester")
	}
}

// TestRuntimeConfigBadAtStart: a runtime config that does not load fails the start.
func TestRuntimeConfigBadAtStart(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rc.yaml")
	writeFile(t, file, "overrides:\n  a:\n    max_series_per_tenant: -5\n")
	cmd := exec.Command(testutil.Hearth(t), "ingester", "-server.http-listen-address=127.0.0.1", "-server.http-listen-port=0",
		"-server.internal-listen-address=127.0.0.1", "-server.internal-listen-port=0", "-memberlist.bind-port="+strconv.Itoa(testutil.FreePort(t)),
		"-data-dir="+filepath.Join(dir, "data"), "-runtime-config.file="+file)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("still running with a bad runtime config:\n%s", out)
	}
	if err == nil || !strings.Contains(string(out), "max_series_per_tenant must not be negative") {
		t.Fatalf("exit %v, output:\n%s", err, out)
	}
}
