package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestScaleDownUpThenRollout is issue 23's 5→3→5 then a rollout, under load, RF 2: the
// pods that come back (3, 4) have their prepare-shutdown marker (left on their retained
// volumes by the scale-down) cancelled, so the rollout restarts them keeping their tokens
// (a non-final stop); then a scale-down requested mid-rollout waits for the rollout and
// runs after it. No acknowledged profile is lost.
func TestScaleDownUpThenRollout(t *testing.T) {
	e := newScenarioEnv(t)
	const ns, name = "updown", "hearth"
	e.apply(t, ns, name, 5, 2, map[string]any{"ring": map[string]any{
		"minReadyDuration": "2s", "heartbeatPeriod": "1s", "heartbeatTimeout": "10s"}})
	b := e.startLoad(t, ns)
	time.Sleep(3 * time.Second)

	start := time.Now()
	e.kubectl(t, "-n", ns, "scale", "ingester/"+name, "--replicas=3")
	e.waitSettled(t, ns, name, 3, 4*time.Minute)
	t.Logf("updown: 5→3 in %s", time.Since(start).Round(time.Millisecond))
	back := []string{name + "-3", name + "-4"}
	if stops := e.finalStops(ns, back); stops[back[0]] != "final=true" || stops[back[1]] != "final=true" {
		t.Fatalf("updown: the leaving pods stopped with %v, want final stops", stops)
	}
	start = time.Now()
	e.kubectl(t, "-n", ns, "scale", "ingester/"+name, "--replicas=5")
	e.waitSettled(t, ns, name, 5, 4*time.Minute)
	t.Logf("updown: 3→5 in %s", time.Since(start).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // load on all five

	start = time.Now()
	e.patchSpec(t, ns, name, map[string]any{"log": map[string]any{"level": "debug"}})
	eventually(t, time.Minute, "the rollout started", func() string { return notRollingOut(e, ns, name) })
	e.waitSettled(t, ns, name, 5, 6*time.Minute)
	t.Logf("updown: rollout of 5 in %s", time.Since(start).Round(time.Millisecond))
	if stops := e.finalStops(ns, back); stops[back[0]] != "final=false" || stops[back[1]] != "final=false" {
		t.Errorf("updown: the returned pods stopped in the rollout with %v, want non-final stops (tokens kept)", stops)
	}

	// A scale-down requested mid-rollout waits, then runs.
	start = time.Now()
	e.patchSpec(t, ns, name, map[string]any{"log": map[string]any{"level": "info"}})
	eventually(t, time.Minute, "the rollout started", func() string { return notRollingOut(e, ns, name) })
	e.kubectl(t, "-n", ns, "scale", "ingester/"+name, "--replicas=3")
	eventually(t, time.Minute, "the scale-down waits for the rollout", func() string {
		msg := progressing(e, ns, name)
		if !strings.Contains(msg, "rollout is in progress") {
			return "Progressing: " + msg
		}
		return ""
	})
	e.waitSettled(t, ns, name, 3, 8*time.Minute)
	t.Logf("updown: rollout then 5→3 (requested mid-rollout) in %s", time.Since(start).Round(time.Millisecond))

	time.Sleep(time.Second)
	b.end(t, "updown")
	e.checkAll(t, "updown", "http://"+podIP(t, e.p, ns, name+"-0")+":4040", b)
}

// progressing is the Ingester's Progressing condition as "reason: message".
func progressing(e *scenarioEnv, ns, name string) string {
	u, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Progressing" {
			return m["reason"].(string) + ": " + m["message"].(string)
		}
	}
	return "no Progressing condition"
}

// notRollingOut is "" once a rollout has begun (status.rollout is set).
func notRollingOut(e *scenarioEnv, ns, name string) string {
	u, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	if _, ok, _ := unstructured.NestedMap(u.Object, "status", "rollout"); !ok {
		return "no status.rollout yet"
	}
	return ""
}
