package app

import (
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"

	"github.com/grafana/dskit/services"

	"github.com/hearth-dev/hearth/ingester/transport"
)

// InternalServer is the peer-only listener (-server.internal-listen-port): what
// the other ingesters call (replica writes and reads) and what the operator and
// `hearth prestop` call (flush, prepare-shutdown, prepare-stop, shutdown, ring
// forget), with mutual TLS when configured (docs/security.md). The ring
// advertises its address. The public server answers 404 for all of it.
const InternalServer = "internal-server"

func (a *App) initInternalServer() (services.Service, error) {
	cfg := a.Config.Server
	tlsCfg, err := cfg.InternalTLS.TLSConfig(a.Logger, "h2", "http/1.1")
	if err != nil {
		return nil, err
	}
	a.internalMux.HandleFunc("/debug/pprof/", pprof.Index)
	a.internalMux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	a.internalMux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	a.internalMux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	a.internalMux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	addr := net.JoinHostPort(cfg.InternalListenAddress, strconv.Itoa(cfg.InternalListenPort))
	s, err := newHTTPServer(InternalServer, addr, transport.Versioned(a.internalMux), a.Logger, tlsCfg, cfg.InternalTLS.AcceptPlain)
	if err != nil {
		return nil, err
	}
	a.internal = s
	a.servers = append(a.servers, s)
	return s, nil
}

// peerClient is the HTTP client and scheme the distributor and the remote
// reader call the other ingesters' internal listeners with
// (-ingester.client.tls-*).
func (a *App) peerClient() (*http.Client, string, error) {
	c, err := a.Config.Ingester.Client.NewClient(a.Logger)
	if err != nil {
		return nil, "", err
	}
	return &http.Client{Transport: transport.VersionedTransport(c.Transport(transport.DefaultTransport()))}, c.Scheme(), nil
}

// readOnly serves only GET and HEAD of h (the ring page on the public port:
// POST /ring forget is an admin call, on the internal port).
func readOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the ring page is read-only on the public port", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}
