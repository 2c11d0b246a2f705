package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestOverridesReloadWithoutRestart is issue 22's "reload without restart" on the
// operator platform: a 2-pod Ingester (replication factor 2) takes pushes for team-a
// under the default series limit; spec.overrides then lowers team-a's
// max_series_per_tenant to 3, and within 30 s every pod reports the new limit
// (/api/v1/tenant_limits) and a push of a new team-a series is refused with 429 naming
// it, while team-b is untouched — with no pod replaced or restarted and the StatefulSet
// unchanged. An invalid edit then leaves the enforced limit as it was (Degraded
// InvalidOverrides). The time from the edit to enforcement is logged.
func TestOverridesReloadWithoutRestart(t *testing.T) {
	e := newScenarioEnv(t)
	const ns, name = "overrides", "hearth"
	e.apply(t, ns, name, 2, 2, map[string]any{"multitenancyEnabled": true})
	ctx := context.Background()
	pods := podNames(name, 2)
	ips := map[string]string{}
	for _, pod := range pods {
		ips[pod] = podIP(t, e.p, ns, pod)
	}
	url := "http://" + ips[pods[0]] + ":4040"

	// What must not change: the pods (UID, restarts, container id) and the StatefulSet.
	type incarnation struct {
		uid, container string
		restarts       int32
	}
	snapshot := func() map[string]incarnation {
		out := map[string]incarnation{}
		list, err := e.p.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, pod := range list.Items {
			in := incarnation{uid: string(pod.UID)}
			for _, cs := range pod.Status.ContainerStatuses {
				in.restarts += cs.RestartCount
				in.container = cs.ContainerID
			}
			out[pod.Name] = in
		}
		return out
	}
	before := snapshot()
	sts, err := e.p.Clientset.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gen, rev := sts.Generation, sts.Status.UpdateRevision

	series := 0
	push := func(tenant string) (int, string) {
		series++
		return pushSeries(t, url, tenant, series)
	}
	for i := 0; i < 5; i++ {
		if code, body := push("team-a"); code != http.StatusOK {
			t.Fatalf("push %d of team-a under the default limits: %d %s", i, code, body)
		}
	}
	for _, pod := range pods {
		if got := tenantLimit(t, ips[pod], "team-a", "max_series_per_tenant"); got != 100000 {
			t.Fatalf("%s: team-a's max_series_per_tenant is %v before any override, want the default 100000", pod, got)
		}
	}

	edited := time.Now()
	e.patchSpec(t, ns, name, map[string]any{"overrides": map[string]any{"team-a": map[string]any{"max_series_per_tenant": 3}}})
	seen := map[string]time.Duration{}
	eventually(t, 30*time.Second, "every pod reports team-a's new limit", func() string {
		for _, pod := range pods {
			if _, ok := seen[pod]; ok {
				continue
			}
			if got := tenantLimit(t, ips[pod], "team-a", "max_series_per_tenant"); got != 3 {
				return fmt.Sprintf("%s reports %v", pod, got)
			}
			seen[pod] = time.Since(edited)
		}
		return ""
	})
	allSeen := time.Since(edited)
	// Enforced: a new team-a series is refused (team-a has 5 active series, the limit is 3).
	var refused string
	eventually(t, 30*time.Second, "a new team-a series refused", func() string {
		code, body := push("team-a")
		if code == http.StatusTooManyRequests && strings.Contains(body, "limit of 3 active series") {
			refused = body
			return ""
		}
		return fmt.Sprintf("%d %s", code, body)
	})
	enforced := time.Since(edited)
	t.Logf("overrides: spec.overrides edited; team-a's new limit reported by %v, by every pod after %s, a push refused after %s: %s",
		seen, allSeen.Round(time.Millisecond), enforced.Round(time.Millisecond), strings.TrimSpace(refused))
	if code, body := push("team-b"); code != http.StatusOK {
		t.Errorf("team-b, without overrides, refused: %d %s", code, body)
	}

	// An invalid edit: Degraded, and the pods keep enforcing the last valid limit.
	e.patchSpec(t, ns, name, map[string]any{"overrides": map[string]any{"team-a": map[string]any{"max_series_per_tenant": -1}}})
	eventually(t, 30*time.Second, "Degraded InvalidOverrides", func() string {
		if d := e.degraded(ns, name); !strings.HasPrefix(d, "True InvalidOverrides") {
			return d
		}
		return ""
	})
	time.Sleep(12 * time.Second) // more than a reload period (10s): a reload would have happened
	for _, pod := range pods {
		if got := tenantLimit(t, ips[pod], "team-a", "max_series_per_tenant"); got != 3 {
			t.Errorf("%s: after an invalid edit team-a's limit is %v, want the last valid 3", pod, got)
		}
	}

	after := snapshot()
	for pod, b := range before {
		if a := after[pod]; a != b {
			t.Errorf("%s was replaced or restarted: %+v → %+v", pod, b, a)
		}
	}
	if len(after) != len(before) {
		t.Errorf("%d pods, %d before", len(after), len(before))
	}
	sts, err = e.p.Clientset.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sts.Generation != gen || sts.Status.UpdateRevision != rev {
		t.Errorf("the StatefulSet changed: generation %d → %d, revision %s → %s", gen, sts.Generation, rev, sts.Status.UpdateRevision)
	}
}

// pushSeries pushes one small folded profile of a series of its own (label n) for tenant.
func pushSeries(t testing.TB, url, tenant string, n int) (int, string) {
	t.Helper()
	now := time.Now().Unix()
	q := fmt.Sprintf("%s/ingest?name=app.cpu{n=s%d}&from=%d&until=%d&format=folded&sampleRate=100", url, n, now-10, now)
	req, err := http.NewRequest(http.MethodPost, q, strings.NewReader("main;work 30\nmain 10\n"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("X-Scope-OrgID", tenant)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// tenantLimit is one limit of a tenant's effective limits as an ingester reports them
// (-1 when it does not answer).
func tenantLimit(t testing.TB, ip, tenant, key string) float64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+ip+":4040/api/v1/tenant_limits", nil)
	req.Header.Set("X-Scope-OrgID", tenant)
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var limits map[string]any
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&limits) != nil {
		return -1
	}
	v, _ := limits[key].(float64)
	return v
}
