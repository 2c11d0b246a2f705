package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/internal/testutil"
	"github.com/hearth-dev/hearth/internal/tlsreload"
)

// hearth prestop reads the ingester's config: it calls prepare-stop on the internal
// port over mutual TLS with the ingester client's certificate, as the pod's preStop hook.
func TestPrestopWithMutualTLS(t *testing.T) {
	const name = "hearth-headless.ns.svc"
	ca := testutil.NewCA(t, "ca")
	f := testutil.WriteTLSDir(t, filepath.Join(t.TempDir(), "tls"), ca.Issue(t, "pod", []string{name}), ca.PEM)
	scfg, err := tlsreload.ServerConfig{CertPath: f.Cert, KeyPath: f.Key, ClientCAPath: f.CA}.TLSConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	srv := &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/ingester/prepare-stop" && len(r.TLS.PeerCertificates) == 1 {
			calls.Add(1)
		}
	})}
	go func() { _ = srv.Serve(tls.NewListener(l, scfg)) }()
	t.Cleanup(func() { _ = srv.Close() })
	port := l.Addr().(*net.TCPAddr).Port

	write := func(client string) string {
		p := filepath.Join(t.TempDir(), "hearth.yaml")
		cfg := fmt.Sprintf("server:\n  internal_listen_port: %d\n  internal_tls:\n    cert_path: %s\n    key_path: %s\n    client_ca_path: %s\ningester:\n  client:\n%s",
			port, f.Cert, f.Key, f.CA, client)
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write(fmt.Sprintf("    tls_enabled: true\n    tls_cert_path: %s\n    tls_key_path: %s\n    tls_ca_path: %s\n    tls_server_name: %s\n", f.Cert, f.Key, f.CA, name))
	if err := prestopFromConfig(context.Background(), good, "", "", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 {
		t.Fatalf("prepare-stop received %d times, want once", calls.Load())
	}
	noCert := write(fmt.Sprintf("    tls_enabled: true\n    tls_ca_path: %s\n    tls_server_name: %s\n", f.CA, name))
	if err := prestopFromConfig(context.Background(), noCert, "", "", 5*time.Second); err == nil {
		t.Fatal("prestop without a client certificate was served")
	}
	if calls.Load() != 1 {
		t.Fatalf("prepare-stop received %d times after the refused call", calls.Load())
	}
}
