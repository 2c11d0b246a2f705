package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Operator metrics, served on the manager's metrics endpoint next to controller-runtime's
// own (controller_runtime_reconcile_total, _errors_total, _time_seconds, workqueue_*).
// docs/operator.md lists every name and label: dashboards and alerts are built on them.
var (
	reconcilesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hearth_operator_reconciles_total",
		Help: "Ingester reconciles by Ingester and result (success, error, degraded, paused, deleting).",
	}, []string{"namespace", "name", "result"})
	reconcileErrorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hearth_operator_reconcile_errors_total",
		Help: "Ingester reconciles that returned an error, by Ingester and the phase that failed.",
	}, []string{"namespace", "name", "phase"})
	reconcileDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "hearth_operator_reconcile_duration_seconds",
		Help:    "Duration of Ingester reconciles (a reconcile never waits on a pod longer than one call's timeout).",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
	}, []string{"namespace", "name"})
	appliesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hearth_operator_applies_total",
		Help: "Server-side applies of Ingester children by kind and result (created, updated, unchanged, error).",
	}, []string{"kind", "result"})
	degradedGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hearth_operator_ingester_degraded",
		Help: "1 when an Ingester's Degraded condition is True, with its reason.",
	}, []string{"namespace", "name", "reason"})
	podsReplacedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hearth_operator_pods_replaced_total",
		Help: "Ingester pods the operator removed to replace them with the current template, by how (evicted: through the Eviction API and the PodDisruptionBudget; deleted: stuck pods and zone rollouts).",
	}, []string{"namespace", "name", "how"})
	replicasGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hearth_operator_ingester_replicas",
		Help: "Ingester pods by kind: desired (spec.replicas), current, ready, updated (on the current template).",
	}, []string{"namespace", "name", "kind"})
	rolloutPodsGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hearth_operator_rollout_pods",
		Help: "Rollout progress: pods outdated, updated and in flight (being replaced); 0 outdated when no rollout runs.",
	}, []string{"namespace", "name", "state"})
	scaleDownPodsGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hearth_operator_scale_down_pods",
		Help: "Scale-down progress: pods leaving (above the desired count, still present) and prepared (status.scaleDown.prepared).",
	}, []string{"namespace", "name", "state"})
	deletionFlushesGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hearth_operator_deletion_flushes",
		Help: "Flushes of a deleted Ingester's pods by state (running, failed, done).",
	}, []string{"namespace", "name", "state"})
	lastSettledGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hearth_operator_ingester_last_settled_timestamp_seconds",
		Help: "Unix time an Ingester was last settled (Progressing False/Complete); time() minus it is how long it has been unsettled.",
	}, []string{"namespace", "name"})
	podCallsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hearth_operator_pod_calls_total",
		Help: "Calls to ingester pods' HTTP API by call (ring, prepare_shutdown, cancel_prepare_shutdown, flush, forget) and result (success, error, timeout).",
	}, []string{"call", "result"})
	podCallDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "hearth_operator_pod_call_duration_seconds",
		Help:    "Latency of calls to ingester pods' HTTP API by call.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
	}, []string{"call"})
)

func init() {
	metrics.Registry.MustRegister(reconcilesTotal, reconcileErrorsTotal, reconcileDuration, appliesTotal, degradedGauge,
		podsReplacedTotal, replicasGauge, rolloutPodsGauge, scaleDownPodsGauge, deletionFlushesGauge, lastSettledGauge,
		podCallsTotal, podCallDuration)
}

// forgetIngesterMetrics drops every per-Ingester series of a gone Ingester.
func forgetIngesterMetrics(namespace, name string) {
	m := map[string]string{"namespace": namespace, "name": name}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		reconcilesTotal, reconcileErrorsTotal, reconcileDuration, degradedGauge, podsReplacedTotal, replicasGauge,
		rolloutPodsGauge, scaleDownPodsGauge, deletionFlushesGauge, lastSettledGauge,
	} {
		v.DeletePartialMatch(m)
	}
}
