// Package sniff serves TLS and plain TCP on one port: the first byte a client
// sends tells them apart (0x16 opens every TLS handshake record; no HTTP method,
// and no memberlist message type, starts with it). It exists for the switch of a
// running cluster between plain and TLS (docs/security.md, "Turning TLS on or
// off"): during the rollout, old and new peers must reach each other either way.
// Accepting plain traffic is a downgrade, so it is only ever configured explicitly.
package sniff

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// handshakeRecord is the TLS record type of a ClientHello.
const handshakeRecord = 0x16

// peekTimeout bounds the wait for a new connection's first byte.
const peekTimeout = 10 * time.Second

// IsTLS reports whether a connection whose first byte is b opens a TLS handshake.
func IsTLS(b byte) bool { return b == handshakeRecord }

// Listener accepts connections of inner and hands them out as *tls.Conn (server
// side of tlsCfg) when they open with a TLS handshake, as they are otherwise.
// Each connection's first byte is awaited on its own goroutine, so a slow client
// never holds up the others.
type Listener struct {
	inner  net.Listener
	tlsCfg *tls.Config
	// onConn, when set, is told each accepted connection's kind (for metrics).
	onConn func(tls bool)

	conns chan net.Conn
	errc  chan error
	done  chan struct{}
	once  sync.Once
}

// Listen wraps inner; onConn (may be nil) is called with each connection's kind.
func Listen(inner net.Listener, tlsCfg *tls.Config, onConn func(tls bool)) *Listener {
	l := &Listener{inner: inner, tlsCfg: tlsCfg, onConn: onConn, conns: make(chan net.Conn), errc: make(chan error, 1), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *Listener) acceptLoop() {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.errc <- err
			return
		}
		go l.classify(c)
	}
}

func (l *Listener) classify(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(peekTimeout))
	br := bufio.NewReader(c)
	first, err := br.Peek(1)
	if err != nil {
		_ = c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	var out net.Conn = &peeked{Conn: c, r: br}
	isTLS := IsTLS(first[0])
	if isTLS {
		out = tls.Server(out, l.tlsCfg)
	}
	if l.onConn != nil {
		l.onConn(isTLS)
	}
	select {
	case l.conns <- out:
	case <-l.done:
		_ = c.Close()
	}
}

// Accept returns the next classified connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		l.errc <- err // every later Accept fails the same way
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close closes the port; connections being classified are closed.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.inner.Close()
}

// Addr is the bound address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// peeked is a connection whose first bytes were read ahead into r.
type peeked struct {
	net.Conn
	r *bufio.Reader
}

func (p *peeked) Read(b []byte) (int, error) { return p.r.Read(b) }
