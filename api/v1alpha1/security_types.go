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

import (
	networkingv1 "k8s.io/api/networking/v1"
)

// TLSSpec turns on mutual TLS for the ingesters' internal traffic: the internal listener
// (replica writes and reads, admin endpoints) requires a client certificate of the CA, the
// ingesters and the operator present one, and memberlist gossips over TLS.
type TLSSpec struct {
	// SecretName names a Secret in the Ingester's namespace in cert-manager's layout:
	// tls.crt, tls.key and ca.crt (a cert-manager Certificate's secretName). It is mounted
	// into every pod; a renewed certificate is picked up without a restart. The
	// certificate must allow both server and client authentication (cert-manager usages
	// "server auth" and "client auth") and name serverName among its dnsNames.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	SecretName string `json:"secretName"`

	// ServerName is the name peers verify on each other's certificates (they dial pod
	// IPs); default <name>-headless.<namespace>.svc.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ServerName string `json:"serverName,omitempty"`

	// Public also serves the public port (push, query, /ready, /metrics) over TLS with
	// the same certificate, without asking clients for one (they are authenticated by
	// the gateway in front). The certificate must then also name the addresses clients
	// use (the Services' DNS names). The readiness probe, the PodMonitor and the operator
	// switch to HTTPS.
	// +optional
	Public bool `json:"public,omitempty"`
}

// NetworkPolicySpec is the NetworkPolicy the operator renders for the ingester pods.
type NetworkPolicySpec struct {
	// Enabled renders the NetworkPolicy (default true): the internal and memberlist ports
	// admit only this Ingester's pods and the operator's; the public port admits
	// publicFrom.
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// PublicFrom are the peers admitted to the public port (push, query, /ready,
	// /metrics); empty: from anywhere.
	// +optional
	PublicFrom []networkingv1.NetworkPolicyPeer `json:"publicFrom,omitempty"`
}
