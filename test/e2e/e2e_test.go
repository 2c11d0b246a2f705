// Package e2e runs Hearth on a real Kubernetes control plane (kube-apiserver, etcd,
// kube-controller-manager, kube-scheduler) with a node agent that runs each pod as a local
// `hearth` process on its own loopback address, and the operator as `hearth operator`.
// See package platform.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/hearth-dev/hearth/internal/load"
	"github.com/hearth-dev/hearth/internal/testutil"
	"github.com/hearth-dev/hearth/test/e2e/platform"
)

var ingesterGVR = schema.GroupVersionResource{Group: "hearth.dev", Version: "v1alpha1", Resource: "ingesters"}

// startPlatform starts the whole platform with the operator; everything is stopped at the
// end of the test, and logs are printed when it failed.
func startPlatform(t testing.TB, opts ...func(*platform.Options)) (*platform.Platform, *testutil.SyncBuffer) {
	t.Helper()
	agentLog := &testutil.SyncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	bin := os.Getenv("HEARTH_E2E_BINARY") // a prebuilt hearth, e.g. bin/hearth
	if bin == "" {
		bin = testutil.Hearth(t)
	}
	o := platform.Options{Hearth: bin, Operator: true, Log: agentLog}
	for _, f := range opts {
		f(&o)
	}
	p, err := platform.Start(ctx, o)
	if err != nil {
		t.Fatalf("starting the platform: %v\n%s", err, agentLog.String())
	}
	t.Logf("platform up in %s (KUBECONFIG=%s)", time.Since(start).Round(time.Millisecond), p.Kubeconfig)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("platform logs:\n%s", p.Logs(6000))
			log := agentLog.String()
			if len(log) > 6000 {
				log = log[len(log)-6000:]
			}
			t.Logf("node agent log (tail):\n%s", log)
		}
		p.Stop()
	})
	return p, agentLog
}

// eventually polls cond every 250ms until it returns "" or the timeout passes, then fails
// with its last answer.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		if last = cond(); last == "" {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: not done after %s: %s", what, timeout, last)
}

func podIP(t testing.TB, p *platform.Platform, ns, name string) string {
	t.Helper()
	pod, err := p.Clientset.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Status.PodIP == "" {
		t.Fatalf("pod %s has no IP", name)
	}
	return pod.Status.PodIP
}

type ringMember struct {
	ID      string   `json:"id"`
	State   string   `json:"state"`
	Address string   `json:"address"`
	Tokens  []uint32 `json:"tokens"`
}

// ring reads /ring (JSON, with tokens) from one ingester.
func ring(ip string) ([]ringMember, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ip+":4040/ring?tokens=true", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /ring: %s", resp.Status)
	}
	var page struct {
		Shards []ringMember `json:"shards"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return nil, err
	}
	return page.Shards, nil
}

// ringActive says "" when ip's ring has exactly the given members, all ACTIVE.
func ringActive(ip string, members ...string) string {
	shards, err := ring(ip)
	if err != nil {
		return err.Error()
	}
	var got []string
	for _, s := range shards {
		if s.State != "ACTIVE" {
			return fmt.Sprintf("%s sees %s %s", ip, s.ID, s.State)
		}
		got = append(got, s.ID)
	}
	if !slices.Equal(got, members) {
		return fmt.Sprintf("%s sees members %v, want %v", ip, got, members)
	}
	return ""
}

// podsReady says "" when every named pod is Ready, with at least minRestarts restarts.
func podsReady(p *platform.Platform, ns string, minRestarts int32, names ...string) string {
	for _, n := range names {
		pod, err := p.Clientset.CoreV1().Pods(ns).Get(context.Background(), n, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		ready := false
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		var restarts int32
		for _, cs := range pod.Status.ContainerStatuses {
			restarts += cs.RestartCount
		}
		if !ready || restarts < minRestarts {
			return fmt.Sprintf("pod %s: phase %s, ready %v, restarts %d", n, pod.Status.Phase, ready, restarts)
		}
	}
	return ""
}

// heapCorpus and countProfilesErr are the shared helpers of internal/testutil.
func heapCorpus(t testing.TB) (string, int64) { return testutil.HeapCorpus(t) }

func countProfilesErr(url string, ids []string, perProfile int64) (all, acked float64, err error) {
	return testutil.CountProfiles(url, ids, perProfile)
}

// countProfiles is countProfilesErr, failing the test on error.
func countProfiles(t testing.TB, url string, ids []string, perProfile int64) (all, acked float64) {
	t.Helper()
	all, acked, err := countProfilesErr(url, ids, perProfile)
	if err != nil {
		t.Fatal(err)
	}
	return all, acked
}

func newIngester(ns, name string, replicas int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "hearth.dev/v1alpha1",
		"kind":       "Ingester",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"replicas":      replicas,
			"image":         "hearth:dev",
			"storage":       map[string]any{"size": "1Gi"},
			"objectStorage": map[string]any{"backend": "filesystem"},
			// Fast readiness; heartbeats often enough that a killed pod's return shows quickly.
			"ring": map[string]any{"minReadyDuration": "2s", "heartbeatPeriod": "1s"},
		},
	}}
}

// TestThreeIngestersSurviveAKill applies a 3-replica Ingester, pushes through one pod and
// queries through another, then SIGKILLs one pod's process under load: every acknowledged
// profile is stored exactly once and the killed pod comes back with its tokens.
func TestThreeIngestersSurviveAKill(t *testing.T) {
	testStart := time.Now()
	p, agentLog := startPlatform(t)
	ctx := context.Background()
	const ns, name = "e2e", "hearth"
	if _, err := p.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(ingesterGVR).Namespace(ns).Create(ctx, newIngester(ns, name, 3), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := []string{name + "-0", name + "-1", name + "-2"}
	applied := time.Now()
	eventually(t, 2*time.Minute, "3 Ready pods", func() string {
		sts, err := p.Clientset.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if sts.Status.ReadyReplicas != 3 {
			return fmt.Sprintf("StatefulSet has %d/%d ready replicas; %s", sts.Status.ReadyReplicas, sts.Status.Replicas, podsReady(p, ns, 0, pods...))
		}
		return podsReady(p, ns, 0, pods...)
	})
	ips := map[string]string{}
	for _, pod := range pods {
		ips[pod] = podIP(t, p, ns, pod)
	}
	for _, pod := range pods {
		eventually(t, 30*time.Second, "ring of "+pod, func() string { return ringActive(ips[pod], pods...) })
	}
	t.Logf("3 pods Ready and ACTIVE %s after the Ingester was applied (IPs %v)", time.Since(applied).Round(time.Millisecond), ips)
	tokensBefore := map[string][]uint32{}
	shards, err := ring(ips[pods[1]])
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shards {
		tokensBefore[s.ID] = s.Tokens
		if len(s.Tokens) == 0 {
			t.Fatalf("/ring?tokens=true lists no tokens for %s", s.ID)
		}
	}

	// kubectl sees the Ingester through the platform's kubeconfig.
	out, err := exec.Command("kubectl", "--kubeconfig="+p.Kubeconfig, "get", "ingesters", "-n", ns).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get ingesters: %v\n%s", err, out)
	}
	t.Logf("kubectl get ingesters:\n%s", out)
	if !strings.Contains(string(out), name) {
		t.Fatalf("kubectl get ingesters does not show %s:\n%s", name, out)
	}

	dir, perProfile := heapCorpus(t)
	acks := &load.AckLog{}
	pushURL := "http://" + ips[pods[0]] + ":4040"
	runLoad := func(ctx context.Context, d time.Duration) load.Summary {
		s, err := load.Run(ctx, load.Config{URL: pushURL, Dir: dir, Workers: 4, Series: 20, Duration: d, Acked: acks.Record})
		if err != nil {
			t.Errorf("load: %v", err)
		}
		return s
	}

	// Phase 1: a steady push through hearth-0.
	s1 := runLoad(ctx, 3*time.Second)
	t.Logf("phase 1: %d pushes, %d acknowledged, errors %v", s1.Pushes, s1.Profiles, s1.ErrorsByCode)
	if s1.Profiles == 0 {
		t.Fatal("no push was acknowledged")
	}
	checkStored(t, "after phase 1", "http://"+ips[pods[1]]+":4040", acks, s1.Pushes+s1.Abandoned, perProfile)

	// Phase 2: SIGKILL hearth-2's process under load; the agent restarts it.
	victim := pods[2]
	sumc := make(chan load.Summary, 1)
	loadCtx, stopLoad := context.WithTimeout(ctx, 90*time.Second)
	defer stopLoad()
	go func() { sumc <- runLoad(loadCtx, 0) }()
	time.Sleep(time.Second)
	beforeKill := len(acks.Acks())
	if err := p.Agent.Kill(ns, victim); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	eventually(t, time.Minute, victim+" restarted and Ready", func() string { return podsReady(p, ns, 1, victim) })
	eventually(t, 30*time.Second, "ring after the restart", func() string { return ringActive(ips[pods[1]], pods...) })
	back := time.Since(killed)
	time.Sleep(time.Second) // a little load on the full ring again
	stopLoad()
	s2 := <-sumc
	duringKill := len(acks.Acks()) - beforeKill
	t.Logf("phase 2: %s back after %s; %d pushes, %d acknowledged (%d after the kill), errors %v",
		victim, back.Round(time.Millisecond), s2.Pushes, s2.Profiles, duringKill, s2.ErrorsByCode)
	if duringKill == 0 {
		t.Errorf("no push was acknowledged after %s was killed", victim)
	}
	// Errors at the very end are the load client's own cancellation, not failed pushes.
	if n := s2.Errors - s2.ErrorsByCode["canceled"]; n > 0 {
		t.Errorf("%d pushes failed while %s was down: %v", n, victim, s2.ErrorsByCode)
	}
	if ip := podIP(t, p, ns, victim); ip != ips[victim] {
		t.Errorf("%s changed IP across a container restart: %s → %s", victim, ips[victim], ip)
	}
	shards, err = ring(ips[pods[1]])
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shards {
		if !slices.Equal(s.Tokens, tokensBefore[s.ID]) {
			t.Errorf("%s has other tokens after the restart (%d tokens, %d before)", s.ID, len(s.Tokens), len(tokensBefore[s.ID]))
		}
	}

	// Every acknowledged profile is there exactly once, queried through hearth-1.
	checkStored(t, "after the kill", "http://"+ips[pods[1]]+":4040", acks, s1.Pushes+s1.Abandoned+s2.Pushes+s2.Abandoned, perProfile)
	// Phase 3: delete hearth-1 like a rollout would: the agent runs its preStop hook, sends
	// SIGTERM (the ingester stops within the grace period, or this times out), removes the
	// pod; the StatefulSet controller recreates it on the same claim, with its tokens.
	old, err := p.Clientset.CoreV1().Pods(ns).Get(ctx, pods[1], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("kubectl", "--kubeconfig="+p.Kubeconfig, "-n", ns, "delete", "pod", pods[1], "--wait=false").CombinedOutput(); err != nil {
		t.Fatalf("kubectl delete pod: %v\n%s", err, out)
	}
	deleted := time.Now()
	eventually(t, 90*time.Second, "a new "+pods[1], func() string {
		pod, err := p.Clientset.CoreV1().Pods(ns).Get(ctx, pods[1], metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if pod.UID == old.UID {
			return "the old pod is still there"
		}
		return podsReady(p, ns, 0, pods[1])
	})
	newIP := podIP(t, p, ns, pods[1])
	eventually(t, 30*time.Second, "ring after the replacement", func() string { return ringActive(newIP, pods...) })
	for _, line := range strings.Split(agentLog.String(), "\n") {
		if strings.Contains(line, "preStop "+ns+"/"+pods[1]) {
			t.Logf("phase 3: %s", line)
			if !strings.Contains(line, "err=<nil>") {
				t.Errorf("the preStop hook failed: %s", line)
			}
		}
		if strings.Contains(line, ns+"/"+pods[1]) && strings.Contains(line, "SIGKILL") {
			t.Errorf("%s did not stop on SIGTERM: %s", pods[1], line)
		}
	}
	if !strings.Contains(agentLog.String(), "preStop "+ns+"/"+pods[1]) {
		t.Errorf("no preStop hook ran for %s", pods[1])
	}
	t.Logf("phase 3: %s replaced in %s (IP %s → %s)", pods[1], time.Since(deleted).Round(time.Millisecond), ips[pods[1]], newIP)
	if shards, err = ring(newIP); err != nil {
		t.Fatal(err)
	}
	for _, s := range shards {
		if !slices.Equal(s.Tokens, tokensBefore[s.ID]) {
			t.Errorf("%s has other tokens after its pod was replaced", s.ID)
		}
	}
	checkStored(t, "after the replacement", "http://"+newIP+":4040", acks, s1.Pushes+s1.Abandoned+s2.Pushes+s2.Abandoned, perProfile)

	// An image the node does not have waits in ImagePullBackOff.
	bad := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bad-image", Namespace: ns}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "c", Image: "hearth:does-not-exist", Command: []string{"/hearth"}}}}}
	if _, err := p.Clientset.CoreV1().Pods(ns).Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "ImagePullBackOff", func() string {
		pod, err := p.Clientset.CoreV1().Pods(ns).Get(ctx, bad.Name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.State.Waiting != nil && cs.State.Waiting.Reason == "ImagePullBackOff" {
				return ""
			}
		}
		return fmt.Sprintf("status %+v", pod.Status.ContainerStatuses)
	})

	if t.Failed() {
		for _, pod := range pods {
			t.Logf("log of %s:\n%s", pod, lastBytes(p.Agent.PodLog(ns, pod, "ingester"), 3000))
		}
	}
	t.Logf("scenario took %s", time.Since(testStart).Round(time.Millisecond))
}

// checkStored queries through url: every acknowledged profile must be found exactly
// once, and the total must be a whole number between acknowledged and attempted pushes.
func checkStored(t testing.TB, when, url string, acks *load.AckLog, attempted int64, perProfile int64) {
	t.Helper()
	var ids []string
	for _, a := range acks.Acks() {
		ids = append(ids, a.ID)
	}
	all, acked := countProfiles(t, url, ids, perProfile)
	t.Logf("%s: acknowledged %d, attempted %d; stored %.2f profiles, of which %.2f acknowledged", when, len(ids), attempted, all, acked)
	if acked != float64(len(ids)) {
		t.Errorf("%s: acknowledged profiles: %d pushed, %.3f found", when, len(ids), acked)
	}
	if all != float64(int64(all)) {
		t.Errorf("%s: stored total is %.3f profiles: a profile is half there", when, all)
	}
	if all < float64(len(ids)) {
		t.Errorf("%s: stored %.2f profiles, fewer than the %d acknowledged", when, all, len(ids))
	}
	// attempted includes the pushes the load abandoned at its end: the server
	// may have stored those whole.
	if all > float64(attempted) {
		t.Errorf("%s: stored %.2f profiles, more than the %d attempted", when, all, attempted)
	}
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// poll calls fn every interval in the background until the returned stop is called;
// stop returns once the last call has (a second stop is a no-op).
func poll(interval time.Duration, fn func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			fn()
			select {
			case <-done:
				return
			case <-time.After(interval):
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }); wg.Wait() }
}
