package app

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"

	"github.com/hearth-dev/hearth/internal/testutil"
	"github.com/hearth-dev/hearth/internal/tlsreload"
)

// Optional TLS on the public port (-server.http-tls-*): push.v1 over gRPC (HTTP/2 by
// ALPN) and connect, /ready over HTTPS; plain HTTP is refused. With a client CA, a
// client without a certificate is refused.
func TestPublicPortTLS(t *testing.T) {
	ca := testutil.NewCA(t, "ca")
	f := testutil.WriteTLSDir(t, filepath.Join(t.TempDir(), "tls"), ca.Issue(t, "public", []string{"hearth.test"}), ca.PEM)
	ing := startIngester(t, "-server.http-tls-cert-path="+f.Cert, "-server.http-tls-key-path="+f.Key,
		"-server.http-tls-client-ca-path="+f.CA)
	client := func(withCert bool) *http.Client {
		cc := tlsreload.ClientConfig{Enabled: true}
		cc.CAPath, cc.ServerName = f.CA, "hearth.test"
		if withCert {
			cc.CertPath, cc.KeyPath = f.Cert, f.Key
		}
		c, err := cc.NewClient(nil)
		if err != nil {
			t.Fatal(err)
		}
		tr := c.Transport(nil)
		tr.ForceAttemptHTTP2 = true // gRPC needs HTTP/2: negotiated by ALPN
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	url := "https://" + ing.Addr()
	resp, err := client(true).Get(url + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("/ready over TLS: %s", resp.Status)
	}
	for name, opts := range map[string][]connect.ClientOption{"connect": nil, "grpc": {connect.WithGRPC()}} {
		pc := pushv1connect.NewPusherServiceClient(client(true), url, opts...)
		if _, err := pc.Push(context.Background(), pushReq(map[string]string{"service_name": "tls-" + name}, smallProfile(t))); err != nil {
			t.Fatalf("push over TLS (%s): %v", name, err)
		}
	}
	tq := &testIngester{App: ing.App, Querier: querierv1connect.NewQuerierServiceClient(client(true), url)}
	if got := cpuTotal(t, tq, `{}`, nil); got != 800 {
		t.Fatalf("read back over TLS: %d, want 800", got)
	}
	if _, err := client(false).Get(url + "/ready"); err == nil {
		t.Fatal("a client without a certificate was served (client CA set)")
	}
	if resp, err := http.Get("http://" + ing.Addr() + "/ready"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP served on the TLS public port")
		}
	}
}
