package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// crashDuringScaleDown is a scale-down (5 → 3, RF 3) whose highest pod's process is
// SIGKILLed while it stops (the node died, the grace period ran out): it never leaves the
// ring, so its member stays behind until the operator forgets it (ring hygiene, once the
// member is UNHEALTHY and has no pod). The ring ends with the three remaining members, and
// no acknowledged profile is lost: every series the dead pod held has two more replicas,
// on pods that stay or on the other leaving pod, which flushed them to the bucket. (With
// RF 2 the same crash fails every write of the dead pod's series until it is forgotten:
// a quorum of 2 has no room for a dead replica.)
func (e *scenarioEnv) crashDuringScaleDown(t *testing.T) {
	const ns, name = "crash", "hearth"
	ctx := context.Background()
	e.apply(t, ns, name, 5, 3, map[string]any{"ring": map[string]any{
		"minReadyDuration": "2s", "heartbeatPeriod": "1s", "heartbeatTimeout": "10s"}})
	b := e.startLoad(t, ns)
	time.Sleep(3 * time.Second)

	start := time.Now()
	e.kubectl(t, "-n", ns, "scale", "ingester/"+name, "--replicas=3")
	victim := name + "-4"
	eventually(t, time.Minute, victim+" terminating", func() string {
		pod, err := e.p.Clientset.CoreV1().Pods(ns).Get(ctx, victim, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if pod.DeletionTimestamp == nil {
			return victim + " is not terminating yet"
		}
		// The node must have begun the stop: a kill before it sees the deletion is an
		// ordinary crash, restarted at once.
		if !e.p.Agent.Terminating(ns, victim) {
			return "the node has not begun stopping " + victim
		}
		return ""
	})
	if err := e.p.Agent.Kill(ns, victim); err != nil {
		t.Fatalf("killing %s during its final stop: %v", victim, err)
	}
	t.Logf("crash: killed %s %s after the scale-down began", victim, time.Since(start).Round(time.Millisecond))
	e.waitSettled(t, ns, name, 3, 3*time.Minute)
	t.Logf("crash: 5→3 with %s killed mid-stop settled in %s (the ring has the 3 remaining members)", victim, time.Since(start).Round(time.Millisecond))
	if stops := e.finalStops(ns, []string{victim}); stops[victim] != "" {
		t.Errorf("crash: %s was meant to die before it stopped, but it logged %q", victim, stops[victim])
	}
	forgot := false
	if evs, err := e.p.Clientset.EventsV1().Events(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, ev := range evs.Items {
			if ev.Reason == "ForgotRingMember" && strings.Contains(ev.Note, victim) {
				forgot = true
				t.Logf("crash: Event %s: %s", ev.Reason, ev.Note)
			}
		}
	}
	if !forgot {
		t.Errorf("crash: no ForgotRingMember Event names %s", victim)
	}

	time.Sleep(time.Second)
	// Pushes in flight on the killed pod fail (as with any crash); every other one has a
	// quorum of 2 among its 3 replicas.
	b.end(t, "crash")
	e.checkAll(t, "crash", "http://"+podIP(t, e.p, ns, name+"-0")+":4040", b)
}
