package controllers

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

// Issue 23 finding 2: pods brought back by a scale-up carry the prepare-shutdown marker
// their scale-down left on the retained volume; the operator cancels it on every pod
// below the desired count, so their next restart is not a final stop.
func TestScaleUpCancelsTheMarkerOfReturningPods(t *testing.T) {
	c := newCluster(t, 5, nil) // whenScaled: Retain (the default): the volumes stay
	p := c.p
	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Replicas = ptr.To[int32](3) })
	eventually(t, "3 pods", func() error {
		if n := len(c.pods()); n != 3 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Replicas = ptr.To[int32](5) })
	eventually(t, "5 pods", func() error {
		if n := len(c.pods()); n != 5 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
	ip3, ip4 := c.ready("ing-3"), c.ready("ing-4")
	eventually(t, "the returning pods' markers cancelled", func() error {
		calls := p.pods.callsTo(ip3, ip4)
		for _, want := range []string{"UNPREPARE " + ip3, "UNPREPARE " + ip4} {
			if !slices.Contains(calls, want) {
				return fmt.Errorf("calls %v lack %s", calls, want)
			}
		}
		return nil
	})
	// Once per pod incarnation: later passes do not call them again.
	before := len(p.pods.callsTo(ip3, ip4))
	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Log.Level = "debug" }) // a few passes
	c.waitRollout([]string{"ing-4"}, "ing-4 not ready")
	if calls := p.pods.callsTo(ip3); len(calls) > 1 {
		t.Fatalf("ing-3 called again: %v (before: %d calls to both)", calls, before)
	}
}

// Issue 23 finding 3: a scale-down requested mid-rollout waits (the StatefulSet keeps its
// size, no pod is prepared), the rollout goes on, then the scale-down runs.
func TestScaleDownWaitsForTheRollout(t *testing.T) {
	c := newCluster(t, 5, nil)
	p := c.p
	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Image = "hearth:v0.2.0" })
	eventually(t, "ing-4 recreated on the new image", func() error {
		if img := c.image("ing-4"); img != "hearth:v0.2.0" {
			return fmt.Errorf("ing-4 runs %q", img)
		}
		return nil
	})
	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Replicas = ptr.To[int32](3) })
	eventually(t, "the scale-down waits for the rollout", func() error {
		c := condition(p.get(t, c.ns, c.name), hearthv1.ConditionProgressing)
		if c == nil || c.Reason != ReasonScalingDown || !strings.Contains(c.Message, "rollout is in progress") {
			return fmt.Errorf("Progressing %+v", c)
		}
		return nil
	})
	if r := c.stsReplicas(); r != 5 {
		t.Fatalf("StatefulSet at %d replicas mid-rollout", r)
	}
	if calls := p.pods.callsTo(c.ip("ing-3"), c.ip("ing-4")); slices.ContainsFunc(calls, func(s string) bool { return strings.HasPrefix(s, "PREPARE") }) {
		t.Fatalf("prepared mid-rollout: %v", calls)
	}
	// The rollout goes on through all five pods.
	c.ready("ing-4")
	for _, name := range []string{"ing-3", "ing-2", "ing-1", "ing-0"} {
		eventually(t, name+" on the new image", func() error {
			if img := c.image(name); img != "hearth:v0.2.0" {
				return fmt.Errorf("%s runs %q; Progressing %+v", name, img, condition(p.get(t, c.ns, c.name), hearthv1.ConditionProgressing))
			}
			return nil
		})
		if r := c.stsReplicas(); r != 5 {
			t.Fatalf("StatefulSet at %d replicas mid-rollout", r)
		}
		c.ready(name)
	}
	ip3, ip4 := c.ip("ing-3"), c.ip("ing-4")
	eventually(t, "then the scale-down runs", func() error {
		if r := c.stsReplicas(); r != 3 {
			return fmt.Errorf("replicas %d", r)
		}
		calls := p.pods.callsTo(ip3, ip4)
		for _, want := range []string{"PREPARE " + ip3, "PREPARE " + ip4} {
			if !slices.Contains(calls, want) {
				return fmt.Errorf("calls %v lack %s", calls, want)
			}
		}
		return nil
	})
}

func (c *cluster) stsReplicas() int32 {
	c.t.Helper()
	sts := &appsv1.StatefulSet{}
	if err := c.p.c.Get(ctx, types.NamespacedName{Namespace: c.ns, Name: c.name}, sts); err != nil {
		return -1
	}
	return ptr.Deref(sts.Spec.Replicas, -1)
}

// Issue 23 finding 8: an error outside the apply phase (a second PodDisruptionBudget makes
// every eviction fail) is Degraded with its reason, and the rollout resumes soon after the
// cause is gone (a bounded retry, not a backoff of minutes).
func TestRolloutErrorIsDegradedAndRetried(t *testing.T) {
	c := newCluster(t, 3, nil)
	p := c.p
	extra := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: "extra"},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: ptr.To(intstr.FromInt32(1)),
			Selector:       &metav1.LabelSelector{MatchLabels: map[string]string{LabelComponent: component}},
		},
	}
	if err := p.c.Create(ctx, extra); err != nil {
		t.Fatal(err)
	}
	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Image = "hearth:v0.2.0" })
	ing := p.wantCondition(t, c.ns, c.name, hearthv1.ConditionDegraded, metav1.ConditionTrue, "RolloutFailed")
	if msg := condition(ing, hearthv1.ConditionDegraded).Message; !strings.Contains(msg, "ing-2") || !strings.Contains(msg, "PodDisruptionBudget") {
		t.Fatalf("Degraded message %q", msg)
	}
	// Failing for a while (several retries) and then fixed: the rollout resumes.
	eventually(t, "retried several times", func() error {
		d := condition(p.get(t, c.ns, c.name), hearthv1.ConditionDegraded)
		if since := time.Since(d.LastTransitionTime.Time); since < 20*time.Second {
			return fmt.Errorf("failing for %v", since)
		}
		return nil
	})
	if err := p.c.Delete(ctx, extra); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the rollout resumes", func() error {
		if img := c.image("ing-2"); img != "hearth:v0.2.0" {
			return fmt.Errorf("ing-2 runs %q", img)
		}
		return nil
	})
	p.wantCondition(t, c.ns, c.name, hearthv1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected)
}

// Issue 23 finding 6: while the StatefulSet is missing (deleted with --cascade=orphan),
// a scale-down still prepares the leaving pods before a smaller StatefulSet exists.
func TestScaleDownWhileTheStatefulSetIsMissing(t *testing.T) {
	c := newCluster(t, 5, nil)
	p := c.p
	ip3, ip4 := c.ip("ing-3"), c.ip("ing-4")
	var mu sync.Mutex
	atPrepare := map[string]int32{}
	p.pods.hook(func(call string) {
		if strings.HasPrefix(call, "PREPARE ") {
			r := c.stsReplicas()
			mu.Lock()
			atPrepare[call] = r
			mu.Unlock()
		}
	})
	t.Cleanup(func() { p.pods.hook(nil) })
	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Paused = true })
	p.wantCondition(t, c.ns, c.name, hearthv1.ConditionProgressing, metav1.ConditionFalse, ReasonPaused)
	sts := &appsv1.StatefulSet{}
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: c.ns, Name: c.name}, sts); err != nil {
		t.Fatal(err)
	}
	if err := p.c.Delete(ctx, sts, client.PropagationPolicy(metav1.DeletePropagationOrphan)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "StatefulSet gone, pods kept", func() error {
		if r := c.stsReplicas(); r != -1 {
			return fmt.Errorf("StatefulSet still there (%d replicas)", r)
		}
		if n := len(c.pods()); n != 5 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Paused = false; i.Spec.Replicas = ptr.To[int32](3) })
	eventually(t, "recreated and shrunk to 3", func() error {
		if r := c.stsReplicas(); r != 3 {
			return fmt.Errorf("replicas %d", r)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for _, ip := range []string{ip3, ip4} {
		r, ok := atPrepare["PREPARE "+ip]
		if !ok || r == 3 {
			t.Fatalf("leaving pod at %s prepared: %v (StatefulSet replicas then %d; all %v)", ip, ok, r, atPrepare)
		}
	}
}

// Issue 23 finding 9: a pod on a bad spec that runs but never turns Ready is replaced when
// the spec is reverted (without zones), instead of the rollout waiting on it forever.
func TestRevertReplacesAPodThatNeverTurnsReady(t *testing.T) {
	c := newCluster(t, 3, nil)
	p := c.p
	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Image = "hearth:never-ready" })
	eventually(t, "ing-2 on the bad image", func() error {
		if img := c.image("ing-2"); img != "hearth:never-ready" {
			return fmt.Errorf("ing-2 runs %q", img)
		}
		return nil
	})
	p.setPod(t, c.ns, "ing-2", uniqueIP(), false, "") // runs, never Ready
	c.waitRollout([]string{"ing-2"}, "ing-2 not ready")
	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Image = "hearth:v0.1.0" })
	eventually(t, "ing-2 replaced on the reverted image", func() error {
		if img := c.image("ing-2"); img != "hearth:v0.1.0" {
			return fmt.Errorf("ing-2 runs %q", img)
		}
		return nil
	})
	c.ready("ing-2")
	p.wantCondition(t, c.ns, c.name, hearthv1.ConditionProgressing, metav1.ConditionFalse, ReasonComplete)
}

// podConfigMap is the ConfigMap a pod mounts.
func (c *cluster) podConfigMap(pod string) string {
	p, ok := c.pods()[pod]
	if !ok {
		return ""
	}
	for _, v := range p.Spec.Volumes {
		if v.ConfigMap != nil {
			return v.ConfigMap.Name
		}
	}
	return ""
}

// Issue 23 finding 5: one immutable ConfigMap per revision: mid-rollout an old pod still
// mounts its own config (its container restarts on it), and once no pod uses the old one
// it is deleted.
func TestConfigMapPerRevision(t *testing.T) {
	c := newCluster(t, 3, nil)
	p := c.p
	old := c.podConfigMap("ing-0")
	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Log.Level = "debug" })
	eventually(t, "ing-2 replaced on the new config", func() error {
		if cm := c.podConfigMap("ing-2"); cm == old || cm == "" {
			return fmt.Errorf("ing-2 mounts %q", cm)
		}
		return nil
	})
	cur := c.podConfigMap("ing-2")
	if got := c.podConfigMap("ing-0"); got != old {
		t.Fatalf("old pod ing-0 mounts %q, want its own %q", got, old)
	}
	for name, debug := range map[string]bool{old: false, cur: true} {
		cm := &corev1.ConfigMap{}
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: c.ns, Name: name}, cm); err != nil {
			t.Fatalf("ConfigMap %s: %v", name, err)
		}
		if strings.Contains(cm.Data[ConfigFile], "level: debug") != debug || !ptr.Deref(cm.Immutable, false) {
			t.Fatalf("ConfigMap %s (immutable %v):\n%s", name, cm.Immutable, cm.Data[ConfigFile])
		}
	}
	c.ready("ing-2")
	for _, name := range []string{"ing-1", "ing-0"} {
		eventually(t, name+" on the new config", func() error {
			if cm := c.podConfigMap(name); cm != cur {
				return fmt.Errorf("%s mounts %q; status.rollout %+v", name, cm, p.get(t, c.ns, c.name).Status.Rollout)
			}
			return nil
		})
		c.ready(name)
	}
	eventually(t, "the old ConfigMap deleted once no pod uses it", func() error {
		err := p.c.Get(ctx, types.NamespacedName{Namespace: c.ns, Name: old}, &corev1.ConfigMap{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("%s still there (%v)", old, err)
		}
		return nil
	})
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: c.ns, Name: cur}, &corev1.ConfigMap{}); err != nil {
		t.Fatalf("current ConfigMap: %v", err)
	}
}

// Issue 23 finding 10: with deletionPolicy FlushWithTimeout a deletion whose flushes fail
// (the bucket is gone) ends after the timeout, with a Warning Event naming the pods.
func TestDeletionPolicyFlushWithTimeout(t *testing.T) {
	c := newCluster(t, 2, func(i *hearthv1.Ingester) {
		i.Spec.ReplicationFactor = 2
		i.Spec.DeletionPolicy = hearthv1.DeletionFlushWithTimeout
		i.Spec.DeletionFlushTimeout = "5s"
	})
	p := c.p
	ip := c.ip("ing-1")
	p.pods.failing("FLUSH "+ip, fmt.Errorf("bucket gone"))
	t.Cleanup(func() { p.pods.failing("FLUSH "+ip, nil) })
	if err := p.c.Delete(ctx, p.get(t, c.ns, c.name)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Ingester gone after the timeout", func() error {
		err := p.c.Get(ctx, types.NamespacedName{Namespace: c.ns, Name: c.name}, &hearthv1.Ingester{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})
	p.wantEventFor(t, c.ns, c.name, ReasonDeletedUnflushed, "ing-1")
}

// wantEventFor waits for an Event of reason about name whose note contains text.
func (p *platform) wantEventFor(t *testing.T, ns, name, reason, text string) {
	t.Helper()
	eventually(t, "Event "+reason, func() error {
		var evs eventsv1.EventList
		if err := p.c.List(ctx, &evs, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == reason && e.Regarding.Name == name && strings.Contains(e.Note, text) {
				return nil
			}
		}
		return fmt.Errorf("no %s Event for %s with %q among %d", reason, name, text, len(evs.Items))
	})
}

// Issue 23 finding 7: claims made from an older claim template (app.kubernetes.io/instance,
// Argo CD's tracking label) are relabelled; new claims never carry it.
func TestClaimsRelabelledForArgoCD(t *testing.T) {
	c := newCluster(t, 1, func(i *hearthv1.Ingester) { i.Spec.ReplicationFactor = 1 })
	p := c.p
	old := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: "data-ing-7", Labels: SelectorLabels(p.get(t, c.ns, c.name))},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
	}
	if err := p.c.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every claim without app.kubernetes.io/instance", func() error {
		var pvcs corev1.PersistentVolumeClaimList
		if err := p.c.List(ctx, &pvcs, client.InNamespace(c.ns)); err != nil {
			return err
		}
		if len(pvcs.Items) != 2 {
			return fmt.Errorf("%d claims", len(pvcs.Items))
		}
		for _, pvc := range pvcs.Items {
			if _, ok := pvc.Labels[LabelInstance]; ok || pvc.Labels[LabelClaimInstance] != c.name {
				return fmt.Errorf("claim %s labels %v", pvc.Name, pvc.Labels)
			}
		}
		return nil
	})
}

// Issue 23 finding 4: on a class without allowVolumeExpansion a storage growth is
// Degraded, yet a later rollout still runs (the volumes keep their size).
func TestRolloutRunsWhileAGrowthIsBlocked(t *testing.T) {
	p := getPlatform(t)
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{GenerateName: "fixed-"}, Provisioner: "example.com/none"}
	if err := p.c.Create(ctx, sc); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, 3, func(i *hearthv1.Ingester) { i.Spec.Storage.StorageClassName = ptr.To(sc.Name) })
	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Storage.Size = resource.MustParse("2Gi") })
	p.wantCondition(t, c.ns, c.name, hearthv1.ConditionDegraded, metav1.ConditionTrue, ReasonNotExpandable)
	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Image = "hearth:v0.2.0" })
	eventually(t, "the rollout runs", func() error {
		if img := c.image("ing-2"); img != "hearth:v0.2.0" {
			return fmt.Errorf("ing-2 runs %q", img)
		}
		return nil
	})
}

// Issue 23 finding 10: a name and zone whose StatefulSet revision label would exceed 63
// characters are rejected by the API server.
func TestLongNamePlusZoneRejected(t *testing.T) {
	p := getPlatform(t)
	ns := p.namespace(t)
	ing := newIngester(ns, strings.Repeat("n", 40))
	ing.Spec.Replicas = ptr.To[int32](3)
	ing.Spec.ReplicationFactor = 1
	ing.Spec.Zones = []hearthv1.ZoneSpec{{Name: strings.Repeat("z", 12)}}
	err := p.c.Create(ctx, ing)
	if err == nil || !strings.Contains(err.Error(), "63-character label") {
		t.Fatalf("created (or another error): %v", err)
	}
	ing.Spec.Zones[0].Name = strings.Repeat("z", 11)
	if err := p.c.Create(ctx, ing); err != nil {
		t.Fatalf("a name + zone of 51 characters: %v", err)
	}
}
