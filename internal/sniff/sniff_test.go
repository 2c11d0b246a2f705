package sniff_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/internal/sniff"
	"github.com/hearth-dev/hearth/internal/testutil"
	"github.com/hearth-dev/hearth/internal/tlsreload"
)

// TestPlainAndTLSOnOnePort serves HTTP through a sniffing listener with mutual TLS:
// a plain client and a TLS client with the CA's certificate are both answered (the TLS
// one over a real *tls.Conn, HTTP/2 by ALPN, its certificate verified), a TLS client
// without a certificate is refused, and a client that never sends a byte does not hold
// up the others.
func TestPlainAndTLSOnOnePort(t *testing.T) {
	ca := testutil.NewCA(t, "sniff-ca")
	f := testutil.WriteTLSDir(t, filepath.Join(t.TempDir(), "tls"), ca.Issue(t, "srv", []string{"srv"}), ca.PEM)
	srvCfg, err := tlsreload.ServerConfig{CertPath: f.Cert, KeyPath: f.Key, ClientCAPath: f.CA}.TLSConfig(nil, "h2", "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	kinds := make(chan bool, 16)
	l := sniff.Listen(inner, srvCfg, func(isTLS bool) { kinds <- isTLS })
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	srv := &http.Server{Protocols: protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			_, _ = io.WriteString(w, "tls "+r.Proto+" "+r.TLS.PeerCertificates[0].Subject.CommonName)
			return
		}
		_, _ = io.WriteString(w, "plain "+r.Proto)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	addr := l.Addr().String()

	// A silent client first: the others are still served.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	get := func(c *http.Client, url string) (string, error) {
		resp, err := c.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if got, err := get(&http.Client{Timeout: 10 * time.Second}, "http://"+addr+"/"); err != nil || got != "plain HTTP/1.1" {
		t.Fatalf("plain client: %q %v", got, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
	leaf := ca.Issue(t, "peer", nil)
	pair, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tlsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "srv", Certificates: []tls.Certificate{pair}}}}
	if got, err := get(tlsClient, "https://"+addr+"/"); err != nil || got != "tls HTTP/2.0 peer" {
		t.Fatalf("TLS client: %q %v", got, err)
	}
	anon := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "srv"}}}
	if got, err := get(anon, "https://"+addr+"/"); err == nil {
		t.Fatalf("a TLS client without a certificate was answered %q", got)
	}
	seen := map[bool]int{}
	for range 3 {
		select {
		case k := <-kinds:
			seen[k]++
		case <-time.After(10 * time.Second):
			t.Fatalf("connections classified: %v, want 1 plain and 2 TLS", seen)
		}
	}
	if seen[false] != 1 || seen[true] != 2 {
		t.Fatalf("connections classified: %v, want 1 plain and 2 TLS", seen)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Accept(); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
}
