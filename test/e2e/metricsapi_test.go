package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"

	"github.com/hearth-dev/hearth/internal/testutil"
	"github.com/hearth-dev/hearth/test/e2e/platform"
)

var apiServiceGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// customMetricsAPI is a custom metrics API (custom.metrics.k8s.io/v1beta2) served from
// the test process, the way prometheus-adapter serves one: an APIService the API
// server's aggregation layer proxies to, over HTTPS with a certificate the APIService's
// caBundle names, each request authenticated by the front-proxy client certificate. It
// serves one pods metric: a total the test sets, spread evenly over the pods the
// caller's label selector matches (the HPA controller sends the scale subresource's
// selector), as a per-pod rate would be.
type customMetricsAPI struct {
	metric string
	kube   kubernetes.Interface // lists the selected pods
	total  atomic.Int64         // milli-units, over every selected pod

	mu       sync.Mutex
	callers  map[string]int // X-Remote-User → metric requests
	requests []string       // the last few metric requests, for failure messages
}

const (
	metricsNamespace = "custom-metrics"
	metricsService   = "hearth-metrics"
)

// startCustomMetricsAPI serves the API on 127.0.0.1 and registers it: an ExternalName
// Service naming 127.0.0.1 (the aggregator dials an ExternalName's host directly, where
// a ClusterIP needs a kube-proxy this platform does not run, and an EndpointSlice may
// not name a loopback address) and the APIService; it waits until the APIService is
// Available (the aggregator's discovery check passed through the front proxy).
func startCustomMetricsAPI(t testing.TB, e *scenarioEnv, metric string) *customMetricsAPI {
	t.Helper()
	ctx := context.Background()
	m := &customMetricsAPI{metric: metric, kube: e.p.Clientset, callers: map[string]int{}}

	ca := testutil.NewCA(t, "hearth-e2e-metrics-ca")
	// The aggregator verifies the serving certificate for <service>.<namespace>.svc.
	leaf := ca.Issue(t, "hearth-metrics", []string{metricsService + "." + metricsNamespace + ".svc"})
	cert, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	frontProxy := x509.NewCertPool()
	if !frontProxy.AppendCertsFromPEM(e.p.FrontProxyCA) {
		t.Fatal("the platform's front-proxy CA does not parse")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: m,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			// Only the API server's aggregation layer may call: it vouches for the
			// caller's identity in the X-Remote-* headers.
			ClientAuth: tls.RequireAndVerifyClientCert,
			ClientCAs:  frontProxy,
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port

	if _, err := e.p.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: metricsNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: metricsService, Namespace: metricsNamespace},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "127.0.0.1"},
	}
	if _, err := e.p.Clientset.CoreV1().Services(metricsNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	apiService := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata":   map[string]any{"name": "v1beta2.custom.metrics.k8s.io"},
		"spec": map[string]any{
			"group":                "custom.metrics.k8s.io",
			"version":              "v1beta2",
			"service":              map[string]any{"namespace": metricsNamespace, "name": metricsService, "port": int64(port)},
			"caBundle":             base64.StdEncoding.EncodeToString(ca.PEM),
			"groupPriorityMinimum": int64(100),
			"versionPriority":      int64(200),
		},
	}}
	if _, err := e.dyn.Resource(apiServiceGVR).Create(ctx, apiService, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the APIService v1beta2.custom.metrics.k8s.io Available", func() string {
		u, err := e.dyn.Resource(apiServiceGVR).Get(ctx, "v1beta2.custom.metrics.k8s.io", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			c, _ := c.(map[string]any)
			if c["type"] == "Available" {
				if c["status"] == "True" {
					return ""
				}
				return fmt.Sprintf("Available %v: %v %v", c["status"], c["reason"], c["message"])
			}
		}
		return "no Available condition"
	})
	return m
}

// set makes the metric's total over the selected pods v.
func (m *customMetricsAPI) set(v float64) { m.total.Store(int64(v * 1000)) }

// calledBy is how many metric requests came from user, through the front proxy.
func (m *customMetricsAPI) calledBy(user string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.callers[user]
}

func (m *customMetricsAPI) recent() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.Join(m.requests, "; ")
}

// ServeHTTP answers discovery (the aggregator checks /apis/<group>/<version>) and
// GET .../namespaces/<ns>/pods/*/<metric>?labelSelector=...
func (m *customMetricsAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != platform.FrontProxyClientName {
		http.Error(w, "only the front proxy may call", http.StatusForbidden)
		return
	}
	const prefix = "/apis/custom.metrics.k8s.io/v1beta2"
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case path == prefix:
		writeJSON(w, metav1.APIResourceList{
			TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
			GroupVersion: "custom.metrics.k8s.io/v1beta2",
			APIResources: []metav1.APIResource{{Name: "pods/" + m.metric, Namespaced: true, Kind: "MetricValueList", Verbs: []string{"get"}}},
		})
		return
	case strings.HasPrefix(path, prefix+"/namespaces/"):
	default:
		http.NotFound(w, r) // e.g. /apis (aggregated discovery): the aggregator falls back to the group version
		return
	}
	// namespaces/<ns>/pods/*/<metric>
	parts := strings.Split(strings.TrimPrefix(path, prefix+"/"), "/")
	if len(parts) != 5 || parts[2] != "pods" || parts[3] != "*" || parts[4] != m.metric {
		http.Error(w, "no such metric: "+path, http.StatusNotFound)
		return
	}
	ns, selector := parts[1], r.URL.Query().Get("labelSelector")
	m.mu.Lock()
	m.callers[r.Header.Get("X-Remote-User")]++
	m.requests = append(m.requests, fmt.Sprintf("%s by %s with labelSelector %q", path, r.Header.Get("X-Remote-User"), selector))
	if len(m.requests) > 5 {
		m.requests = m.requests[1:]
	}
	m.mu.Unlock()
	// The pods the selector matches are the ones a per-pod metric exists for; pods
	// already terminating are gone from a real rate.
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	pods, err := m.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var live []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	list := cmv1beta2.MetricValueList{TypeMeta: metav1.TypeMeta{Kind: "MetricValueList", APIVersion: "custom.metrics.k8s.io/v1beta2"}, Items: []cmv1beta2.MetricValue{}}
	window := int64(60)
	for _, p := range live {
		list.Items = append(list.Items, cmv1beta2.MetricValue{
			DescribedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "/v1", Namespace: ns, Name: p.Name},
			Metric:          cmv1beta2.MetricIdentifier{Name: m.metric},
			Timestamp:       metav1.Now(),
			WindowSeconds:   &window,
			Value:           *resource.NewMilliQuantity(m.total.Load()/int64(len(live)), resource.DecimalSI),
		})
	}
	writeJSON(w, list)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
