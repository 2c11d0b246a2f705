// Package head keeps recent profiles in memory, per tenant: a series index
// (by label hash and by profile type), profile rows with their samples encoded, and the tenant's
// deduplicated symbols. Tenants never wait on each other; a query holds a
// tenant's read lock only while it copies the slice headers it needs, since
// rows and symbols are append-only.
package head

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/symdb"
)

// ProfileID identifies a pushed profile; replicas and retries share it.
type ProfileID [16]byte

// Profile is one stored row: one series' share of one pushed profile.
type Profile struct {
	ID        ProfileID
	TimeNanos int64
	Total     int64  // sum of the values
	Samples   []byte // EncodeSamples
}

type series struct {
	ref      uint32
	packing  bool          // a push is packing this series' full blocks
	labels   model.Labels  // exact size, strings interned in the tenant
	next     *series       // the next series whose labels have the same hash
	profiles []Profile     // samples nil for the rows of packed blocks
	packed   []packedBlock // rows [b*PackRows, (b+1)*PackRows), compressed
	aggs     []chunkAgg    // per full chunk of AggregateRows profiles, once merged
	minT     int64
	maxT     int64
}

// seriesBytes is a series' memory besides its labels' strings and rows: the
// struct, its label slice (per label), its index entries.
const (
	seriesBytes        = 128 + 32 // struct, byHash entry
	seriesLabelBytes   = 32
	seriesTypeRefBytes = 8       // byType ref, with the slice's spare capacity
	internedStrBytes   = 16 + 48 // an interned string's header and its strs entry
	rowBytes           = 56 + 16 // a Profile in a series' slice, with its spare capacity
	bigRowKeyBytes     = 40      // a bigRows entry
)

type rowKey struct {
	id  ProfileID
	ref uint32
}

// dedupScanRows is how many rows a series checks one by one for a row's id
// (a retry's or a replica's copy); a series with more has its row ids in
// Tenant.bigRows. An hour of pushes every 10 s is 360 rows: a fleet of
// small series never pays for the map, whose entries cost about as much as
// the rows themselves.
const dedupScanRows = 512

// ErrSeriesLimit is returned when a push would create more active series than the tenant may have.
var ErrSeriesLimit = errors.New("series limit")

// SeriesLimitError names the limit and the tenant.
type SeriesLimitError struct {
	Tenant string
	Limit  int
}

func (e *SeriesLimitError) Error() string {
	return fmt.Sprintf("tenant %q reached its limit of %d active series (limits.max-series-per-tenant)", e.Tenant, e.Limit)
}

func (e *SeriesLimitError) Unwrap() error { return ErrSeriesLimit }

// Tenant is one tenant's head.
type Tenant struct {
	name string
	syms *symdb.Symbols

	mu     sync.RWMutex
	byHash map[uint64]*series  // label hash → series (then series.next)
	series []*series           // by ref
	byType map[string][]uint32 // profile type id → refs (ascending)
	strs   map[string]string   // the series labels' names and values, interned
	// The row ids of the series with more than dedupScanRows rows.
	bigRows  map[rowKey]struct{}
	minT     int64
	maxT     int64
	profiles int64
	samples  int64

	rowBytes atomic.Int64
}

// Options configure a Head.
type Options struct {
	MaxSeriesPerTenant int // 0: unlimited
	// MaxSeriesFor, when set, replaces MaxSeriesPerTenant with the tenant's
	// current limit (runtime overrides), asked at each append.
	MaxSeriesFor func(tenant string) int
	Metrics      *Metrics // nil: unregistered
}

// Metrics are the head gauges, shared by the heads that follow each other.
type Metrics struct {
	bytesGauge    *prometheus.GaugeVec
	seriesGauge   *prometheus.GaugeVec
	profilesGauge *prometheus.GaugeVec
}

func (h *Head) seriesLimit(tenant string) int {
	if h.opts.MaxSeriesFor != nil {
		return h.opts.MaxSeriesFor(tenant)
	}
	return h.opts.MaxSeriesPerTenant
}

// Head holds every tenant's head.
type Head struct {
	opts    Options
	mu      sync.RWMutex
	tenants map[string]*Tenant
	noPack  bool // tests: keep every row unpacked, as a reference
	*Metrics
}

// New returns an empty head.
func New(opts Options) *Head {
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	return &Head{opts: opts, tenants: map[string]*Tenant{}, Metrics: opts.Metrics}
}

// NewMetrics creates the head gauges, registered with reg when not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	h := &Metrics{
		bytesGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hearth_head_bytes", Help: "Approximate memory held by the head, per tenant (rows and symbols).",
		}, []string{"tenant"}),
		seriesGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hearth_head_series", Help: "Active series in the head, per tenant.",
		}, []string{"tenant"}),
		profilesGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hearth_head_profiles", Help: "Profile rows in the head, per tenant.",
		}, []string{"tenant"}),
	}
	if reg != nil {
		reg.MustRegister(h.bytesGauge, h.seriesGauge, h.profilesGauge)
	}
	return h
}

// Tenant returns the tenant's head, or nil when it has none.
func (h *Head) Tenant(name string) *Tenant {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.tenants[name]
}

// Drop forgets everything the head holds of a tenant (a tenant deletion).
// The caller excludes concurrent commits (the store's write lock).
func (h *Head) Drop(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.tenants[name]
	delete(h.tenants, name)
	return ok
}

// Tenants lists the tenants with data, sorted.
func (h *Head) Tenants() []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return slices.Sorted(maps.Keys(h.tenants))
}

func (h *Head) tenant(name string) *Tenant {
	if t := h.Tenant(name); t != nil {
		return t
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := h.tenants[name]; t != nil {
		return t
	}
	t := &Tenant{
		name: name, syms: symdb.New(), byHash: map[uint64]*series{},
		byType: map[string][]uint32{}, strs: map[string]string{}, bigRows: map[rowKey]struct{}{},
		minT: 1<<63 - 1, maxT: -1 << 63,
	}
	h.tenants[name] = t
	return t
}

// AppendResult says what a push added.
type AppendResult struct {
	Rows, Samples, NewSeries int
	Duplicates               int // rows already present (a retry or a replica's copy)
}

// Append stores a decoded profile under the series labels (which carry
// __name__ and service_name): Prepare, then Commit. The profile is split by
// sample type and by sample label set. Validation happens before; Append
// only refuses what it cannot store (dangling references, the series limit).
func (h *Head) Append(tenant string, id ProfileID, labels model.Labels, p *googlev1.Profile, timeNanos int64) (AppendResult, error) {
	pp, err := Prepare(labels, p)
	if err != nil {
		return AppendResult{}, err
	}
	return h.Commit(tenant, id, pp, timeNanos)
}

// Commit appends a prepared profile: it interns the profile's symbols (under
// the tenant's symbol lock), then adds its rows (under the tenant's lock),
// skipping a row whose profile id the series already holds. It refuses only
// a push that would exceed the series limit (whose symbols stay interned).
func (h *Head) Commit(tenant string, id ProfileID, pp *Prepared, timeNanos int64) (AppendResult, error) {
	if pp.syms == nil {
		return AppendResult{}, errors.New("head: a prepared profile committed twice")
	}
	t := h.tenant(tenant)
	var res AppendResult

	t.syms.Lock()
	ids := t.syms.Intern(pp.syms, make([]uint32, 0, pp.syms.Stacks()))
	symAfter := t.syms.BytesLocked()
	t.syms.Unlock()
	// Intern copied what the tables keep: the keys' memory goes to the next push.
	pp.syms.Release()
	pp.syms = nil
	rows := pp.buildRows(ids)

	t.mu.Lock()
	// Check the series limit for the whole push before changing anything.
	if lim := h.seriesLimit(tenant); lim > 0 {
		newSeries := 0
		for i := range rows {
			if t.lookup(rows[i].labels, rows[i].hash) == nil {
				newSeries++
			}
		}
		if newSeries > 0 && len(t.series)+newSeries > lim {
			t.mu.Unlock()
			return res, &SeriesLimitError{Tenant: tenant, Limit: lim}
		}
	}
	var added int64
	var chunks []chunkJob
	var packs []*series
	for i := range rows {
		r := &rows[i]
		s := t.lookup(r.labels, r.hash)
		if s == nil {
			var b int64
			s, b = t.addSeries(r.labels, r.hash)
			res.NewSeries++
			added += b
		}
		if t.hasRow(s, id) {
			res.Duplicates++
			continue
		}
		enc := EncodeSamples(make([]byte, 0, 4*len(r.stacks)+8), r.stacks, r.values)
		enc = AppendSpans(enc, r.spans)
		s.profiles = append(s.profiles, Profile{ID: id, TimeNanos: timeNanos, Total: r.total, Samples: enc})
		added += t.addedRow(s, id)
		n := len(s.profiles)
		if n%AggregateRows == 0 {
			chunks = append(chunks, chunkJob{s: s, k: n/AggregateRows - 1, all: s.profiles, packed: s.packed})
		}
		if !s.packing && !h.noPack && n >= (len(s.packed)+1)*PackRows {
			s.packing = true
			packs = append(packs, s)
		}
		s.minT = min(s.minT, timeNanos)
		s.maxT = max(s.maxT, timeNanos)
		t.minT = min(t.minT, timeNanos)
		t.maxT = max(t.maxT, timeNanos)
		t.profiles++
		t.samples += int64(r.samples)
		res.Rows++
		res.Samples += r.samples
		added += int64(cap(enc)) + rowBytes
	}
	nSeries, nProfiles := len(t.series), t.profiles
	t.mu.Unlock()
	if len(chunks) > 0 {
		added += t.aggregate(chunks)
	}
	if len(packs) > 0 {
		added += t.pack(packs)
	}

	total := t.rowBytes.Add(added) + symAfter
	h.bytesGauge.WithLabelValues(tenant).Set(float64(total))
	h.seriesGauge.WithLabelValues(tenant).Set(float64(nSeries))
	h.profilesGauge.WithLabelValues(tenant).Set(float64(nProfiles))
	return res, nil
}

func (t *Tenant) lookup(ls model.Labels, hash uint64) *series {
	for s := t.byHash[hash]; s != nil; s = s.next {
		if s.labels.Equal(ls) {
			return s
		}
	}
	return nil
}

// addSeries adds a series; it returns it and the bytes it took.
func (t *Tenant) addSeries(ls model.Labels, hash uint64) (*series, int64) {
	bytes := int64(seriesBytes + seriesLabelBytes*len(ls) + seriesTypeRefBytes)
	// An exact-size copy of the labels (Prepare's have spare capacity) whose
	// strings are the tenant's: a fleet's series repeat most of their names
	// and values (service, namespace, region, the profile type labels), and
	// the pushes' strings are not kept (nor the buffers they may be part of).
	own := make(model.Labels, len(ls))
	for i, l := range ls {
		own[i].Name = t.intern(l.Name, &bytes)
		own[i].Value = t.intern(l.Value, &bytes)
	}
	s := &series{ref: uint32(len(t.series)), labels: own, minT: 1<<63 - 1, maxT: -1 << 63}
	t.series = append(t.series, s)
	s.next = t.byHash[hash]
	t.byHash[hash] = s
	ptype := own.Get(model.LabelProfileType)
	t.byType[ptype] = append(t.byType[ptype], s.ref)
	return s, bytes
}

// intern returns the tenant's copy of str, adding one (and its bytes) when
// it has none.
func (t *Tenant) intern(str string, bytes *int64) string {
	if v, ok := t.strs[str]; ok {
		return v
	}
	v := strings.Clone(str)
	t.strs[v] = v
	*bytes += int64(len(v)) + internedStrBytes
	return v
}

// hasRow reports whether s holds a row with id (the caller holds t.mu).
func (t *Tenant) hasRow(s *series, id ProfileID) bool {
	if len(s.profiles) > dedupScanRows {
		_, ok := t.bigRows[rowKey{id: id, ref: s.ref}]
		return ok
	}
	for i := range s.profiles {
		if s.profiles[i].ID == id {
			return true
		}
	}
	return false
}

// addedRow keeps bigRows up to date after a row with id was appended to s;
// it returns the bytes that took.
func (t *Tenant) addedRow(s *series, id ProfileID) int64 {
	switch n := len(s.profiles); {
	case n == dedupScanRows+1: // from now on hasRow asks the map
		for i := range s.profiles {
			t.bigRows[rowKey{id: s.profiles[i].ID, ref: s.ref}] = struct{}{}
		}
		return int64(n) * bigRowKeyBytes
	case n > dedupScanRows+1:
		t.bigRows[rowKey{id: id, ref: s.ref}] = struct{}{}
		return bigRowKeyBytes
	}
	return 0
}

// Bytes is the tenant head's approximate memory.
func (t *Tenant) Bytes() int64 { return t.rowBytes.Load() + t.syms.Bytes() }

// Bytes is the whole head's approximate memory.
func (h *Head) Bytes() int64 {
	var n int64
	for _, name := range h.Tenants() {
		n += h.Tenant(name).Bytes()
	}
	return n
}

// Stats summarise a tenant's head.
type Stats struct {
	Series, Profiles, Samples int64
	MinTime, MaxTime          int64 // nanoseconds
	Bytes                     int64
}

// Stats returns the tenant's counts.
func (t *Tenant) Stats() Stats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return Stats{Series: int64(len(t.series)), Profiles: t.profiles, Samples: t.samples, MinTime: t.minT, MaxTime: t.maxT, Bytes: t.Bytes()}
}

// Forget zeroes a tenant's gauges (its head was cut and is now a block).
func (m *Metrics) Forget(tenant string) {
	m.bytesGauge.DeleteLabelValues(tenant)
	m.seriesGauge.DeleteLabelValues(tenant)
	m.profilesGauge.DeleteLabelValues(tenant)
}

// Empty reports whether the head holds no rows.
func (h *Head) Empty() bool {
	for _, t := range h.Tenants() {
		if h.Tenant(t).Stats().Profiles > 0 {
			return false
		}
	}
	return true
}
