package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/grafana/dskit/services"

	"github.com/hearth-dev/hearth/internal/sniff"
)

// httpServer is an HTTP listener as a dskit service. Its port is bound when
// it is built (the ring advertises it, and port 0 picks one); running serves
// until the service stops or Serve fails; stopping (or Drain, from the stop
// sequence) stops accepting, finishes the requests in flight and closes the port.
type httpServer struct {
	services.Service
	name     string
	listener net.Listener
	srv      *http.Server
	log      *slog.Logger

	drainOnce sync.Once
	drainErr  error
}

func newHTTPServer(name, addr string, h http.Handler, logger *slog.Logger, tlsCfg *tls.Config, acceptPlain bool) (*httpServer, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // gRPC without TLS
	if tlsCfg != nil {
		// TLS (certificates re-read as they change: tlsreload); HTTP/2 by ALPN.
		protocols.SetHTTP2(true)
		if acceptPlain {
			// Both on one port while TLS is switched on or off (docs/security.md).
			l = sniff.Listen(l, tlsCfg, nil)
		} else {
			l = tls.NewListener(l, tlsCfg)
		}
	}
	s := &httpServer{
		name:     name,
		listener: l,
		srv:      &http.Server{Handler: h, Protocols: protocols, ReadHeaderTimeout: 30 * time.Second},
		log:      logger,
	}
	s.Service = services.NewBasicService(nil, s.running, s.stopping).WithName(name)
	return s, nil
}

// Addr is the bound address.
func (s *httpServer) Addr() string { return s.listener.Addr().String() }

// Port is the bound port.
func (s *httpServer) Port() int { return s.listener.Addr().(*net.TCPAddr).Port }

func (s *httpServer) running(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.listener) }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			<-ctx.Done() // drained by the stop sequence, which stops the service next
			return nil
		}
		return fmt.Errorf("%s: serving on %s: %w", s.name, s.Addr(), err)
	}
}

func (s *httpServer) stopping(error) error { return s.Drain() }

// Drain stops accepting connections, waits (at most 30 s) for the requests in
// flight and closes the port. Only the first call does it.
func (s *httpServer) Drain() error {
	s.drainOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.drainErr = fmt.Errorf("%s: %w", s.name, err)
		}
		_ = s.listener.Close() // when Serve never ran
	})
	return s.drainErr
}
