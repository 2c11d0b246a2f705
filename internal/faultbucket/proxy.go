package faultbucket

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy is an HTTP proxy in front of an S3 server that injects the same
// faults as Bucket into the requests of real processes: 503 answers, GET
// bodies cut off midway (the connection dropped after part of the body),
// delays, and PUT/DELETE requests forwarded and then answered 500 (the write
// landed, its answer was lost). The Host header is forwarded unchanged, so
// request signatures stay valid. Listening on 127.0.0.1 only.
type Proxy struct {
	// Addr is the proxy's host:port, the S3 endpoint to give the clients.
	Addr string

	upstream string
	rt       http.RoundTripper
	srv      *http.Server

	mu  sync.Mutex
	cfg Config
	rng *rand.Rand
	on  bool

	requests, injected atomic.Int64
	byFault            [4]atomic.Int64
}

// StartProxy listens on a free 127.0.0.1 port and forwards to upstream
// (host:port, plain HTTP), faults as cfg says, switched off until SetEnabled.
func StartProxy(upstream string, cfg Config) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), upstream: upstream, cfg: cfg,
		rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x51af)),
		rt:  &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, DisableCompression: true}}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Close stops the proxy.
func (p *Proxy) Close() error { return p.srv.Close() }

// SetEnabled switches the faults on or off.
func (p *Proxy) SetEnabled(on bool) {
	p.mu.Lock()
	p.on = on
	p.mu.Unlock()
}

// Stats returns the requests seen and the faults injected, by kind.
func (p *Proxy) Stats() (requests, errors, cut, landed int64) {
	return p.requests.Load(), p.byFault[Error].Load(), p.byFault[CutBody].Load(), p.byFault[LandedError].Load()
}

func (p *Proxy) decide(r *http.Request) (Fault, time.Duration, float64) {
	p.requests.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on || (p.cfg.Only != "" && !strings.Contains(r.URL.Path, p.cfg.Only)) {
		return None, 0, 0
	}
	var delay time.Duration
	if p.cfg.MaxDelay > 0 {
		delay = time.Duration(p.rng.Int64N(int64(p.cfg.MaxDelay)))
	}
	op := OpGet
	switch r.Method {
	case http.MethodPut, http.MethodPost:
		op = OpUpload
	case http.MethodDelete:
		op = OpDelete
	case http.MethodHead:
		op = OpExists
	}
	f := pick(p.rng.Float64(), op, p.cfg)
	if f != None {
		p.injected.Add(1)
		p.byFault[f].Add(1)
	}
	return f, delay, p.rng.Float64()
}

const s3Error = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected by the fault proxy</Message></Error>`

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, delay, cut := p.decide(r)
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if f == Error {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, s3Error, "ServiceUnavailable")
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = "http", p.upstream
	out.Host = r.Host // the signature covers it
	if r.ContentLength == 0 {
		out.Body = nil
	}
	resp, err := p.rt.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if f == LandedError {
		_, _ = io.Copy(io.Discard, resp.Body)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, s3Error, "InternalError")
		return
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	if f == CutBody && resp.StatusCode/100 == 2 && resp.ContentLength > 0 {
		_, _ = io.CopyN(w, resp.Body, int64(float64(resp.ContentLength)*cut))
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		panic(http.ErrAbortHandler) // drop the connection midway
	}
	_, _ = io.Copy(w, resp.Body)
}
