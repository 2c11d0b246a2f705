package controllers

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/hearth-dev/hearth/internal/testutil"
	"github.com/hearth-dev/hearth/internal/tlsreload"
)

// The operator's admin calls with a TLS Secret: against a real mutual-TLS listener
// (the ingester's), the Secret's certificate is accepted and one of another CA is not.
func TestPodClientWithTLSSecret(t *testing.T) {
	ca := testutil.NewCA(t, "hearth-ca")
	name := "hearth-headless.profiling.svc"
	files := testutil.WriteTLSDir(t, filepath.Join(t.TempDir(), "pod"), ca.Issue(t, "pod", []string{name}), ca.PEM)
	scfg, err := tlsreload.ServerConfig{CertPath: files.Cert, KeyPath: files.Key, ClientCAPath: files.CA}.TLSConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var calls []string
	srv := &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.Path+" "+r.TLS.PeerCertificates[0].Subject.CommonName)
		mu.Unlock()
	})}
	go func() { _ = srv.Serve(tls.NewListener(l, scfg)) }()
	t.Cleanup(func() { _ = srv.Close() })

	secret := func(ca *testutil.CA, cn string) *corev1.Secret {
		leaf := ca.Issue(t, cn, []string{name})
		return &corev1.Secret{Data: map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM, "ca.crt": ca.PEM}}
	}
	client := func(sec *corev1.Secret, serverName string) HTTPPodClient {
		cfg, err := ClientTLSConfig(sec, serverName)
		if err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		return HTTPPodClient{Target: func(context.Context, string) (string, *http.Client, error) {
			return "https://" + l.Addr().String(), hc, nil
		}}
	}
	ctx := context.Background()
	if err := client(secret(ca, "operator"), name).PrepareShutdown(ctx, "10.0.0.1:4040"); err != nil {
		t.Fatal(err)
	}
	if err := client(secret(ca, "operator"), name).Forget(ctx, "10.0.0.1:4040", "ingester-2"); err != nil {
		t.Fatal(err)
	}
	if err := client(secret(testutil.NewCA(t, "other"), "intruder"), name).Flush(ctx, "10.0.0.1:4040"); err == nil {
		t.Fatal("a client certificate of another CA was accepted")
	}
	if err := client(secret(ca, "operator"), "wrong.name").Flush(ctx, "10.0.0.1:4040"); err == nil || !strings.Contains(err.Error(), "wrong.name") {
		t.Fatalf("a server certificate without the expected name was accepted: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"POST /ingester/prepare-shutdown operator", "POST /ring operator"}
	if strings.Join(calls, "|") != strings.Join(want, "|") {
		t.Fatalf("calls %q, want %q", calls, want)
	}
	if _, err := ClientTLSConfig(&corev1.Secret{Data: map[string][]byte{"tls.crt": {1}}}, name); err == nil || !strings.Contains(err.Error(), "tls.key, ca.crt") {
		t.Fatalf("incomplete Secret: %v", err)
	}
	if got := AdminAddr("10.1.2.3:4040"); got != "10.1.2.3:4041" {
		t.Fatalf("AdminAddr = %s", got)
	}
}
