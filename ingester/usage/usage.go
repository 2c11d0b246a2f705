// Package usage counts what each tenant sends to the front door: profiles
// and bytes received, and those discarded by reason, per tenant and profile
// type, and per usage group (validation.UsageGroups), under Pyroscope's
// names and labels with the hearth_ prefix. A tenant that stops pushing has
// its series deleted after a while (Cleanup), so /metrics does not grow with
// every tenant ever seen.
//
// What counts: every push request whose tenant is known, counted once, when
// it is answered (Request.End). Received counts every profile of it, stored
// or not; discarded the ones refused, by reason, so stored = received −
// discarded. A profile's bytes are its decompressed size when it was decoded
// that far, else its bytes as received. Replica appends from peers are not
// counted: the ingester that took the push did.
package usage

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/validation"
)

// UnknownType is the type label of a profile refused before its type was
// known (a body that does not decode, a format the ingester does not read).
const UnknownType = "unknown"

// DefaultInactiveTimeout: a tenant's series are deleted once it has sent
// nothing for this long (Mimir's and Pyroscope's 15 minutes for per-tenant
// series of inactive tenants).
const DefaultInactiveTimeout = 15 * time.Minute

// Metrics are the usage counters of one process.
type Metrics struct {
	receivedProfiles, receivedCompressed, receivedDecompressed *prometheus.CounterVec
	discardedProfiles, discardedBytes                          *prometheus.CounterVec
	groupReceived, groupDiscarded                              *prometheus.CounterVec

	mu       sync.Mutex
	lastSeen map[string]time.Time // tenant → its last request's end
}

// NewMetrics returns the counters, registered with reg (may be nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	c := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	m := &Metrics{
		receivedProfiles: c("hearth_received_profiles_total",
			"Profiles received, stored or discarded, per tenant and profile type (__name__).", "tenant", "type"),
		receivedCompressed: c("hearth_received_compressed_bytes_total",
			"Bytes received as sent (maybe compressed), per tenant and type: the profile type for push.v1 and /ingest pprof, the format for the others (jfr, otel, ...).", "tenant", "type"),
		receivedDecompressed: c("hearth_received_decompressed_bytes_total",
			"Decompressed bytes of the profiles received, stored or discarded, per tenant and profile type.", "tenant", "type"),
		discardedProfiles: c("hearth_discarded_profiles_total",
			"Profiles discarded, per tenant and reason.", "reason", "tenant"),
		discardedBytes: c("hearth_discarded_bytes_total",
			"Decompressed bytes of the profiles discarded, per tenant and reason.", "reason", "tenant"),
		groupReceived: c("hearth_usage_group_received_decompressed_total",
			"Decompressed bytes of the profiles received, per tenant, usage group (distributor_usage_groups; other: none matched) and profile type.", "type", "tenant", "usage_group"),
		groupDiscarded: c("hearth_usage_group_discarded_bytes_total",
			"Decompressed bytes of the profiles discarded, per tenant, usage group and reason.", "reason", "tenant", "usage_group"),
		lastSeen: map[string]time.Time{},
	}
	if reg != nil {
		reg.MustRegister(m.vecs()...)
	}
	return m
}

func (m *Metrics) vecs() []prometheus.Collector {
	return []prometheus.Collector{m.receivedProfiles, m.receivedCompressed, m.receivedDecompressed,
		m.discardedProfiles, m.discardedBytes, m.groupReceived, m.groupDiscarded}
}

// Request is one push request as the front door saw it: its profiles, added
// as they are found, and updated as they are decoded. Not safe for
// concurrent use; End counts it, once.
type Request struct {
	m      *Metrics
	tenant string
	groups *validation.UsageGroups
	// format, when set, is the type label of the request's compressed bytes,
	// counted once (formats whose one body carries several profiles).
	format   string
	received int // the request's bytes as received
	items    []*Item
	ended    bool
}

// Item is one profile of a request.
type Item struct {
	// Labels are its series labels as far as known: the request's, then the
	// series' once built (usage groups and the type label match them).
	Labels model.Labels
	// Compressed is the profile's bytes as received (push.v1, /ingest pprof).
	Compressed int
	// Size is its decompressed size once decoded (0: Compressed is used).
	Size int
}

// Begin starts counting a request of tenant t, whose usage groups are
// groups (may be nil).
func (m *Metrics) Begin(t string, groups *validation.UsageGroups) *Request {
	return &Request{m: m, tenant: t, groups: groups}
}

// Received sets the request's bytes as received: a request refused before
// any profile was found counts them as one profile's.
func (r *Request) Received(n int) { r.received = max(n, 0) }

// SetFormat makes the request's bytes as received (Received) count once,
// under the type label format, instead of per profile (Item.Compressed).
func (r *Request) SetFormat(format string) { r.format = format }

// Add adds a profile of compressed bytes as received (0 when they are the
// request's, SetFormat) and the labels known so far.
func (r *Request) Add(labels model.Labels, compressed int) *Item {
	it := &Item{Labels: labels, Compressed: max(compressed, 0)}
	r.items = append(r.items, it)
	return it
}

// ReceivedBytes is what Received set.
func (r *Request) ReceivedBytes() int { return r.received }

// Tenant is the request's tenant.
func (r *Request) Tenant() string { return r.tenant }

// Len is the number of profiles added.
func (r *Request) Len() int { return len(r.items) }

// End counts the request: every profile received, and with a reason (""
// for a stored request) every profile discarded for it. A request that
// found no profile counts as one of UnknownType. Later calls do nothing.
func (r *Request) End(reason string, now time.Time) {
	if r.ended {
		return
	}
	r.ended = true
	m := r.m
	if len(r.items) == 0 && reason != "" {
		r.Add(nil, r.received)
	}
	if r.format != "" {
		m.receivedCompressed.WithLabelValues(r.tenant, r.format).Add(float64(r.received))
	}
	discarded := 0
	for _, it := range r.items {
		typ := it.Labels.Get(model.LabelProfileName)
		if typ == "" {
			typ = UnknownType
		}
		size := it.bytes()
		m.receivedProfiles.WithLabelValues(r.tenant, typ).Inc()
		m.receivedDecompressed.WithLabelValues(r.tenant, typ).Add(float64(size))
		if r.format == "" {
			m.receivedCompressed.WithLabelValues(r.tenant, typ).Add(float64(it.Compressed))
		}
		groups := r.groups.Match(it.Labels)
		for _, g := range groups {
			m.groupReceived.WithLabelValues(typ, r.tenant, g).Add(float64(size))
		}
		if reason != "" {
			discarded += size
			for _, g := range groups {
				m.groupDiscarded.WithLabelValues(reason, r.tenant, g).Add(float64(size))
			}
		}
	}
	if reason != "" {
		m.discardedProfiles.WithLabelValues(reason, r.tenant).Add(float64(len(r.items)))
		m.discardedBytes.WithLabelValues(reason, r.tenant).Add(float64(discarded))
	}
	m.mu.Lock()
	m.lastSeen[r.tenant] = now
	m.mu.Unlock()
}

// bytes is the profile's size for the byte counters: decompressed when
// known, else as received.
func (it *Item) bytes() int {
	if it.Size > 0 {
		return it.Size
	}
	return it.Compressed
}

// Cleanup deletes the series of every tenant whose last request ended
// before now-inactive, and returns those tenants. A request in flight for
// such a tenant creates its series again when it ends.
func (m *Metrics) Cleanup(now time.Time, inactive time.Duration) []string {
	m.mu.Lock()
	var gone []string
	for t, seen := range m.lastSeen {
		if now.Sub(seen) > inactive {
			gone = append(gone, t)
			delete(m.lastSeen, t)
		}
	}
	m.mu.Unlock()
	for _, t := range gone {
		for _, v := range m.vecs() {
			v.(*prometheus.CounterVec).DeletePartialMatch(prometheus.Labels{"tenant": t})
		}
	}
	return gone
}

// CleanupInterval is how often the push handler's cleanup looks for inactive tenants.
const CleanupInterval = 3 * time.Minute
