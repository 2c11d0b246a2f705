package controllers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

// The operator calls the admin endpoints (prepare-shutdown, flush, ring forget) on a
// pod's internal port. With spec.tls it presents the client certificate of the
// Ingester's own Secret, read through the API (the get on Secrets the operator already
// has for the object storage credentials; no new verb): the Secret is the one identity
// the ingesters trust, and the operator needs no certificate of its own mounted per
// namespace. A renewed Secret (new resourceVersion) builds a new client.

// PodTarget resolves the admin address and HTTP client of the pod a PodClient is given
// (its pod IP and public port).
type PodTarget func(ctx context.Context, addr string) (url string, hc *http.Client, err error)

// SecurePodTargets resolves pods through the cached client (pods, Ingesters) and reads
// TLS Secrets with the uncached reader.
type SecurePodTargets struct {
	Client    client.Reader // cached: the operator's pods and Ingesters
	APIReader client.Reader // uncached, get only: the TLS Secret

	mu      sync.Mutex
	clients map[tlsClientKey]tlsClient
}

type tlsClientKey struct {
	secret     types.NamespacedName
	serverName string
}

type tlsClient struct {
	resourceVersion string
	hc              *http.Client
}

// AdminAddr is the internal (admin) address of a pod given by its public address.
func AdminAddr(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	return net.JoinHostPort(host, strconv.Itoa(InternalPort))
}

// Target implements PodTarget: the way the pod serves, from the pod's own spec (PodTLS):
// plain HTTP unless it mounts a spec.tls Secret.
func (s *SecurePodTargets) Target(ctx context.Context, addr string) (string, *http.Client, error) {
	admin := AdminAddr(addr)
	pod, ing, err := s.podOf(ctx, addr)
	if err != nil {
		return "", nil, err
	}
	if pod == nil {
		return "http://" + admin, nil, nil
	}
	if !ServesInternalPort(pod) {
		// A pod of a revision from before the internal listener (rendered by the v0.1.0
		// operator): it serves the ring and the admin calls on its public port, plainly.
		return "http://" + addr, nil, nil
	}
	fallback := pod.Labels[LabelInstance] + "-headless." + pod.Namespace + ".svc"
	if ing != nil && ing.Spec.TLS != nil {
		fallback = TLSServerName(ing)
	}
	secret, serverName := PodTLS(pod, fallback)
	if secret == "" {
		return "http://" + admin, nil, nil
	}
	hc, err := s.client(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: secret}, serverName)
	if err != nil {
		return "", nil, err
	}
	return "https://" + admin, hc, nil
}

// ServesInternalPort says whether the pod's ingester container declares the internal
// port, as every pod rendered since the internal listener exists does.
func ServesInternalPort(pod *corev1.Pod) bool {
	for _, c := range pod.Spec.Containers {
		if c.Name != ContainerName {
			continue
		}
		for _, p := range c.Ports {
			if p.Name == "internal" {
				return true
			}
		}
	}
	return false
}

// podOf finds the managed pod with this IP and its Ingester (nil, nil: none; the
// Ingester is nil when it is gone).
func (s *SecurePodTargets) podOf(ctx context.Context, addr string) (*corev1.Pod, *hearthv1.Ingester, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	var pods corev1.PodList
	if err := s.Client.List(ctx, &pods, client.MatchingLabelsSelector{Selector: ManagedSelector()}); err != nil {
		return nil, nil, err
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.PodIP != host || p.Labels[LabelInstance] == "" {
			continue
		}
		ing := &hearthv1.Ingester{}
		err := s.Client.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: p.Labels[LabelInstance]}, ing)
		if apierrors.IsNotFound(err) {
			return p, nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		return p, ing, nil
	}
	return nil, nil, nil
}

// client is the mutual-TLS client of one Secret and server name, rebuilt when the Secret
// changes (a renewal).
func (s *SecurePodTargets) client(ctx context.Context, key types.NamespacedName, name string) (*http.Client, error) {
	sec := &corev1.Secret{}
	if err := s.APIReader.Get(ctx, key, sec); err != nil {
		return nil, fmt.Errorf("reading TLS Secret %s the pod mounts: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ck := tlsClientKey{key, name}
	if c, ok := s.clients[ck]; ok && c.resourceVersion == sec.ResourceVersion {
		return c.hc, nil
	}
	cfg, err := ClientTLSConfig(sec, name)
	if err != nil {
		return nil, fmt.Errorf("TLS Secret %s: %w", key, err)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.TLSClientConfig = cfg
	hc := &http.Client{Transport: t}
	if s.clients == nil {
		s.clients = map[tlsClientKey]tlsClient{}
	}
	if old, ok := s.clients[ck]; ok {
		old.hc.CloseIdleConnections()
	}
	s.clients[ck] = tlsClient{resourceVersion: sec.ResourceVersion, hc: hc}
	return hc, nil
}

// ClientTLSConfig is the client side of a cert-manager Secret: its certificate and key
// presented, the server verified against its ca.crt under serverName.
func ClientTLSConfig(sec *corev1.Secret, serverName string) (*tls.Config, error) {
	var missing []string
	for _, k := range TLSSecretKeys() {
		if len(sec.Data[k]) == 0 {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no %s in it", strings.Join(missing, ", "))
	}
	pair, err := tls.X509KeyPair(sec.Data[TLSCertKey], sec.Data[TLSKeyKey])
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(sec.Data[TLSCAKey]) {
		return nil, errors.New("no PEM certificate in ca.crt")
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}, RootCAs: pool, ServerName: serverName}, nil
}

// tlsPreflight reports a missing spec.tls Secret or key (the pods would wait for the
// volume forever).
func (r *IngesterReconciler) tlsPreflight(ctx context.Context, ing *hearthv1.Ingester) *problem {
	if ing.Spec.TLS == nil {
		return nil
	}
	name := ing.Spec.TLS.SecretName
	sec := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ing.Namespace, Name: name}, sec)
	switch {
	case apierrors.IsNotFound(err):
		return &problem{ReasonSecretNotFound, fmt.Sprintf(
			"Secret %q named by spec.tls.secretName does not exist in namespace %q: create it (a cert-manager Certificate with that secretName) with tls.crt, tls.key and ca.crt",
			name, ing.Namespace)}
	case err != nil:
		return &problem{ReasonSecretError, fmt.Sprintf("reading Secret %q: %v", name, err)}
	}
	var missing []string
	for _, k := range TLSSecretKeys() {
		if len(sec.Data[k]) == 0 {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return &problem{ReasonSecretKey, fmt.Sprintf("Secret %q named by spec.tls.secretName has no %s: it must hold tls.crt, tls.key and ca.crt (cert-manager's layout)",
			name, strings.Join(missing, " or "))}
	}
	return nil
}
