// Package tlsreload builds TLS configurations whose certificates, keys and CA
// bundles are re-read from disk when the files change, so that a renewed
// certificate (cert-manager rewriting a mounted Secret, for instance) is used
// by the next handshake without a restart.
//
// A Reloader stats its files on every use and parses them again only when a
// file's size, modification time or inode changed. A pair that does not load
// (a key written before its certificate) keeps the previous one in use and
// is retried at the next handshake.
package tlsreload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// stamp identifies one version of a file.
type stamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func stat(path string) (stamp, error) {
	fi, err := os.Stat(path) // follows the ..data symlinks of a mounted Secret
	if err != nil {
		return stamp{}, err
	}
	s := stamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = uint64(st.Ino)
	}
	return s, nil
}

// Reloader serves a certificate and key pair and a CA pool from files.
// Either part may be absent (empty paths).
type Reloader struct {
	CertPath, KeyPath, CAPath string
	Logger                    *slog.Logger

	mu                  sync.Mutex
	certStamp, keyStamp stamp
	caStamp             stamp
	cert                *tls.Certificate
	pool                *x509.CertPool
	loads               int // successful (re)loads, for tests and logs
}

// NewReloader loads the files once: a configuration that cannot load at
// start is an error, not a handshake failure later.
func NewReloader(certPath, keyPath, caPath string, logger *slog.Logger) (*Reloader, error) {
	if (certPath == "") != (keyPath == "") {
		return nil, errors.New("a TLS certificate needs its key and a key its certificate: set both paths or neither")
	}
	if logger == nil {
		logger = slog.Default()
	}
	r := &Reloader{CertPath: certPath, KeyPath: keyPath, CAPath: caPath, Logger: logger}
	if certPath != "" {
		if _, err := r.Certificate(); err != nil {
			return nil, err
		}
	}
	if caPath != "" {
		if _, err := r.CAPool(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Certificate returns the current pair, re-read when a file changed. When
// the files changed but do not load, the previous pair is returned (and
// the error logged); without one, the error.
func (r *Reloader) Certificate() (*tls.Certificate, error) {
	if r.CertPath == "" {
		return nil, errors.New("no certificate configured")
	}
	cs, err1 := stat(r.CertPath)
	ks, err2 := stat(r.KeyPath)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := errors.Join(err1, err2); err != nil {
		return r.keepCert(fmt.Errorf("TLS certificate: %w", err))
	}
	if r.cert != nil && cs == r.certStamp && ks == r.keyStamp {
		return r.cert, nil
	}
	pair, err := tls.LoadX509KeyPair(r.CertPath, r.KeyPath)
	if err != nil {
		return r.keepCert(fmt.Errorf("TLS certificate %s and key %s: %w", r.CertPath, r.KeyPath, err))
	}
	if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err == nil {
		pair.Leaf = leaf
	}
	if r.cert != nil {
		r.Logger.Info("TLS certificate reloaded", "path", r.CertPath, "serial", serial(&pair), "not_after", notAfter(&pair))
	}
	r.cert, r.certStamp, r.keyStamp = &pair, cs, ks
	r.loads++
	return r.cert, nil
}

func (r *Reloader) keepCert(err error) (*tls.Certificate, error) {
	if r.cert == nil {
		return nil, err
	}
	r.Logger.Warn("keeping the previous TLS certificate", "err", err)
	return r.cert, nil
}

// CAPool returns the current CA pool, re-read when the file changed.
func (r *Reloader) CAPool() (*x509.CertPool, error) {
	if r.CAPath == "" {
		return nil, errors.New("no CA configured")
	}
	s, err := stat(r.CAPath)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		return r.keepPool(fmt.Errorf("TLS CA: %w", err))
	}
	if r.pool != nil && s == r.caStamp {
		return r.pool, nil
	}
	b, err := os.ReadFile(r.CAPath)
	if err != nil {
		return r.keepPool(fmt.Errorf("TLS CA: %w", err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return r.keepPool(fmt.Errorf("TLS CA %s: no PEM certificate in it", r.CAPath))
	}
	if r.pool != nil {
		r.Logger.Info("TLS CA bundle reloaded", "path", r.CAPath)
	}
	r.pool, r.caStamp = pool, s
	r.loads++
	return r.pool, nil
}

func (r *Reloader) keepPool(err error) (*x509.CertPool, error) {
	if r.pool == nil {
		return nil, err
	}
	r.Logger.Warn("keeping the previous TLS CA bundle", "err", err)
	return r.pool, nil
}

// Loads counts successful loads and reloads of the pair and the CA bundle.
func (r *Reloader) Loads() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loads
}

func serial(c *tls.Certificate) string {
	if c.Leaf == nil {
		return ""
	}
	return c.Leaf.SerialNumber.String()
}

func notAfter(c *tls.Certificate) time.Time {
	if c.Leaf == nil {
		return time.Time{}
	}
	return c.Leaf.NotAfter
}
