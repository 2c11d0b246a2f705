package tlsreload

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	dstls "github.com/grafana/dskit/crypto/tls"
)

// Client authentication modes of a server (the names of Go's tls.ClientAuthType,
// as dskit's and Mimir's -server.*-tls-client-auth flags take them).
var clientAuthTypes = map[string]tls.ClientAuthType{
	"NoClientCert":               tls.NoClientCert,
	"RequestClientCert":          tls.RequestClientCert,
	"RequireAnyClientCert":       tls.RequireAnyClientCert,
	"VerifyClientCertIfGiven":    tls.VerifyClientCertIfGiven,
	"RequireAndVerifyClientCert": tls.RequireAndVerifyClientCert,
}

// ServerConfig is a TLS listener: its certificate and key, and how it
// authenticates clients. No certificate: plain TCP.
type ServerConfig struct {
	CertPath     string `yaml:"cert_path"`
	KeyPath      string `yaml:"key_path"`
	ClientCAPath string `yaml:"client_ca_path"`
	// ClientAuth is one of NoClientCert, RequestClientCert,
	// RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert;
	// empty: RequireAndVerifyClientCert with a client CA, else NoClientCert.
	ClientAuth string `yaml:"client_auth"`
	// AcceptPlain also serves plain TCP on the TLS port (told apart by the first
	// byte: internal/sniff): only for the rollout that turns TLS on or off.
	AcceptPlain bool `yaml:"accept_plain"`
}

// RegisterFlagsWithPrefix registers -<prefix>-tls-cert-path, -key-path,
// -client-ca-path and -client-auth (prefix "server.internal" gives
// -server.internal-tls-cert-path).
func (c *ServerConfig) RegisterFlagsWithPrefix(prefix string, f *flag.FlagSet, what string) {
	f.StringVar(&c.CertPath, prefix+"-tls-cert-path", "", "TLS certificate (PEM) of the "+what+"; set with the key to serve TLS. Re-read when the file changes.")
	f.StringVar(&c.KeyPath, prefix+"-tls-key-path", "", "TLS private key (PEM) of the "+what+". Re-read when the file changes.")
	f.StringVar(&c.ClientCAPath, prefix+"-tls-client-ca-path", "", "CA bundle (PEM) that client certificates of the "+what+" must chain to. Re-read when the file changes.")
	f.BoolVar(&c.AcceptPlain, prefix+"-tls-accept-plain", false, "Serve plain (unencrypted, unauthenticated) connections on the "+what+" too, next to TLS, told apart by their first byte. Only for the rollout that turns TLS on or off; needs "+prefix+"-tls-cert-path.")
	f.StringVar(&c.ClientAuth, prefix+"-tls-client-auth", "", "Client authentication of the "+what+": NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert (empty: RequireAndVerifyClientCert when a client CA is set, else NoClientCert).")
}

// Enabled reports whether the listener serves TLS.
func (c ServerConfig) Enabled() bool { return c.CertPath != "" || c.KeyPath != "" }

// Validate checks the combination of paths and the mode.
func (c ServerConfig) Validate(prefix string) error {
	if !c.Enabled() {
		if c.ClientCAPath != "" || c.ClientAuth != "" || c.AcceptPlain {
			return fmt.Errorf("%s-tls-client-ca-path, -client-auth and -accept-plain need %s-tls-cert-path and -key-path", prefix, prefix)
		}
		return nil
	}
	if c.CertPath == "" || c.KeyPath == "" {
		return fmt.Errorf("%s-tls-cert-path and %s-tls-key-path must be set together", prefix, prefix)
	}
	mode, err := c.clientAuth()
	if err != nil {
		return fmt.Errorf("%s-tls-client-auth: %w", prefix, err)
	}
	if (mode == tls.VerifyClientCertIfGiven || mode == tls.RequireAndVerifyClientCert) && c.ClientCAPath == "" {
		return fmt.Errorf("%s-tls-client-auth=%s needs %s-tls-client-ca-path", prefix, c.ClientAuth, prefix)
	}
	return nil
}

func (c ServerConfig) clientAuth() (tls.ClientAuthType, error) {
	if c.ClientAuth == "" {
		if c.ClientCAPath != "" {
			return tls.RequireAndVerifyClientCert, nil
		}
		return tls.NoClientCert, nil
	}
	m, ok := clientAuthTypes[c.ClientAuth]
	if !ok {
		return 0, fmt.Errorf("unknown mode %q: use NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert", c.ClientAuth)
	}
	return m, nil
}

// TLSConfig is the listener's configuration: every handshake takes the
// certificate and the client CA pool as they are on disk now. nil when
// TLS is off. nextProtos are the ALPN protocols (h2, http/1.1).
func (c ServerConfig) TLSConfig(logger *slog.Logger, nextProtos ...string) (*tls.Config, error) {
	if !c.Enabled() {
		return nil, nil
	}
	mode, err := c.clientAuth()
	if err != nil {
		return nil, err
	}
	r, err := NewReloader(c.CertPath, c.KeyPath, c.ClientCAPath, logger)
	if err != nil {
		return nil, err
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12, ClientAuth: mode, NextProtos: nextProtos}
	cfg := base.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, err := r.Certificate()
		if err != nil {
			return nil, err
		}
		hc := base.Clone()
		hc.Certificates = []tls.Certificate{*cert}
		if c.ClientCAPath != "" {
			if hc.ClientCAs, err = r.CAPool(); err != nil {
				return nil, err
			}
		}
		return hc, nil
	}
	// Also usable without GetConfigForClient (tls.Listen checks for a certificate).
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.Certificate() }
	return cfg, nil
}

// ClientConfig is dskit's client TLS configuration (the same flags and YAML
// keys as Mimir's -ingester.client.tls-*) and whether to use it. Unlike
// dskit's GetTLSConfig, the CA bundle is re-read when it changes too.
type ClientConfig struct {
	Enabled bool `yaml:"tls_enabled"`
	// PlainFallback dials a peer again over plain TCP when it answers the TLS
	// handshake with something that is not TLS (a peer still serving plain
	// HTTP): only for the rollout that turns TLS on or off (docs/security.md).
	PlainFallback      bool `yaml:"tls_plain_fallback"`
	dstls.ClientConfig `yaml:",inline"`
}

// RegisterFlagsWithPrefix registers -<prefix>.tls-enabled and dskit's
// -<prefix>.tls-cert-path, -key-path, -ca-path, -server-name,
// -insecure-skip-verify, -cipher-suites and -min-version.
func (c *ClientConfig) RegisterFlagsWithPrefix(prefix string, f *flag.FlagSet) {
	f.BoolVar(&c.Enabled, prefix+".tls-enabled", false, "Use TLS for "+prefix+" connections (with the client certificate below, when the server asks for one).")
	f.BoolVar(&c.PlainFallback, prefix+".tls-plain-fallback", false, "With "+prefix+".tls-enabled: when a peer answers the TLS handshake with plain text (it does not serve TLS yet, or any more), send the request over plain TCP. Only for the rollout that turns TLS on or off: it lets a network attacker downgrade the connection.")
	c.ClientConfig.RegisterFlagsWithPrefix(prefix, f)
}

// Validate checks the paths and the dskit options.
func (c ClientConfig) Validate(prefix string) error {
	if !c.Enabled {
		if c.PlainFallback {
			return fmt.Errorf("%s.tls-plain-fallback needs %s.tls-enabled", prefix, prefix)
		}
		return nil
	}
	if (c.CertPath == "") != (c.KeyPath == "") {
		return fmt.Errorf("%s.tls-cert-path and %s.tls-key-path must be set together", prefix, prefix)
	}
	return ValidateOptions(c.ClientConfig)
}

// ValidateOptions checks a dskit client config's cipher suites and minimum
// version without reading its files (they may appear later, e.g. a Secret
// mounted after the config is checked; they are loaded when used).
func ValidateOptions(c dstls.ClientConfig) error {
	c.CertPath, c.KeyPath, c.CAPath = "", "", ""
	_, err := c.GetTLSConfig()
	return err
}

// Client dials TLS connections with the certificate and CA bundle as they
// are on disk at each dial.
type Client struct {
	base       *tls.Config
	serverName string
	skip       bool
	reloader   *Reloader
	hasCA      bool
	fallback   bool
}

// NewClient builds a Client; nil when TLS is off.
func (c ClientConfig) NewClient(logger *slog.Logger) (*Client, error) {
	if !c.Enabled {
		return nil, nil
	}
	base, err := c.ClientConfig.GetTLSConfig() // dskit parses min version and cipher suites
	if err != nil {
		return nil, err
	}
	r, err := NewReloader(c.CertPath, c.KeyPath, c.CAPath, logger)
	if err != nil {
		return nil, err
	}
	return &Client{
		base:       &tls.Config{MinVersion: max(base.MinVersion, tls.VersionTLS12), CipherSuites: base.CipherSuites},
		serverName: c.ServerName,
		skip:       c.InsecureSkipVerify,
		reloader:   r,
		hasCA:      c.CAPath != "",
		fallback:   c.PlainFallback,
	}, nil
}

// Config is the TLS configuration of one connection to addr (host:port):
// the server name is -tls-server-name, else addr's host.
func (c *Client) Config(addr string) (*tls.Config, error) {
	cfg := c.base.Clone()
	cfg.InsecureSkipVerify = c.skip
	cfg.ServerName = c.serverName
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg.ServerName = host
	}
	if c.hasCA {
		pool, err := c.reloader.CAPool()
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if c.reloader.CertPath != "" {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c.reloader.Certificate() }
	}
	return cfg, nil
}

// DialTLSContext dials addr and completes the TLS handshake (an
// http.Transport's DialTLSContext).
func (c *Client) DialTLSContext(ctx context.Context, network, addr string) (net.Conn, error) {
	cfg, err := c.Config(addr)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		if c.fallback && NotTLS(err) {
			// The peer serves plain HTTP (an old or new revision during the switch).
			return d.DialContext(ctx, network, addr)
		}
		return nil, err
	}
	return conn, nil
}

// NotTLS reports whether a handshake failed because the server's answer was not TLS
// (a plain HTTP server answers a ClientHello with "400 Bad Request"), as opposed to
// a TLS server refusing the certificate, which never falls back.
func NotTLS(err error) bool {
	var rh tls.RecordHeaderError
	return errors.As(err, &rh)
}

// Scheme is "https" for a TLS client, "http" for nil.
func (c *Client) Scheme() string {
	if c == nil {
		return "http"
	}
	return "https"
}

// Transport returns an HTTP/1.1 transport that dials TLS through c (plain
// TCP when c is nil), based on base (nil: a clone of http.DefaultTransport
// without a proxy).
func (c *Client) Transport(base *http.Transport) *http.Transport {
	var t *http.Transport
	if base != nil {
		t = base.Clone()
	} else {
		t = http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
	}
	if c != nil {
		t.DialTLSContext = c.DialTLSContext
	}
	return t
}

// URL is scheme://addr+path for this client.
func (c *Client) URL(addr, path string) string {
	return c.Scheme() + "://" + addr + "/" + strings.TrimPrefix(path, "/")
}
