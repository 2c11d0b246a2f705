package controllers

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

var ipCounter atomic.Int32

// uniqueIP gives every pod of every test its own address (the fakes are keyed by IP).
func uniqueIP() string {
	n := ipCounter.Add(1)
	return fmt.Sprintf("10.%d.%d.%d", 100+n/65536, n/256%256, n%256)
}

// setPod plays the kubelet for one pod: running and ready at ip, or waiting with a reason.
func (p *platform) setPod(t *testing.T, ns, name, ip string, ready bool, waiting string) {
	t.Helper()
	eventually(t, "pod status of "+name, func() error {
		pod := &corev1.Pod{}
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, pod); err != nil {
			return err
		}
		now := metav1.Now()
		status := corev1.ConditionFalse
		if ready {
			status = corev1.ConditionTrue
		}
		pod.Status.Phase = corev1.PodRunning
		pod.Status.PodIP, pod.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status, LastTransitionTime: now}}
		state := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
		if waiting != "" {
			state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: waiting}}
		}
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: ContainerName, Ready: ready, Image: pod.Spec.Containers[0].Image, State: state}}
		return p.c.Status().Update(ctx, pod)
	})
}

// cluster is one test's Ingester with pods made ready and a scripted ring.
type cluster struct {
	p        *platform
	t        *testing.T
	ns, name string
	mu       sync.Mutex
	ips      map[string]string // pod name → IP
	members  map[string]string // the ring every pod reports
}

func (c *cluster) setRing(members map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members = members
	for _, ip := range c.ips {
		c.p.ring.set(ip, members)
	}
}

// ready makes a pod ready at a fresh IP (a recreated pod gets a new one), reporting ring.
func (c *cluster) ready(name string) string {
	c.t.Helper()
	ip := uniqueIP()
	c.mu.Lock()
	c.ips[name] = ip
	c.p.ring.set(ip, c.members)
	c.mu.Unlock()
	c.p.setPod(c.t, c.ns, name, ip, true, "")
	return ip
}

func (c *cluster) ip(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ips[name]
}

func (c *cluster) pods() map[string]corev1.Pod {
	c.t.Helper()
	var list corev1.PodList
	if err := c.p.c.List(ctx, &list, client.InNamespace(c.ns), client.MatchingLabels{LabelInstance: c.name}); err != nil {
		c.t.Fatal(err)
	}
	out := map[string]corev1.Pod{}
	for _, pod := range list.Items {
		out[pod.Name] = pod
	}
	return out
}

func (c *cluster) image(pod string) string {
	if p, ok := c.pods()[pod]; ok {
		return p.Spec.Containers[0].Image
	}
	return ""
}

// newCluster creates an Ingester with n replicas, waits for its pods and makes them
// ready with every member ACTIVE in the ring.
func newCluster(t *testing.T, n int32, mod func(*hearthv1.Ingester)) *cluster {
	p := getPlatform(t)
	c := &cluster{p: p, t: t, ns: p.namespace(t), name: "ing", ips: map[string]string{}}
	ing := newIngester(c.ns, c.name)
	ing.Spec.Replicas = ptr.To(n)
	if mod != nil {
		mod(ing)
	}
	if err := p.c.Create(ctx, ing); err != nil {
		t.Fatal(err)
	}
	eventually(t, fmt.Sprintf("%d pods", n), func() error {
		if got := len(c.pods()); got != int(n) {
			return fmt.Errorf("%d pods", got)
		}
		return nil
	})
	members := map[string]string{}
	for name := range c.pods() {
		members[name] = StateActive
	}
	c.setRing(members)
	for name := range c.pods() {
		c.ready(name)
	}
	p.wantCondition(t, c.ns, c.name, hearthv1.ConditionAvailable, metav1.ConditionTrue, ReasonAllReady)
	return c
}

func ringWith(base map[string]string, id, state string) map[string]string {
	m := map[string]string{}
	for k, v := range base {
		m[k] = v
	}
	m[id] = state
	return m
}

// waitRollout waits until status.rollout says it waits with the pods in flight and a
// message containing msg.
func (c *cluster) waitRollout(inFlight []string, msg string) {
	c.t.Helper()
	eventually(c.t, fmt.Sprintf("rollout waiting for %v (%s)", inFlight, msg), func() error {
		ro := c.p.get(c.t, c.ns, c.name).Status.Rollout
		if ro == nil || !reflect.DeepEqual(ro.InFlight, inFlight) || !strings.Contains(ro.Message, msg) {
			return fmt.Errorf("status.rollout %+v", ro)
		}
		return nil
	})
}

func TestRolloutOnePodAtATimeWhileTheRingIsHealthy(t *testing.T) {
	c := newCluster(t, 3, nil)
	p := c.p
	base := c.members
	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Image = "hearth:v0.2.0" })

	for step, name := range []string{"ing-2", "ing-1", "ing-0"} {
		// The operator deletes the highest outdated ordinal; the StatefulSet controller
		// recreates it on the new template; the rollout waits for it.
		eventually(t, name+" recreated on the new image", func() error {
			if img := c.image(name); img != "hearth:v0.2.0" {
				return fmt.Errorf("%s runs %q", name, img)
			}
			return nil
		})
		if step < 2 {
			c.waitRollout([]string{name}, name+" not ready")
		} else { // nothing outdated any more: the last replacement is waited for as any pod
			p.wantCondition(t, c.ns, c.name, hearthv1.ConditionProgressing, metav1.ConditionTrue, ReasonWaitingReady)
		}
		for i, other := range []string{"ing-2", "ing-1", "ing-0"} {
			want := "hearth:v0.1.0"
			if i <= step {
				want = "hearth:v0.2.0"
			}
			if img := c.image(other); img != want {
				t.Fatalf("step %d: %s runs %s, want %s (one pod at a time)", step, other, img, want)
			}
		}
		if step == 2 {
			break
		}
		// Ready but JOINING: still waiting.
		c.setRing(ringWith(base, name, StateJoining))
		c.ready(name)
		c.waitRollout([]string{name}, name+" JOINING")
		// ACTIVE, but another member is LEAVING: the ring is not healthy.
		c.setRing(ringWith(base, "ghost", StateLeaving))
		c.waitRollout([]string{"ghost"}, "ring member ghost LEAVING")
		if img := c.image([]string{"ing-2", "ing-1", "ing-0"}[step+1]); img != "hearth:v0.1.0" {
			t.Fatalf("replaced while the ring was unhealthy")
		}
		c.setRing(base)
	}
	c.ready("ing-0")
	p.wantCondition(t, c.ns, c.name, hearthv1.ConditionProgressing, metav1.ConditionFalse, ReasonComplete)
	if ro := p.get(t, c.ns, c.name).Status.Rollout; ro != nil {
		t.Fatalf("status.rollout after the rollout: %+v", ro)
	}
	p.wantEvent(t, c.ns, c.name, ReasonReplacing)

	// Ring hygiene: an UNHEALTHY member without a pod is forgotten through a ready pod.
	c.setRing(ringWith(base, "ing-7", StateUnhealthy))
	eventually(t, "forget ing-7", func() error {
		for _, call := range p.pods.callsTo(c.ip("ing-0"), c.ip("ing-1"), c.ip("ing-2")) {
			if strings.HasPrefix(call, "FORGET ") && strings.HasSuffix(call, " ing-7") {
				return nil
			}
		}
		return errors.New("no FORGET call for ing-7")
	})
	p.wantEvent(t, c.ns, c.name, ReasonForgotMember)
	for _, call := range p.pods.callsTo(c.ip("ing-0"), c.ip("ing-1"), c.ip("ing-2")) {
		if strings.HasPrefix(call, "FORGET ") && !strings.HasSuffix(call, " ing-7") {
			t.Fatalf("forgot a member whose pod exists: %s", call)
		}
	}
	c.setRing(base)
}

func TestStuckPodReplacedDespiteTheBudget(t *testing.T) {
	c := newCluster(t, 3, nil)
	p := c.p
	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Image = "hearth:bad" })
	eventually(t, "ing-2 on the bad image", func() error {
		if img := c.image("ing-2"); img != "hearth:bad" {
			return fmt.Errorf("ing-2 runs %q", img)
		}
		return nil
	})
	// The new image cannot be pulled: the rollout stops at this pod and says why.
	p.setPod(t, c.ns, "ing-2", uniqueIP(), false, "ImagePullBackOff")
	p.wantCondition(t, c.ns, c.name, hearthv1.ConditionDegraded, metav1.ConditionTrue, ReasonPodsNotStarting)
	c.waitRollout([]string{"ing-2"}, "ing-2 not ready")
	// The budget is used up (and another pod is not ready either)...
	p.setPod(t, c.ns, "ing-1", c.ip("ing-1"), false, "")
	// ...yet fixing the spec replaces the stuck pod.
	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Image = "hearth:v0.3.0" })
	eventually(t, "stuck ing-2 replaced on the fixed image", func() error {
		if img := c.image("ing-2"); img != "hearth:v0.3.0" {
			return fmt.Errorf("ing-2 runs %q", img)
		}
		return nil
	})
	c.waitRollout([]string{"ing-1", "ing-2"}, "not ready")
	for _, other := range []string{"ing-0", "ing-1"} {
		if img := c.image(other); img != "hearth:v0.1.0" {
			t.Fatalf("%s replaced (%s) while the ring is unhealthy: only stuck pods may be", other, img)
		}
	}
}

func TestScaleDownPreparesTheLeavingPodsFirst(t *testing.T) {
	c := newCluster(t, 5, func(i *hearthv1.Ingester) {
		i.Spec.Storage.WhenScaled = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	})
	p := c.p
	ip3, ip4 := c.ip("ing-3"), c.ip("ing-4")
	stsReplicas := func() int32 {
		sts := &appsv1.StatefulSet{}
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: c.ns, Name: "ing"}, sts); err != nil {
			t.Error(err)
			return -1
		}
		return ptr.Deref(sts.Spec.Replicas, -1)
	}
	// What the StatefulSet asked for when each pod was prepared.
	var mu sync.Mutex
	atPrepare := map[string]int32{}
	p.pods.hook(func(call string) {
		if strings.HasPrefix(call, "PREPARE ") {
			r := stsReplicas()
			mu.Lock()
			atPrepare[call] = r
			mu.Unlock()
		}
	})
	t.Cleanup(func() { p.pods.hook(nil) })

	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Replicas = ptr.To[int32](3) })
	eventually(t, "StatefulSet shrunk to 3", func() error {
		if r := stsReplicas(); r != 3 {
			return fmt.Errorf("replicas %d", r)
		}
		return nil
	})
	mu.Lock()
	got := maps2(atPrepare)
	mu.Unlock()
	if want := map[string]int32{"PREPARE " + ip3: 5, "PREPARE " + ip4: 5}; !reflect.DeepEqual(got, want) {
		t.Fatalf("prepare calls (with the StatefulSet's replicas at the time) %v, want %v", got, want)
	}
	for _, other := range []string{"ing-0", "ing-1", "ing-2"} {
		if calls := p.pods.callsTo(c.ip(other)); slices.ContainsFunc(calls, func(s string) bool { return strings.HasPrefix(s, "PREPARE") }) {
			t.Fatalf("%s prepared: %v", other, calls)
		}
	}
	p.wantEvent(t, c.ns, c.name, ReasonScalingDown)
	eventually(t, "pods, claims and status.scaleDown follow", func() error {
		pods := c.pods()
		if len(pods) != 3 {
			return fmt.Errorf("%d pods", len(pods))
		}
		var pvcs corev1.PersistentVolumeClaimList
		if err := p.c.List(ctx, &pvcs, client.InNamespace(c.ns)); err != nil {
			return err
		}
		for _, pvc := range pvcs.Items {
			if (pvc.Name == "data-ing-3" || pvc.Name == "data-ing-4") && pvc.DeletionTimestamp.IsZero() {
				return fmt.Errorf("claim %s kept with whenScaled: Delete", pvc.Name)
			}
		}
		if sd := p.get(t, c.ns, c.name).Status.ScaleDown; sd != nil {
			return fmt.Errorf("status.scaleDown %+v", sd)
		}
		return nil
	})
}

func maps2(m map[string]int32) map[string]int32 {
	out := map[string]int32{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestScaleDownUndoesAFailedPrepare(t *testing.T) {
	c := newCluster(t, 5, nil)
	p := c.p
	ip3, ip4 := c.ip("ing-3"), c.ip("ing-4")
	p.pods.failing("PREPARE "+ip4, errors.New("connection refused"))
	t.Cleanup(func() { p.pods.failing("PREPARE "+ip4, nil) })

	p.mutate(t, c.ns, c.name, func(i *hearthv1.Ingester) { i.Spec.Replicas = ptr.To[int32](3) })
	ing := p.wantCondition(t, c.ns, c.name, hearthv1.ConditionDegraded, metav1.ConditionTrue, ReasonScaleDownBlocked)
	if msg := condition(ing, hearthv1.ConditionDegraded).Message; !strings.Contains(msg, "ing-4") || !strings.Contains(msg, "connection refused") {
		t.Fatalf("Degraded message %q", msg)
	}
	eventually(t, "prepare undone on both pods", func() error {
		calls := p.pods.callsTo(ip3, ip4)
		for _, want := range []string{"PREPARE " + ip3, "PREPARE " + ip4, "UNPREPARE " + ip3, "UNPREPARE " + ip4} {
			if !slices.Contains(calls, want) {
				return fmt.Errorf("calls %v lack %s", calls, want)
			}
		}
		return nil
	})
	// The decision that reported the failure kept the StatefulSet at 5.
	sts := &appsv1.StatefulSet{}
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: c.ns, Name: "ing"}, sts); err != nil {
		t.Fatal(err)
	}
	if r := ptr.Deref(sts.Spec.Replicas, 0); r != 5 || len(c.pods()) != 5 {
		t.Fatalf("StatefulSet replicas %d, %d pods: shrunk after a failed prepare", r, len(c.pods()))
	}
	if sd := p.get(t, c.ns, c.name).Status.ScaleDown; sd != nil {
		t.Fatalf("status.scaleDown %+v after an undone prepare", sd)
	}
	// The pod answers again: the retry shrinks.
	p.pods.failing("PREPARE "+ip4, nil)
	eventually(t, "StatefulSet shrunk after the retry", func() error {
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: c.ns, Name: "ing"}, sts); err != nil {
			return err
		}
		if r := ptr.Deref(sts.Spec.Replicas, 0); r != 3 {
			return fmt.Errorf("replicas %d", r)
		}
		return nil
	})
	p.wantCondition(t, c.ns, c.name, hearthv1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected)
}

func TestDeleteFlushesEveryPodFirst(t *testing.T) {
	c := newCluster(t, 3, func(i *hearthv1.Ingester) {
		i.Spec.Storage.WhenDeleted = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	})
	p := c.p
	ing := p.get(t, c.ns, c.name)
	if !slices.Contains(ing.Finalizers, Finalizer) {
		t.Fatalf("finalizers %v", ing.Finalizers)
	}
	ips := []string{c.ip("ing-0"), c.ip("ing-1"), c.ip("ing-2")}
	p.pods.failing("FLUSH "+ips[1], errors.New("503 Service Unavailable: bucket unreachable"))
	t.Cleanup(func() { p.pods.failing("FLUSH "+ips[1], nil) })
	if err := p.c.Delete(ctx, ing); err != nil {
		t.Fatal(err)
	}

	// The bucket is unreachable from ing-1: the deletion waits and says why.
	eventually(t, "FlushFailed on the deleting Ingester", func() error {
		ing := &hearthv1.Ingester{}
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: c.ns, Name: c.name}, ing); err != nil {
			return err
		}
		d := condition(ing, hearthv1.ConditionDegraded)
		if ing.DeletionTimestamp.IsZero() || d == nil || d.Reason != ReasonFlushFailed || !strings.Contains(d.Message, "bucket unreachable") ||
			!strings.Contains(d.Message, "ing-1") {
			return fmt.Errorf("deletion %v, Degraded %+v", ing.DeletionTimestamp, d)
		}
		if !slices.Contains(ing.Finalizers, Finalizer) {
			return fmt.Errorf("finalizer removed although a flush failed")
		}
		return nil
	})
	if n := len(c.pods()); n != 3 {
		t.Fatalf("%d pods while the deletion waits for flushes", n)
	}

	// The bucket is back: every pod flushed, the finalizer goes, the children follow.
	p.pods.failing("FLUSH "+ips[1], nil)
	eventually(t, "Ingester and children gone", func() error {
		err := p.c.Get(ctx, types.NamespacedName{Namespace: c.ns, Name: c.name}, &hearthv1.Ingester{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("Ingester still there (%v)", err)
		}
		var stss appsv1.StatefulSetList
		if err := p.c.List(ctx, &stss, client.InNamespace(c.ns)); err != nil {
			return err
		}
		if len(stss.Items)+len(c.pods()) > 0 {
			return fmt.Errorf("%d StatefulSets, %d pods left", len(stss.Items), len(c.pods()))
		}
		return nil
	})
	for _, ip := range ips {
		if !slices.Contains(p.pods.callsTo(ip), "FLUSH "+ip) {
			t.Fatalf("pod at %s never flushed: %v", ip, p.pods.callsTo(ips...))
		}
	}
}

// A deletion whose flush hangs (a bucket that does not answer) is observed, not waited
// for: its reconciles go on reporting progress while the flush runs in the background,
// and another Ingester's rollout proceeds meanwhile.
func TestHangingFlushBlocksNoReconcile(t *testing.T) {
	rf := func(n int32) func(*hearthv1.Ingester) {
		return func(i *hearthv1.Ingester) { i.Spec.ReplicationFactor = n }
	}
	a := newCluster(t, 1, rf(1))
	b := newCluster(t, 2, rf(2))
	p := a.p
	release := p.pods.block("FLUSH " + a.ip("ing-0"))
	t.Cleanup(release)
	if err := p.c.Delete(ctx, p.get(t, a.ns, a.name)); err != nil {
		t.Fatal(err)
	}
	// Reported while the flush hangs: the reconcile did not wait for it.
	eventually(t, "the deletion reports its running flush", func() error {
		ing := p.get(t, a.ns, a.name)
		c := condition(ing, hearthv1.ConditionProgressing)
		if c == nil || c.Reason != ReasonDeleting || !strings.Contains(c.Message, "waits for 1/1 ingesters to flush") {
			return fmt.Errorf("Progressing %+v", c)
		}
		return nil
	})
	// Another Ingester rolls meanwhile.
	p.mutate(t, b.ns, b.name, func(i *hearthv1.Ingester) { i.Spec.Image = "hearth:v0.9.0" })
	eventually(t, "the other Ingester's rollout replaces a pod", func() error {
		if img := b.image("ing-1"); img != "hearth:v0.9.0" {
			return fmt.Errorf("ing-1 runs %q", img)
		}
		return nil
	})
	if ing := p.get(t, a.ns, a.name); !slices.Contains(ing.Finalizers, Finalizer) {
		t.Fatal("the finalizer went while the flush still hung")
	}
	// The bucket answers: the flush ends, the finalizer goes.
	release()
	eventually(t, "the Ingester gone once its flush ended", func() error {
		err := p.c.Get(ctx, types.NamespacedName{Namespace: a.ns, Name: a.name}, &hearthv1.Ingester{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})
}
