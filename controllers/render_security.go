package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

// The NetworkPolicy is applied like every child (server-side apply creates it: create
// and patch; the cache and Owns watch it: get, list, watch) and deleted when
// spec.networkPolicy.enabled turns false (delete). No update: apply never uses it.
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;patch;delete

// The internal listener and the TLS Secret's mount (docs/security.md).
const (
	// InternalPort serves what only peers and the operator call: replica writes and
	// reads, and the admin endpoints (flush, prepare-shutdown, prepare-stop, shutdown,
	// ring forget).
	InternalPort = 4041
	TLSVolume    = "tls"
	TLSDir       = "/etc/hearth-tls"
	// Keys of a cert-manager Secret.
	TLSCertKey = "tls.crt"
	TLSKeyKey  = "tls.key"
	TLSCAKey   = "ca.crt"

	// ClientAuthRequireAndVerify is the internal listener's client authentication with TLS.
	ClientAuthRequireAndVerify = "RequireAndVerifyClientCert"
)

// OperatorPodLabels select the operator's pods (the Helm chart's and config/manager's
// labels): the NetworkPolicy admits them to the internal port.
var OperatorPodLabels = map[string]string{LabelName: appName, LabelComponent: "operator"}

// OperatorNamespace is the operator's namespace, set once at start by `hearth operator`
// (its pod's namespace). Empty: the NetworkPolicy admits operator-labelled pods of any
// namespace.
var OperatorNamespace string

func networkPolicyName(ing *hearthv1.Ingester) string { return ing.Name }

// NetworkPolicyEnabled reports whether the Ingester gets a NetworkPolicy (the default).
func NetworkPolicyEnabled(ing *hearthv1.Ingester) bool {
	return ptr.Deref(ing.Spec.NetworkPolicy.Enabled, true)
}

// TLSServerName is the name the ingesters (and the operator) verify on a peer's
// certificate: spec.tls.serverName, else the headless Service's name.
func TLSServerName(ing *hearthv1.Ingester) string {
	if ing.Spec.TLS != nil && ing.Spec.TLS.ServerName != "" {
		return ing.Spec.TLS.ServerName
	}
	return fmt.Sprintf("%s.%s.svc", headlessServiceName(ing), ing.Namespace)
}

// PublicTLS reports whether the public port serves TLS (spec.tls.public).
func PublicTLS(ing *hearthv1.Ingester) bool { return ing.Spec.TLS != nil && ing.Spec.TLS.Public }

// RenderNetworkPolicy admits, to this Ingester's pods: the public port from
// spec.networkPolicy.publicFrom (anywhere when empty); the internal port from the same
// Ingester's pods and the operator's; the memberlist port from the same Ingester's pods.
// Egress is not restricted.
func RenderNetworkPolicy(ing *hearthv1.Ingester) *networkingv1.NetworkPolicy {
	tcp := ptr.To(corev1.ProtocolTCP)
	port := func(name string) []networkingv1.NetworkPolicyPort {
		return []networkingv1.NetworkPolicyPort{{Protocol: tcp, Port: ptr.To(intstr.FromString(name))}}
	}
	peers := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: SelectorLabels(ing)}}
	operator := networkingv1.NetworkPolicyPeer{
		NamespaceSelector: &metav1.LabelSelector{},
		PodSelector:       &metav1.LabelSelector{MatchLabels: OperatorPodLabels},
	}
	if OperatorNamespace != "" {
		operator.NamespaceSelector.MatchLabels = map[string]string{"kubernetes.io/metadata.name": OperatorNamespace}
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: objectMeta(ing, networkPolicyName(ing)),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: SelectorLabels(ing)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{
				{Ports: port("http"), From: ing.Spec.NetworkPolicy.PublicFrom},
				{Ports: port("internal"), From: []networkingv1.NetworkPolicyPeer{peers, operator}},
				{Ports: port("memberlist"), From: []networkingv1.NetworkPolicyPeer{peers}},
			},
		},
	}
}

// pruneNetworkPolicy deletes the NetworkPolicy of an Ingester whose
// spec.networkPolicy.enabled is false (it was on by default).
func (r *IngesterReconciler) pruneNetworkPolicy(ctx context.Context, ing *hearthv1.Ingester) error {
	if NetworkPolicyEnabled(ing) {
		return nil
	}
	np := &networkingv1.NetworkPolicy{}
	err := r.Get(ctx, types.NamespacedName{Namespace: ing.Namespace, Name: networkPolicyName(ing)}, np)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !metav1.IsControlledBy(np, ing) {
		return nil // not ours
	}
	if err := r.Delete(ctx, np); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting NetworkPolicy %s (spec.networkPolicy.enabled is false): %w", np.Name, err)
	}
	logf.FromContext(ctx).Info("deleted child", "kind", "NetworkPolicy", "name", np.Name)
	return nil
}

// securityConfig adds the internal listener and, with spec.tls, mutual TLS on it, on
// the ingester client and on memberlist to a rendered config file.
func securityConfig(ing *hearthv1.Ingester, cfg map[string]any) {
	server, _ := cfg["server"].(map[string]any)
	if server == nil {
		server = map[string]any{}
		cfg["server"] = server
	}
	server["internal_listen_port"] = InternalPort
	if ing.Spec.TLS == nil {
		return
	}
	cert, key, ca := TLSDir+"/"+TLSCertKey, TLSDir+"/"+TLSKeyKey, TLSDir+"/"+TLSCAKey
	name := TLSServerName(ing)
	switching := tlsSwitching(ing) // tls_switch.go
	internalTLS := map[string]any{
		"cert_path": cert, "key_path": key, "client_ca_path": ca, "client_auth": ClientAuthRequireAndVerify,
	}
	if switching {
		internalTLS["accept_plain"] = true
	}
	server["internal_tls"] = internalTLS
	if ing.Spec.TLS.Public {
		server["http_tls"] = map[string]any{"cert_path": cert, "key_path": key}
	}
	ingester, _ := cfg["ingester"].(map[string]any)
	if ingester == nil {
		ingester = map[string]any{}
		cfg["ingester"] = ingester
	}
	client := map[string]any{
		"tls_enabled": true, "tls_cert_path": cert, "tls_key_path": key, "tls_ca_path": ca, "tls_server_name": name,
	}
	if switching {
		client["tls_plain_fallback"] = true
	}
	ingester["client"] = client
	ml, _ := cfg["memberlist"].(map[string]any)
	if ml == nil {
		ml = map[string]any{}
		cfg["memberlist"] = ml
	}
	ml["tls_enabled"] = true
	// Plain gossip is accepted with TLS always: dskit's TLS transport authenticates no
	// dialer, so it opens nothing, and switch-step pods (which dial plain, to reach
	// plain pods) reach TLS pods of either revision.
	ml["tls_accept_plain"] = true
	if switching {
		ml["tls_dial_plain"] = true
	}
	ml["tls_cert_path"], ml["tls_key_path"], ml["tls_ca_path"], ml["tls_server_name"] = cert, key, ca, name
}

// secureStatefulSet adds the internal port, the prestop hook's config and, with
// spec.tls, the Secret's volume to a rendered StatefulSet.
func secureStatefulSet(ing *hearthv1.Ingester, sts *appsv1.StatefulSet) {
	pod := &sts.Spec.Template.Spec
	for i := range pod.Containers {
		c := &pod.Containers[i]
		if c.Name != ContainerName {
			continue
		}
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: "internal", ContainerPort: InternalPort, Protocol: corev1.ProtocolTCP})
		// prestop reads the config file for the internal port and the client TLS.
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Exec != nil {
			c.Lifecycle.PreStop.Exec.Command = []string{BinaryPath, "prestop", "-config.file=" + ConfigDir + "/" + ConfigFile}
		}
		if ing.Spec.TLS != nil {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: TLSVolume, MountPath: TLSDir, ReadOnly: true})
		}
		if PublicTLS(ing) && c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil {
			c.ReadinessProbe.HTTPGet.Scheme = corev1.URISchemeHTTPS // the kubelet does not verify the certificate
		}
	}
	if ing.Spec.TLS != nil {
		// The operator calls each pod the way its own revision serves (PodTLS), so it
		// reads the name its certificate carries from the pod, not from the spec.
		if sts.Spec.Template.Annotations == nil {
			sts.Spec.Template.Annotations = map[string]string{}
		}
		sts.Spec.Template.Annotations[AnnotationTLSServerName] = TLSServerName(ing)
		if tlsSwitching(ing) {
			sts.Spec.Template.Annotations[AnnotationTLSSwitch] = tlsSwitchValue
		}
		// The whole Secret as a directory (not subPath): the kubelet swaps renewed files
		// in, and the ingesters re-read them.
		pod.Volumes = append(pod.Volumes, corev1.Volume{Name: TLSVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: ing.Spec.TLS.SecretName,
			Items: []corev1.KeyToPath{
				{Key: TLSCertKey, Path: TLSCertKey}, {Key: TLSKeyKey, Path: TLSKeyKey}, {Key: TLSCAKey, Path: TLSCAKey},
			},
			DefaultMode: ptr.To[int32](0o440),
		}}})
	}
}

// AnnotationTLSServerName on a pod (template) is the name its internal port's certificate
// carries, for the operator's calls.
const AnnotationTLSServerName = "hearth.dev/tls-server-name"

// PodTLS is how a pod serves its internal port, read from the pod itself (its revision),
// never from the Ingester's current spec: turning spec.tls on or off, or switching to a
// Secret of another CA, is a rollout during which old and new pods serve differently, and
// each must be called its own way. secret is the spec.tls Secret the pod mounts ("": the
// pod serves plain HTTP); serverName is its certificate's name (the pod's annotation;
// for pods rendered before it, fallback, the Ingester's current name).
func PodTLS(pod *corev1.Pod, fallback string) (secret, serverName string) {
	for _, v := range pod.Spec.Volumes {
		if v.Name == TLSVolume && v.Secret != nil {
			secret = v.Secret.SecretName
		}
	}
	if secret == "" {
		return "", ""
	}
	serverName = pod.Annotations[AnnotationTLSServerName]
	if serverName == "" {
		serverName = fallback
	}
	return secret, serverName
}

// TLSSecretKeys are the keys spec.tls's Secret must hold.
func TLSSecretKeys() []string { return []string{TLSCertKey, TLSKeyKey, TLSCAKey} }
