package ring

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/hearth-dev/hearth/internal/sniff"
	"github.com/hearth-dev/hearth/internal/tlsreload"
)

// front is the memberlist port when -memberlist.tls-accept-plain is set: it accepts
// TLS and plain gossip connections and relays each to dskit's TCP transport, which
// then listens on loopback only (dskit's transport serves one kind: TLS exactly when
// it dials TLS). A connection of the transport's kind is relayed byte for byte; a
// plain one to a TLS transport is wrapped in TLS on the loopback hop; a TLS one to a
// plain transport is terminated here with the same certificate. dskit reads a
// packet's sender from the packet, not the connection, so relaying changes nothing
// memberlist sees. Why: turning TLS on or off is a rollout during which plain and
// TLS peers gossip with each other (docs/security.md).
type front struct {
	ln        net.Listener
	innerTLS  *tls.Config // the loopback hop's client config when the transport serves TLS
	serverTLS *tls.Config // terminates TLS when the transport serves plain
	innerPort int         // the transport's port on loopback
	logger    log.Logger

	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// newFront binds the memberlist port (cfg.BindAddr:BindPort).
func newFront(cfg MemberlistConfig, logger *slog.Logger, klog log.Logger) (*front, error) {
	f := &front{logger: klog}
	var err error
	if cfg.TLSDialPlain {
		srv := tlsreload.ServerConfig{CertPath: cfg.TLS.CertPath, KeyPath: cfg.TLS.KeyPath}
		if f.serverTLS, err = srv.TLSConfig(logger); err != nil {
			return nil, fmt.Errorf("ring: memberlist TLS: %w", err)
		}
	} else {
		if f.innerTLS, err = cfg.TLS.GetTLSConfig(); err != nil {
			return nil, fmt.Errorf("ring: memberlist TLS: %w", err)
		}
		// The hop to our own transport on loopback: nothing to verify.
		f.innerTLS.InsecureSkipVerify = true
	}
	// A free loopback port for the transport: bound and released here, bound again
	// by the transport when memberlist starts (a start that loses it to another
	// process fails, and the pod restarts).
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ring: memberlist: a loopback port for the transport: %w", err)
	}
	f.innerPort = probe.Addr().(*net.TCPAddr).Port
	_ = probe.Close()
	addr := net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.BindPort))
	if f.ln, err = net.Listen("tcp", addr); err != nil {
		return nil, fmt.Errorf("ring: memberlist: listen on %s: %w", addr, err)
	}
	return f, nil
}

func (f *front) serve() {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := f.ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() { defer f.wg.Done(); f.relay(c) }()
		}
	}()
}

func (f *front) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		_ = c.Close()
		return false
	}
	if f.conns == nil {
		f.conns = map[net.Conn]struct{}{}
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *front) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	_ = c.Close()
}

func (f *front) relay(c net.Conn) {
	if !f.track(c) {
		return
	}
	defer f.untrack(c)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	first, err := br.Peek(1)
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	var in net.Conn = &bufConn{Conn: c, r: br}
	isTLS := sniff.IsTLS(first[0])
	innerAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(f.innerPort))
	var out net.Conn
	switch {
	case isTLS && f.innerTLS == nil: // terminate here
		tc := tls.Server(in, f.serverTLS)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			level.Debug(f.logger).Log("msg", "memberlist: TLS handshake failed", "remote", c.RemoteAddr(), "err", err)
			return
		}
		in = tc
		out, err = net.DialTimeout("tcp", innerAddr, 5*time.Second)
	case !isTLS && f.innerTLS != nil: // plain peer, TLS transport
		out, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", innerAddr, f.innerTLS)
	default:
		out, err = net.DialTimeout("tcp", innerAddr, 5*time.Second)
	}
	if err != nil {
		level.Warn(f.logger).Log("msg", "memberlist: relaying a connection to the transport failed", "remote", c.RemoteAddr(), "err", err)
		return
	}
	if !f.track(out) {
		return
	}
	defer f.untrack(out)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(out, in); closeWrite(out); done <- struct{}{} }()
	go func() { _, _ = io.Copy(in, out); closeWrite(in); done <- struct{}{} }()
	<-done
	<-done
}

// closeWrite half-closes a connection (memberlist reads a stream to its end).
func closeWrite(c net.Conn) {
	switch x := c.(type) {
	case *tls.Conn:
		_ = x.CloseWrite()
	case *net.TCPConn:
		_ = x.CloseWrite()
	case *bufConn:
		closeWrite(x.Conn)
	}
}

// close stops accepting and closes every relayed connection.
func (f *front) close() {
	_ = f.ln.Close()
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// bufConn is a connection whose first bytes were read ahead into r.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }
