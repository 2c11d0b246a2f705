package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Operator metrics, served on the manager's metrics endpoint next to controller-runtime's
// own (controller_runtime_reconcile_total, _errors_total, _time_seconds).
var (
	reconcilesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hearth_operator_reconciles_total",
		Help: "Ingester reconciles by result (success, error, degraded, paused).",
	}, []string{"result"})
	reconcileDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "hearth_operator_reconcile_duration_seconds",
		Help:    "Duration of Ingester reconciles.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
	})
	appliesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hearth_operator_applies_total",
		Help: "Server-side applies of Ingester children by kind and result (created, updated, unchanged, error).",
	}, []string{"kind", "result"})
	degradedGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hearth_operator_ingester_degraded",
		Help: "1 when an Ingester's Degraded condition is True.",
	}, []string{"namespace", "name", "reason"})
	podsReplacedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hearth_operator_pods_replaced_total",
		Help: "Ingester pods deleted by the operator to replace them with the current template.",
	})
)

func init() {
	metrics.Registry.MustRegister(reconcilesTotal, reconcileDuration, appliesTotal, degradedGauge, podsReplacedTotal)
}
