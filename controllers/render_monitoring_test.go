package controllers

import (
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

func TestRenderPodMonitor(t *testing.T) {
	ing := newIngester("profiling", "hearth")
	ing.UID = "uid-1"
	ing.Spec.Monitoring = hearthv1.MonitoringSpec{Enabled: true, Interval: "15s",
		Labels: map[string]string{"release": "prom", LabelName: "not-hearth"}}
	pm := RenderPodMonitor(ing)
	if pm.GetAPIVersion() != "monitoring.coreos.com/v1" || pm.GetKind() != "PodMonitor" || pm.GetName() != "hearth" || pm.GetNamespace() != "profiling" {
		t.Fatalf("rendered %s %s %s/%s", pm.GetAPIVersion(), pm.GetKind(), pm.GetNamespace(), pm.GetName())
	}
	if l := pm.GetLabels(); l["release"] != "prom" || l[LabelName] != "hearth" || l[LabelManagedBy] != managedBy {
		t.Errorf("labels %v: want the user's plus the operator's (which win)", l)
	}
	sel, _, _ := unstructured.NestedStringMap(pm.Object, "spec", "selector", "matchLabels")
	if fmt.Sprint(sel) != fmt.Sprint(SelectorLabels(ing)) {
		t.Errorf("selector %v, the pods carry %v", sel, SelectorLabels(ing))
	}
	eps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
	if fmt.Sprint(eps) != "[map[interval:15s path:/metrics port:http]]" {
		t.Errorf("endpoints %v", eps)
	}
	// The port the endpoint names is the ingester container's.
	cm, err := RenderConfigMap(ing)
	if err != nil {
		t.Fatal(err)
	}
	sts := RenderStatefulSet(ing, Zones(ing)[0], cm)
	found := false
	for _, p := range sts.Spec.Template.Spec.Containers[0].Ports {
		found = found || p.Name == "http"
	}
	if !found {
		t.Error("the ingester container has no port named http")
	}
	if refs := pm.GetOwnerReferences(); len(refs) != 1 || refs[0].UID != "uid-1" || refs[0].Controller == nil || !*refs[0].Controller {
		t.Errorf("owner references %v", refs)
	}
}

// podMonitorCRD is a minimal stand-in for the Prometheus Operator's CRD: the same group,
// version, kind and scope, any content.
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

// spec.monitoring without the Prometheus Operator's CRD: a False Monitoring condition
// and a Warning event, and the Ingester reconciled as usual. With the CRD: the PodMonitor.
// Turned off: the PodMonitor and the condition go.
func TestMonitoringPodMonitor(t *testing.T) {
	p := getPlatform(t)
	ns := p.namespace(t)
	ing := newIngester(ns, "monitored")
	ing.Spec.Monitoring = hearthv1.MonitoringSpec{Enabled: true, Labels: map[string]string{"release": "prom"}}
	if err := p.c.Create(ctx, ing); err != nil {
		t.Fatal(err)
	}
	got := p.wantCondition(t, ns, "monitored", hearthv1.ConditionMonitoring, metav1.ConditionFalse, ReasonPodMonitorCRDMissing)
	if c := condition(got, hearthv1.ConditionDegraded); c != nil && c.Status == metav1.ConditionTrue {
		t.Errorf("a missing PodMonitor CRD made the Ingester Degraded: %s", c.Message)
	}
	p.wantEvent(t, ns, "monitored", ReasonPodMonitorCRDMissing)
	eventually(t, "children applied without the CRD", func() error { return p.liveMatchesRender(ns, "monitored") })

	crd := podMonitorCRD()
	if err := p.c.Create(ctx, crd); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	p.wantCondition(t, ns, "monitored", hearthv1.ConditionMonitoring, metav1.ConditionTrue, ReasonPodMonitorApplied)
	pm := &unstructured.Unstructured{}
	pm.SetGroupVersionKind(schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "PodMonitor"})
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "monitored"}, pm); err != nil {
		t.Fatal(err)
	}
	want := RenderPodMonitor(p.get(t, ns, "monitored"))
	if err := contains("PodMonitor", want.Object["spec"], pm.Object["spec"]); err != nil {
		t.Error(err)
	}
	if pm.GetLabels()["release"] != "prom" {
		t.Errorf("PodMonitor labels %v", pm.GetLabels())
	}

	p.mutate(t, ns, "monitored", func(i *hearthv1.Ingester) { i.Spec.Monitoring.Enabled = false })
	eventually(t, "PodMonitor deleted, Monitoring condition gone", func() error {
		err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "monitored"}, pm.DeepCopy())
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("PodMonitor still there (%v)", err)
		}
		if c := condition(p.get(t, ns, "monitored"), hearthv1.ConditionMonitoring); c != nil {
			return fmt.Errorf("condition still there: %+v", c)
		}
		return nil
	})
}
