package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// TestHPA is issue 23's autoscaling through the scale subresource: a
// HorizontalPodAutoscaler (the kube-controller-manager's HPA controller) targets a
// 3-replica Ingester (RF 3) under load, on a pods metric of a custom metrics API the test
// serves through the API server's aggregation layer (customMetricsAPI). The scale
// subresource's selector selects exactly the Ingester's pods, and the HPA controller
// asks the metrics API with it. Raising the metric scales the Ingester 3→5 (every pod
// Ready and ACTIVE); lowering it scales 5→3 the way `kubectl scale` does: the leaving
// pods are prepared (status.scaleDown), flush, upload and leave the ring (final stops),
// then the StatefulSet shrinks. Up to 5 again, a rollout is started and the metric
// lowered at once: the HPA sets 3 replicas mid-rollout, and the StatefulSet does not
// shrink before every pod runs the new template; then the leaving pods flush the same
// way. No acknowledged profile is lost.
func TestHPA(t *testing.T) {
	e := newScenarioEnv(t)
	const ns, name = "hpa", "hearth"
	ctx := context.Background()
	e.apply(t, ns, name, 3, 3, map[string]any{"ring": map[string]any{
		"minReadyDuration": "2s", "heartbeatPeriod": "1s", "heartbeatTimeout": "10s"}})
	b := e.startLoad(t, ns)

	// The scale subresource's selector is what the HPA lists pods (and asks for their
	// metrics) with: it selects exactly this Ingester's pods.
	scale, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{}, "scale")
	if err != nil {
		t.Fatal(err)
	}
	selector, _, _ := unstructured.NestedString(scale.Object, "status", "selector")
	if got := e.podsSelectedBy(t, ns, selector); !slices.Equal(got, podNames(name, 3)) {
		t.Fatalf("the scale subresource's selector %q selects %v, want the Ingester's pods %v", selector, got, podNames(name, 3))
	}

	// The sample autoscaler, as shipped, but for its stabilization windows.
	hpa := sampleHPA(t, e.p.Opts.RepoRoot)
	hpa.Namespace = ns
	if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Ingester" || ref.Name != name || *hpa.Spec.MinReplicas != 3 || hpa.Spec.MaxReplicas != 5 {
		t.Fatalf("the sample autoscaler targets %+v with %d to %d replicas, the test wants Ingester %s, 3 to 5", ref, *hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas, name)
	}
	metric := hpa.Spec.Metrics[0].Pods.Metric.Name
	target := hpa.Spec.Metrics[0].Pods.Target.AverageValue.AsApproximateFloat64() // a pod
	zero := int32(0)
	hpa.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{
		ScaleUp:   &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: &zero},
		ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: &zero},
	}
	m := startCustomMetricsAPI(t, e, metric)
	wantThree, wantFive := 3*target, 5*target // totals over the pods: on target at 3 and 5
	m.set(wantThree)
	if _, err := e.p.Clientset.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the HPA reads the metric (ScalingActive)", func() string {
		h, err := e.p.Clientset.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		for _, c := range h.Status.Conditions {
			if c.Type == autoscalingv2.ScalingActive && c.Status == corev1.ConditionTrue && len(h.Status.CurrentMetrics) > 0 {
				return ""
			}
		}
		return fmt.Sprintf("conditions %v; metrics API requests: %s", hpaConditions(h), m.recent())
	})
	if n := m.calledBy(platformAdmin); n == 0 {
		t.Errorf("no metric request came from the controller manager's user %s through the front proxy: %s", platformAdmin, m.recent())
	}
	if r := e.specReplicas(t, ns, name); r != 3 {
		t.Fatalf("on target, the HPA changed spec.replicas to %d", r)
	}

	// Up: 5 targets' worth over 3 pods: 5 pods are wanted.
	start := time.Now()
	m.set(wantFive)
	e.waitReplicas(t, ns, name, 5)
	e.waitSettled(t, ns, name, 5, 3*time.Minute)
	t.Logf("hpa: metric raised; 3→5 by the HPA in %s", time.Since(start).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // load on all five

	// Down: 3 targets' worth over 5 pods: 3 pods are wanted; the leaving pods flush first.
	leaving := podNames(name, 5)[3:]
	prepared := e.watchPrepared(ns, name)
	blocksBefore := blocksBySource(t, e.bucket(ns))
	start = time.Now()
	m.set(wantThree)
	e.waitReplicas(t, ns, name, 3)
	e.waitSettled(t, ns, name, 3, 4*time.Minute)
	t.Logf("hpa: metric lowered; 5→3 by the HPA in %s", time.Since(start).Round(time.Millisecond))
	e.checkFlushed(t, "hpa scale-down", ns, name, start, leaving, prepared(), blocksBefore)

	// Up again, then a rollout and the metric lowered at once: the scale-down waits.
	m.set(wantFive)
	e.waitReplicas(t, ns, name, 5)
	e.waitSettled(t, ns, name, 5, 3*time.Minute)
	time.Sleep(2 * time.Second)
	prepared = e.watchPrepared(ns, name)
	shrink := e.watchShrink(ns, name, 5)
	blocksBefore = blocksBySource(t, e.bucket(ns))
	start = time.Now()
	e.patchSpec(t, ns, name, map[string]any{"log": map[string]any{"level": "debug"}})
	eventually(t, time.Minute, "the rollout started", func() string { return notRollingOut(e, ns, name) })
	m.set(wantThree)
	e.waitReplicas(t, ns, name, 3)
	eventually(t, time.Minute, "the HPA's scale-down waits for the rollout", func() string {
		if msg := progressing(e, ns, name); !strings.Contains(msg, "rollout is in progress") {
			return "Progressing: " + msg
		}
		return ""
	})
	e.waitSettled(t, ns, name, 3, 8*time.Minute)
	t.Logf("hpa: rollout with the metric lowered at once; rollout then 5→3 in %s", time.Since(start).Round(time.Millisecond))
	if s := shrink(); s != "" {
		t.Errorf("hpa: %s", s)
	}
	e.checkFlushed(t, "hpa scale-down after the rollout", ns, name, start, leaving, prepared(), blocksBefore)

	time.Sleep(time.Second)
	b.end(t, "hpa")
	if n := b.errors.Load(); n > 0 {
		t.Errorf("hpa: %d pushes failed while the HPA scaled: %v %v", n, b.codes, b.first)
	}
	e.checkAll(t, "hpa", "http://"+podIP(t, e.p, ns, name+"-0")+":4040", b)
}

// platformAdmin is the user the platform's controller manager (and so its HPA
// controller) calls the API server as.
const platformAdmin = "hearth-e2e-admin"

// sampleHPA reads the shipped sample autoscaler (config/samples).
func sampleHPA(t testing.TB, repoRoot string) *autoscalingv2.HorizontalPodAutoscaler {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "config", "samples", "autoscaling_v2_horizontalpodautoscaler.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	hpa := &autoscalingv2.HorizontalPodAutoscaler{}
	if err := yaml.UnmarshalStrict(b, hpa); err != nil {
		t.Fatal(err)
	}
	if len(hpa.Spec.Metrics) != 1 || hpa.Spec.Metrics[0].Pods == nil || hpa.Spec.Metrics[0].Pods.Target.AverageValue == nil || hpa.Spec.MinReplicas == nil {
		t.Fatalf("the sample autoscaler is not one pods metric with an average value target and minReplicas: %+v", hpa.Spec)
	}
	return hpa
}

func hpaConditions(h *autoscalingv2.HorizontalPodAutoscaler) string {
	var out []string
	for _, c := range h.Status.Conditions {
		out = append(out, fmt.Sprintf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message))
	}
	return strings.Join(out, "; ")
}

// podsSelectedBy lists the names of the pods of ns a label selector selects.
func (e *scenarioEnv) podsSelectedBy(t testing.TB, ns, selector string) []string {
	t.Helper()
	if selector == "" {
		t.Fatal("empty selector")
	}
	pods, err := e.p.Clientset.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	return names
}

func (e *scenarioEnv) specReplicas(t testing.TB, ns, name string) int64 {
	t.Helper()
	u, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
	return r
}

// waitReplicas waits until the HPA has set the Ingester's spec.replicas to n.
func (e *scenarioEnv) waitReplicas(t testing.TB, ns, name string, n int64) {
	t.Helper()
	eventually(t, time.Minute, fmt.Sprintf("the HPA sets %d replicas", n), func() string {
		if r := e.specReplicas(t, ns, name); r != n {
			h, err := e.p.Clientset.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(context.Background(), name, metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			return fmt.Sprintf("spec.replicas %d; HPA desired %d, %s", r, h.Status.DesiredReplicas, hpaConditions(h))
		}
		return ""
	})
}

// watchPrepared polls the Ingester's status.scaleDown.prepared; the returned function
// stops polling and returns every pod it listed.
func (e *scenarioEnv) watchPrepared(ns, name string) func() []string {
	var mu sync.Mutex
	seen := map[string]bool{}
	stop := poll(100*time.Millisecond, func() {
		u, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return
		}
		prepared, _, _ := unstructured.NestedStringSlice(u.Object, "status", "scaleDown", "prepared")
		mu.Lock()
		for _, p := range prepared {
			seen[p] = true
		}
		mu.Unlock()
	})
	return func() []string {
		stop()
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for p := range seen {
			out = append(out, p)
		}
		sort.Strings(out)
		return out
	}
}

// watchShrink polls the StatefulSet; the returned function stops polling and says ""
// when, the first time it was seen with fewer than from replicas, every pod of it ran its
// update revision (no shrink during a rollout), else what it saw.
func (e *scenarioEnv) watchShrink(ns, name string, from int32) func() string {
	var mu sync.Mutex
	result := "the StatefulSet was never seen shrunk"
	done := false
	stop := poll(100*time.Millisecond, func() {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		ctx := context.Background()
		sts, err := e.p.Clientset.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || sts.Spec.Replicas == nil || *sts.Spec.Replicas >= from {
			return
		}
		done = true
		pods, err := e.p.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + name})
		if err != nil {
			result = err.Error()
			return
		}
		var outdated []string
		for _, p := range pods.Items {
			if rev := p.Labels["controller-revision-hash"]; rev != sts.Status.UpdateRevision {
				outdated = append(outdated, p.Name+" on "+rev)
			}
		}
		result = ""
		if len(outdated) > 0 {
			result = fmt.Sprintf("the StatefulSet shrank to %d mid-rollout: pods not on the update revision %s: %v",
				*sts.Spec.Replicas, sts.Status.UpdateRevision, outdated)
		}
	})
	return func() string {
		stop()
		mu.Lock()
		defer mu.Unlock()
		return result
	}
}

// checkFlushed asserts that a scale-down prepared the leaving pods (status.scaleDown
// listed them), that each stopped with a final stop (flushed, uploaded, left the ring)
// and uploaded a block since blocksBefore, that the operator reported the scale-down
// (ScalingDown event since since), and that the ring lists only the staying pods.
func (e *scenarioEnv) checkFlushed(t testing.TB, when, ns, name string, since time.Time, leaving, prepared []string, blocksBefore map[string]int) {
	t.Helper()
	for _, pod := range leaving {
		if !slices.Contains(prepared, pod) {
			t.Errorf("%s: status.scaleDown.prepared listed %v, never %s", when, prepared, pod)
		}
	}
	blocksAfter := blocksBySource(t, e.bucket(ns))
	stops := e.finalStops(ns, leaving)
	t.Logf("%s: prepared %v; blocks by writer before %v, after %v; the leaving pods stopped with %v", when, prepared, blocksBefore, blocksAfter, stops)
	for _, pod := range leaving {
		if stops[pod] != "final=true" {
			t.Errorf("%s: %s stopped with %q, not a final stop", when, pod, stops[pod])
		}
		if blocksAfter[pod] <= blocksBefore[pod] {
			t.Errorf("%s: %s left without uploading a block (%d before, %d after)", when, pod, blocksBefore[pod], blocksAfter[pod])
		}
	}
	evs, err := e.p.Clientset.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scalingDown := false
	for _, ev := range evs.Items {
		last := ev.EventTime.Time
		if ev.Series != nil {
			last = ev.Series.LastObservedTime.Time
		}
		if ev.Reason == "ScalingDown" && ev.Regarding.Name == name && !last.Before(since.Truncate(time.Second)) &&
			strings.Contains(ev.Note, strings.Join(leaving, ", ")) {
			scalingDown = true
		}
	}
	if !scalingDown {
		t.Errorf("%s: no ScalingDown event names %v", when, leaving)
	}
	staying := podNames(name, 3)
	if msg := ringActive(podIP(t, e.p, ns, staying[0]), staying...); msg != "" {
		t.Errorf("%s: %s", when, msg)
	}
}
