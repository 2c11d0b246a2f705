package validation

import "github.com/prometheus/client_golang/prometheus"

// Exporter exports the limits as metrics, like Pyroscope's overrides
// exporter: hearth_limits_defaults{limit_name} and, for every tenant with
// overrides, hearth_limits_overrides{limit_name,tenant} (its effective
// limits). Durations are in seconds.
type Exporter struct {
	o                   *Overrides
	defaults, overrides *prometheus.Desc
}

// NewExporter returns a collector of o's limits.
func NewExporter(o *Overrides) *Exporter {
	return &Exporter{
		o:         o,
		defaults:  prometheus.NewDesc("hearth_limits_defaults", "The default limits of every tenant (durations in seconds).", []string{"limit_name"}, nil),
		overrides: prometheus.NewDesc("hearth_limits_overrides", "The effective limits of the tenants with runtime overrides (durations in seconds).", []string{"limit_name", "tenant"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	ch <- e.defaults
	ch <- e.overrides
}

// Collect implements prometheus.Collector.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	for _, v := range e.o.Defaults().Values() {
		ch <- prometheus.MustNewConstMetric(e.defaults, prometheus.GaugeValue, v.Value, v.Name)
	}
	for t, l := range e.o.Tenants() {
		for _, v := range l.Values() {
			ch <- prometheus.MustNewConstMetric(e.overrides, prometheus.GaugeValue, v.Value, v.Name, t)
		}
	}
}
