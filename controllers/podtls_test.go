package controllers

import (
	"context"
	"crypto/x509"
	"net/http"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// Issue 23 finding 1: during a spec.tls switch (on, off, or another CA's Secret) each pod
// is called the way its own revision serves, never from the Ingester's current spec.
func TestPodTargetFollowsThePodsRevision(t *testing.T) {
	secret := func(name, cn string) *corev1.Secret {
		ca := testutil.NewCA(t, name+"-ca")
		leaf := ca.Issue(t, cn, []string{"x"})
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Data: map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM, "ca.crt": ca.PEM}}
	}
	pod := func(name, ip, tlsSecret, serverName string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: commonLabels(&hearthv1.Ingester{ObjectMeta: metav1.ObjectMeta{Name: "ing"}})},
			Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: ContainerName, Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: HTTPPort}, {Name: "internal", ContainerPort: InternalPort}}}}},
			Status: corev1.PodStatus{PodIP: ip}}
		if tlsSecret != "" {
			p.Spec.Volumes = []corev1.Volume{{Name: TLSVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: tlsSecret}}}}
		}
		if serverName != "" {
			p.Annotations = map[string]string{AnnotationTLSServerName: serverName}
		}
		return p
	}
	// The spec now names new-tls; ing-0 still runs the revision with old-tls (another CA),
	// ing-1 one without TLS, ing-2 the current one.
	ing := &hearthv1.Ingester{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ing"},
		Spec: hearthv1.IngesterSpec{TLS: &hearthv1.TLSSpec{SecretName: "new-tls"}}}
	objs := []corev1.Secret{*secret("old-tls", "old-operator"), *secret("new-tls", "new-operator")}
	// ing-3 runs a revision the v0.1.0 operator rendered: no internal port (issue 24).
	v010 := pod("ing-3", "10.0.0.4", "", "")
	v010.Spec.Containers[0].Ports = v010.Spec.Containers[0].Ports[:1]
	c := fake.NewClientBuilder().WithScheme(testScheme).WithObjects(ing, &objs[0], &objs[1],
		pod("ing-0", "10.0.0.1", "old-tls", "old.name"), pod("ing-1", "10.0.0.2", "", ""), pod("ing-2", "10.0.0.3", "new-tls", ""), v010).Build()
	s := &SecurePodTargets{Client: c, APIReader: c}
	for _, tc := range []struct{ ip, url, cn, serverName string }{
		{"10.0.0.1", "https://10.0.0.1:4041", "old-operator", "old.name"},
		{"10.0.0.2", "http://10.0.0.2:4041", "", ""},
		{"10.0.0.3", "https://10.0.0.3:4041", "new-operator", "ing-headless.ns.svc"},
		{"10.0.0.4", "http://10.0.0.4:4040", "", ""}, // the public port: no internal one
		{"10.0.0.9", "http://10.0.0.9:4041", "", ""}, // not a managed pod
	} {
		url, hc, err := s.Target(context.Background(), tc.ip+":4040")
		if err != nil {
			t.Fatal(err)
		}
		if url != tc.url {
			t.Errorf("%s: %s, want %s", tc.ip, url, tc.url)
		}
		if tc.cn == "" {
			if hc != nil {
				t.Errorf("%s: a TLS client for a plain pod", tc.ip)
			}
			continue
		}
		cfg := hc.Transport.(*http.Transport).TLSClientConfig
		leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if leaf.Subject.CommonName != tc.cn || cfg.ServerName != tc.serverName {
			t.Errorf("%s: client certificate %s for %s, want %s for %s", tc.ip, leaf.Subject.CommonName, cfg.ServerName, tc.cn, tc.serverName)
		}
	}
	// The rendered pods carry their certificate's name.
	ing.Spec.TLS.ServerName = "custom.name"
	sts := RenderStatefulSet(ing, Zones(ing)[0], &corev1.ConfigMap{})
	if got := sts.Spec.Template.Annotations[AnnotationTLSServerName]; got != "custom.name" {
		t.Fatalf("template annotation %q", got)
	}
	// Every pod this operator renders declares the internal port.
	if !ServesInternalPort(&corev1.Pod{Spec: sts.Spec.Template.Spec}) {
		t.Fatal("a rendered pod without the internal port")
	}
	if sec, name := PodTLS(&corev1.Pod{}, "x"); sec+name != "" {
		t.Fatalf("PodTLS of a plain pod %q %q", sec, name)
	}
}
