package gitops

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
	"github.com/hearth-dev/hearth/controllers"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// TestNamespaceScopedInstall installs the chart twice with watchNamespace: release "hearth"
// for namespace team-a (the default rbac.readStorageClasses: a ClusterRole with get on
// StorageClasses and nothing else) and release "hearth-b" for team-b without it (no
// cluster-wide grant at all). Each operator runs as its release's ServiceAccount
// (impersonated), so it has exactly what the chart rendered, with the cache restricted to
// its namespace as -watch-namespace does. An Ingester in each namespace using every
// child the operator makes (s3 credentials Secret, StorageClass, PodMonitor,
// NetworkPolicy) is reconciled, status written, and rolls to a new image (evictions); no
// request is forbidden (operator and client logs, Warning Events); the Ingester in a
// third namespace is left alone. Then a storage growth on a class without expansion,
// which the second operator cannot read, is Degraded with the API server's refusal, and
// a rollout still runs.
func TestNamespaceScopedInstall(t *testing.T) {
	ctx := context.Background()
	p := startPlatform(t)
	logs := &testutil.SyncBuffer{}
	// The informers' list and watch errors (a forbidden watch) are logged by client-go
	// through klog.
	klog.SetLogger(zap.New(zap.WriteTo(logs)))
	t.Cleanup(klog.ClearLogger)

	for _, ns := range []string{"team-a", "team-b", "other"} {
		if err := p.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
		if err := p.c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "s3"},
			StringData: map[string]string{"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.c.Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "standard"}, Provisioner: "example.com/none",
		AllowVolumeExpansion: ptr.To(true)}); err != nil {
		t.Fatal(err)
	}
	if err := p.c.Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fixed"}, Provisioner: "example.com/none"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.apply(ctx, podMonitorCRD(), false); err != nil {
		t.Fatal(err)
	}
	if err := p.waitEstablished(ctx, "podmonitors.monitoring.coreos.com"); err != nil {
		t.Fatal(err)
	}

	type install struct {
		release, ns string
		values      map[string]any
	}
	installs := []install{
		{"hearth", "team-a", map[string]any{"watchNamespace": "team-a"}},
		{"hearth-b", "team-b", map[string]any{"watchNamespace": "team-b", "rbac": map[string]any{"readStorageClasses": false}}},
	}
	for _, in := range installs {
		objs, err := renderChartWith(in.release, "hearth-system", in.values)
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, o := range objs {
			if o.GetKind() == "ClusterRole" {
				kinds = append(kinds, fmt.Sprint(o.Object["rules"]))
			}
		}
		t.Logf("%s: ClusterRoles %v", in.release, kinds)
		if err := p.sync(ctx, app{name: in.release, namespace: "hearth-system", objs: objs}); err != nil {
			t.Fatalf("installing %s: %v", in.release, err)
		}
		p.startOperatorAs(t, "system:serviceaccount:hearth-system:"+in.release+"-operator", in.ns, logs)
		p.kubelet(t, in.ns)
	}
	// What the two identities may do outside their namespace.
	for user, wantSC := range map[string]bool{"hearth-operator": true, "hearth-b-operator": false} {
		c := p.clientAs(t, "system:serviceaccount:hearth-system:"+user)
		err := c.Get(ctx, client.ObjectKey{Name: "standard"}, &storagev1.StorageClass{})
		if wantSC != (err == nil) || (err != nil && !apierrors.IsForbidden(err)) {
			t.Errorf("%s reading the StorageClass: %v (want allowed: %v)", user, err, wantSC)
		}
		if err := c.List(ctx, &hearthv1.IngesterList{}, client.InNamespace("other")); !apierrors.IsForbidden(err) {
			t.Errorf("%s listing Ingesters in other: %v, want forbidden", user, err)
		}
	}

	// team-b's class does not allow volume expansion (below).
	class := map[string]string{"team-a": "standard", "team-b": "fixed", "other": "standard"}
	for _, ns := range []string{"team-a", "team-b", "other"} {
		ing := &hearthv1.Ingester{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hearth"}, Spec: hearthv1.IngesterSpec{
			Image:         "hearth:dev",
			Storage:       hearthv1.StorageSpec{Size: resource.MustParse("1Gi"), StorageClassName: ptr.To(class[ns])},
			ObjectStorage: hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendS3, Bucket: "b", Endpoint: "127.0.0.1:9", Insecure: true, CredentialsSecret: &hearthv1.CredentialsSecretRef{Name: "s3"}},
			Monitoring:    hearthv1.MonitoringSpec{Enabled: true},
		}}
		if err := p.c.Create(ctx, ing); err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{"team-a", "team-b"} {
		waitComplete(t, p, ns, "hearth:dev")
		for _, o := range []client.Object{&appsv1.StatefulSet{}, &corev1.Service{}, &corev1.ServiceAccount{}, &policyv1.PodDisruptionBudget{}, &networkingv1.NetworkPolicy{}} {
			if err := p.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hearth"}, o); err != nil {
				t.Errorf("%s: %T: %v", ns, o, err)
			}
		}
		pm := &unstructured.Unstructured{}
		pm.SetAPIVersion("monitoring.coreos.com/v1")
		pm.SetKind("PodMonitor")
		if err := p.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hearth"}, pm); err != nil {
			t.Errorf("%s: PodMonitor: %v", ns, err)
		}
	}
	// A new image: the rollout evicts every pod.
	for _, ns := range []string{"team-a", "team-b"} {
		ing := &hearthv1.Ingester{}
		if err := p.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hearth"}, ing); err != nil {
			t.Fatal(err)
		}
		before := ing.DeepCopy()
		ing.Spec.Image = "hearth:next"
		if err := p.c.Patch(ctx, ing, client.MergeFrom(before)); err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{"team-a", "team-b"} {
		waitComplete(t, p, ns, "hearth:next")
	}

	// The third namespace's Ingester is nobody's: no finalizer, no status, no children.
	other := &hearthv1.Ingester{}
	if err := p.c.Get(ctx, client.ObjectKey{Namespace: "other", Name: "hearth"}, other); err != nil {
		t.Fatal(err)
	}
	if len(other.Finalizers) > 0 || len(other.Status.Conditions) > 0 {
		t.Errorf("the Ingester in other was reconciled: finalizers %v, conditions %v", other.Finalizers, other.Status.Conditions)
	}
	var stss appsv1.StatefulSetList
	var cms corev1.ConfigMapList
	if err := p.c.List(ctx, &stss, client.InNamespace("other")); err != nil {
		t.Fatal(err)
	}
	if err := p.c.List(ctx, &cms, client.InNamespace("other"), client.MatchingLabels{controllers.LabelInstance: "hearth"}); err != nil {
		t.Fatal(err)
	}
	if len(stss.Items)+len(cms.Items) > 0 {
		t.Errorf("other has %d StatefulSets and %d ConfigMaps of the Ingester", len(stss.Items), len(cms.Items))
	}

	// Nothing was forbidden: no Warning Event, no forbidden in any log.
	for _, ns := range []string{"team-a", "team-b"} {
		var evs eventsv1.EventList
		if err := p.c.List(ctx, &evs, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		if len(evs.Items) == 0 {
			t.Errorf("%s: no Events: the operator could not record any", ns)
		}
		for _, ev := range evs.Items {
			if ev.Type != corev1.EventTypeWarning {
				continue
			}
			// Only the operator's own Warnings tell of a refused request. The disruption
			// controller may warn NotDeleted about a StatefulSet pod it saw evicted: when
			// the pod is recreated under the same name before the controller syncs the
			// PDB, it keeps the eviction's entry for the new pod and warns two minutes later.
			if ev.ReportingController != controllers.FieldManager {
				t.Logf("%s: %s's Warning Event %s: %s", ns, ev.ReportingController, ev.Reason, ev.Note)
				continue
			}
			t.Errorf("%s: Warning Event %s: %s", ns, ev.Reason, ev.Note)
		}
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(strings.ToLower(line), "forbidden") {
			t.Errorf("forbidden in the logs: %s", line)
		}
	}

	// A storage growth where the operator cannot read the class (team-b's "fixed", which
	// does not allow expansion): it asks for the resize, the API server's admission
	// refuses it, and the Ingester is Degraded NotExpandable with that reason. (The test
	// binds the claims: the admission looks at bound claims only.)
	var pvcs corev1.PersistentVolumeClaimList
	if err := p.c.List(ctx, &pvcs, client.InNamespace("team-b")); err != nil {
		t.Fatal(err)
	}
	if len(pvcs.Items) != 3 {
		t.Fatalf("team-b has %d claims, want 3", len(pvcs.Items))
	}
	for i := range pvcs.Items {
		pvc := &pvcs.Items[i]
		pvc.Status.Phase = corev1.ClaimBound
		pvc.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}
		if err := p.c.Status().Update(ctx, pvc); err != nil {
			t.Fatal(err)
		}
	}
	ing := &hearthv1.Ingester{}
	if err := p.c.Get(ctx, client.ObjectKey{Namespace: "team-b", Name: "hearth"}, ing); err != nil {
		t.Fatal(err)
	}
	before := ing.DeepCopy()
	ing.Spec.Storage.Size = resource.MustParse("2Gi")
	if err := p.c.Patch(ctx, ing, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "team-b: the growth Degraded with the API server's reason", func() error {
		ing := &hearthv1.Ingester{}
		if err := p.c.Get(ctx, client.ObjectKey{Namespace: "team-b", Name: "hearth"}, ing); err != nil {
			return err
		}
		c := meta.FindStatusCondition(ing.Status.Conditions, hearthv1.ConditionDegraded)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != controllers.ReasonNotExpandable ||
			!strings.Contains(c.Message, "the storageclass that provisions the pvc must support resize") {
			return fmt.Errorf("Degraded: %+v", c)
		}
		t.Logf("team-b: Degraded %s: %s", c.Reason, c.Message)
		return nil
	})
	// The refused growth is no trap: a rollout still runs.
	if err := p.c.Get(ctx, client.ObjectKey{Namespace: "team-b", Name: "hearth"}, ing); err != nil {
		t.Fatal(err)
	}
	before = ing.DeepCopy()
	ing.Spec.Image = "hearth:third"
	if err := p.c.Patch(ctx, ing, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "team-b: a rollout while the growth is refused", func() error {
		var pods corev1.PodList
		if err := p.c.List(ctx, &pods, client.InNamespace("team-b"), client.MatchingLabels{controllers.LabelInstance: "hearth"}); err != nil {
			return err
		}
		for _, pod := range pods.Items {
			if pod.Spec.Containers[0].Image != "hearth:third" {
				return fmt.Errorf("%s runs %s", pod.Name, pod.Spec.Containers[0].Image)
			}
		}
		if len(pods.Items) != 3 {
			return fmt.Errorf("%d pods", len(pods.Items))
		}
		return nil
	})
}

// waitComplete waits until the Ingester ns/hearth is Available, not Progressing
// (Complete) and not Degraded, with every pod on image, and Monitoring True.
func waitComplete(t *testing.T, p *platform, ns, image string) {
	t.Helper()
	ctx := context.Background()
	eventually(t, ns+": the Ingester Complete on "+image, func() error {
		ing := &hearthv1.Ingester{}
		if err := p.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hearth"}, ing); err != nil {
			return err
		}
		for typ, want := range map[string]metav1.ConditionStatus{hearthv1.ConditionAvailable: metav1.ConditionTrue,
			hearthv1.ConditionProgressing: metav1.ConditionFalse, hearthv1.ConditionDegraded: metav1.ConditionFalse,
			hearthv1.ConditionMonitoring: metav1.ConditionTrue} {
			c := meta.FindStatusCondition(ing.Status.Conditions, typ)
			if c != nil && (typ == hearthv1.ConditionDegraded && c.Status == metav1.ConditionTrue ||
				typ == hearthv1.ConditionMonitoring && c.Status == metav1.ConditionFalse) {
				t.Fatalf("%s: %s %s: %s", ns, typ, c.Reason, c.Message) // every input is there: nothing may fail
			}
			if c == nil || c.Status != want || c.ObservedGeneration != ing.Generation {
				return fmt.Errorf("%s: %+v", typ, c)
			}
		}
		var pods corev1.PodList
		if err := p.c.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{controllers.LabelInstance: "hearth"}); err != nil {
			return err
		}
		if len(pods.Items) != 3 {
			return fmt.Errorf("%d pods", len(pods.Items))
		}
		for _, pod := range pods.Items {
			if pod.Spec.Containers[0].Image != image {
				return fmt.Errorf("%s runs %s", pod.Name, pod.Spec.Containers[0].Image)
			}
		}
		return nil
	})
}

// impersonated is the platform's config acting as user, a ServiceAccount of hearth-system.
func (p *platform) impersonated(user string) *rest.Config {
	cfg := rest.CopyConfig(p.env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:hearth-system", "system:authenticated"}}
	return cfg
}

func (p *platform) clientAs(t *testing.T, user string) client.Client {
	c, err := client.New(p.impersonated(user), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startOperatorAs runs the operator as `hearth operator -watch-namespace=ns` does, as user,
// logging into logs.
func (p *platform) startOperatorAs(t *testing.T, user, ns string, logs *testutil.SyncBuffer) {
	t.Helper()
	log := zap.New(zap.WriteTo(logs)).WithValues("operator", user)
	mgr, err := ctrl.NewManager(p.impersonated(user), ctrl.Options{
		Scheme:                 scheme,
		Logger:                 log,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{ByObject: controllers.CacheByObject(), DefaultNamespaces: map[string]cache.Config{ns: {}}},
		// Two operators in one process: controller names are unique per process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &controllers.IngesterReconciler{Ring: ring{p}, Pods: okPods{}, Resync: 2 * time.Second}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(logr.NewContext(context.Background(), log))
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("operator %s: %v", user, err)
		}
	})
}

// podMonitorCRD is a minimal stand-in for the Prometheus Operator's CRD: its group,
// version, kind and scope.
func podMonitorCRD() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": "podmonitors.monitoring.coreos.com"},
		"spec": map[string]any{
			"group": "monitoring.coreos.com",
			"names": map[string]any{"kind": "PodMonitor", "listKind": "PodMonitorList", "plural": "podmonitors", "singular": "podmonitor"},
			"scope": "Namespaced",
			"versions": []any{map[string]any{
				"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
			}},
		},
	}}
}
