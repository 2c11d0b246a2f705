// Package distributor replicates pushes: every profile goes to the
// replication_factor owners of its series (tenant + sorted labels) on the
// ring, and a push succeeds when a quorum of each profile's owners has
// acknowledged it. The owner that is this instance is called in-process;
// the others over POST /internal/v1/append on their HTTP port.
//
// A profile's ID is fixed before the fan-out, so replicas and retries
// deduplicate exactly (the head keeps one row per (ID, series)).
package distributor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/record"
	"github.com/hearth-dev/hearth/ingester/ring"
	"github.com/hearth-dev/hearth/ingester/transport"
)

// Options configure a Distributor.
type Options struct {
	Ring  Ring
	Self  string        // this instance's ring ID: its writes go to Local in-process
	Local push.Appender // this instance's store
	// Client calls the other instances (nil: a pooled HTTP/1.1 client).
	Client *http.Client
	// Scheme of the other instances' internal addresses: "https" when Client
	// dials TLS (-ingester.client.tls-enabled), "" or "http" otherwise.
	Scheme string
	// ReplicaTimeout bounds one replica's write (0: 10s). A replica still
	// writing when its push reached quorum finishes in the background.
	ReplicaTimeout time.Duration
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
}

// Distributor implements push.Appender over the ring.
type Distributor struct {
	opts     Options
	log      *slog.Logger
	client   *http.Client
	inflight sync.WaitGroup
	m        *metrics
}

var _ push.Appender = (*Distributor)(nil)

type metrics struct {
	writes    *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	tolerated prometheus.Counter
	quorum    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_distributor_replica_writes_total", Help: "Writes to replicas, by target (local, remote) and result (ok, error).",
		}, []string{"target", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hearth_distributor_replica_write_duration_seconds", Help: "Time of one replica write, by target (local, remote).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 3, 10),
		}, []string{"target"}),
		tolerated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hearth_distributor_tolerated_replica_failures_total", Help: "Replica writes that failed while their push still reached quorum.",
		}),
		quorum: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hearth_distributor_quorum_failures_total", Help: "Pushes refused because a profile did not reach quorum.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.writes, m.duration, m.tolerated, m.quorum)
	}
	return m
}

// New returns a distributor.
func New(opts Options) *Distributor {
	if opts.ReplicaTimeout <= 0 {
		opts.ReplicaTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	d := &Distributor{opts: opts, log: opts.Logger, client: opts.Client, m: newMetrics(opts.Registerer)}
	if d.client == nil {
		d.client = transport.DefaultClient()
	}
	return d
}

// Drain waits for replica writes still running after their push returned.
// Call it once no new pushes start (after the HTTP server stopped).
func (d *Distributor) Drain() { d.inflight.Wait() }

// item is one profile's replication state.
type item struct {
	rs      ReplicationSet
	pending []Instance
	failed  []Instance
	errs    []error // parallel to failed
}

func (it *item) answer(in Instance, err error) {
	for i, p := range it.pending {
		if p.ID == in.ID {
			it.pending = append(it.pending[:i:i], it.pending[i+1:]...)
			break
		}
	}
	if err != nil {
		it.failed = append(it.failed, in)
		it.errs = append(it.errs, err)
	}
}

// succeeded: even if every pending owner failed, the set would be fine.
func (it *item) succeeded() bool {
	return it.rs.Tolerates(append(it.failed[:len(it.failed):len(it.failed)], it.pending...))
}

func (it *item) hasFailed() bool { return !it.rs.Tolerates(it.failed) }

// target is one instance and the profiles it owns among a push's.
type target struct {
	in   Instance
	idx  []int
	body []byte // remote: the encoded record
}

type result struct {
	t   *target
	err error
}

// Append implements push.Appender.
func (d *Distributor) Append(ctx context.Context, tenant string, ps []push.Profile) error {
	if len(ps) == 0 {
		return nil
	}
	items := make([]item, len(ps))
	targets := map[string]*target{}
	var order []*target
	sets := map[uint32]ReplicationSet{}
	for i := range ps {
		tok := ring.TokenFor(tenant, ps[i].Labels)
		rs, ok := sets[tok]
		if !ok {
			var err error
			if rs, err = d.opts.Ring.ReplicationSet(tok); err != nil {
				return connect.NewError(connect.CodeUnavailable, fmt.Errorf("finding the replicas of series %s: %w", ps[i].Labels, err))
			}
			if len(rs.Instances) == 0 {
				return connect.NewError(connect.CodeUnavailable, fmt.Errorf("no healthy replica owns series %s", ps[i].Labels))
			}
			sets[tok] = rs
		}
		items[i] = item{rs: rs, pending: append([]Instance(nil), rs.Instances...)}
		for _, in := range rs.Instances {
			t := targets[in.ID]
			if t == nil {
				t = &target{in: in}
				targets[in.ID] = t
				order = append(order, t)
			}
			t.idx = append(t.idx, i)
		}
	}

	// Encode the remote bodies now: they copy the raw bytes, so replica
	// writes that outlive this call do not touch the caller's memory.
	var shared []byte // the body of targets that own every profile
	for _, t := range order {
		if t.in.ID == d.opts.Self {
			continue
		}
		if len(t.idx) == len(ps) && shared != nil {
			t.body = shared
			continue
		}
		entries := make([]record.Entry, len(t.idx))
		for j, i := range t.idx {
			p := &ps[i]
			entries[j] = record.Entry{ID: p.ID, TimeNanos: p.TimeNanos, Labels: p.Labels, Raw: p.Raw}
		}
		t.body = record.Encode(tenant, entries)
		if len(t.idx) == len(ps) {
			shared = t.body
		}
	}

	results := make(chan result, len(order))
	var local *target
	for _, t := range order {
		if t.in.ID == d.opts.Self {
			local = t
			go func() {
				results <- result{t, d.appendLocal(ctx, tenant, ps, t.idx)}
			}()
			continue
		}
		d.inflight.Add(1)
		go func() {
			defer d.inflight.Done()
			results <- result{t, d.appendRemote(context.WithoutCancel(ctx), t)}
		}()
	}

	received := 0
	localDone := local == nil
	var failedItem *item
	var failedTargets int
	canceled := false
	for received < len(order) && !canceled {
		var r result
		select {
		case r = <-results:
		case <-ctx.Done():
			canceled = true
			continue
		}
		received++
		if r.t == local {
			localDone = true
		}
		if r.err != nil {
			failedTargets++
		}
		for _, i := range r.t.idx {
			items[i].answer(r.t.in, r.err)
			if failedItem == nil && items[i].hasFailed() {
				failedItem = &items[i]
			}
		}
		if failedItem != nil {
			break
		}
		if allSucceeded(items) && localDone {
			break
		}
	}
	// The local write (which reads the caller's profiles) is always awaited.
	for !localDone {
		r := <-results
		received++
		if r.err != nil {
			failedTargets++
		}
		localDone = r.t == local
	}
	ok := failedItem == nil && allSucceeded(items)
	if ok {
		d.m.tolerated.Add(float64(failedTargets))
	} else if failedItem != nil {
		d.m.quorum.Inc()
	}
	if rest := len(order) - received; rest > 0 {
		// Stragglers finish in the background; their failures are counted.
		d.inflight.Add(1)
		go func() {
			defer d.inflight.Done()
			for range rest {
				if r := <-results; r.err != nil && ok {
					d.m.tolerated.Inc()
				}
			}
		}()
	}
	if ok {
		return nil
	}
	if failedItem == nil {
		return ctx.Err()
	}
	return quorumError(failedItem)
}

func allSucceeded(items []item) bool {
	for i := range items {
		if !items[i].succeeded() {
			return false
		}
	}
	return true
}

// isClientError reports whether a replica refused the write for the data
// itself (a limit, invalid input): every replica would refuse it the same.
func isClientError(err error) bool {
	code, _ := push.Classify(err)
	switch code {
	case connect.CodeInvalidArgument, connect.CodeResourceExhausted, connect.CodeFailedPrecondition,
		connect.CodeOutOfRange, connect.CodePermissionDenied, connect.CodeUnauthenticated,
		connect.CodeNotFound, connect.CodeAlreadyExists:
		return true
	}
	return false
}

// quorumError explains a profile that did not reach quorum. When the
// replicas that refused it for a client error are themselves too many, that
// error goes back as is (with its code); otherwise Unavailable.
func quorumError(it *item) error {
	var clientFailed []Instance
	var firstClient error
	for i, err := range it.errs {
		if isClientError(err) {
			clientFailed = append(clientFailed, it.failed[i])
			if firstClient == nil {
				firstClient = err
			}
		}
	}
	if firstClient != nil && !it.rs.Tolerates(clientFailed) {
		return firstClient
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d replicas failed", len(it.failed), len(it.rs.Instances))
	if it.rs.MaxUnavailableZones > 0 {
		fmt.Fprintf(&b, " (at most %d zone(s) may fail)", it.rs.MaxUnavailableZones)
	} else {
		fmt.Fprintf(&b, " (quorum is %d)", len(it.rs.Instances)-it.rs.MaxErrors)
	}
	b.WriteString(": ")
	// Name the replicas by id, not in the order they answered.
	order := make([]int, len(it.errs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(x, y int) bool { return it.failed[order[x]].ID < it.failed[order[y]].ID })
	for n, i := range order {
		if n == 3 {
			fmt.Fprintf(&b, "; and %d more", len(order)-n)
			break
		}
		if n > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s (%s): %v", it.failed[i].ID, it.failed[i].Addr, it.errs[i])
	}
	return connect.NewError(connect.CodeUnavailable, errors.New(b.String()))
}

func (d *Distributor) appendLocal(ctx context.Context, tenant string, ps []push.Profile, idx []int) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, d.opts.ReplicaTimeout)
	defer cancel()
	sub := ps
	if len(idx) != len(ps) {
		sub = make([]push.Profile, len(idx))
		for j, i := range idx {
			sub[j] = ps[i]
		}
	}
	err := d.opts.Local.Append(ctx, tenant, sub)
	d.observe("local", start, err)
	return err
}

func (d *Distributor) observe(target string, start time.Time, err error) {
	d.m.duration.WithLabelValues(target).Observe(time.Since(start).Seconds())
	res := "ok"
	if err != nil {
		res = "error"
	}
	d.m.writes.WithLabelValues(target, res).Inc()
}

func (d *Distributor) appendRemote(ctx context.Context, t *target) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, d.opts.ReplicaTimeout)
	defer cancel()
	err := PostAppendURL(ctx, d.client, transport.BaseURL(d.opts.Scheme, t.in.Addr), t.body)
	d.observe("remote", start, err)
	if err != nil {
		d.log.Debug("replica write failed", "instance", t.in.ID, "addr", t.in.Addr, "err", err)
	}
	return err
}
