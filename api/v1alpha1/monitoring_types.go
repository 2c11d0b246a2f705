/*
Copyright 2026 The Hearth Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package v1alpha1

// ConditionMonitoring is True while the PodMonitor that spec.monitoring asks for is in
// place, False when it cannot be (the Prometheus Operator's CRD is not installed, the
// apply failed); absent when spec.monitoring.enabled is false. It never makes the
// Ingester Degraded: the ingesters run the same without it.
const ConditionMonitoring = "Monitoring"

// MonitoringSpec asks the operator for a Prometheus Operator PodMonitor
// (monitoring.coreos.com/v1) that scrapes this Ingester's pods on their http port.
// The dashboards and alerts that use those metrics are in docs/monitoring.
type MonitoringSpec struct {
	// Enabled renders the PodMonitor (named like the Ingester). It needs the Prometheus
	// Operator's CRDs; without them the Monitoring condition says so and nothing else
	// is affected.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// Interval between scrapes, e.g. 30s; empty: Prometheus's default.
	// +optional
	Interval Duration `json:"interval,omitempty"`

	// Labels added to the PodMonitor, e.g. the one your Prometheus's podMonitorSelector
	// matches.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
}
