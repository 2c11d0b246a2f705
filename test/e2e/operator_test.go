package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hearth-dev/hearth/internal/load"
	"github.com/hearth-dev/hearth/internal/testutil"
	"github.com/hearth-dev/hearth/test/e2e/platform"
)

// TestOperatorUnderFailure runs issue 15's scenarios on one platform, one after another:
// the operator SIGKILLed at random moments during a rollout, a 5→2 scale-down and a
// deletion; an upgrade of the operator binary that must restart no pod; evictions through
// the Eviction API during a rollout; an old pod's process SIGKILLed mid-rollout (it
// restarts on its own revision's config); two operators with leader election, the leader
// killed mid-rollout; and ten Ingesters in three namespaces, one of them deleted while
// its bucket hangs. A checked load runs throughout each: every acknowledged profile is
// stored exactly once.
func TestOperatorUnderFailure(t *testing.T) {
	env := newScenarioEnv(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	env.rng = rand.New(rand.NewPCG(seed, seed>>1))
	t.Run("CrashDuringRollout", env.operatorCrashDuringRollout)
	t.Run("CrashDuringScaleDownAndDeletion", env.operatorCrashDuringScaleDownAndDeletion)
	t.Run("Upgrade", env.operatorUpgrade)
	t.Run("EvictionsDuringRollout", env.evictionsDuringRollout)
	t.Run("PodKilledDuringRollout", env.podKilledDuringRollout)
	t.Run("LeaderFailover", env.leaderFailover)
	t.Run("Fleet", env.fleet)
}

const rollNS, rollName = "opfail", "roll"

// crashOperator SIGKILLs the running operator and starts a new one (the same binary and
// flags), as a crash and a restart by its Deployment would.
func (e *scenarioEnv) crashOperator(t testing.TB) {
	t.Helper()
	e.p.Operator.Kill()
	op, err := e.p.StartOperator("hearth-operator", "")
	if err != nil {
		t.Fatal(err)
	}
	e.p.Operator = op
}

// randomDelay is a uniformly random duration in [lo, hi).
func (e *scenarioEnv) randomDelay(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(e.rng.Int64N(int64(hi-lo)))
}

// operatorCrashDuringRollout SIGKILLs the operator three times at random moments of a
// 3-pod rollout: it finishes, never more than one pod down, nothing lost.
func (e *scenarioEnv) operatorCrashDuringRollout(t *testing.T) {
	e.apply(t, rollNS, rollName, 3, 3)
	b := e.startLoadOn(t, rollNS, rollName, 0)
	e.rollLoads = append(e.rollLoads, b)
	time.Sleep(2 * time.Second)
	s := e.sample(rollNS, rollName, 3)
	start := time.Now()
	e.setImage(t, rollNS, rollName, "hearth:dev-2")
	var kills []string
	for i := 0; i < 3; i++ {
		time.Sleep(e.randomDelay(time.Second, 8*time.Second))
		ro := e.rolloutStatus(rollNS, rollName)
		e.crashOperator(t)
		kills = append(kills, fmt.Sprintf("%s (%s)", time.Since(start).Round(100*time.Millisecond), ro))
	}
	t.Logf("crash rollout: operator SIGKILLed and restarted at %s", strings.Join(kills, "; "))
	e.waitSettled(t, rollNS, rollName, 3, 4*time.Minute)
	took := time.Since(start)
	s.end()
	t.Logf("crash rollout: 3-pod rollout with 3 operator crashes took %s; at most %d pods not Ready at once (%d samples; worst: %s)",
		took.Round(time.Millisecond), s.maxNotReady.Load(), s.samples.Load(), s.worst.Load())
	if s.maxNotReady.Load() > 1 {
		t.Errorf("crash rollout: %d pods were not Ready at once: %s", s.maxNotReady.Load(), s.worst.Load())
	}
	time.Sleep(time.Second)
	b.end(t, "crash rollout")
	if n := b.errors.Load(); n > 0 {
		t.Errorf("crash rollout: %d pushes failed: %v %v", n, b.codes, b.first)
	}
	e.checkAllOf(t, "crash rollout", "http://"+podIP(t, e.p, rollNS, rollName+"-0")+":4040", e.rollLoads...)
}

// rolloutStatus is the Ingester's status.rollout message, for the logs.
func (e *scenarioEnv) rolloutStatus(ns, name string) string {
	ing, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	msg, _, _ := unstructured.NestedString(ing.Object, "status", "rollout", "message")
	if msg == "" {
		return "no rollout in status"
	}
	return msg
}

// operatorCrashDuringScaleDownAndDeletion scales 5→2 (RF 2) under load, SIGKILLing the
// operator first as soon as status.scaleDown lists prepared pods (between the
// prepare-shutdown calls and the shrink, when it is that quick) and then at random
// moments; then deletes the Ingester, SIGKILLing the operator at random moments of the
// flushes. Every leaving pod stops finally, and the bucket alone holds every acknowledged
// profile.
func (e *scenarioEnv) operatorCrashDuringScaleDownAndDeletion(t *testing.T) {
	const ns, name = "opshrink", "shrink"
	ctx := context.Background()
	e.apply(t, ns, name, 5, 2)
	b := e.startLoadOn(t, ns, name, 0)
	time.Sleep(3 * time.Second)
	s := e.sample(ns, name, 2)
	start := time.Now()
	e.kubectl(t, "-n", ns, "scale", "ingester/"+name, "--replicas=2")
	// The first crash right after the intent is recorded.
	var firstKill string
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		ing, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			if prepared, _, _ := unstructured.NestedStringSlice(ing.Object, "status", "scaleDown", "prepared"); len(prepared) > 0 {
				sts, err := e.p.Clientset.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
				shrunk := err == nil && sts.Spec.Replicas != nil && *sts.Spec.Replicas == 2
				e.crashOperator(t)
				firstKill = fmt.Sprintf("%s, prepared %v, StatefulSet shrunk already: %v", time.Since(start).Round(10*time.Millisecond), prepared, shrunk)
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if firstKill == "" {
		t.Fatal("scale-down: status.scaleDown.prepared never listed a pod")
	}
	kills := []string{firstKill}
	for i := 0; i < 2; i++ {
		time.Sleep(e.randomDelay(500*time.Millisecond, 5*time.Second))
		e.crashOperator(t)
		kills = append(kills, time.Since(start).Round(100*time.Millisecond).String())
	}
	t.Logf("crash scale-down: operator SIGKILLed and restarted at %s", strings.Join(kills, "; "))
	e.waitSettled(t, ns, name, 2, 4*time.Minute)
	downDone := time.Now()
	s.end()
	t.Logf("crash scale-down: 5→2 with 3 operator crashes took %s; at most %d of the 2 staying pods not Ready at once",
		downDone.Sub(start).Round(time.Millisecond), s.maxNotReady.Load())
	if s.maxNotReady.Load() > 0 {
		t.Errorf("crash scale-down: a staying pod was not Ready during the scale-down: %s", s.worst.Load())
	}
	leaving := podNames(name, 5)[2:]
	stops := e.finalStops(ns, leaving)
	for _, pod := range leaving {
		if stops[pod] != "final=true" {
			t.Errorf("crash scale-down: %s stopped with %q, not a final stop (its marker was lost)", pod, stops[pod])
		}
	}
	// The next reconcile forgets the pods that are gone.
	eventually(t, 30*time.Second, "crash scale-down: status.scaleDown cleared", func() string {
		ing, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if sd, found, _ := unstructured.NestedMap(ing.Object, "status", "scaleDown"); found {
			return fmt.Sprintf("status.scaleDown %v", sd)
		}
		return ""
	})
	time.Sleep(time.Second)
	b.end(t, "crash scale-down")
	if n := b.errors.Load(); n > 0 {
		t.Errorf("crash scale-down: %d pushes failed: %v %v", n, b.codes, b.first)
	}

	// The deletion, with crashes.
	b6 := e.startLoadOn(t, ns, name, 0)
	time.Sleep(2 * time.Second)
	del := time.Now()
	if err := e.dyn.Resource(ingesterGVR).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The first crash while the flushes run in the background (the operator forgets them:
	// the next one starts them again), then at random moments.
	kills = nil
	for time.Since(del) < 30*time.Second {
		if c := e.condition(ns, name, "Progressing"); strings.Contains(c, "FlushingBeforeDelete") {
			e.crashOperator(t)
			kills = append(kills, fmt.Sprintf("%s (%s)", time.Since(del).Round(10*time.Millisecond), c))
			break
		} else if strings.Contains(c, "not found") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 0; i < 2; i++ {
		time.Sleep(e.randomDelay(0, 1500*time.Millisecond))
		if _, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			break
		}
		e.crashOperator(t)
		kills = append(kills, time.Since(del).Round(10*time.Millisecond).String())
	}
	t.Logf("crash deletion: operator SIGKILLed and restarted at %v after the delete", kills)
	eventually(t, 3*time.Minute, "crash deletion: the Ingester and its pods gone", func() string {
		if _, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			return "the Ingester is still there: " + e.condition(ns, name, "Progressing")
		}
		pods, err := e.p.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err.Error()
		}
		if len(pods.Items) > 0 {
			return fmt.Sprintf("%d pods left", len(pods.Items))
		}
		return ""
	})
	gone := time.Now()
	t.Logf("crash deletion: Ingester and pods gone %s after the delete", gone.Sub(del).Round(time.Millisecond))
	b6.end(t, "crash deletion")
	// The bucket alone: a fresh ingester with an empty data dir on that bucket.
	port := testutil.FreePort(t)
	fresh := testutil.StartIngester(t, port, "-data-dir="+t.TempDir(), "-storage.backend=filesystem",
		"-storage.filesystem.dir="+e.bucket(ns))
	far := time.Now().Add(time.Hour)
	lost := e.lostBetween(t, "crash scale-down and deletion (the bucket alone)", fresh.URL, []time.Time{{}, start, downDone, del, gone, far},
		[]string{"before the scale-down", "during the scale-down", "between", "during the deletion", "after it"}, b, b6)
	total := 0
	for _, n := range lost {
		total += n
	}
	t.Logf("crash scale-down and deletion: %d acknowledged profiles lost", total)
	if total > 0 {
		t.Errorf("crash scale-down and deletion: %d acknowledged profiles are not in the bucket (by phase: %v)", total, lost)
	}
}

// operatorMetric reads one sample of the operator's metrics endpoint: the sum of the
// series of name whose labels contain every one of labels (`k="v"`).
func operatorMetric(addr, name string, labels ...string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
lines:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue lines
			}
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, sc.Err()
}

// operatorUpgrade replaces the operator with a new binary (another build, another
// version) while nothing in the spec changes: no pod is restarted or replaced, the
// StatefulSet's template does not change.
func (e *scenarioEnv) operatorUpgrade(t *testing.T) {
	ctx := context.Background()
	e.waitSettled(t, rollNS, rollName, 3, time.Minute)
	b := e.startLoadOn(t, rollNS, rollName, 0)
	e.rollLoads = append(e.rollLoads, b)
	before := map[string]string{}
	restarts := map[string]int32{}
	pods, err := e.p.Clientset.CoreV1().Pods(rollNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, pod := range pods.Items {
		before[pod.Name] = string(pod.UID)
		for _, cs := range pod.Status.ContainerStatuses {
			restarts[pod.Name] += cs.RestartCount
		}
	}
	sts, err := e.p.Clientset.AppsV1().StatefulSets(rollNS).Get(ctx, rollName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gen, rev := sts.Generation, sts.Status.UpdateRevision

	// The new operator binary: the same module built with another version.
	start := time.Now()
	bin := filepath.Join(t.TempDir(), "hearth-next")
	root, err := platform.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version=v0.2.0-upgrade", "-o", bin, "./cmd/hearth")
	cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the new operator: %v\n%s", err, out)
	}
	built := time.Since(start)
	upgraded := time.Now()
	e.p.Operator.Stop(10 * time.Second) // the old Deployment's pod stops (SIGTERM)
	port := testutil.FreePort(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", port)
	op, err := e.p.StartOperator("hearth-operator-next", bin, "-metrics-bind-address="+metricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	e.p.Operator = op
	// It has looked at the Ingester several times (resync 2s), through its own metrics.
	eventually(t, 2*time.Minute, "the new operator reconciled the Ingester 5 times", func() string {
		n, err := operatorMetric(metricsAddr, "hearth_operator_reconciles_total", `namespace="`+rollNS+`"`, `name="`+rollName+`"`)
		if err != nil {
			return err.Error()
		}
		if n < 5 {
			return fmt.Sprintf("%v reconciles", n)
		}
		return ""
	})
	if v, err := operatorMetric(metricsAddr, "hearth_operator_ingester_last_settled_timestamp_seconds", `name="`+rollName+`"`); err != nil || v < float64(upgraded.Unix()) {
		t.Errorf("upgrade: hearth_operator_ingester_last_settled_timestamp_seconds = %v (%v), want at least %d (settled)", v, err, upgraded.Unix())
	}
	if !strings.Contains(op.Log(), "v0.2.0-upgrade") {
		t.Errorf("upgrade: the new operator's log does not name its version")
	}
	pods, err = e.p.Clientset.CoreV1().Pods(rollNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, pod := range pods.Items {
		var r int32
		for _, cs := range pod.Status.ContainerStatuses {
			r += cs.RestartCount
		}
		if before[pod.Name] != string(pod.UID) || r != restarts[pod.Name] || pod.DeletionTimestamp != nil {
			t.Errorf("upgrade: %s was replaced or restarted (uid %s → %s, restarts %d → %d)", pod.Name, before[pod.Name], pod.UID, restarts[pod.Name], r)
		}
	}
	if len(pods.Items) != len(before) {
		t.Errorf("upgrade: %d pods, %d before", len(pods.Items), len(before))
	}
	sts, err = e.p.Clientset.AppsV1().StatefulSets(rollNS).Get(ctx, rollName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sts.Generation != gen || sts.Status.UpdateRevision != rev {
		t.Errorf("upgrade: the StatefulSet changed: generation %d → %d, update revision %s → %s", gen, sts.Generation, rev, sts.Status.UpdateRevision)
	}
	t.Logf("upgrade: new binary built in %s; swapped and checked in %s; 0 pods restarted, StatefulSet generation %d unchanged",
		built.Round(time.Millisecond), time.Since(upgraded).Round(time.Millisecond), gen)
	b.end(t, "upgrade")
	if n := b.errors.Load(); n > 0 {
		t.Errorf("upgrade: %d pushes failed: %v %v", n, b.codes, b.first)
	}
	e.checkAllOf(t, "upgrade", "http://"+podIP(t, e.p, rollNS, rollName+"-0")+":4040", e.rollLoads...)
}

// evictionsDuringRollout drains the Ingester's pods during a rollout as kubectl drain
// does: each pod is evicted once through the Eviction API, in a random order, a refused
// eviction (429) retried every 300ms. The operator replaces pods through the same API, so
// the PodDisruptionBudget (maxUnavailable 1) arbitrates both, and never more than one pod
// is down.
func (e *scenarioEnv) evictionsDuringRollout(t *testing.T) {
	ctx := context.Background()
	e.waitSettled(t, rollNS, rollName, 3, time.Minute)
	b := e.startLoadOn(t, rollNS, rollName, 0)
	e.rollLoads = append(e.rollLoads, b)
	time.Sleep(time.Second)
	s := e.sample(rollNS, rollName, 3)
	var allowed, refused, other atomic.Int64
	var firstOther atomic.Value
	victims := podNames(rollName, 3)
	e.rng.Shuffle(len(victims), func(i, j int) { victims[i], victims[j] = victims[j], victims[i] })
	var drained []string
	drainStart := time.Now()
	stopEvict := poll(300*time.Millisecond, func() {
		if len(drained) == len(victims) {
			return
		}
		victim := victims[len(drained)]
		ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: rollNS, Name: victim}}
		err := e.p.Clientset.CoreV1().Pods(rollNS).EvictV1(ctx, ev)
		switch {
		case err == nil:
			allowed.Add(1)
			drained = append(drained, fmt.Sprintf("%s at %s", victim, time.Since(drainStart).Round(100*time.Millisecond)))
		case apierrors.IsTooManyRequests(err):
			refused.Add(1)
		case apierrors.IsNotFound(err): // being recreated: try again
		default:
			other.Add(1)
			firstOther.CompareAndSwap(nil, err.Error())
		}
	})
	t.Cleanup(stopEvict) // also when the test fails before it ends the drain
	start := time.Now()
	e.setImage(t, rollNS, rollName, "hearth:v0.1.0")
	e.waitSettled(t, rollNS, rollName, 3, 5*time.Minute)
	took := time.Since(start)
	stopEvict()
	s.end()
	t.Logf("evictions: 3-pod rollout took %s while a drain ran: evicted %v; %d evictions refused by the budget, %d other errors (%v); at most %d pods not Ready at once (%d samples; worst: %s)",
		took.Round(time.Millisecond), drained, refused.Load(), other.Load(), firstOther.Load(), s.maxNotReady.Load(), s.samples.Load(), s.worst.Load())
	if allowed.Load() == 0 {
		t.Errorf("evictions: the drain evicted no pod during the rollout")
	}
	if s.maxNotReady.Load() > 1 {
		t.Errorf("evictions: %d pods were not Ready at once: %s", s.maxNotReady.Load(), s.worst.Load())
	}
	if refused.Load() == 0 {
		t.Errorf("evictions: the PodDisruptionBudget never refused an eviction during the rollout")
	}
	if other.Load() > 0 {
		t.Errorf("evictions: %d evictions failed otherwise: %v", other.Load(), firstOther.Load())
	}
	// The operator's own replacements went through the Eviction API as well.
	evicted := false
	if evs, err := e.p.Clientset.EventsV1().Events(rollNS).List(ctx, metav1.ListOptions{}); err == nil {
		for _, ev := range evs.Items {
			if ev.Reason == "ReplacingPod" {
				evicted = true
			}
		}
	}
	if !evicted {
		t.Errorf("evictions: no ReplacingPod Event from the operator")
	}
	time.Sleep(time.Second)
	b.end(t, "evictions")
	t.Logf("evictions: %d pushes failed", b.errors.Load())
	e.checkAllOf(t, "evictions", "http://"+podIP(t, e.p, rollNS, rollName+"-0")+":4040", e.rollLoads...)
}

// leaderFailover replaces the operator with two operators electing a leader (as the
// chart runs them); the leader is SIGKILLed mid-rollout and the other takes over and
// finishes it.
func (e *scenarioEnv) leaderFailover(t *testing.T) {
	ctx := context.Background()
	e.waitSettled(t, rollNS, rollName, 3, time.Minute)
	e.p.Operator.Stop(10 * time.Second)
	le := []string{"-leader-elect", "-leader-election-namespace=default", "-leader-elect-lease-duration=6s",
		"-leader-elect-renew-deadline=4s", "-leader-elect-retry-period=500ms"}
	ops := map[string]*platform.Proc{}
	for _, n := range []string{"operator-a", "operator-b"} {
		op, err := e.p.StartOperator(n, "", le...)
		if err != nil {
			t.Fatal(err)
		}
		ops[n] = op
	}
	const acquired = "Successfully acquired lease" // controller-runtime's leaderelection logger
	leader := ""
	eventually(t, time.Minute, "a leader", func() string {
		for n, op := range ops {
			if strings.Contains(op.Log(), acquired) {
				leader = n
				return ""
			}
		}
		return "no operator acquired the lease"
	})
	standby := map[string]string{"operator-a": "operator-b", "operator-b": "operator-a"}[leader]
	e.p.Operator = ops[standby]
	b := e.startLoadOn(t, rollNS, rollName, 0)
	e.rollLoads = append(e.rollLoads, b)
	time.Sleep(time.Second)
	s := e.sample(rollNS, rollName, 3)
	start := time.Now()
	e.setImage(t, rollNS, rollName, "hearth:dev")
	// Mid-rollout: once the first pod is replaced.
	eventually(t, 2*time.Minute, "the first pod replaced", func() string {
		evs, err := e.p.Clientset.EventsV1().Events(rollNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err.Error()
		}
		for _, ev := range evs.Items {
			if ev.Reason == "ReplacingPod" && ev.EventTime.After(start) && strings.Contains(ev.Note, rollName+"-2") {
				return ""
			}
		}
		return "no ReplacingPod Event yet: " + e.rolloutStatus(rollNS, rollName)
	})
	time.Sleep(e.randomDelay(0, 3*time.Second))
	killed := time.Now()
	at := e.rolloutStatus(rollNS, rollName)
	ops[leader].Kill()
	eventually(t, time.Minute, standby+" takes over", func() string {
		if strings.Contains(ops[standby].Log(), acquired) {
			return ""
		}
		return standby + " has not acquired the lease"
	})
	tookOver := time.Since(killed)
	e.waitSettled(t, rollNS, rollName, 3, 4*time.Minute)
	took := time.Since(start)
	s.end()
	t.Logf("leader failover: leader %s SIGKILLed %s into the rollout (%s); %s took over after %s; rollout done in %s; at most %d pods not Ready at once",
		leader, killed.Sub(start).Round(time.Millisecond), at, standby, tookOver.Round(time.Millisecond), took.Round(time.Millisecond), s.maxNotReady.Load())
	if s.maxNotReady.Load() > 1 {
		t.Errorf("leader failover: %d pods were not Ready at once: %s", s.maxNotReady.Load(), s.worst.Load())
	}
	if strings.Contains(ops[standby].Log(), "rollout") == false {
		t.Errorf("leader failover: %s never worked on the rollout", standby)
	}
	time.Sleep(time.Second)
	b.end(t, "leader failover")
	if n := b.errors.Load(); n > 0 {
		t.Errorf("leader failover: %d pushes failed: %v %v", n, b.codes, b.first)
	}
	e.checkAllOf(t, "leader failover", "http://"+podIP(t, e.p, rollNS, rollName+"-0")+":4040", e.rollLoads...)
	// Done with this Ingester: its pods would only take CPU from the fleet.
	if err := e.dyn.Resource(ingesterGVR).Namespace(rollNS).Delete(ctx, rollName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "the rollout Ingester's pods gone", func() string {
		pods, err := e.p.Clientset.CoreV1().Pods(rollNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err.Error()
		}
		if len(pods.Items) > 0 {
			return fmt.Sprintf("%d pods left", len(pods.Items))
		}
		return ""
	})
}

// hangingBucket listens on a loopback port and never answers: an object store that
// hangs (every call waits for its timeout).
func hangingBucket(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// fleet reconciles ten Ingesters in three namespaces together: six roll to a new image
// and three scale 2→1, first alone, then while the tenth is being deleted with a bucket
// that hangs (its flush cannot finish). The others finish in both runs; the log reports
// how long each run took.
func (e *scenarioEnv) fleet(t *testing.T) {
	ctx := context.Background()
	type member struct {
		ns, name string
		replicas int
	}
	var rolls, shrinks []member
	for i := 0; i < 9; i++ {
		m := member{ns: []string{"fleet-a", "fleet-b", "fleet-c"}[i%3], name: fmt.Sprintf("f%d", i), replicas: 1}
		if i%3 == 2 {
			m.replicas = 2
			shrinks = append(shrinks, m)
		} else {
			rolls = append(rolls, m)
		}
	}
	all := append(append([]member{}, rolls...), shrinks...)
	created := time.Now()
	var wg sync.WaitGroup
	for _, m := range all {
		wg.Go(func() { e.apply(t, m.ns, m.name, m.replicas, 1) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("fleet: 9 Ingesters (12 pods) settled %s after they were created", time.Since(created).Round(time.Millisecond))

	// The tenth: an s3 bucket that hangs (static keys: no credential lookups off the host).
	const brokenNS, broken = "fleet-c", "broken"
	if _, err := e.p.Clientset.CoreV1().Secrets(brokenNS).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s3"},
		StringData: map[string]string{"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.apply(t, brokenNS, broken, 1, 1, map[string]any{"objectStorage": map[string]any{"backend": "s3", "bucket": "b",
		"endpoint": hangingBucket(t), "insecure": true, "credentialsSecret": map[string]any{"name": "s3"}}})

	// Give it something to flush: the flush then waits on the bucket.
	brokenIP := podIP(t, e.p, brokenNS, broken+"-0")
	sum, err := load.Run(ctx, load.Config{URL: "http://" + brokenIP + ":4040", Dir: e.corpus, Workers: 2, Series: 5, Duration: 2 * time.Second})
	if err != nil || sum.Profiles == 0 {
		t.Fatalf("pushing to the broken Ingester: %v (%d acknowledged)", err, sum.Profiles)
	}

	// One load, checked, on f0 throughout.
	b := e.startLoadOn(t, rolls[0].ns, rolls[0].name, 0)
	run := func(label, image string) time.Duration {
		start := time.Now()
		for _, m := range rolls {
			e.patchSpec(t, m.ns, m.name, map[string]any{"image": image})
		}
		for _, m := range shrinks {
			e.patchSpec(t, m.ns, m.name, map[string]any{"replicas": 1})
		}
		var mu sync.Mutex
		done := map[string]time.Duration{}
		var wg sync.WaitGroup
		for _, m := range all {
			wg.Go(func() {
				eventually(t, 5*time.Minute, label+": "+m.ns+"/"+m.name, func() string {
					if msg := e.settled(m.ns, m.name, 1); msg != "" {
						return msg
					}
					if m.replicas == 1 {
						sts, err := e.p.Clientset.AppsV1().StatefulSets(m.ns).Get(ctx, m.name, metav1.GetOptions{})
						if err != nil {
							return err.Error()
						}
						if img := sts.Spec.Template.Spec.Containers[0].Image; img != image {
							return "the StatefulSet runs " + img
						}
					}
					return ""
				})
				mu.Lock()
				done[m.ns+"/"+m.name] = time.Since(start)
				mu.Unlock()
			})
		}
		wg.Wait()
		took := time.Since(start)
		t.Logf("fleet %s: 6 rollouts and 3 scale-downs finished in %s (each: %v)", label, took.Round(time.Millisecond), done)
		return took
	}
	alone := run("without the broken Ingester", "hearth:dev-2")
	if t.Failed() {
		t.FailNow()
	}
	for _, m := range shrinks {
		e.patchSpec(t, m.ns, m.name, map[string]any{"replicas": 2})
	}
	for _, m := range shrinks {
		e.waitSettled(t, m.ns, m.name, 2, 3*time.Minute)
	}

	// Delete the broken one: its flush hangs in the bucket.
	if err := e.dyn.Resource(ingesterGVR).Namespace(brokenNS).Delete(ctx, broken, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the broken Ingester's deletion waits for its flush", func() string {
		if c := e.condition(brokenNS, broken, "Progressing"); !strings.Contains(c, "FlushingBeforeDelete") {
			return c
		}
		return ""
	})
	withBroken := run("while the broken Ingester's deletion hangs", "hearth:v0.1.0")
	c := e.condition(brokenNS, broken, "Progressing")
	if !strings.Contains(c, "FlushingBeforeDelete") {
		t.Errorf("fleet: the broken Ingester is not waiting for its flush any more: %s", c)
	}
	t.Logf("fleet: broken Ingester meanwhile: %s", c)
	t.Logf("fleet: delay from the broken Ingester's deletion: %s alone, %s with it (%+.1f s)",
		alone.Round(time.Millisecond), withBroken.Round(time.Millisecond), (withBroken - alone).Seconds())
	// f0 has one replica: while its only pod restarts, pushes in flight may fail (nothing
	// acknowledged may be lost, which checkAll asserts).
	b.end(t, "fleet")
	e.checkAll(t, "fleet", "http://"+podIP(t, e.p, rolls[0].ns, rolls[0].name+"-0")+":4040", b)

	// Let the broken Ingester go without its flush (the documented escape hatch).
	if _, err := e.dyn.Resource(ingesterGVR).Namespace(brokenNS).Patch(ctx, broken, types.MergePatchType,
		[]byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}
