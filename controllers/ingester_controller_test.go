package controllers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/yaml"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

// eventuallyBound is how long eventually polls. It is a deadline for a hung system, not
// a performance claim, and it must outlast the PodDisruptionBudget's DeletionTimeout
// (2 minutes): envtest deletes an evicted pod at once (it is on no node, so no grace
// period) and the StatefulSet controller recreates it under the same name; when the
// disruption controller syncs only after the recreation, it never sees the pod go and
// counts the new pod as still disrupted (status.disruptedPods is keyed by name) until
// that timeout, so the next eviction of a rollout is refused (429) for up to 2 minutes.
const eventuallyBound = 3 * time.Minute

// eventually polls f until it returns nil, failing with f's last error after
// eventuallyBound.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(eventuallyBound)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %v: %v%s", what, eventuallyBound, err, kcmProblem())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func newIngester(ns, name string) *hearthv1.Ingester {
	return &hearthv1.Ingester{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: hearthv1.IngesterSpec{
			Image:         "hearth:v0.1.0",
			Storage:       hearthv1.StorageSpec{Size: resource.MustParse("1Gi")},
			ObjectStorage: hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendFilesystem},
		},
	}
}

var ctx = context.Background()

func (p *platform) get(t *testing.T, ns, name string) *hearthv1.Ingester {
	t.Helper()
	ing := &hearthv1.Ingester{}
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, ing); err != nil {
		t.Fatal(err)
	}
	return ing
}

// mutate re-reads the Ingester and updates it, retrying on conflicts.
func (p *platform) mutate(t *testing.T, ns, name string, f func(*hearthv1.Ingester)) {
	t.Helper()
	eventually(t, "update Ingester", func() error {
		ing := &hearthv1.Ingester{}
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, ing); err != nil {
			return err
		}
		f(ing)
		return p.c.Update(ctx, ing)
	})
}

// children are the kinds an Ingester owns, as empty objects.
func children() []client.Object {
	return []client.Object{&corev1.ServiceAccount{}, &corev1.ConfigMap{}, &corev1.Service{}, &policyv1.PodDisruptionBudget{}, &appsv1.StatefulSet{}}
}

// contains reports where want (the applied document) is not part of got (the live object).
func contains(path string, want, got any) error {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object, live has %T", path, got)
		}
		for k, v := range w {
			if err := contains(path+"."+k, v, g[k]); err != nil {
				return err
			}
		}
		return nil
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: want %d items, live has %v", path, len(w), got)
		}
		for i := range w {
			if err := contains(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); err != nil {
				return err
			}
		}
		return nil
	default:
		if fmt.Sprint(want) != fmt.Sprint(got) {
			return fmt.Errorf("%s: want %v, live has %v", path, want, got)
		}
		return nil
	}
}

// liveMatchesRender checks that every rendered child exists and holds what was applied,
// owned by the Ingester and by the operator's field manager alone.
func (p *platform) liveMatchesRender(ns, name string) error {
	ing := &hearthv1.Ingester{}
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, ing); err != nil {
		return err
	}
	objs, err := Render(ing)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if sts, ok := o.(*appsv1.StatefulSet); ok {
			live := &appsv1.StatefulSet{}
			if err := p.c.Get(ctx, client.ObjectKeyFromObject(sts), live); err == nil {
				KeepClaimSizes(sts, live) // as the reconciler does
			}
		}
		want, err := ToApply(o)
		if err != nil {
			return err
		}
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(o.GetObjectKind().GroupVersionKind())
		if err := p.c.Get(ctx, client.ObjectKeyFromObject(o), live); err != nil {
			return fmt.Errorf("%s %s: %w", want.GetKind(), want.GetName(), err)
		}
		for _, k := range []string{"spec", "data", "automountServiceAccountToken"} {
			if w, ok := want.Object[k]; ok {
				if err := contains(want.GetKind()+"/"+want.GetName()+"."+k, w, live.Object[k]); err != nil {
					return err
				}
			}
		}
		if err := contains(want.GetKind()+"/"+want.GetName()+".labels", toAny(want.GetLabels()), toAny(live.GetLabels())); err != nil {
			return err
		}
		refs := live.GetOwnerReferences()
		if len(refs) != 1 || refs[0].UID != ing.UID || !ptr.Deref(refs[0].Controller, false) {
			return fmt.Errorf("%s %s: owner references %+v, want the Ingester as controller", want.GetKind(), want.GetName(), refs)
		}
		for _, mf := range live.GetManagedFields() {
			if mf.Manager != FieldManager || mf.Operation != metav1.ManagedFieldsOperationApply {
				// kube-controller-manager writes the StatefulSet's status, nothing else.
				if mf.Subresource == "status" {
					continue
				}
				return fmt.Errorf("%s %s: fields managed by %q (%s), want only %q applying", want.GetKind(), want.GetName(), mf.Manager, mf.Operation, FieldManager)
			}
		}
	}
	return nil
}

func toAny(m map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func condition(ing *hearthv1.Ingester, typ string) *metav1.Condition {
	return meta.FindStatusCondition(ing.Status.Conditions, typ)
}

// wantCondition waits for a condition with a status and reason, seen at the current generation.
func (p *platform) wantCondition(t *testing.T, ns, name, typ string, status metav1.ConditionStatus, reason string) *hearthv1.Ingester {
	t.Helper()
	var ing *hearthv1.Ingester
	eventually(t, fmt.Sprintf("%s=%s (%s)", typ, status, reason), func() error {
		ing = &hearthv1.Ingester{}
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, ing); err != nil {
			return err
		}
		c := condition(ing, typ)
		if c == nil {
			return fmt.Errorf("no %s condition yet; status %+v", typ, ing.Status)
		}
		if c.Status != status || c.Reason != reason || c.ObservedGeneration != ing.Generation {
			return fmt.Errorf("%s is %s/%s (gen %d of %d): %s", typ, c.Status, c.Reason, c.ObservedGeneration, ing.Generation, c.Message)
		}
		return nil
	})
	return ing
}

// makePodsReady plays the kubelet for an Ingester's pods: Running, Ready, a pod IP each.
func (p *platform) makePodsReady(t *testing.T, ns, name string, want int) []corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	eventually(t, fmt.Sprintf("%d pods created by the StatefulSet controller", want), func() error {
		if err := p.c.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{LabelInstance: name}); err != nil {
			return err
		}
		if len(pods.Items) != want {
			return fmt.Errorf("%d pods", len(pods.Items))
		}
		return nil
	})
	members := map[string]string{}
	for i := range pods.Items {
		members[pods.Items[i].Name] = "ACTIVE"
	}
	for i := range pods.Items {
		pod := &pods.Items[i]
		ip := fmt.Sprintf("10.%d.%d.%d", len(ns)%200, i/200, i%200+1)
		p.ring.set(ip, members)
		eventually(t, "mark pod ready", func() error {
			if err := p.c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
				return err
			}
			now := metav1.Now()
			pod.Status.Phase = corev1.PodRunning
			pod.Status.PodIP = ip
			pod.Status.PodIPs = []corev1.PodIP{{IP: ip}}
			pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}
			pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: ContainerName, Ready: true, Image: pod.Spec.Containers[0].Image,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}
			return p.c.Status().Update(ctx, pod)
		})
	}
	return pods.Items
}

func TestCreateRendersEveryChild(t *testing.T) {
	p := getPlatform(t)
	ns := p.namespace(t)
	if err := p.c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"},
		StringData: map[string]string{"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}}); err != nil {
		t.Fatal(err)
	}
	ing := newIngester(ns, "ing")
	ing.Spec.ObjectStorage = hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendS3, Bucket: "b", Endpoint: "s3:9000",
		CredentialsSecret: &hearthv1.CredentialsSecretRef{Name: "creds"}}
	if err := p.c.Create(ctx, ing); err != nil {
		t.Fatal(err)
	}

	// Defaults come from the CRD schema.
	got := p.get(t, ns, "ing")
	if *got.Spec.Replicas != 3 || got.Spec.ReplicationFactor != 3 || *got.Spec.TerminationGracePeriodSeconds != 300 ||
		got.Spec.Storage.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType ||
		got.Spec.ObjectStorage.CredentialsSecret.AccessKeyIDKey != "AWS_ACCESS_KEY_ID" {
		t.Fatalf("defaults not applied: %+v", got.Spec)
	}

	eventually(t, "children match the render", func() error { return p.liveMatchesRender(ns, "ing") })

	sts := &appsv1.StatefulSet{}
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ing"}, sts); err != nil {
		t.Fatal(err)
	}
	c := sts.Spec.Template.Spec.Containers[0]
	switch {
	case sts.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType:
		t.Errorf("update strategy %s", sts.Spec.UpdateStrategy.Type)
	case c.Lifecycle.PreStop.Exec.Command[1] != "prestop" || c.ReadinessProbe.HTTPGet.Path != "/ready":
		t.Errorf("hooks: %+v %+v", c.Lifecycle, c.ReadinessProbe)
	case *sts.Spec.Template.Spec.TerminationGracePeriodSeconds != 300:
		t.Errorf("grace %d", *sts.Spec.Template.Spec.TerminationGracePeriodSeconds)
	}
	// The claim template keeps apiVersion and kind (typed clients drop them when decoding).
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("StatefulSet"))
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ing"}, live); err != nil {
		t.Fatal(err)
	}
	vct, _, _ := unstructured.NestedSlice(live.Object, "spec", "volumeClaimTemplates")
	if m, ok := vct[0].(map[string]any); !ok || m["apiVersion"] != "v1" || m["kind"] != "PersistentVolumeClaim" {
		t.Errorf("claim template lost apiVersion/kind: %v", vct[0])
	}
	envs := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			envs[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	if envs["AWS_ACCESS_KEY_ID"] != "creds/AWS_ACCESS_KEY_ID" || envs["AWS_SECRET_ACCESS_KEY"] != "creds/AWS_SECRET_ACCESS_KEY" {
		t.Errorf("credentials env = %v", envs)
	}

	// Status: the selector for the scale subresource, generation observed, not degraded.
	st := p.wantCondition(t, ns, "ing", hearthv1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected)
	if st.Status.Selector != "app.kubernetes.io/component=ingester,app.kubernetes.io/instance=ing,app.kubernetes.io/name=hearth" {
		t.Errorf("selector %q", st.Status.Selector)
	}

	// Events say what the operator did.
	eventually(t, "Created events", func() error {
		var evs eventsv1.EventList
		if err := p.c.List(ctx, &evs, client.InNamespace(ns)); err != nil {
			return err
		}
		created := map[string]bool{}
		for _, e := range evs.Items {
			if e.Reason == "Created" && e.Regarding.Name == "ing" && e.Regarding.Kind == "Ingester" && e.Related != nil {
				created[e.Related.Kind+"/"+e.Related.Name] = true
			}
		}
		if len(created) != 8 {
			return fmt.Errorf("Created events for %v, want one per child (8, the NetworkPolicy and the overrides ConfigMap included)", created)
		}
		return nil
	})

	// Drift: a child changed by someone else (here: a StatefulSet scaled by hand) is put back.
	eventually(t, "scale the StatefulSet by hand", func() error {
		sts := &appsv1.StatefulSet{}
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ing"}, sts); err != nil {
			return err
		}
		sts.Spec.Replicas = ptr.To[int32](1)
		return p.c.Update(ctx, sts)
	})
	eventually(t, "StatefulSet restored", func() error {
		sts := &appsv1.StatefulSet{}
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ing"}, sts); err != nil {
			return err
		}
		if *sts.Spec.Replicas != 3 {
			return fmt.Errorf("replicas %d", *sts.Spec.Replicas)
		}
		return nil
	})
}

func TestZonesOneStatefulSetPerZone(t *testing.T) {
	p := getPlatform(t)
	ns := p.namespace(t)
	ing := newIngester(ns, "z")
	ing.Spec.Replicas = ptr.To[int32](4)
	ing.Spec.Zones = []hearthv1.ZoneSpec{{Name: "a", NodeSelector: map[string]string{"zone": "a"}}, {Name: "b"}, {Name: "c"}}
	if err := p.c.Create(ctx, ing); err != nil {
		t.Fatal(err)
	}
	eventually(t, "children match the render", func() error { return p.liveMatchesRender(ns, "z") })
	for zone, want := range map[string]int32{"a": 2, "b": 1, "c": 1} {
		sts := &appsv1.StatefulSet{}
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "z-" + zone}, sts); err != nil {
			t.Fatal(err)
		}
		if *sts.Spec.Replicas != want || sts.Spec.Template.Labels[LabelZone] != zone {
			t.Errorf("zone %s: replicas %d labels %v", zone, *sts.Spec.Replicas, sts.Spec.Template.Labels)
		}
	}
	cm := p.configMapOf(t, ns, "z-b")
	if !strings.Contains(cm.Data["hearth-b.yaml"], "instance_zone: b") {
		t.Errorf("zone b config:\n%s", cm.Data["hearth-b.yaml"])
	}
}

// configMapOf is the ConfigMap a StatefulSet's template mounts (one per revision).
func (p *platform) configMapOf(t *testing.T, ns, sts string) *corev1.ConfigMap {
	t.Helper()
	cm, err := p.mountedConfigMap(ns, sts)
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

// mountedConfigMap is the ConfigMap the StatefulSet's pods mount (one per
// config content).
func (p *platform) mountedConfigMap(ns, sts string) (*corev1.ConfigMap, error) {
	live := &appsv1.StatefulSet{}
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: sts}, live); err != nil {
		return nil, err
	}
	for _, v := range live.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			cm := &corev1.ConfigMap{}
			if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: v.ConfigMap.Name}, cm); err != nil {
				return nil, err
			}
			return cm, nil
		}
	}
	return nil, fmt.Errorf("StatefulSet %s mounts no ConfigMap", sts)
}

func TestChangesFlowToChildren(t *testing.T) {
	p := getPlatform(t)
	ns := p.namespace(t)
	if err := p.c.Create(ctx, newIngester(ns, "ing")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "children created", func() error { return p.liveMatchesRender(ns, "ing") })
	sts := &appsv1.StatefulSet{}
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ing"}, sts); err != nil {
		t.Fatal(err)
	}
	sum := sts.Spec.Template.Annotations[AnnotationConfigChecksum]

	p.mutate(t, ns, "ing", func(ing *hearthv1.Ingester) {
		ing.Spec.Image = "hearth:v0.2.0"
		ing.Spec.Replicas = ptr.To[int32](5)
		ing.Spec.Blocks.MaxBlockDuration = "30m"
		ing.Spec.Storage.Size = resource.MustParse("2Gi") // growth is allowed
		ing.Spec.PodTemplate.Tolerations = []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}
	})
	eventually(t, "children follow the change", func() error {
		if err := p.liveMatchesRender(ns, "ing"); err != nil {
			return err
		}
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ing"}, sts); err != nil {
			return err
		}
		c := sts.Spec.Template.Spec.Containers[0]
		if c.Image != "hearth:v0.2.0" || *sts.Spec.Replicas != 5 || sts.Spec.Template.Annotations[AnnotationConfigChecksum] == sum {
			return fmt.Errorf("StatefulSet image %s replicas %d checksum changed %v", c.Image, *sts.Spec.Replicas, sts.Spec.Template.Annotations[AnnotationConfigChecksum] != sum)
		}
		return nil
	})
	// Claim templates are immutable: the grown size reaches the StatefulSet only
	// through the storage orchestration (claims expanded, then the StatefulSet
	// recreated), or a condition says why it cannot (envtest's claims are never
	// bound, so which one happens depends on timing).
	eventually(t, "storage growth reaches the StatefulSet or is explained", func() error {
		cur := &appsv1.StatefulSet{}
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ing"}, cur); err == nil {
			if got := cur.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]; got.String() == "2Gi" {
				return nil
			}
		}
		got := &hearthv1.Ingester{}
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ing"}, got); err != nil {
			return err
		}
		for _, c := range got.Status.Conditions {
			switch c.Reason {
			case ReasonResizePending, ReasonResizingStorage, ReasonNotExpandable:
				return nil
			}
		}
		return fmt.Errorf("claim template not grown and no storage condition: %+v", got.Status.Conditions)
	})
	// The storage orchestration may be recreating the StatefulSet meanwhile.
	eventually(t, "config updated", func() error {
		cm, err := p.mountedConfigMap(ns, "ing")
		if err != nil {
			return err
		}
		if !strings.Contains(cm.Data[ConfigFile], "max_block_duration: 30m") {
			return fmt.Errorf("config not updated:\n%s", cm.Data[ConfigFile])
		}
		return nil
	})

	// Removing a field the operator applied removes it from the child (SSA ownership).
	p.mutate(t, ns, "ing", func(ing *hearthv1.Ingester) { ing.Spec.PodTemplate.Tolerations = nil })
	eventually(t, "toleration removed", func() error {
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ing"}, sts); err != nil {
			return err
		}
		if n := len(sts.Spec.Template.Spec.Tolerations); n != 0 {
			return fmt.Errorf("%d tolerations", n)
		}
		return nil
	})

	// Paused: the operator changes nothing and says so.
	p.mutate(t, ns, "ing", func(ing *hearthv1.Ingester) { ing.Spec.Paused = true; ing.Spec.Image = "hearth:v0.3.0" })
	p.wantCondition(t, ns, "ing", hearthv1.ConditionProgressing, metav1.ConditionFalse, ReasonPaused)
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ing"}, sts); err != nil {
		t.Fatal(err)
	}
	if img := sts.Spec.Template.Spec.Containers[0].Image; img != "hearth:v0.2.0" {
		t.Fatalf("paused Ingester's StatefulSet changed to %s", img)
	}
	p.mutate(t, ns, "ing", func(ing *hearthv1.Ingester) { ing.Spec.Paused = false })
	eventually(t, "unpaused change applied", func() error { return p.liveMatchesRender(ns, "ing") })
}

func TestInvalidIngestersRejected(t *testing.T) {
	p := getPlatform(t)
	ns := p.namespace(t)
	cases := []struct {
		name string
		mod  func(*hearthv1.Ingester)
		msg  string
	}{
		{"rf above replicas", func(i *hearthv1.Ingester) { i.Spec.Replicas = ptr.To[int32](2) },
			"spec.replicationFactor must not exceed spec.replicas"},
		{"rf above zones", func(i *hearthv1.Ingester) {
			i.Spec.Replicas = ptr.To[int32](6)
			i.Spec.Zones = []hearthv1.ZoneSpec{{Name: "a"}, {Name: "b"}}
		}, "spec.replicationFactor must not exceed the number of zones"},
		{"fewer replicas than zones", func(i *hearthv1.Ingester) {
			i.Spec.Replicas = ptr.To[int32](3)
			i.Spec.ReplicationFactor = 2
			i.Spec.Zones = []hearthv1.ZoneSpec{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}}
		}, "spec.replicas must be at least the number of zones"},
		{"duplicate zones", func(i *hearthv1.Ingester) {
			i.Spec.Zones = []hearthv1.ZoneSpec{{Name: "a"}, {Name: "b"}, {Name: "a"}}
		}, "spec.zones must have unique names"},
		{"s3 without bucket", func(i *hearthv1.Ingester) { i.Spec.ObjectStorage.Backend = hearthv1.BackendS3 },
			"spec.objectStorage.bucket is required for the s3, gcs and azure backends"},
		{"gcs without bucket", func(i *hearthv1.Ingester) { i.Spec.ObjectStorage.Backend = hearthv1.BackendGCS },
			"spec.objectStorage.bucket is required for the s3, gcs and azure backends"},
		{"azure without account", func(i *hearthv1.Ingester) {
			i.Spec.ObjectStorage = hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendAzure, Bucket: "c"}
		}, "spec.objectStorage.accountName (the Azure storage account) is required when backend is azure"},
		{"account name on s3", func(i *hearthv1.Ingester) {
			i.Spec.ObjectStorage = hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendS3, Bucket: "b", AccountName: "a"}
		}, "spec.objectStorage.accountName is only used by the azure backend"},
		{"unknown backend", func(i *hearthv1.Ingester) { i.Spec.ObjectStorage.Backend = "swift" }, "spec.objectStorage.backend"},
		{"credentials on filesystem", func(i *hearthv1.Ingester) {
			i.Spec.ObjectStorage.CredentialsSecret = &hearthv1.CredentialsSecretRef{Name: "x"}
		}, "credentialsSecret is not used by the filesystem backend"},
		{"zero storage", func(i *hearthv1.Ingester) { i.Spec.Storage.Size = resource.MustParse("0") },
			"spec.storage.size must be greater than zero"},
		{"no image", func(i *hearthv1.Ingester) { i.Spec.Image = "" }, "spec.image"},
		{"bad duration", func(i *hearthv1.Ingester) { i.Spec.Ring.HeartbeatPeriod = "5 seconds" }, "spec.ring.heartbeatPeriod"},
		{"long name", func(i *hearthv1.Ingester) { i.Name = strings.Repeat("x", 41) }, "metadata.name must be at most 40 characters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ing := newIngester(ns, "bad")
			tc.mod(ing)
			err := p.c.Create(ctx, ing)
			if err == nil {
				t.Fatalf("created an invalid Ingester; want an error with %q", tc.msg)
			}
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q, want Invalid with %q", err, tc.msg)
			}
		})
	}

	// Transition rules on an existing Ingester.
	ing := newIngester(ns, "ok")
	ing.Spec.Storage.StorageClassName = ptr.To("standard")
	ing.Spec.Zones = []hearthv1.ZoneSpec{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	if err := p.c.Create(ctx, ing); err != nil {
		t.Fatal(err)
	}
	updates := []struct {
		name string
		mod  func(*hearthv1.Ingester)
		msg  string
	}{
		{"shrink storage", func(i *hearthv1.Ingester) { i.Spec.Storage.Size = resource.MustParse("512Mi") },
			"spec.storage.size can grow but never shrink"},
		{"change storage class", func(i *hearthv1.Ingester) { i.Spec.Storage.StorageClassName = ptr.To("fast") },
			"spec.storage.storageClassName cannot be changed"},
		{"rename zone", func(i *hearthv1.Ingester) { i.Spec.Zones[2].Name = "d" }, "spec.zones cannot be added, removed or renamed"},
	}
	for _, tc := range updates {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			for range 50 { // the operator adds its finalizer concurrently: retry conflicts
				cur := p.get(t, ns, "ok")
				tc.mod(cur)
				if err = p.c.Update(ctx, cur); !apierrors.IsConflict(err) {
					break
				}
			}
			if err == nil || !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v, want Invalid with %q", err, tc.msg)
			}
		})
	}
	t.Run("grow storage", func(t *testing.T) {
		p.mutate(t, ns, "ok", func(cur *hearthv1.Ingester) { cur.Spec.Storage.Size = resource.MustParse("5Gi") })
	})
}

func TestStatusFollowsStatefulSet(t *testing.T) {
	p := getPlatform(t)
	ns := p.namespace(t)
	if err := p.c.Create(ctx, newIngester(ns, "ing")); err != nil {
		t.Fatal(err)
	}
	// The StatefulSet controller creates 3 pods; nothing runs them yet.
	ing := p.wantCondition(t, ns, "ing", hearthv1.ConditionAvailable, metav1.ConditionFalse, ReasonNotReady)
	p.wantCondition(t, ns, "ing", hearthv1.ConditionProgressing, metav1.ConditionTrue, ReasonWaitingReady)
	if ing.Status.ObservedGeneration != ing.Generation {
		t.Errorf("observedGeneration %d, generation %d", ing.Status.ObservedGeneration, ing.Generation)
	}

	p.makePodsReady(t, ns, "ing", 3)
	p.wantCondition(t, ns, "ing", hearthv1.ConditionAvailable, metav1.ConditionTrue, ReasonAllReady)
	ing = p.wantCondition(t, ns, "ing", hearthv1.ConditionProgressing, metav1.ConditionFalse, ReasonComplete)
	eventually(t, "counts and ring in status", func() error {
		ing = p.get(t, ns, "ing")
		s := ing.Status
		if s.Replicas != 3 || s.ReadyReplicas != 3 || s.UpdatedReplicas != 3 || s.Ring.Active != 3 || s.Ring.Summary != "3/3 ACTIVE" {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})

	// A new spec makes the pods outdated: the StatefulSet is OnDelete, so only the
	// operator replaces them, one at a time: ing-2 first, and no other pod while its
	// replacement is not ready (nothing plays the kubelet here).
	p.mutate(t, ns, "ing", func(i *hearthv1.Ingester) { i.Spec.Image = "hearth:v0.2.0" })
	p.wantCondition(t, ns, "ing", hearthv1.ConditionProgressing, metav1.ConditionTrue, ReasonRollingOut)
	eventually(t, "ing-2 replaced, rollout waiting for it", func() error {
		ing := p.get(t, ns, "ing")
		if ro := ing.Status.Rollout; ro == nil || !reflect.DeepEqual(ro.InFlight, []string{"ing-2"}) || ro.Outdated != 2 {
			return fmt.Errorf("status.rollout %+v", ro)
		}
		return nil
	})
	var pods corev1.PodList
	if err := p.c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, pod := range pods.Items {
		if img := pod.Spec.Containers[0].Image; (img == "hearth:v0.2.0") != (pod.Name == "ing-2") {
			t.Fatalf("pod %s runs %s: only ing-2 may be replaced while its replacement is not ready", pod.Name, img)
		}
	}
}

func TestDegraded(t *testing.T) {
	p := getPlatform(t)
	ns := p.namespace(t)
	// Per-Ingester metrics: the namespace is new, so every series starts at 0.
	errorsIn := func() float64 {
		var n float64
		for _, name := range []string{"nosecret", "noclass", "badimage"} {
			n += testutil.ToFloat64(reconcilesTotal.WithLabelValues(ns, name, "error"))
		}
		return n
	}

	// A Secret that does not exist.
	ing := newIngester(ns, "nosecret")
	ing.Spec.ObjectStorage = hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendS3, Bucket: "b",
		CredentialsSecret: &hearthv1.CredentialsSecretRef{Name: "missing"}}
	if err := p.c.Create(ctx, ing); err != nil {
		t.Fatal(err)
	}
	got := p.wantCondition(t, ns, "nosecret", hearthv1.ConditionDegraded, metav1.ConditionTrue, ReasonSecretNotFound)
	if msg := condition(got, hearthv1.ConditionDegraded).Message; !strings.Contains(msg, `"missing"`) || !strings.Contains(msg, "create it") {
		t.Errorf("message %q does not say what to do", msg)
	}
	p.wantEvent(t, ns, "nosecret", ReasonSecretNotFound)
	// The children are applied anyway, so creating the Secret is all it takes.
	eventually(t, "children applied while degraded", func() error { return p.liveMatchesRender(ns, "nosecret") })
	if err := p.c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "missing"},
		StringData: map[string]string{"AWS_ACCESS_KEY_ID": "k"}}); err != nil {
		t.Fatal(err)
	}
	p.wantCondition(t, ns, "nosecret", hearthv1.ConditionDegraded, metav1.ConditionTrue, ReasonSecretKey)
	eventually(t, "add the key", func() error {
		s := &corev1.Secret{}
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "missing"}, s); err != nil {
			return err
		}
		s.Data["AWS_SECRET_ACCESS_KEY"] = []byte("s")
		return p.c.Update(ctx, s)
	})
	p.wantCondition(t, ns, "nosecret", hearthv1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected)
	p.wantEvent(t, ns, "nosecret", "Recovered")

	// A StorageClass that does not exist.
	ing = newIngester(ns, "noclass")
	ing.Spec.Storage.StorageClassName = ptr.To("no-such-class")
	if err := p.c.Create(ctx, ing); err != nil {
		t.Fatal(err)
	}
	p.wantCondition(t, ns, "noclass", hearthv1.ConditionDegraded, metav1.ConditionTrue, ReasonStorageClass)
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "no-such-class"}, Provisioner: "example.com/none"}
	if err := p.c.Create(ctx, sc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.c.Delete(ctx, sc) })
	p.wantCondition(t, ns, "noclass", hearthv1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected)

	// An image that never starts: the kubelet reports ImagePullBackOff.
	if err := p.c.Create(ctx, newIngester(ns, "badimage")); err != nil {
		t.Fatal(err)
	}
	var pods corev1.PodList
	eventually(t, "pods created", func() error {
		if err := p.c.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{LabelInstance: "badimage"}); err != nil {
			return err
		}
		if len(pods.Items) == 0 {
			return fmt.Errorf("no pods")
		}
		return nil
	})
	pod := pods.Items[0]
	eventually(t, "pod status", func() error {
		if err := p.c.Get(ctx, client.ObjectKeyFromObject(&pod), &pod); err != nil {
			return err
		}
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: ContainerName, Image: pod.Spec.Containers[0].Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image"}}}}
		return p.c.Status().Update(ctx, &pod)
	})
	got = p.wantCondition(t, ns, "badimage", hearthv1.ConditionDegraded, metav1.ConditionTrue, ReasonPodsNotStarting)
	if msg := condition(got, hearthv1.ConditionDegraded).Message; !strings.Contains(msg, pod.Name+": ImagePullBackOff") {
		t.Errorf("message %q does not name the pod and reason", msg)
	}
	p.wantEvent(t, ns, "badimage", ReasonPodsNotStarting)

	// Degraded is a condition, not an error loop: no reconcile failed.
	if n := errorsIn(); n != 0 {
		t.Errorf("%v reconciles failed while degraded; degraded must not be an error", n)
	}
	if n := testutil.ToFloat64(reconcilesTotal.WithLabelValues(ns, "badimage", "degraded")); n == 0 {
		t.Errorf("hearth_operator_reconciles_total{result=degraded} of %s/badimage is 0", ns)
	}
}

func (p *platform) wantEvent(t *testing.T, ns, name, reason string) {
	t.Helper()
	eventually(t, "Event "+reason, func() error {
		var evs eventsv1.EventList
		if err := p.c.List(ctx, &evs, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == reason && e.Regarding.Name == name {
				return nil
			}
		}
		return fmt.Errorf("no %s Event for %s among %d", reason, name, len(evs.Items))
	})
}

func TestScaleSubresource(t *testing.T) {
	p := getPlatform(t)
	ns := p.namespace(t)
	if err := p.c.Create(ctx, newIngester(ns, "ing")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "status replicas 3", func() error {
		if r := p.get(t, ns, "ing").Status.Replicas; r != 3 {
			return fmt.Errorf("status.replicas %d", r)
		}
		return nil
	})

	scale := &autoscalingv1.Scale{}
	ing := p.get(t, ns, "ing")
	if err := p.c.SubResource("scale").Get(ctx, ing, scale); err != nil {
		t.Fatal(err)
	}
	if scale.Spec.Replicas != 3 || scale.Status.Replicas != 3 || scale.Status.Selector != ing.Status.Selector {
		t.Fatalf("scale %+v", scale)
	}

	scale.Spec.Replicas = 5
	if err := p.c.SubResource("scale").Update(ctx, ing, client.WithSubResourceBody(scale)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "StatefulSet and status follow the scale", func() error {
		sts := &appsv1.StatefulSet{}
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ing"}, sts); err != nil {
			return err
		}
		if *sts.Spec.Replicas != 5 || p.get(t, ns, "ing").Status.Replicas != 5 {
			return fmt.Errorf("StatefulSet replicas %d, status %+v", *sts.Spec.Replicas, p.get(t, ns, "ing").Status)
		}
		return nil
	})

	// The CEL rules hold for the scale subresource too.
	if err := p.c.SubResource("scale").Get(ctx, ing, scale); err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 2
	err := p.c.SubResource("scale").Update(ctx, ing, client.WithSubResourceBody(scale))
	if err == nil || !strings.Contains(err.Error(), "spec.replicationFactor must not exceed spec.replicas") {
		t.Fatalf("scale below the replication factor: %v", err)
	}

	// kubectl, when the machine has it, through the same subresource.
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		out, err := exec.Command(kubectl, "--kubeconfig", p.kubeconfig, "-n", ns, "scale", "ingester/ing", "--replicas=4").CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl scale: %v\n%s", err, out)
		}
		if r := *p.get(t, ns, "ing").Spec.Replicas; r != 4 {
			t.Fatalf("kubectl scale: spec.replicas %d", r)
		}
		out, err = exec.Command(kubectl, "--kubeconfig", p.kubeconfig, "-n", ns, "get", "hing", "ing").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "REPLICAS") || !strings.Contains(string(out), "RING") {
			t.Fatalf("kubectl get hing: %v\n%s", err, out)
		}
	} else {
		t.Logf("kubectl not on PATH: scaled through the client only")
	}
}

func TestDeleteGarbageCollectsChildren(t *testing.T) {
	p := getPlatform(t)
	ns := p.namespace(t)
	ing := newIngester(ns, "ing")
	ing.Spec.Storage.WhenDeleted = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	if err := p.c.Create(ctx, ing); err != nil {
		t.Fatal(err)
	}
	eventually(t, "children created", func() error { return p.liveMatchesRender(ns, "ing") })
	eventually(t, "pods and claims created", func() error {
		var pods corev1.PodList
		var pvcs corev1.PersistentVolumeClaimList
		if err := p.c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return err
		}
		if err := p.c.List(ctx, &pvcs, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(pods.Items) != 3 || len(pvcs.Items) != 3 {
			return fmt.Errorf("%d pods, %d claims", len(pods.Items), len(pvcs.Items))
		}
		// whenDeleted: Delete works through the owner reference the
		// StatefulSet controller puts on each claim; a claim it has not
		// adopted yet when the StatefulSet goes is kept (Kubernetes' rule).
		for _, c := range pvcs.Items {
			if len(c.OwnerReferences) == 0 {
				return fmt.Errorf("claim %s not adopted by the StatefulSet yet", c.Name)
			}
		}
		return nil
	})

	if err := p.c.Delete(ctx, p.get(t, ns, "ing")); err != nil {
		t.Fatal(err)
	}
	// The real garbage collector (kube-controller-manager) removes the children, then
	// the pods the StatefulSet owned, and the claims (whenDeleted: Delete).
	eventually(t, "everything collected", func() error {
		for _, o := range children() {
			list := &unstructured.UnstructuredList{}
			gvk, _ := apiutil.GVKForObject(o, testScheme)
			gvk.Kind += "List"
			list.SetGroupVersionKind(gvk)
			if err := p.c.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{LabelInstance: "ing"}); err != nil {
				return err
			}
			if n := len(list.Items); n > 0 {
				return fmt.Errorf("%d %s left", n, reflect.TypeOf(o).Elem().Name())
			}
		}
		var pods corev1.PodList
		var pvcs corev1.PersistentVolumeClaimList
		if err := p.c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return err
		}
		if err := p.c.List(ctx, &pvcs, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(pods.Items)+len(pvcs.Items) > 0 {
			return fmt.Errorf("%d pods, %d claims left", len(pods.Items), len(pvcs.Items))
		}
		return nil
	})
}

// TestMain's platform logs are printed when a test failed, to see what the controllers did.
func TestZZKubeControllerManagerLog(t *testing.T) {
	if thePlatform == nil || !testing.Verbose() {
		return
	}
	if os.Getenv("HEARTH_TEST_VERBOSE") != "" {
		t.Log(thePlatform.kcmLog.String())
	}
}

// The shipped samples are valid Ingesters and reconcile cleanly.
func TestSamplesAreValid(t *testing.T) {
	p := getPlatform(t)
	ns := p.namespace(t)
	files, err := filepath.Glob(filepath.Join("..", "config", "samples", "hearth_v1alpha1_*.yaml"))
	if err != nil || len(files) < 2 {
		t.Fatalf("samples: %v %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ing := &hearthv1.Ingester{}
		if err := yaml.UnmarshalStrict(b, ing); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		ing.Namespace = ns
		if err := p.c.Create(ctx, ing); err != nil {
			t.Fatalf("%s rejected: %v", f, err)
		}
		eventually(t, f+" reconciled", func() error { return p.liveMatchesRender(ns, ing.Name) })
	}
}
