package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

// The PodMonitor is server-side applied (patch, and create for a first apply) and
// deleted when turned off; it is never read.
// +kubebuilder:rbac:groups=monitoring.coreos.com,resources=podmonitors,verbs=create;patch;delete

// Reasons of the Monitoring condition.
const (
	ReasonPodMonitorApplied     = "PodMonitorApplied"
	ReasonPodMonitorCRDMissing  = "PodMonitorCRDMissing"
	ReasonPodMonitorApplyFailed = "PodMonitorApplyFailed"
)

// PodMonitorGVK is the Prometheus Operator's PodMonitor. The operator does not depend on
// the Prometheus Operator's Go types: it renders the object unstructured, and only when
// spec.monitoring.enabled is set.
var PodMonitorGVK = metav1.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "PodMonitor"}

// RenderPodMonitor is the PodMonitor of an Ingester: every ingester pod of it (across
// zones), scraped on the http port at /metrics. Pure.
func RenderPodMonitor(ing *hearthv1.Ingester) *unstructured.Unstructured {
	labels := map[string]any{}
	for k, v := range ing.Spec.Monitoring.Labels {
		labels[k] = v
	}
	for k, v := range commonLabels(ing) { // the operator's labels win
		labels[k] = v
	}
	selector := map[string]any{}
	for k, v := range SelectorLabels(ing) {
		selector[k] = v
	}
	endpoint := map[string]any{"port": "http", "path": "/metrics"}
	if PublicTLS(ing) {
		// Prometheus verifies the certificate with the Secret's CA, by the name the
		// certificate is issued for (it scrapes pod IPs).
		endpoint["scheme"] = "https"
		endpoint["tlsConfig"] = map[string]any{
			"ca":         map[string]any{"secret": map[string]any{"name": ing.Spec.TLS.SecretName, "key": TLSCAKey}},
			"serverName": TLSServerName(ing),
		}
	}
	if ing.Spec.Monitoring.Interval != "" {
		endpoint["interval"] = string(ing.Spec.Monitoring.Interval)
	}
	owners := []any{}
	for _, o := range ownerRef(ing) {
		m, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(&o)
		owners = append(owners, m)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": PodMonitorGVK.Group + "/" + PodMonitorGVK.Version,
		"kind":       PodMonitorGVK.Kind,
		"metadata": map[string]any{
			"name":            ing.Name,
			"namespace":       ing.Namespace,
			"labels":          labels,
			"ownerReferences": owners,
		},
		"spec": map[string]any{
			"selector":            map[string]any{"matchLabels": selector},
			"namespaceSelector":   map[string]any{"matchNames": []any{ing.Namespace}},
			"podMetricsEndpoints": []any{endpoint},
		},
	}}
	return u
}

// crdMissing says whether err means the API server does not serve the kind.
func crdMissing(err error) bool {
	return meta.IsNoMatchError(err) || apierrors.IsNotFound(err)
}

// reconcileMonitoring applies or removes the Ingester's PodMonitor and sets the
// Monitoring condition. It never fails the reconcile: without the Prometheus Operator's
// CRD, or when the apply fails, the condition (and a Warning event when it turns False)
// says why, and the ingesters are reconciled as usual.
func (r *IngesterReconciler) reconcileMonitoring(ctx context.Context, ing *hearthv1.Ingester) {
	before := meta.FindStatusCondition(ing.Status.Conditions, hearthv1.ConditionMonitoring)
	if !ing.Spec.Monitoring.Enabled {
		if before == nil {
			return // never rendered: no API call, whether or not the CRD exists
		}
		pm := RenderPodMonitor(ing)
		if err := r.Delete(ctx, pm); err != nil && !crdMissing(err) {
			logf.FromContext(ctx).Error(err, "deleting the PodMonitor")
			return // the condition stays, so the delete is retried
		}
		meta.RemoveStatusCondition(&ing.Status.Conditions, hearthv1.ConditionMonitoring)
		return
	}
	c := metav1.Condition{Type: hearthv1.ConditionMonitoring, Status: metav1.ConditionTrue, Reason: ReasonPodMonitorApplied,
		Message: fmt.Sprintf("PodMonitor %s scrapes the ingester pods", ing.Name), ObservedGeneration: ing.Generation}
	err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(RenderPodMonitor(ing)), client.FieldOwner(FieldManager), client.ForceOwnership)
	switch {
	case err == nil:
	case crdMissing(err):
		c.Status, c.Reason = metav1.ConditionFalse, ReasonPodMonitorCRDMissing
		c.Message = "spec.monitoring.enabled is set but the API server does not serve monitoring.coreos.com/v1 PodMonitor: install the Prometheus Operator's CRDs, or turn spec.monitoring off"
	default:
		c.Status, c.Reason = metav1.ConditionFalse, ReasonPodMonitorApplyFailed
		c.Message = fmt.Sprintf("applying PodMonitor %s: %v", ing.Name, err)
	}
	if c.Status == metav1.ConditionFalse && (before == nil || before.Reason != c.Reason) {
		r.Recorder.Eventf(ing, nil, corev1.EventTypeWarning, c.Reason, "Monitoring", "%s", c.Message)
	}
	meta.SetStatusCondition(&ing.Status.Conditions, c)
}
