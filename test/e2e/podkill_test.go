package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hearth-dev/hearth/controllers"
)

// podKilledDuringRollout is issue 23's "an old pod's process killed mid-rollout" (finding
// 5) on the shared 3-pod Ingester (RF 3) under load: a config change (log.format json) rolls
// the pods; once one pod runs the new revision and another the old, the old pod's process
// is SIGKILLed. The node agent restarts its container in the same pod, which must start on
// its own revision's config (logfmt, from its own immutable ConfigMap), not the new one;
// the rollout then completes, every pod on the new ConfigMap, nothing acknowledged lost.
func (e *scenarioEnv) podKilledDuringRollout(t *testing.T) {
	ctx := context.Background()
	if _, err := e.dyn.Resource(ingesterGVR).Namespace(rollNS).Get(ctx, rollName, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		e.apply(t, rollNS, rollName, 3, 3) // run on its own (-run)
	}
	e.waitSettled(t, rollNS, rollName, 3, time.Minute)
	sts, err := e.p.Clientset.AppsV1().StatefulSets(rollNS).Get(ctx, rollName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldRev := sts.Status.UpdateRevision
	b := e.startLoadOn(t, rollNS, rollName, 0)
	e.rollLoads = append(e.rollLoads, b)
	time.Sleep(time.Second)

	start := time.Now()
	e.patchSpec(t, rollNS, rollName, map[string]any{"log": map[string]any{"format": "json"}})
	// Mid-rollout: a pod Ready on the new revision, and the old one to kill (the lowest
	// ordinal, replaced last) Ready on the old.
	var updated, victim corev1.Pod
	eventually(t, 3*time.Minute, "a pod Ready on the new revision while another runs the old", func() string {
		pods, err := e.p.Clientset.CoreV1().Pods(rollNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + rollName})
		if err != nil {
			return err.Error()
		}
		var newOK, oldOK bool
		for _, pod := range pods.Items {
			ready := pod.DeletionTimestamp == nil && podReady(&pod)
			switch rev := pod.Labels["controller-revision-hash"]; {
			case rev != oldRev && ready:
				updated, newOK = pod, true
			case rev == oldRev && ready && (!oldOK || pod.Name < victim.Name):
				victim, oldOK = pod, true
			}
		}
		if !newOK || !oldOK {
			return fmt.Sprintf("pod on the new revision Ready: %v, on the old: %v (%s)", newOK, oldOK, e.rolloutStatus(rollNS, rollName))
		}
		return ""
	})
	at := e.rolloutStatus(rollNS, rollName)
	if err := e.p.Agent.Kill(rollNS, victim.Name); err != nil {
		t.Fatalf("killing %s mid-rollout: %v", victim.Name, err)
	}
	t.Logf("pod killed: SIGKILLed %s (old revision %s) %s into the rollout, %s on the new revision (%s)",
		victim.Name, oldRev, time.Since(start).Round(time.Millisecond), updated.Name, at)

	// The restarted process (the pod's second run) starts, and logs in the old format.
	const listening = "ingester listening"
	var restarted string
	eventually(t, time.Minute, victim.Name+"'s container restarted", func() string {
		runs := e.p.Agent.ContainerRuns(rollNS, victim.Name, victim.UID, "ingester")
		if len(runs) < 2 || !strings.Contains(runs[1], listening) {
			return fmt.Sprintf("%d runs of %s's container, the second not listening yet", len(runs), victim.Name)
		}
		restarted = runs[1]
		return ""
	})
	if !strings.Contains(restarted, `msg="`+listening+`"`) || strings.Contains(restarted, `"msg":"`+listening+`"`) {
		t.Errorf("pod killed: %s restarted on the new config (want logfmt, its own revision's):\n%s", victim.Name, lastBytes(restarted, 1500))
	}
	// The pods of the new revision do log JSON: the change is visible in a log.
	if runs := e.p.Agent.ContainerRuns(rollNS, updated.Name, updated.UID, "ingester"); len(runs) == 0 || !strings.Contains(runs[0], `"msg":"`+listening+`"`) {
		t.Errorf("pod killed: %s, on the new revision, does not log JSON: %d runs", updated.Name, len(runs))
	}
	// The same pod (not a replacement), still on the old revision and its ConfigMap,
	// which still exists and holds the old config.
	pod, err := e.p.Clientset.CoreV1().Pods(rollNS).Get(ctx, victim.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.UID != victim.UID || pod.Labels["controller-revision-hash"] != oldRev {
		t.Errorf("pod killed: %s was replaced (uid %s → %s, revision %s → %s) before it restarted", victim.Name, victim.UID, pod.UID, oldRev, pod.Labels["controller-revision-hash"])
	}
	oldCM := configMapOf(pod)
	if oldCM == "" || oldCM == configMapOf(&updated) {
		t.Errorf("pod killed: %s mounts ConfigMap %q, the new revision's pod %q", victim.Name, oldCM, configMapOf(&updated))
	}
	if cm, err := e.p.Clientset.CoreV1().ConfigMaps(rollNS).Get(ctx, oldCM, metav1.GetOptions{}); err != nil {
		t.Errorf("pod killed: the old revision's ConfigMap %s: %v", oldCM, err)
	} else if c := cm.Data[controllers.ConfigFile]; c == "" || strings.Contains(c, "format: json") {
		t.Errorf("pod killed: the old revision's ConfigMap %s holds %q", oldCM, c)
	}

	// The rollout completes: every pod on the new revision and its ConfigMap.
	eventually(t, 4*time.Minute, "pod killed: the rollout Complete", func() string {
		if msg := e.settled(rollNS, rollName, 3); msg != "" {
			return msg
		}
		if c := e.condition(rollNS, rollName, "Progressing"); !strings.HasPrefix(c, "False Complete") {
			return "Progressing " + c
		}
		return ""
	})
	t.Logf("pod killed: rollout Complete %s after the change", time.Since(start).Round(time.Millisecond))
	for _, pn := range podNames(rollName, 3) {
		p, err := e.p.Clientset.CoreV1().Pods(rollNS).Get(ctx, pn, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cm := configMapOf(p); cm == oldCM || cm != configMapOf(&updated) {
			t.Errorf("pod killed: after the rollout %s mounts ConfigMap %s (old %s, new %s)", pn, cm, oldCM, configMapOf(&updated))
		}
	}
	time.Sleep(time.Second)
	// Pushes in flight on the killed pod may fail (as with any crash); none acknowledged
	// may be lost.
	b.end(t, "pod killed")
	e.checkAllOf(t, "pod killed", "http://"+podIP(t, e.p, rollNS, rollName+"-0")+":4040", e.rollLoads...)
}

// configMapOf is the ConfigMap a pod's config volume mounts.
func configMapOf(pod *corev1.Pod) string {
	for _, v := range pod.Spec.Volumes {
		if v.Name == controllers.ConfigVolume && v.ConfigMap != nil {
			return v.ConfigMap.Name
		}
	}
	return ""
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
