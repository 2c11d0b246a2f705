package tlsreload

import (
	"crypto/tls"
	"flag"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/internal/testutil"
)

var quiet = slog.New(slog.DiscardHandler)

// server serves, over TLS from cfg, the serial number of the client's
// certificate ("none" without one).
func server(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			_, _ = io.WriteString(w, "none")
			return
		}
		_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].SerialNumber.String())
	})}
	go func() { _ = srv.Serve(tls.NewListener(l, cfg)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// get makes one request on a fresh connection; it returns the server
// certificate's serial and the body (the client certificate's serial).
func get(c *Client, addr string) (serverSerial, clientSerial string, err error) {
	tr := c.Transport(nil)
	tr.DisableKeepAlives = true
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(c.URL(addr, "/"))
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", err
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.String(), string(b), nil
}

func TestMutualTLSAndReload(t *testing.T) {
	ca := testutil.NewCA(t, "test-ca")
	dir := t.TempDir()
	srvFiles := testutil.WriteTLSDir(t, filepath.Join(dir, "server"), ca.Issue(t, "server", []string{"peer.test"}), ca.PEM)
	cliLeaf := ca.Issue(t, "client", []string{"peer.test"})
	cliFiles := testutil.WriteTLSDir(t, filepath.Join(dir, "client"), cliLeaf, ca.PEM)

	scfg, err := ServerConfig{CertPath: srvFiles.Cert, KeyPath: srvFiles.Key, ClientCAPath: srvFiles.CA}.TLSConfig(quiet)
	if err != nil {
		t.Fatal(err)
	}
	addr := server(t, scfg)
	client := func(cc ClientConfig) *Client {
		t.Helper()
		cc.Enabled = true
		c, err := cc.NewClient(quiet)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	good := ClientConfig{}
	good.CertPath, good.KeyPath, good.CAPath, good.ServerName = cliFiles.Cert, cliFiles.Key, cliFiles.CA, "peer.test"
	gc := client(good)

	ss, cs, err := get(gc, addr)
	if err != nil {
		t.Fatal(err)
	}
	if ss != "2" || cs != cliLeaf.Serial.String() {
		t.Fatalf("server serial %s, client serial %s: want 2 and %s", ss, cs, cliLeaf.Serial)
	}

	// Without a client certificate: refused by the server.
	noCert := good
	noCert.CertPath, noCert.KeyPath = "", ""
	if _, _, err := get(client(noCert), addr); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	// A certificate of another CA: refused.
	other := testutil.NewCA(t, "other-ca")
	otherFiles := testutil.WriteTLSDir(t, filepath.Join(dir, "other"), other.Issue(t, "intruder", []string{"peer.test"}), ca.PEM)
	intruder := good
	intruder.CertPath, intruder.KeyPath = otherFiles.Cert, otherFiles.Key
	if _, _, err := get(client(intruder), addr); err == nil {
		t.Fatal("a client certificate of another CA was accepted")
	}
	// The server's name is checked: dialling the IP without -tls-server-name
	// fails, the certificate names peer.test only.
	noName := good
	noName.ServerName = ""
	if _, _, err := get(client(noName), addr); err == nil || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("a server certificate without the dialled IP was accepted: %v", err)
	}
	// Without the CA the server is not trusted.
	noCA := good
	noCA.CAPath = ""
	if _, _, err := get(client(noCA), addr); err == nil {
		t.Fatal("a server certificate of an unknown CA was accepted")
	}
	// ... unless verification is off.
	skip := noCA
	skip.InsecureSkipVerify = true
	if _, _, err := get(client(skip), addr); err != nil {
		t.Fatalf("insecure-skip-verify: %v", err)
	}

	// Renewed certificates on disk: the next handshakes use them, both ways,
	// without a restart and with the same Client.
	newSrv := ca.Issue(t, "server", []string{"peer.test"})
	newCli := ca.Issue(t, "client", []string{"peer.test"})
	testutil.WriteTLSDir(t, srvFiles.Dir, newSrv, ca.PEM)
	testutil.WriteTLSDir(t, cliFiles.Dir, newCli, ca.PEM)
	if ss, cs, err = get(gc, addr); err != nil {
		t.Fatal(err)
	}
	if ss != newSrv.Serial.String() || cs != newCli.Serial.String() {
		t.Fatalf("after renewal: server serial %s, client serial %s; want %s and %s", ss, cs, newSrv.Serial, newCli.Serial)
	}

	// A half-written renewal (a certificate that does not match the key)
	// keeps the previous pair in use.
	if err := os.WriteFile(srvFiles.Cert, ca.Issue(t, "server", []string{"peer.test"}).CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if ss, _, err = get(gc, addr); err != nil || ss != newSrv.Serial.String() {
		t.Fatalf("with a mismatched pair on disk: %v, serial %s; want the previous %s", err, ss, newSrv.Serial)
	}

	// A new CA: certificates and bundle replaced on both sides; the old
	// client certificate is refused from then on.
	ca2 := testutil.NewCA(t, "test-ca-2")
	srv2 := ca2.Issue(t, "server", []string{"peer.test"})
	testutil.WriteTLSDir(t, srvFiles.Dir, srv2, ca2.PEM)
	testutil.WriteTLSDir(t, cliFiles.Dir, ca2.Issue(t, "client", []string{"peer.test"}), ca2.PEM)
	if ss, _, err = get(gc, addr); err != nil || ss != srv2.Serial.String() {
		t.Fatalf("after a CA change: %v, server serial %s, want %s", err, ss, srv2.Serial)
	}
	oldFiles := testutil.WriteTLSDir(t, filepath.Join(dir, "old"), newCli, ca2.PEM)
	old := good
	old.CertPath, old.KeyPath, old.CAPath = oldFiles.Cert, oldFiles.Key, oldFiles.CA
	if _, _, err := get(client(old), addr); err == nil {
		t.Fatal("a client certificate of the replaced CA was accepted")
	}
}

func TestServerWithoutClientAuth(t *testing.T) {
	ca := testutil.NewCA(t, "ca")
	f := testutil.WriteTLSDir(t, t.TempDir(), ca.Issue(t, "server", nil, net.ParseIP("127.0.0.1")), ca.PEM)
	scfg, err := ServerConfig{CertPath: f.Cert, KeyPath: f.Key}.TLSConfig(quiet)
	if err != nil {
		t.Fatal(err)
	}
	addr := server(t, scfg)
	cc := ClientConfig{Enabled: true}
	cc.CAPath = f.CA
	c, err := cc.NewClient(quiet)
	if err != nil {
		t.Fatal(err)
	}
	if _, body, err := get(c, addr); err != nil || body != "none" {
		t.Fatalf("%q %v", body, err)
	}
	// Plain HTTP to a TLS port fails.
	if resp, err := http.Get("http://" + addr + "/"); err == nil && resp.StatusCode == http.StatusOK {
		t.Fatal("plain HTTP was served on a TLS listener")
	}
}

func TestValidate(t *testing.T) {
	ca := testutil.NewCA(t, "ca")
	f := testutil.WriteTLSDir(t, t.TempDir(), ca.Issue(t, "x", nil), ca.PEM)
	bad := map[string]ServerConfig{
		"need -server.internal-tls-cert-path": {ClientCAPath: f.CA},
		"must be set together":                {CertPath: f.Cert},
		"unknown mode \"Sometimes\"":          {CertPath: f.Cert, KeyPath: f.Key, ClientAuth: "Sometimes"},
		"RequireAndVerifyClientCert needs":    {CertPath: f.Cert, KeyPath: f.Key, ClientAuth: "RequireAndVerifyClientCert"},
	}
	for want, c := range bad {
		if err := c.Validate("-server.internal"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want %q", c, err, want)
		}
	}
	if err := (ServerConfig{CertPath: f.Cert, KeyPath: f.Key, ClientCAPath: f.CA}).Validate("-server.internal"); err != nil {
		t.Fatal(err)
	}
	if _, err := (ServerConfig{CertPath: f.Cert, KeyPath: f.CA}).TLSConfig(quiet); err == nil {
		t.Fatal("a key file without a key loaded")
	}
	var cc ClientConfig
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	cc.RegisterFlagsWithPrefix("ingester.client", fs)
	if err := fs.Parse([]string{"-ingester.client.tls-enabled", "-ingester.client.tls-cert-path=" + f.Cert}); err != nil {
		t.Fatal(err)
	}
	if err := cc.Validate("-ingester.client"); err == nil {
		t.Fatal("a client certificate without its key validated")
	}
	if err := fs.Parse([]string{"-ingester.client.tls-key-path=" + f.Key, "-ingester.client.tls-min-version=VersionTLS99"}); err != nil {
		t.Fatal(err)
	}
	if err := cc.Validate("-ingester.client"); err == nil || !strings.Contains(err.Error(), "VersionTLS99") {
		t.Fatalf("unknown min version: %v", err)
	}
	for _, name := range []string{"ingester.client.tls-ca-path", "ingester.client.tls-server-name", "ingester.client.tls-insecure-skip-verify"} {
		if fs.Lookup(name) == nil {
			t.Errorf("flag -%s is not registered", name)
		}
	}
}

// TestPlainFallback: with -tls-plain-fallback the client reaches a plain HTTP server
// (it answers the ClientHello in plain text) over plain TCP, and only then: without
// the option it fails, and a TLS server that refuses the client's certificate is
// never retried in plain text.
func TestPlainFallback(t *testing.T) {
	ca := testutil.NewCA(t, "fallback-ca")
	f := testutil.WriteTLSDir(t, filepath.Join(t.TempDir(), "tls"), ca.Issue(t, "peer", []string{"peer"}), ca.PEM)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "plain") }))
	defer plain.Close()
	other := testutil.NewCA(t, "other-ca")
	of := testutil.WriteTLSDir(t, filepath.Join(t.TempDir(), "other"), other.Issue(t, "peer", []string{"peer"}), other.PEM)
	strictCfg, err := ServerConfig{CertPath: of.Cert, KeyPath: of.Key, ClientCAPath: of.CA}.TLSConfig(nil, "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	strict := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "tls") }))
	strict.TLS = strictCfg
	strict.StartTLS()
	defer strict.Close()

	client := func(fallback bool) *http.Client {
		cc := ClientConfig{Enabled: true, PlainFallback: fallback}
		cc.CertPath, cc.KeyPath, cc.CAPath, cc.ServerName = f.Cert, f.Key, f.CA, "peer"
		c, err := cc.NewClient(nil)
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: c.Transport(nil)}
	}
	get := func(c *http.Client, addr string) (string, error) {
		resp, err := c.Get("https://" + addr + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	plainAddr := strings.TrimPrefix(plain.URL, "http://")
	if got, err := get(client(true), plainAddr); err != nil || got != "plain" {
		t.Fatalf("fallback to a plain peer: %q %v", got, err)
	}
	if got, err := get(client(false), plainAddr); err == nil {
		t.Fatalf("without fallback a plain peer answered %q", got)
	}
	if got, err := get(client(true), strings.TrimPrefix(strict.URL, "https://")); err == nil {
		t.Fatalf("a TLS peer of another CA answered %q: the refused handshake fell back", got)
	}
	if err := (ClientConfig{PlainFallback: true}).Validate("x"); err == nil {
		t.Fatal("tls-plain-fallback without tls-enabled validated")
	}
}
