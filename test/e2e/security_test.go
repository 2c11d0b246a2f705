package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hearth-dev/hearth/internal/testutil"
)

// TestSecurity applies an Ingester with spec.tls (a Secret in cert-manager's layout)
// and the default NetworkPolicy: the API server accepts both, the pods run mutual TLS
// on the internal port (a client without the CA's certificate is refused, the admin
// endpoints are not on the public port), and a rollout then a scale-down (prestop and
// the operator's prepare-shutdown over mutual TLS) lose nothing with no failed push.
// The platform's node agent runs pods as processes: it does not enforce the
// NetworkPolicy, which this test only checks as stored.
func TestSecurity(t *testing.T) {
	e := newScenarioEnv(t)
	const ns, name, secret = "secure", "hearth", "hearth-internal-tls"
	ctx := context.Background()
	if _, err := e.p.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	serverName := name + "-headless." + ns + ".svc"
	ca := testutil.NewCA(t, "hearth-e2e-ca")
	leaf := ca.Issue(t, "hearth", []string{serverName})
	if _, err := e.p.Clientset.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secret},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM, "ca.crt": ca.PEM},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ing := newIngester(ns, name, 3)
	spec := ing.Object["spec"].(map[string]any)
	spec["replicationFactor"] = int64(2)
	spec["tls"] = map[string]any{"secretName": secret}
	spec["networkPolicy"] = map[string]any{"publicFrom": []any{
		map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "agents"}}},
		map[string]any{"ipBlock": map[string]any{"cidr": "127.0.0.0/8"}},
	}}
	if _, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Create(ctx, ing, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitSettled(t, ns, name, 3, 3*time.Minute)
	t.Cleanup(func() {
		if t.Failed() {
			for _, pod := range podNames(name, 3) {
				t.Logf("log of %s (tail):\n%s", pod, lastBytes(e.p.Agent.PodLog(ns, pod, "ingester"), 2500))
			}
		}
	})

	// The NetworkPolicy as the API server stores it.
	np, err := e.p.Clientset.NetworkingV1().NetworkPolicies(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the NetworkPolicy: %v", err)
	}
	var ports []string
	for _, r := range np.Spec.Ingress {
		ports = append(ports, fmt.Sprintf("%s<-%d", r.Ports[0].Port.String(), len(r.From)))
	}
	if got := strings.Join(ports, " "); got != "http<-2 internal<-2 memberlist<-1" {
		t.Fatalf("NetworkPolicy rules %q", got)
	}
	if len(np.OwnerReferences) != 1 || np.OwnerReferences[0].Name != name {
		t.Fatalf("NetworkPolicy owners %+v", np.OwnerReferences)
	}

	// Mutual TLS on the internal port, with the Secret's certificates.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
	pair, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ip := podIP(t, e.p, ns, name+"-0")
	get := func(cfg *tls.Config, url string) (int, error) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := c.Get(url)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	internal := "https://" + ip + ":4041/ingester/prepare-shutdown"
	if code, err := get(&tls.Config{RootCAs: pool, ServerName: serverName, Certificates: []tls.Certificate{pair}}, internal); err != nil || code != http.StatusOK {
		t.Fatalf("the internal port with the Secret's certificate: %d %v", code, err)
	}
	if code, err := get(&tls.Config{RootCAs: pool, ServerName: serverName}, internal); err == nil {
		t.Fatalf("the internal port answered %d to a client without a certificate", code)
	}
	if code, err := get(nil, "http://"+ip+":4040/ingester/prepare-shutdown"); err != nil || code != http.StatusNotFound {
		t.Fatalf("prepare-shutdown on the public port: %d %v, want 404", code, err)
	}

	// A rollout (prestop over mutual TLS) then a scale-down 3 → 2 (the operator's
	// prepare-shutdown over mutual TLS), under load.
	b := e.startLoad(t, ns)
	time.Sleep(2 * time.Second)
	start := time.Now()
	e.setImage(t, ns, name, "hearth:dev-2")
	e.waitSettled(t, ns, name, 3, 4*time.Minute)
	t.Logf("rollout with mutual TLS took %s", time.Since(start).Round(time.Millisecond))
	leaving := name + "-2"
	blocksBefore := blocksBySource(t, e.bucket(ns))
	down := time.Now()
	e.kubectl(t, "-n", ns, "scale", "ingester/"+name, "--replicas=2")
	// Settled means the two remaining pods' rings list exactly them: hearth-2 left the
	// ring, which only a final stop does (a restart keeps it, LEAVING).
	e.waitSettled(t, ns, name, 2, 4*time.Minute)
	t.Logf("scale-down 3→2 with mutual TLS took %s", time.Since(down).Round(time.Millisecond))
	// The final stop flushed and uploaded: the operator's prepare-shutdown (over
	// mutual TLS, with the Secret's certificate) reached it.
	if after := blocksBySource(t, e.bucket(ns)); after[leaving] <= blocksBefore[leaving] {
		t.Errorf("%s left without uploading a block (%d before, %d after): the operator's prepare-shutdown did not reach it", leaving, blocksBefore[leaving], after[leaving])
	}
	time.Sleep(time.Second)
	b.end(t, "rollout and scale-down with mutual TLS")
	if n := b.errors.Load(); n > 0 {
		t.Errorf("%d pushes failed: %v %v", n, b.codes, b.first)
	}
	e.checkAll(t, "rollout and scale-down with mutual TLS", "http://"+podIP(t, e.p, ns, name+"-0")+":4040", b)
}
