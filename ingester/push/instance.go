package push

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-dev/hearth/ingester/tenant"
)

// InstanceLimits bound what one ingester takes on, whatever the tenant
// (Mimir's -ingester.instance-limits.*). Past one, writes are answered 503 /
// Unavailable: clients retry, and a replica's refusal counts as a failed
// replica write like any other. Per-tenant limits stay 429.
type InstanceLimits struct {
	MaxInflightPushRequests      int     `yaml:"max_inflight_push_requests"`
	MaxInflightPushRequestsBytes int64   `yaml:"max_inflight_push_requests_bytes"`
	MaxIngestionRate             float64 `yaml:"max_ingestion_rate"`
	MaxSeries                    int     `yaml:"max_series"`
	MaxTenants                   int     `yaml:"max_tenants"`
	// MaxConcurrentDecodes bounds the requests decoding at once, per pool
	// (DecodeGate); 0: twice GOMAXPROCS.
	MaxConcurrentDecodes int `yaml:"max_concurrent_decodes"`
}

// Default instance limits, sized so that pushes of large profiles from many
// clients cannot take a default ingester out of memory on a 2-core machine:
// the memory of a push is its decoded profile, tens of times its body, and two
// cores commit a few dozen pushes at a time at best (docs/benchmarks.md).
const (
	DefaultMaxInflightPushRequests      = 16
	DefaultMaxInflightPushRequestsBytes = 32 << 20
)

// RegisterFlags registers -ingester.instance-limits.*.
func (l *InstanceLimits) RegisterFlags(f *flag.FlagSet) {
	const p = "ingester.instance-limits."
	f.IntVar(&l.MaxInflightPushRequests, p+"max-inflight-push-requests", DefaultMaxInflightPushRequests, "Most push requests (push.v1, /ingest, OTLP) this ingester handles at once, and half of the replica appends from peers it handles at once (a pool of their own); more are answered 503 before their body is read (0: unlimited).")
	f.Int64Var(&l.MaxInflightPushRequestsBytes, p+"max-inflight-push-requests-bytes", DefaultMaxInflightPushRequestsBytes, "Most bytes of push request bodies, as received, in flight at once (replica appends: twice this, their own pool); more are answered 503 before their body is read (0: unlimited).")
	f.Float64Var(&l.MaxIngestionRate, p+"max-ingestion-rate", 0, "Most profiles per second this ingester stores (its own and its replicas' share); above, writes are answered 503 (0: unlimited).")
	f.IntVar(&l.MaxSeries, p+"max-series", 0, "Most active series in this ingester's head, all tenants together; at the limit, writes are answered 503 (0: unlimited).")
	f.IntVar(&l.MaxTenants, p+"max-tenants", 0, "Most tenants in this ingester's head; at the limit, a new tenant's writes are answered 503 (0: unlimited).")
	f.IntVar(&l.MaxConcurrentDecodes, p+"max-concurrent-decodes", 0, "Most push requests that decode and store their profiles at once, once their bodies are read (replica appends from peers: as many again, their own pool); the others admitted wait for a slot. It bounds the memory of pushes in flight (0: twice the number of cores Go uses).")
}

// Validate refuses negative limits.
func (l *InstanceLimits) Validate() error {
	if l.MaxInflightPushRequests < 0 || l.MaxInflightPushRequestsBytes < 0 || l.MaxIngestionRate < 0 || l.MaxSeries < 0 || l.MaxTenants < 0 || l.MaxConcurrentDecodes < 0 {
		return errors.New("ingester.instance-limits: a limit is negative")
	}
	return nil
}

// InstanceLimitError is a write refused by an instance limit: Unavailable.
type InstanceLimitError struct {
	Limit string // the flag's name after ingester.instance-limits.
	Msg   string
}

func (e *InstanceLimitError) Error() string {
	return e.Msg + " (ingester.instance-limits." + e.Limit + "): retry later or on another ingester"
}

// Unavailable marks the error retryable (Classify: CodeUnavailable).
func (e *InstanceLimitError) Unavailable() bool { return true }

// Usage is what the head holds: tenants and their active series.
type Usage interface {
	Usage() (tenants, series int)
	HasTenant(tenant string) bool
}

// InstanceLimiter enforces InstanceLimits.
type InstanceLimiter struct {
	limits        InstanceLimits
	usage         Usage        // nil: max-series and max-tenants are not checked
	inflight      atomic.Int64 // front door: pushes, /ingest, OTLP
	inflightBytes atomic.Int64
	// replica appends from peers: a pool of their own (Wrap says why)
	replicaInflight, replicaBytes atomic.Int64
	rate                          rateMeter
	refused                       *prometheus.CounterVec
	// decoding bounds the admitted requests that decode at once, per pool
	decoding, replicaDecoding *DecodeGate
}

// NewInstanceLimiter returns a limiter; usage may be nil, reg too.
func NewInstanceLimiter(l InstanceLimits, usage Usage, reg prometheus.Registerer) *InstanceLimiter {
	il := &InstanceLimiter{limits: l, usage: usage, refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hearth_instance_limits_refused_total", Help: "Writes refused (503) by an instance limit, per limit.",
	}, []string{"limit"}), decoding: NewDecodeGate(l.MaxConcurrentDecodes), replicaDecoding: NewDecodeGate(l.MaxConcurrentDecodes)}
	g := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	if reg != nil {
		reg.MustRegister(il.refused,
			g("hearth_inflight_push_requests", "Push requests and replica appends in flight.", func() float64 { return float64(il.inflight.Load() + il.replicaInflight.Load()) }),
			g("hearth_inflight_push_requests_bytes", "Bytes of push request bodies (and replica appends) in flight.", func() float64 { return float64(il.inflightBytes.Load() + il.replicaBytes.Load()) }),
			g("hearth_push_decoding_requests", "Push requests and replica appends decoding and storing their profiles (at most ingester.instance-limits.max-concurrent-decodes each).", func() float64 { return float64(il.decoding.InUse() + il.replicaDecoding.InUse()) }),
			g("hearth_ingestion_rate_profiles_per_second", "Profiles stored per second, over the last second.", func() float64 { return il.rate.Rate(time.Now()) }),
		)
		for _, lim := range []string{"max-inflight-push-requests", "max-inflight-push-requests-bytes", "max-ingestion-rate", "max-series", "max-tenants"} {
			il.refused.WithLabelValues(lim)
		}
	}
	return il
}

// drainBytes: a refused body up to this size is read and thrown away (32 KiB
// at a time, never held) so the client gets the answer on a live connection;
// a larger one is left unread and the connection closed after the answer.
const drainBytes = 8 << 20

// Wrap checks the in-flight limits, the ingestion rate, the series and, when
// the tenant is in the header (tenantHeader), the tenants limit, before h reads
// the body; a refusal is written by write, in the caller's protocol.
//
// A handler with tenantHeader (push.v1, /ingest, OTLP: the front door) is
// counted in the front-door pool, one without (replica appends from peers) in
// a pool of its own, twice as large: a push admitted at the front door holds
// its slot while its replicas are written, so replica appends sharing its
// pool would be refused by the very pushes waiting for them, and under
// overload a ring would acknowledge nothing. Twice: what the two peers of an
// RF 3 ring send at once under their own front-door limits.
func (il *InstanceLimiter) Wrap(h http.Handler, tenantHeader, multitenancy bool, write func(http.ResponseWriter, *http.Request, *connect.Error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, b, lim, limBytes, what, gate := &il.inflight, &il.inflightBytes, il.limits.MaxInflightPushRequests, il.limits.MaxInflightPushRequestsBytes, "push requests", il.decoding
		if !tenantHeader {
			n, b, lim, limBytes, what, gate = &il.replicaInflight, &il.replicaBytes, 2*lim, 2*limBytes, "replica appends from its peers", il.replicaDecoding
		}
		release, err := il.admitIn(n, b, lim, limBytes, what, r.ContentLength)
		if err == nil {
			defer release()
			t := ""
			if tenantHeader {
				t, _ = tenant.FromHeader(r.Header, multitenancy) // a bad header is the handler's to answer
			}
			err = il.checkUsage(t)
		}
		if err != nil {
			if r.ContentLength >= 0 && r.ContentLength <= drainBytes {
				_, _ = io.Copy(io.Discard, r.Body)
			}
			write(w, r, connect.NewError(connect.CodeUnavailable, err))
			return
		}
		if r.ContentLength < 0 && limBytes > 0 {
			cb := &countingBody{ReadCloser: r.Body, n: b}
			r.Body = cb
			defer func() { b.Add(-cb.read.Load()) }()
		}
		h.ServeHTTP(w, r.WithContext(WithDecodeGate(r.Context(), gate)))
	})
}

// admit takes a front-door request in flight; size is its body's length (-1:
// unknown: refused only when the bytes in flight are already at the limit,
// then counted as read).
func (il *InstanceLimiter) admit(size int64) (release func(), err error) {
	return il.admitIn(&il.inflight, &il.inflightBytes, il.limits.MaxInflightPushRequests, il.limits.MaxInflightPushRequestsBytes, "push requests", size)
}

// admitIn is admit in the pool of counters inflight and inflightBytes.
func (il *InstanceLimiter) admitIn(inflight, inflightBytes *atomic.Int64, maxN int, maxBytes int64, what string, size int64) (release func(), err error) {
	n := inflight.Add(1)
	if maxN > 0 && n > int64(maxN) {
		inflight.Add(-1)
		return nil, il.refuse("max-inflight-push-requests", fmt.Sprintf("this ingester already handles %d %s, its limit", maxN, what))
	}
	reserved := max(size, 0)
	b := inflightBytes.Add(reserved)
	// One request alone always passes: its size is the body limits' business.
	if maxBytes > 0 && b > maxBytes && b != reserved {
		inflightBytes.Add(-reserved)
		inflight.Add(-1)
		return nil, il.refuse("max-inflight-push-requests-bytes", fmt.Sprintf("this ingester already has %d bytes of %s in flight, its limit is %d", b-reserved, what, maxBytes))
	}
	if lim := il.limits.MaxIngestionRate; lim > 0 {
		if rate := il.rate.Rate(time.Now()); rate > lim {
			inflightBytes.Add(-reserved)
			inflight.Add(-1)
			return nil, il.refuse("max-ingestion-rate", fmt.Sprintf("this ingester stores %.0f profiles/s, above its limit of %.0f", rate, lim))
		}
	}
	return func() { inflightBytes.Add(-reserved); inflight.Add(-1) }, nil
}

// checkUsage checks the series limit, and with a tenant the tenants limit.
func (il *InstanceLimiter) checkUsage(t string) error {
	if il.usage == nil || (il.limits.MaxSeries <= 0 && il.limits.MaxTenants <= 0) {
		return nil
	}
	tenants, series := il.usage.Usage()
	if lim := il.limits.MaxSeries; lim > 0 && series >= lim {
		return il.refuse("max-series", fmt.Sprintf("this ingester holds %d active series, its limit", series))
	}
	if lim := il.limits.MaxTenants; t != "" && lim > 0 && tenants >= lim && !il.usage.HasTenant(t) {
		return il.refuse("max-tenants", fmt.Sprintf("this ingester holds %d tenants, its limit, and tenant %q is not one of them", tenants, t))
	}
	return nil
}

func (il *InstanceLimiter) refuse(limit, msg string) error {
	il.refused.WithLabelValues(limit).Inc()
	return &InstanceLimitError{Limit: limit, Msg: msg}
}

// Appender wraps the local store: every local append (a push's own share and
// replica appends from peers) is checked against the series and tenants
// limits and counted in the ingestion rate.
func (il *InstanceLimiter) Appender(a Appender) Appender { return limitedAppender{a, il} }

type limitedAppender struct {
	Appender
	il *InstanceLimiter
}

func (l limitedAppender) Append(ctx context.Context, t string, ps []Profile) error {
	if err := l.il.checkUsage(t); err != nil {
		return err
	}
	if err := l.Appender.Append(ctx, t, ps); err != nil {
		return err
	}
	l.il.rate.Add(time.Now(), len(ps))
	return nil
}

// countingBody counts a body of unknown length in the bytes in flight as it
// is read; Wrap gives them back when the handler returns.
type countingBody struct {
	io.ReadCloser
	n    *atomic.Int64
	read atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.read.Add(int64(n))
	c.n.Add(int64(n))
	return n, err
}

// rateMeter is events per second over the last whole second.
type rateMeter struct {
	mu        sync.Mutex
	second    int64 // unix second being counted
	cur, prev int
}

func (m *rateMeter) roll(now time.Time) {
	s := now.Unix()
	switch {
	case s == m.second:
	case s == m.second+1:
		m.prev, m.cur, m.second = m.cur, 0, s
	default:
		m.prev, m.cur, m.second = 0, 0, s
	}
}

func (m *rateMeter) Add(now time.Time, n int) {
	m.mu.Lock()
	m.roll(now)
	m.cur += n
	m.mu.Unlock()
}

// Rate is the last whole second's count, or the current second's when it is
// already higher (a burst is seen within the second).
func (m *rateMeter) Rate(now time.Time) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.roll(now)
	return float64(max(m.prev, m.cur))
}
