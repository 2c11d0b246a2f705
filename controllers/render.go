package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

// Constants shared by the rendered objects. Ports and paths are the ingester's contract
// (docs/configuration.md).
const (
	HTTPPort       = 4040
	MemberlistPort = 7946
	DataDir        = "/data"
	ConfigDir      = "/etc/hearth"
	// GCS service account key, from the credentials Secret.
	GCSKeyVolume  = "gcs-key"
	GCSKeyDir     = "/etc/hearth-gcs"
	GCSKeyFile    = "key.json"
	ConfigFile    = "hearth.yaml"
	BinaryPath    = "/hearth"
	ContainerName = "ingester"
	DataVolume    = "data"
	ConfigVolume  = "config"

	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelComponent = "app.kubernetes.io/component"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelZone      = "hearth.dev/zone"
	// LabelClaimInstance names the Ingester on its volume claims instead of
	// app.kubernetes.io/instance: claims have no owner, and Argo CD's label tracking takes
	// an ownerless object with app.kubernetes.io/instance: X for part of the Application X
	// (OutOfSync "requires pruning"; auto-prune deletes the retained volumes).
	LabelClaimInstance = "hearth.dev/instance"

	// AnnotationConfigChecksum on the pod template rolls the pods when their config changes.
	AnnotationConfigChecksum = "hearth.dev/config-checksum"

	appName   = "hearth"
	component = "ingester"
	managedBy = "hearth-operator"

	// runAsUser of the ingester pods: the image's non-root user.
	runAsUser = 65532
)

// Names of an Ingester's children.
func clientServiceName(ing *hearthv1.Ingester) string   { return ing.Name }
func headlessServiceName(ing *hearthv1.Ingester) string { return ing.Name + "-headless" }

// configMapName is the ConfigMap of one config content: one per revision, immutable,
// named by its content, so that an old pod's restarting container reads its own config.
func configMapName(ing *hearthv1.Ingester, data map[string]string) string {
	keys := slices.Sorted(maps.Keys(data))
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "\x00" + data[k] + "\x00")
	}
	return ing.Name + "-config-" + checksum(b.String())[:10]
}
func serviceAccountName(ing *hearthv1.Ingester) string { return ing.Name }
func pdbName(ing *hearthv1.Ingester) string            { return ing.Name }

// statefulSetName is the StatefulSet of a zone ("" when zones are not used).
func statefulSetName(ing *hearthv1.Ingester, zone string) string {
	if zone == "" {
		return ing.Name
	}
	return ing.Name + "-" + zone
}

// configKey is the ConfigMap key holding a zone's config ("" when zones are not used).
func configKey(zone string) string {
	if zone == "" {
		return ConfigFile
	}
	return "hearth-" + zone + ".yaml"
}

// SelectorLabels select every ingester pod of an Ingester, across zones.
func SelectorLabels(ing *hearthv1.Ingester) map[string]string {
	return map[string]string{
		LabelName:      appName,
		LabelInstance:  ing.Name,
		LabelComponent: component,
	}
}

// commonLabels are on every child.
func commonLabels(ing *hearthv1.Ingester) map[string]string {
	l := SelectorLabels(ing)
	l[LabelManagedBy] = managedBy
	return l
}

// ClaimLabels are on the claim template (so on every claim), for new StatefulSets; the
// claims of older ones are relabelled (ClaimRelabel).
func ClaimLabels(ing *hearthv1.Ingester, zone string) map[string]string {
	l := map[string]string{LabelName: appName, LabelComponent: component, LabelClaimInstance: ing.Name}
	if zone != "" {
		l[LabelZone] = zone
	}
	return l
}

func zoneSelectorLabels(ing *hearthv1.Ingester, zone string) map[string]string {
	l := SelectorLabels(ing)
	if zone != "" {
		l[LabelZone] = zone
	}
	return l
}

// Zone is one StatefulSet's share of an Ingester.
type Zone struct {
	Name     string // "" when zones are not used
	Replicas int32
	Spec     *hearthv1.ZoneSpec
}

// Zones splits spec.replicas over the zones as evenly as possible, earlier zones taking
// the remainder. Without zones it is one unnamed zone.
func Zones(ing *hearthv1.Ingester) []Zone {
	total := ptr.Deref(ing.Spec.Replicas, 3)
	if len(ing.Spec.Zones) == 0 {
		return []Zone{{Replicas: total}}
	}
	n := int32(len(ing.Spec.Zones))
	out := make([]Zone, 0, n)
	for i := range ing.Spec.Zones {
		r := total / n
		if int32(i) < total%n {
			r++
		}
		out = append(out, Zone{Name: ing.Spec.Zones[i].Name, Replicas: r, Spec: &ing.Spec.Zones[i]})
	}
	return out
}

// ownerRef makes the Ingester the controller of a child, so children are garbage
// collected with it.
func ownerRef(ing *hearthv1.Ingester) []metav1.OwnerReference {
	return []metav1.OwnerReference{{
		APIVersion:         hearthv1.GroupVersion.String(),
		Kind:               "Ingester",
		Name:               ing.Name,
		UID:                ing.UID,
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}}
}

func objectMeta(ing *hearthv1.Ingester, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:            name,
		Namespace:       ing.Namespace,
		Labels:          commonLabels(ing),
		OwnerReferences: ownerRef(ing),
	}
}

// Render returns every child of an Ingester, in apply order. It is a pure function of
// the Ingester: no API reads, no clock. The overrides ConfigMap is not among them: an
// invalid spec.overrides keeps the last valid one (RenderOverridesConfigMap, phaseOverrides).
func Render(ing *hearthv1.Ingester) ([]client.Object, error) {
	cm, err := RenderConfigMap(ing)
	if err != nil {
		return nil, err
	}
	objs := []client.Object{
		RenderServiceAccount(ing),
		cm,
		RenderHeadlessService(ing),
		RenderClientService(ing),
		RenderPodDisruptionBudget(ing),
	}
	if NetworkPolicyEnabled(ing) {
		objs = append(objs, RenderNetworkPolicy(ing))
	}
	for _, z := range Zones(ing) {
		objs = append(objs, RenderStatefulSet(ing, z, cm))
	}
	return objs, nil
}

// RenderServiceAccount is the ingester pods' identity. The pods do not talk to the API
// server, so the token is not mounted.
func RenderServiceAccount(ing *hearthv1.Ingester) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:                     metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta:                   objectMeta(ing, serviceAccountName(ing)),
		AutomountServiceAccountToken: ptr.To(false),
	}
}

// RenderHeadlessService gives each pod a DNS name and lets memberlist find its peers,
// ready or not (a joining ingester must gossip before it is ready).
func RenderHeadlessService(ing *hearthv1.Ingester) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(ing, headlessServiceName(ing)),
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			PublishNotReadyAddresses: true,
			Selector:                 SelectorLabels(ing),
			Ports: []corev1.ServicePort{
				{Name: "http", Port: HTTPPort, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
				{Name: "memberlist", Port: MemberlistPort, TargetPort: intstr.FromString("memberlist"), Protocol: corev1.ProtocolTCP},
			},
		},
	}
}

// RenderClientService fronts every ingester for pushes and queries.
func RenderClientService(ing *hearthv1.Ingester) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(ing, clientServiceName(ing)),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: SelectorLabels(ing),
			Ports: []corev1.ServicePort{
				{Name: "http", Port: HTTPPort, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
			},
		},
	}
}

// RenderPodDisruptionBudget lets voluntary disruptions take one ingester at a time.
func RenderPodDisruptionBudget(ing *hearthv1.Ingester) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: objectMeta(ing, pdbName(ing)),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: ptr.To(intstr.FromInt32(1)),
			Selector:       &metav1.LabelSelector{MatchLabels: SelectorLabels(ing)},
		},
	}
}

// IngesterConfig renders the YAML config file of a zone's ingesters (docs/configuration.md).
// Per-pod values (instance id and address) are flags, not config.
func IngesterConfig(ing *hearthv1.Ingester, zone string) ([]byte, error) {
	s := ing.Spec
	ring := map[string]any{
		"replication_factor": s.ReplicationFactor,
		"tokens_file_path":   DataDir + "/tokens",
	}
	if s.ReplicationFactor == 0 {
		ring["replication_factor"] = 3
	}
	if zone != "" {
		ring["zone_awareness_enabled"] = true
		ring["instance_zone"] = zone
	}
	if s.Ring.NumTokens != nil {
		ring["num_tokens"] = *s.Ring.NumTokens
	}
	setIf(ring, "heartbeat_period", string(s.Ring.HeartbeatPeriod))
	setIf(ring, "heartbeat_timeout", string(s.Ring.HeartbeatTimeout))
	setIf(ring, "min_ready_duration", string(s.Ring.MinReadyDuration))

	ingester := map[string]any{"ring": ring}
	setIf(ingester, "max_block_duration", string(s.Blocks.MaxBlockDuration))
	setIf(ingester, "max_head_bytes", s.Blocks.MaxHeadBytes)
	ingester["flush_on_stop_wal_bytes"] = "256MiB"
	setIf(ingester, "flush_on_stop_wal_bytes", s.Blocks.FlushOnStopWALBytes)
	setIf(ingester, "local_retention", string(s.Blocks.LocalRetention))

	storage := map[string]any{"backend": s.ObjectStorage.Backend}
	if s.ObjectStorage.Backend == hearthv1.BackendS3 {
		s3 := map[string]any{"bucket_name": s.ObjectStorage.Bucket}
		setIf(s3, "endpoint", s.ObjectStorage.Endpoint)
		setIf(s3, "region", s.ObjectStorage.Region)
		if s.ObjectStorage.Insecure {
			s3["insecure"] = true
		}
		storage["s3"] = s3
	}
	if s.ObjectStorage.Backend == hearthv1.BackendGCS {
		storage["gcs"] = map[string]any{"bucket_name": s.ObjectStorage.Bucket}
	}
	if s.ObjectStorage.Backend == hearthv1.BackendAzure {
		az := map[string]any{"account_name": s.ObjectStorage.AccountName, "container_name": s.ObjectStorage.Bucket}
		setIf(az, "endpoint", s.ObjectStorage.Endpoint)
		storage["azure"] = az
	}

	cfg := map[string]any{
		"server": map[string]any{"http_listen_port": HTTPPort},
		"auth":   map[string]any{"multitenancy_enabled": s.MultitenancyEnabled},
		"memberlist": map[string]any{
			"join_members": []string{fmt.Sprintf("%s.%s.svc:%d", headlessServiceName(ing), ing.Namespace, MemberlistPort)},
			"bind_port":    MemberlistPort,
		},
		"ingester": ingester,
		"storage":  storage,
	}
	log := map[string]any{}
	setIf(log, "level", s.Log.Level)
	setIf(log, "format", s.Log.Format)
	if len(log) > 0 {
		cfg["log"] = log
	}
	if s.WAL.Fsync != "" {
		cfg["wal"] = map[string]any{"fsync": s.WAL.Fsync}
	}
	if s.Retention != "" {
		cfg["compactor"] = map[string]any{"blocks_retention_period": string(s.Retention)}
	}
	cfg["shutdown_delay"] = "5s"
	setIf(cfg, "shutdown_delay", string(s.ShutdownDelay))
	securityConfig(ing, cfg)
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("rendering the ingester config: %w", err)
	}
	return append([]byte("# Rendered by hearth-operator from Ingester "+ing.Namespace+"/"+ing.Name+". Do not edit: changes are overwritten.\n"), out...), nil
}

func setIf(m map[string]any, k, v string) {
	if v != "" {
		m[k] = v
	}
}

// RenderConfigMap holds the config file of each zone. It is immutable and named by its
// content: a config change makes a new one (and a rollout), the pods of older revisions
// keep theirs until they are replaced (StaleConfigMaps), so a container restart (OOM,
// crash) of an old pod starts on its own config.
func RenderConfigMap(ing *hearthv1.Ingester) (*corev1.ConfigMap, error) {
	data := map[string]string{}
	for _, z := range Zones(ing) {
		c, err := IngesterConfig(ing, z.Name)
		if err != nil {
			return nil, err
		}
		data[configKey(z.Name)] = string(c)
	}
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: objectMeta(ing, configMapName(ing, data)),
		Data:       data,
		Immutable:  ptr.To(true),
	}, nil
}

func checksum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// RenderStatefulSet renders one zone's StatefulSet. Pods are replaced by the operator
// (OnDelete), never by the StatefulSet controller.
func RenderStatefulSet(ing *hearthv1.Ingester, z Zone, cm *corev1.ConfigMap) *appsv1.StatefulSet {
	s := ing.Spec
	selector := zoneSelectorLabels(ing, z.Name)

	podLabels := map[string]string{}
	maps.Copy(podLabels, s.PodTemplate.Labels)
	maps.Copy(podLabels, commonLabels(ing))
	maps.Copy(podLabels, selector)

	podAnnotations := map[string]string{}
	maps.Copy(podAnnotations, s.PodTemplate.Annotations)
	podAnnotations[AnnotationConfigChecksum] = checksum(cm.Data[configKey(z.Name)])

	nodeSelector := map[string]string{}
	maps.Copy(nodeSelector, s.PodTemplate.NodeSelector)
	if z.Spec != nil {
		maps.Copy(nodeSelector, z.Spec.NodeSelector)
	}
	if len(nodeSelector) == 0 {
		nodeSelector = nil
	}

	args := []string{
		"ingester",
		"-config.file=" + ConfigDir + "/" + ConfigFile,
		"-data-dir=" + DataDir,
		"-ingester.ring.instance-id=$(POD_NAME)",
		"-ingester.ring.instance-addr=$(POD_IP)",
		"-memberlist.advertise-addr=$(POD_IP)",
		"-memberlist.bind-addr=$(POD_IP)",
		// spec.overrides, reloaded while running (render_overrides.go).
		"-runtime-config.file=" + OverridesDir + "/" + OverridesFile,
	}

	env := []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "status.podIP"}}},
	}
	secretEnv := func(name, secret, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key}}}
	}
	mounts := []corev1.VolumeMount{
		{Name: DataVolume, MountPath: DataDir},
		{Name: ConfigVolume, MountPath: ConfigDir, ReadOnly: true},
	}
	ovVolume, ovMount := overridesVolume(ing)
	mounts = append(mounts, ovMount)
	var credVolume []corev1.Volume
	if cs := s.ObjectStorage.CredentialsSecret; cs != nil {
		switch s.ObjectStorage.Backend {
		case hearthv1.BackendS3:
			env = append(env, secretEnv("AWS_ACCESS_KEY_ID", cs.Name, accessKeyIDKey(cs)), secretEnv("AWS_SECRET_ACCESS_KEY", cs.Name, secretAccessKeyKey(cs)))
		case hearthv1.BackendAzure:
			env = append(env, secretEnv("AZURE_STORAGE_KEY", cs.Name, accountKeyKey(cs)))
		case hearthv1.BackendGCS:
			// Google's libraries read a key file, not a variable: mount the one key.
			env = append(env, corev1.EnvVar{Name: "GOOGLE_APPLICATION_CREDENTIALS", Value: GCSKeyDir + "/" + GCSKeyFile})
			mounts = append(mounts, corev1.VolumeMount{Name: GCSKeyVolume, MountPath: GCSKeyDir, ReadOnly: true})
			credVolume = append(credVolume, corev1.Volume{Name: GCSKeyVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: cs.Name, Items: []corev1.KeyToPath{{Key: serviceAccountKeyKey(cs), Path: GCSKeyFile}}, DefaultMode: ptr.To[int32](0o440)}}})
		}
	}
	if v := goMemLimit(s.Resources, s.PodTemplate.Env); v != "" {
		env = append(env, corev1.EnvVar{Name: "GOMEMLIMIT", Value: v})
	}
	env = append(env, s.PodTemplate.Env...)

	pullPolicy := s.ImagePullPolicy
	if pullPolicy == "" {
		pullPolicy = corev1.PullIfNotPresent
	}

	container := corev1.Container{
		Name:            ContainerName,
		Image:           s.Image,
		ImagePullPolicy: pullPolicy,
		Command:         []string{BinaryPath},
		Args:            args,
		Env:             env,
		Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: HTTPPort, Protocol: corev1.ProtocolTCP},
			{Name: "memberlist", ContainerPort: MemberlistPort, Protocol: corev1.ProtocolTCP},
		},
		Resources: s.Resources,
		ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/ready", Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTP,
			}},
			PeriodSeconds:    5,
			TimeoutSeconds:   1,
			SuccessThreshold: 1,
			FailureThreshold: 3,
		},
		Lifecycle: &corev1.Lifecycle{
			PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{BinaryPath, "prestop"}}},
		},
		VolumeMounts:             mounts,
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			RunAsNonRoot:             ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}

	pvc := corev1.PersistentVolumeClaim{
		// apiVersion and kind are set so that GitOps tools diffing the applied object see
		// what the API server stores.
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   DataVolume,
			Labels: ClaimLabels(ing, z.Name),
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: s.Storage.StorageClassName,
			VolumeMode:       ptr.To(corev1.PersistentVolumeFilesystem),
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: s.Storage.Size},
			},
		},
	}

	whenScaled, whenDeleted := s.Storage.WhenScaled, s.Storage.WhenDeleted
	if whenScaled == "" {
		whenScaled = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	if whenDeleted == "" {
		whenDeleted = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}

	sts := &appsv1.StatefulSet{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: func() metav1.ObjectMeta {
			m := objectMeta(ing, statefulSetName(ing, z.Name))
			maps.Copy(m.Labels, selector)
			return m
		}(),
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr.To(z.Replicas),
			ServiceName:         headlessServiceName(ing),
			PodManagementPolicy: appsv1.ParallelPodManagement,
			UpdateStrategy:      appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType},
			Selector:            &metav1.LabelSelector{MatchLabels: selector},
			PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
				WhenScaled:  whenScaled,
				WhenDeleted: whenDeleted,
			},
			RevisionHistoryLimit: ptr.To[int32](10),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations},
				Spec: corev1.PodSpec{
					ServiceAccountName:            serviceAccountName(ing),
					AutomountServiceAccountToken:  ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To(ptr.Deref(s.TerminationGracePeriodSeconds, 300)),
					ImagePullSecrets:              s.ImagePullSecrets,
					NodeSelector:                  nodeSelector,
					Affinity:                      s.PodTemplate.Affinity,
					Tolerations:                   s.PodTemplate.Tolerations,
					TopologySpreadConstraints:     topologySpread(ing),
					PriorityClassName:             s.PodTemplate.PriorityClassName,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:        ptr.To(true),
						RunAsUser:           ptr.To[int64](runAsUser),
						RunAsGroup:          ptr.To[int64](runAsUser),
						FSGroup:             ptr.To[int64](runAsUser),
						FSGroupChangePolicy: ptr.To(corev1.FSGroupChangeOnRootMismatch),
						SeccompProfile:      &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{container},
					Volumes: append([]corev1.Volume{{
						Name: ConfigVolume,
						VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: cm.Name},
							Items:                []corev1.KeyToPath{{Key: configKey(z.Name), Path: ConfigFile}},
							DefaultMode:          ptr.To[int32](0o444),
						}},
					}}, append([]corev1.Volume{ovVolume}, credVolume...)...),
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{pvc},
		},
	}
	secureStatefulSet(ing, sts)
	return sts
}

// topologySpread is the podTemplate's topology spread, or, when the podTemplate gives no
// placement at all (no affinity, no topology spread), a soft spread of the Ingester's pods
// across nodes: with RF 3, two replicas of a series on one node make that node's loss a
// quorum loss. Soft (ScheduleAnyway): a cluster with fewer nodes than pods still runs
// them all. Mimir's ingesters use anti-affinity for the same reason.
func topologySpread(ing *hearthv1.Ingester) []corev1.TopologySpreadConstraint {
	pt := ing.Spec.PodTemplate
	if pt.Affinity != nil || len(pt.TopologySpreadConstraints) > 0 {
		return pt.TopologySpreadConstraints
	}
	return []corev1.TopologySpreadConstraint{{
		MaxSkew:           1,
		TopologyKey:       corev1.LabelHostname,
		WhenUnsatisfiable: corev1.ScheduleAnyway,
		LabelSelector:     &metav1.LabelSelector{MatchLabels: SelectorLabels(ing)},
	}}
}

func accessKeyIDKey(cs *hearthv1.CredentialsSecretRef) string {
	if cs.AccessKeyIDKey != "" {
		return cs.AccessKeyIDKey
	}
	return "AWS_ACCESS_KEY_ID"
}

func secretAccessKeyKey(cs *hearthv1.CredentialsSecretRef) string {
	if cs.SecretAccessKeyKey != "" {
		return cs.SecretAccessKeyKey
	}
	return "AWS_SECRET_ACCESS_KEY"
}

func serviceAccountKeyKey(cs *hearthv1.CredentialsSecretRef) string {
	if cs.ServiceAccountKeyKey != "" {
		return cs.ServiceAccountKeyKey
	}
	return GCSKeyFile
}

func accountKeyKey(cs *hearthv1.CredentialsSecretRef) string {
	if cs.AccountKeyKey != "" {
		return cs.AccountKeyKey
	}
	return "AZURE_STORAGE_KEY"
}

// CredentialKeys are the keys the credentials Secret must hold for the backend (none
// without a Secret or for filesystem).
func CredentialKeys(o hearthv1.ObjectStorageSpec) []string {
	cs := o.CredentialsSecret
	if cs == nil {
		return nil
	}
	switch o.Backend {
	case hearthv1.BackendS3:
		return []string{accessKeyIDKey(cs), secretAccessKeyKey(cs)}
	case hearthv1.BackendGCS:
		return []string{serviceAccountKeyKey(cs)}
	case hearthv1.BackendAzure:
		return []string{accountKeyKey(cs)}
	}
	return nil
}

// ToApply turns a rendered object into the exact document sent with server-side apply:
// unstructured, without the zero-value noise of Go structs (creationTimestamp: null,
// empty status) that would otherwise be claimed by the field manager.
func ToApply(obj client.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	delete(m, "status")
	prune(m)
	return &unstructured.Unstructured{Object: m}, nil
}

// prune removes creationTimestamp: null and empty status maps at every level.
func prune(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if k == "creationTimestamp" && e == nil {
				delete(t, k)
				continue
			}
			if k == "status" {
				if mm, ok := e.(map[string]any); ok && len(mm) == 0 {
					delete(t, k)
					continue
				}
			}
			prune(e)
		}
	case []any:
		for _, e := range t {
			prune(e)
		}
	}
}

// RenderYAML renders every child as one multi-document YAML stream, as applied; used
// by the golden tests and handy for debugging.
func RenderYAML(ing *hearthv1.Ingester) ([]byte, error) {
	objs, err := Render(ing)
	if err != nil {
		return nil, err
	}
	var docs []string
	for _, o := range objs {
		u, err := ToApply(o)
		if err != nil {
			return nil, err
		}
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, err
		}
		docs = append(docs, string(b))
	}
	return []byte(strings.Join(docs, "---\n")), nil
}

// goMemLimit is the GOMEMLIMIT for a container with these resources: 90% of its memory
// limit, so the Go runtime collects harder before the kernel's OOM killer would act
// (without it, a busy ingester's heap grows to twice the live data). "" when there is no
// memory limit or the user sets GOMEMLIMIT in spec.podTemplate.env.
func goMemLimit(r corev1.ResourceRequirements, userEnv []corev1.EnvVar) string {
	for _, e := range userEnv {
		if e.Name == "GOMEMLIMIT" {
			return ""
		}
	}
	limit, ok := r.Limits[corev1.ResourceMemory]
	if !ok || limit.Value() <= 0 {
		return ""
	}
	mib := limit.Value() / 10 * 9 >> 20
	if mib < 1 {
		return ""
	}
	return fmt.Sprintf("%dMiB", mib)
}
