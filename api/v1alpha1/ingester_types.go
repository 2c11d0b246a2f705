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
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types of an Ingester.
const (
	// ConditionAvailable is True when every desired ingester pod is ready.
	ConditionAvailable = "Available"
	// ConditionProgressing is True while the children are being created or updated.
	ConditionProgressing = "Progressing"
	// ConditionDegraded is True when something outside the operator's control blocks the
	// Ingester (a missing Secret or StorageClass, pods that cannot start).
	ConditionDegraded = "Degraded"
)

// Object storage backends.
const (
	BackendFilesystem = "filesystem"
	BackendS3         = "s3"
	BackendGCS        = "gcs"
	BackendAzure      = "azure"
)

// IngesterSpec is the desired state of an Ingester.
//
// +kubebuilder:validation:XValidation:rule="self.replicas == 0 || self.replicationFactor <= self.replicas",message="spec.replicationFactor must not exceed spec.replicas: raise spec.replicas or lower spec.replicationFactor (spec.replicas may be 0 to park the Ingester)"
// +kubebuilder:validation:XValidation:rule="!has(self.zones) || size(self.zones) == 0 || self.replicationFactor <= size(self.zones)",message="with spec.zones set, spec.replicationFactor must not exceed the number of zones (each replica lives in a different zone): add zones or lower spec.replicationFactor"
// +kubebuilder:validation:XValidation:rule="!has(self.zones) || size(self.zones) == 0 || self.replicas == 0 || self.replicas >= size(self.zones)",message="with spec.zones set, spec.replicas must be at least the number of zones so that every zone has an ingester: raise spec.replicas"
// +kubebuilder:validation:XValidation:rule="(has(self.zones) ? self.zones.map(z, z.name) : []) == (has(oldSelf.zones) ? oldSelf.zones.map(z, z.name) : [])",message="spec.zones cannot be added, removed or renamed after creation (ring ownership would move without a flush): create a new Ingester instead"
type IngesterSpec struct {
	// Replicas is the total number of ingester pods. With zones, they are spread over the
	// zones as evenly as possible (earlier zones take the remainder).
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Image is the hearth container image; the same image runs `hearth ingester`.
	// +kubebuilder:validation:MinLength=1
	Image string `json:"image"`

	// ImagePullPolicy of the ingester container.
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// ImagePullSecrets for the ingester pods.
	// +optional
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// Resources of the ingester container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// Storage is each ingester's persistent volume: WAL, head spill, local blocks, tokens file.
	Storage StorageSpec `json:"storage"`

	// ObjectStorage is where finished blocks are uploaded.
	ObjectStorage ObjectStorageSpec `json:"objectStorage"`

	// ReplicationFactor is how many ingesters own each series; a push succeeds on a quorum.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=9
	// +optional
	ReplicationFactor int32 `json:"replicationFactor,omitempty"`

	// Zones makes replication zone-aware: one StatefulSet per zone, and the replicas of a
	// series in distinct zones. Fixed at creation.
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:XValidation:rule="self.all(z, self.exists_one(y, y.name == z.name))",message="spec.zones must have unique names: remove or rename the duplicate zone"
	// +optional
	Zones []ZoneSpec `json:"zones,omitempty"`

	// Ring tunes ring membership.
	// +optional
	Ring RingSpec `json:"ring,omitempty"`

	// WAL tunes the write-ahead log.
	// +optional
	WAL WALSpec `json:"wal,omitempty"`

	// Blocks tunes when the head is cut into blocks and how long local copies are kept.
	// +optional
	Blocks BlocksSpec `json:"blocks,omitempty"`

	// Log sets the ingesters' log level and format.
	// +optional
	Log LogSpec `json:"log,omitempty"`

	// Retention is how long profiles are kept in object storage, e.g. 720h (30 days):
	// the compactor deletes blocks whose newest profile is older. Empty or "0s" keeps
	// them forever. Blocks on the ingesters' disks follow blocks.localRetention.
	// +optional
	Retention Duration `json:"retention,omitempty"`

	// MultitenancyEnabled requires the X-Scope-OrgID header on every request.
	// +optional
	MultitenancyEnabled bool `json:"multitenancyEnabled,omitempty"`

	// TerminationGracePeriodSeconds bounds the final flush of a stopping ingester.
	// +kubebuilder:default=300
	// +kubebuilder:validation:Minimum=30
	// +optional
	TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds,omitempty"`

	// ShutdownDelay is how long a stopping ingester keeps serving after it turned
	// not-ready and LEAVING (what still arrives is forwarded to the other replicas), so
	// that clients and load balancers stop sending to it before its port closes; it adds
	// to every pod's stop, and so to rollouts. Default 5s; "0s" closes at once.
	// +optional
	ShutdownDelay Duration `json:"shutdownDelay,omitempty"`

	// PodTemplate adds to the ingester pods.
	// +optional
	PodTemplate PodTemplateOverride `json:"podTemplate,omitempty"`

	// Paused stops the operator from changing the children (an escape hatch).
	// +optional
	Paused bool `json:"paused,omitempty"`

	// DeletionPolicy is what deleting the Ingester does with what the ingesters hold and
	// the bucket does not have yet. Flush (default): every running pod flushes to object
	// storage first, and the deletion waits as long as a flush fails (a bucket that is
	// gone keeps the Ingester until the finalizer is removed by hand).
	// FlushWithTimeout: the same, but once deletionFlushTimeout has passed since the
	// deletion, the Ingester is deleted without the flushes that have not succeeded (their
	// data is lost; a Warning Event names the pods) — for GitOps, where nobody removes a
	// finalizer by hand.
	// +kubebuilder:validation:Enum=Flush;FlushWithTimeout
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// DeletionFlushTimeout is how long FlushWithTimeout tries to flush, e.g. 10m
	// (default 10m).
	// +optional
	DeletionFlushTimeout Duration `json:"deletionFlushTimeout,omitempty"`

	// Monitoring renders a Prometheus Operator PodMonitor for the ingester pods.
	// +optional
	Monitoring MonitoringSpec `json:"monitoring,omitempty"`

	// TLS turns on mutual TLS for internal traffic (replication, admin endpoints,
	// memberlist) with the certificates of a Secret.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`

	// NetworkPolicy restricts who reaches the ingester pods; on by default.
	// +optional
	NetworkPolicy NetworkPolicySpec `json:"networkPolicy,omitempty"`

	// Overrides are per-tenant limits, by tenant id: each tenant's keys are the ingester's
	// runtime config keys (docs/configuration.md, "Per-tenant limits and runtime overrides"), e.g.
	// {"team-a": {"max_series_per_tenant": 500000, "ingestion_rate_mb": 8}}; a key a tenant
	// leaves out keeps the default. They are rendered into the ConfigMap <name>-overrides,
	// which the ingesters reload while running: an edit restarts no pod. The operator
	// validates them as the ingester does (unknown keys, negative values, invalid tenant
	// ids); an invalid edit is not rendered (the last valid overrides stay in effect) and
	// the Ingester is Degraded with reason InvalidOverrides until it is fixed.
	// +optional
	Overrides map[string]TenantOverrides `json:"overrides,omitempty"`
}

// TenantOverrides is one tenant's limits, kept as the JSON object the user wrote.
//
// Why not one typed field per limit: the ingester's strict decoder (the one the operator
// validates with) is the single definition of the keys. A typed schema would repeat every
// limit here, and an API server whose CRD is older than the operator would silently prune
// a key it does not know (a GitOps tool then shows a diff forever). Kept as written, an
// object diffs cleanly against what the user committed, a new limit needs no CRD change,
// and an unknown or misspelt key is refused by name in the Degraded condition.
//
// +kubebuilder:validation:Type=object
// +kubebuilder:pruning:PreserveUnknownFields
type TenantOverrides struct {
	// Raw is the JSON object.
	Raw []byte `json:"-"`
}

// MarshalJSON writes the object as it was read (an empty one when unset).
func (t TenantOverrides) MarshalJSON() ([]byte, error) {
	if len(t.Raw) == 0 {
		return []byte("{}"), nil
	}
	return t.Raw, nil
}

// UnmarshalJSON keeps the object as it is; "null" is an empty object.
func (t *TenantOverrides) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Raw = nil
		return nil
	}
	t.Raw = append(t.Raw[:0], b...)
	return nil
}

// ZoneSpec is one availability zone.
type ZoneSpec struct {
	// Name of the zone, part of the StatefulSet name and the ingesters' instance zone.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=16
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// NodeSelector pins this zone's pods, e.g. {"topology.kubernetes.io/zone": "eu-west-1a"}.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
}

// StorageSpec is the per-ingester persistent volume.
//
// +kubebuilder:validation:XValidation:rule="quantity(string(self.size)).compareTo(quantity(string(oldSelf.size))) >= 0",message="spec.storage.size can grow but never shrink: set it back to at least its current value"
// +kubebuilder:validation:XValidation:rule="has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)",message="spec.storage.storageClassName cannot be changed after creation: create a new Ingester to move to another storage class"
type StorageSpec struct {
	// Size of each ingester's volume.
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('0'))",message="spec.storage.size must be greater than zero, e.g. 10Gi"
	Size resource.Quantity `json:"size"`

	// StorageClassName of the volumes; empty uses the cluster's default class.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`

	// WhenScaled is what happens to the volume of an ingester removed by a scale-down.
	// +kubebuilder:validation:Enum=Retain;Delete
	// +kubebuilder:default=Retain
	// +optional
	WhenScaled appsv1.PersistentVolumeClaimRetentionPolicyType `json:"whenScaled,omitempty"`

	// WhenDeleted is what happens to the volumes when the Ingester is deleted.
	// +kubebuilder:validation:Enum=Retain;Delete
	// +kubebuilder:default=Retain
	// +optional
	WhenDeleted appsv1.PersistentVolumeClaimRetentionPolicyType `json:"whenDeleted,omitempty"`
}

// ObjectStorageSpec is the bucket that holds the blocks.
//
// +kubebuilder:validation:XValidation:rule="self.backend == 'filesystem' || (has(self.bucket) && size(self.bucket) > 0)",message="spec.objectStorage.bucket is required for the s3, gcs and azure backends (for azure it is the blob container)"
// +kubebuilder:validation:XValidation:rule="self.backend != 'filesystem' || !has(self.credentialsSecret)",message="spec.objectStorage.credentialsSecret is not used by the filesystem backend: remove it or set another backend"
// +kubebuilder:validation:XValidation:rule="self.backend != 'azure' || (has(self.accountName) && size(self.accountName) > 0)",message="spec.objectStorage.accountName (the Azure storage account) is required when backend is azure"
// +kubebuilder:validation:XValidation:rule="self.backend == 'azure' || !has(self.accountName)",message="spec.objectStorage.accountName is only used by the azure backend"
type ObjectStorageSpec struct {
	// Backend is filesystem (on each ingester's own volume: for trials only), s3 (AWS S3 or
	// any S3-compatible server), gcs (Google Cloud Storage) or azure (Azure Blob Storage).
	// +kubebuilder:validation:Enum=filesystem;s3;gcs;azure
	Backend string `json:"backend"`

	// Bucket name (for azure, the blob container, which must exist).
	// +optional
	Bucket string `json:"bucket,omitempty"`

	// AccountName is the Azure storage account (azure only).
	// +optional
	AccountName string `json:"accountName,omitempty"`

	// Endpoint: for s3, the server as host:port; for azure, the blob service domain
	// (default blob.core.windows.net); empty uses the provider's default.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// Region of the bucket.
	// +optional
	Region string `json:"region,omitempty"`

	// Insecure talks plain HTTP to the endpoint.
	// +optional
	Insecure bool `json:"insecure,omitempty"`

	// CredentialsSecret names a Secret in the Ingester's namespace holding the credentials:
	// for s3 the access keys, for gcs a service account key file (JSON), for azure the
	// account's shared key. Without it the provider's ambient credentials are used (IAM
	// roles for service accounts, GKE workload identity, Azure workload identity).
	// Credentials are never written inline in the Ingester.
	// +optional
	CredentialsSecret *CredentialsSecretRef `json:"credentialsSecret,omitempty"`
}

// CredentialsSecretRef points at the keys in a Secret.
type CredentialsSecretRef struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`

	// AccessKeyIDKey is the Secret key holding the access key id.
	// +kubebuilder:default=AWS_ACCESS_KEY_ID
	// +optional
	AccessKeyIDKey string `json:"accessKeyIDKey,omitempty"`

	// SecretAccessKeyKey is the Secret key holding the secret access key.
	// +kubebuilder:default=AWS_SECRET_ACCESS_KEY
	// +optional
	SecretAccessKeyKey string `json:"secretAccessKeyKey,omitempty"`

	// ServiceAccountKeyKey is the Secret key holding the GCS service account key file
	// (gcs; default key.json). It is mounted read-only and named by
	// GOOGLE_APPLICATION_CREDENTIALS.
	// +optional
	ServiceAccountKeyKey string `json:"serviceAccountKeyKey,omitempty"`

	// AccountKeyKey is the Secret key holding the Azure storage account's shared key
	// (azure; default AZURE_STORAGE_KEY).
	// +optional
	AccountKeyKey string `json:"accountKeyKey,omitempty"`
}

// RingSpec tunes ring membership.
type RingSpec struct {
	// NumTokens per ingester. Changing it later reshuffles ownership.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4096
	// +optional
	NumTokens *int32 `json:"numTokens,omitempty"`

	// HeartbeatPeriod, e.g. 5s.
	// +optional
	HeartbeatPeriod Duration `json:"heartbeatPeriod,omitempty"`

	// HeartbeatTimeout after which a member is UNHEALTHY, e.g. 1m.
	// +optional
	HeartbeatTimeout Duration `json:"heartbeatTimeout,omitempty"`

	// MinReadyDuration is the longest an ACTIVE ingester waits before reporting ready,
	// e.g. 15s; it is ready sooner once every other member sees it ACTIVE.
	// +optional
	MinReadyDuration Duration `json:"minReadyDuration,omitempty"`
}

// WALSpec tunes the write-ahead log.
type WALSpec struct {
	// Fsync policy: always (group commit), interval, off.
	// +kubebuilder:validation:Enum=always;interval;off
	// +optional
	Fsync string `json:"fsync,omitempty"`
}

// BlocksSpec tunes block cutting.
type BlocksSpec struct {
	// MaxBlockDuration cuts the head when it is older, e.g. 1h.
	// +optional
	MaxBlockDuration Duration `json:"maxBlockDuration,omitempty"`

	// MaxHeadBytes cuts the head when it is larger, e.g. 1GiB or 512MiB.
	// +kubebuilder:validation:Pattern=`^[0-9]+(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?$`
	// +optional
	MaxHeadBytes string `json:"maxHeadBytes,omitempty"`

	// FlushOnStopWALBytes: a restarting ingester writes its head into local blocks when
	// its next start would otherwise replay more WAL than this (writing a head is several
	// times faster than replaying the WAL that built it, so rollouts go faster). Default
	// 256MiB; "0" never writes on a restart (each stop then takes well under a second).
	// +kubebuilder:validation:Pattern=`^[0-9]+(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?$`
	// +optional
	FlushOnStopWALBytes string `json:"flushOnStopWALBytes,omitempty"`

	// LocalRetention keeps uploaded blocks on disk this long, e.g. 6h.
	// +optional
	LocalRetention Duration `json:"localRetention,omitempty"`
}

// LogSpec sets logging.
type LogSpec struct {
	// Level: debug, info, warn, error.
	// +kubebuilder:validation:Enum=debug;info;warn;error
	// +optional
	Level string `json:"level,omitempty"`

	// Format: logfmt or json.
	// +kubebuilder:validation:Enum=logfmt;json
	// +optional
	Format string `json:"format,omitempty"`
}

// DeletionPolicy is what deleting an Ingester does (see IngesterSpec.DeletionPolicy).
type DeletionPolicy string

// Deletion policies.
const (
	DeletionFlush            DeletionPolicy = "Flush"
	DeletionFlushWithTimeout DeletionPolicy = "FlushWithTimeout"
)

// Duration is a Go duration string such as 30s, 5m or 1h30m.
// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
type Duration string

// PodTemplateOverride adds to the rendered ingester pods.
type PodTemplateOverride struct {
	// Labels added to the pods (the operator's selector labels win).
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations added to the pods.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
	// NodeSelector of the pods (merged with a zone's nodeSelector, the zone winning).
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Affinity of the pods. Without affinity and topologySpreadConstraints, the pods get
	// a soft topology spread across nodes (kubernetes.io/hostname, maxSkew 1,
	// ScheduleAnyway), so that one node's loss takes at most one replica of a series.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
	// Tolerations of the pods.
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// TopologySpreadConstraints of the pods (replacing the default spread across nodes).
	// +optional
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`
	// PriorityClassName of the pods.
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`
	// Env adds environment variables to the ingester container.
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`
}

// IngesterStatus is the observed state of an Ingester.
type IngesterStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Replicas is the number of ingester pods that exist.
	// +optional
	Replicas int32 `json:"replicas"`
	// ReadyReplicas is the number of ready ingester pods.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`
	// UpdatedReplicas is the number of pods running the current pod template.
	// +optional
	UpdatedReplicas int32 `json:"updatedReplicas"`
	// Selector is the label selector of the pods, for the scale subresource and HPAs.
	// +optional
	Selector string `json:"selector,omitempty"`
	// Ring counts ring members by state, as the ingesters' /ring reports.
	// +optional
	Ring RingStatus `json:"ring,omitempty"`
	// Rollout is the progress of replacing pods that run an outdated template.
	// +optional
	Rollout *RolloutStatus `json:"rollout,omitempty"`
	// ScaleDown lists the pods prepared for a final stop (flush, upload, leave the ring)
	// by a replica decrease.
	// +optional
	ScaleDown *ScaleDownStatus `json:"scaleDown,omitempty"`
	// Conditions: Available, Progressing, Degraded (and Monitoring with spec.monitoring).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// RolloutStatus is the progress of a rolling update: the operator deletes outdated pods
// one at a time (one zone at a time with zones) while the ring is healthy.
type RolloutStatus struct {
	// InFlight are the pods being replaced: deleted, or their replacement not yet ACTIVE
	// and Ready.
	// +optional
	InFlight []string `json:"inFlight,omitempty"`
	// Outdated is the number of pods on an outdated template.
	Outdated int32 `json:"outdated"`
	// Updated is the number of pods on the current template.
	Updated int32 `json:"updated"`
	// Message says what the rollout does or waits for.
	// +optional
	Message string `json:"message,omitempty"`
}

// ScaleDownStatus is a replica decrease in progress.
type ScaleDownStatus struct {
	// Prepared are the pods whose prepare-shutdown call succeeded.
	// +optional
	Prepared []string `json:"prepared,omitempty"`
}

// RingStatus counts ring members by state.
type RingStatus struct {
	// +optional
	Active int32 `json:"active,omitempty"`
	// +optional
	Joining int32 `json:"joining,omitempty"`
	// +optional
	Pending int32 `json:"pending,omitempty"`
	// +optional
	Leaving int32 `json:"leaving,omitempty"`
	// +optional
	Unhealthy int32 `json:"unhealthy,omitempty"`
	// Summary for kubectl, e.g. "3/3 ACTIVE" or "2/3 ACTIVE, 1 LEAVING"; "unknown" when no
	// ingester answered.
	// +optional
	Summary string `json:"summary,omitempty"`
}

// Ingester runs Hearth ingesters: StatefulSets with persistent volumes, Services, config.
//
// +kubebuilder:object:root=true
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 40",message="metadata.name must be at most 40 characters (it prefixes the StatefulSet, Service and pod names)"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.zones) || self.spec.zones.all(z, size(self.metadata.name) + size(z.name) <= 51)",message="metadata.name and each zone name together must be at most 51 characters: the StatefulSet <name>-<zone> plus its revision hash must fit a 63-character label"
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=hing,categories=hearth
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.spec.replicas`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Ring",type=string,JSONPath=`.status.ring.summary`
// +kubebuilder:printcolumn:name="Available",type=string,JSONPath=`.status.conditions[?(@.type=="Available")].status`,priority=1
// +kubebuilder:printcolumn:name="Progressing",type=string,JSONPath=`.status.conditions[?(@.type=="Progressing")].reason`
// +kubebuilder:printcolumn:name="Degraded",type=string,JSONPath=`.status.conditions[?(@.type=="Degraded")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Ingester struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   IngesterSpec   `json:"spec"`
	Status IngesterStatus `json:"status,omitempty"`
}

// IngesterList is a list of Ingesters.
//
// +kubebuilder:object:root=true
type IngesterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Ingester `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Ingester{}, &IngesterList{})
}
