// Package store is the ingester's storage engine: every accepted push is
// written ahead (WAL) and then appended to the head; the head is cut into
// per-tenant blocks that are shipped to the bucket, and the WAL segments a
// cut covers are deleted only once all its blocks are in the bucket.
//
// Invariants:
//   - A push is acknowledged only after its WAL record is durable (per the
//     fsync policy) and it is in the head (the two are written concurrently).
//   - A cut rotates the WAL and swaps the head under the write lock, so every
//     record before the rotation is in the frozen head and every record after
//     it is in the new one.
//   - The checkpoint file names the first WAL segment not covered by local
//     blocks: replay skips the segments before it (their data is in blocks).
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/dskit/services"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/record"
	"github.com/hearth-dev/hearth/ingester/validation"
	"github.com/hearth-dev/hearth/ingester/wal"
	"github.com/hearth-dev/hearth/internal/formatver"
)

// BlockWriter writes a tenant's frozen head as a block under dir and returns the block's id.
// The selection is head.Tenant.SelectPacked's: read rows through SeriesRows.Unpacked.
type BlockWriter func(dir, tenant string, sel head.Selection) (id string, err error)

// Shipper uploads local blocks.
type Shipper interface {
	// NotUploaded lists the ids of the local blocks not in the bucket yet.
	NotUploaded() ([]string, error)
	Enqueue(tenant, blockDir string) error
	// OverBudget says why writes must wait when more than budget bytes of
	// blocks wait for upload; nil otherwise.
	OverBudget(budget int64) error
}

// Options configure a Store.
type Options struct {
	DataDir            string
	WALPolicy          wal.Policy
	MaxBlockDuration   time.Duration
	MaxHeadBytes       int64
	MaxSeriesPerTenant int
	MaxProfileSize     int // for decoding during replay
	// TenantLimits, when set, give each tenant's series limit and replay
	// profile size instead (runtime overrides; replay takes the larger of the
	// tenant's and MaxProfileSize, so a profile accepted is replayed).
	TenantLimits validation.TenantLimits
	// ReplayWorkers is the number of goroutines decoding WAL records at start
	// (default GOMAXPROCS; 1 replays sequentially, without a pipeline).
	ReplayWorkers int
	// ReplayGCPercent is the collector's GOGC while the WAL replays, when a
	// memory limit (GOMEMLIMIT) bounds the heap and GOGC is lower: replay
	// makes much short-lived garbage (decoded profiles), so collecting less
	// often saves CPU, and the limit keeps the heap below it. Restored after.
	// 0: DefaultReplayGCPercent; negative: leave the collector alone.
	ReplayGCPercent int
	MaxPendingBytes int64 // refuse writes while more than this waits for upload (0: no limit)
	// HeadSnapshotWALBytes: Run writes a head snapshot every time this many
	// bytes of WAL were written since the last one (0: never), so that a crash
	// restart replays at most about this much WAL (snapshot.go).
	HeadSnapshotWALBytes int64
	WriteBlock           BlockWriter
	Shipper              Shipper
	// BlocksWritten is called after a cut's blocks are on local disk, before
	// the frozen head stops being queried (the local block reader must see them).
	BlocksWritten func(ctx context.Context)
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
}

type cut struct {
	end     wal.Pos             // first position after the cut
	pending map[string]struct{} // block ids not yet uploaded
}

// Store is the ingester's storage engine, a dskit service: starting replays
// the WAL into the head, running cuts the head (Run's loop), stopping refuses
// writes, syncs and closes the WAL.
type Store struct {
	services.Service

	opts Options
	log  *slog.Logger
	wal  *wal.WAL
	hm   *head.Metrics

	mu          sync.RWMutex // pushes share it; a cut and Close take it
	active      *head.Head
	activeSince atomic.Int64 // unix nanos of the first append to the active head, 0: empty
	frozen      []*frozenHead
	closed      bool            // no more writes, no more cuts: the WAL is closed
	noWrites    bool            // no more writes; cuts still work (a final stop's flush)
	opened      bool            // the WAL is replayed and open
	deleting    map[string]bool // tenants being deleted: their writes are refused (DropTenant)
	replayFrom  atomic.Uint64   // first WAL segment not covered by local blocks
	activeStart uint64          // first WAL segment of the active head's records
	appending   atomic.Int64    // Appends in flight
	lastAppend  atomic.Int64    // unix nanos at which the last Append returned

	cutMu  sync.Mutex // one cut at a time
	cutsMu sync.Mutex
	cuts   []*cut
	// uploadsKnown: cuts lists the blocks not uploaded yet (Uploaded before
	// that has nothing to do: the list is read after the marker is written).
	uploadsKnown bool

	snapMu        sync.Mutex    // one snapshot at a time
	snapKick      chan struct{} // the snapshot loop's wake-up
	unsnapshotted atomic.Int64  // WAL bytes of the active head written since its last snapshot
	snapMetrics   *snapshotMetrics
	// testAfterRotate runs in Snapshot after the WAL rotation, before the
	// head is written (tests: pushes that are both in the snapshot and after
	// its position).
	testAfterRotate func()

	cutsTotal   *prometheus.CounterVec
	cutDuration prometheus.Histogram
	replayed    prometheus.Counter
}

// Dirs under the data directory.
func (o Options) walDir() string         { return filepath.Join(o.DataDir, "wal") }
func (o Options) BlocksDir() string      { return filepath.Join(o.DataDir, "blocks") }
func (o Options) checkpointFile() string { return filepath.Join(o.DataDir, "wal", "checkpoint") }

// New builds a store; its service's starting replays the WAL (reading the
// blocks not uploaded yet from Options.Shipper).
func New(opts Options) *Store {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Store{opts: opts, log: opts.Logger, snapKick: make(chan struct{}, 1)}
	s.hm = head.NewMetrics(opts.Registerer)
	s.snapMetrics = newSnapshotMetrics(opts.Registerer)
	s.cutsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hearth_head_cuts_total", Help: "Head cuts into blocks, by reason.",
	}, []string{"reason"})
	s.cutDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "hearth_head_cut_duration_seconds", Help: "Time to write a cut's blocks.", Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10),
	})
	s.replayed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hearth_wal_replayed_profiles_total", Help: "Profiles restored from the WAL at start.",
	})
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(s.cutsTotal, s.cutDuration, s.replayed)
	}
	s.active = s.newHead()
	s.Service = services.NewBasicService(s.starting, s.running, s.stopping).WithName("store")
	return s
}

// Open replays the WAL into a fresh head and opens it for appending, without
// the service (no cut loop). startupPending lists the local blocks not yet
// uploaded (their WAL segments are deleted once they are).
func Open(opts Options, startupPending []string) (*Store, error) {
	s := New(opts)
	if err := s.open(func() ([]string, error) { return startupPending, nil }); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) starting(context.Context) error {
	pending := func() ([]string, error) { return nil, nil }
	if s.opts.Shipper != nil {
		pending = s.opts.Shipper.NotUploaded
	}
	return s.open(pending)
}

func (s *Store) running(ctx context.Context) error { return s.Run(ctx) }

func (s *Store) stopping(error) error { return s.Close() }

// open replays the WAL and opens it for appending.
func (s *Store) open(notUploaded func() ([]string, error)) error {
	opts := s.opts
	walMetrics := wal.NewMetrics(opts.Registerer)
	if err := os.MkdirAll(opts.walDir(), 0o755); err != nil {
		return err
	}
	checkpoint, err := wal.ReadCheckpoint(opts.checkpointFile())
	if err != nil {
		return err
	}
	snap := s.loadSnapshot(checkpoint)
	if snap != nil {
		s.active = snap.h // replay adds the records after it
	}
	replayed, err := s.replay(checkpoint, snap, walMetrics)
	if err != nil {
		return err
	}
	w, err := wal.Open(opts.walDir(), wal.Options{Policy: opts.WALPolicy, Logger: opts.Logger, Metrics: walMetrics})
	if err != nil {
		return err
	}
	s.replayFrom.Store(checkpoint)
	s.mu.Lock()
	s.wal = w // before uploadsKnown: Uploaded truncates it
	s.mu.Unlock()
	s.cutsMu.Lock()
	startupPending, err := notUploaded()
	if err != nil {
		s.cutsMu.Unlock()
		return fmt.Errorf("listing the local blocks not uploaded yet: %w", err)
	}
	if len(startupPending) > 0 {
		c := &cut{end: wal.Pos{Segment: checkpoint}, pending: map[string]struct{}{}}
		for _, id := range startupPending {
			c.pending[id] = struct{}{}
		}
		s.cuts = append(s.cuts, c)
	} else if checkpoint > 0 {
		// Everything before the checkpoint is in the bucket already.
		if _, err := w.Truncate(wal.Pos{Segment: checkpoint}); err != nil {
			s.log.Warn("wal truncate at start", "err", err)
		}
	}
	s.uploadsKnown = true
	s.cutsMu.Unlock()
	s.mu.Lock()
	s.opened = true
	s.activeStart = checkpoint // the head holds every record from it on
	s.mu.Unlock()
	s.addUnsnapshotted(replayed) // what the next start would replay: a snapshot may be due
	return nil
}

func (s *Store) newHead() *head.Head { return head.New(s.headOptions()) }

func (s *Store) headOptions() head.Options {
	o := head.Options{MaxSeriesPerTenant: s.opts.MaxSeriesPerTenant, Metrics: s.hm}
	if tl := s.opts.TenantLimits; tl != nil {
		o.MaxSeriesFor = func(t string) int { return tl.For(t).MaxSeriesPerTenant }
	}
	return o
}

// replay applies the WAL from the checkpoint on to the active head, except
// the segments a loaded snapshot holds; it returns the bytes of the records
// applied (what a start would replay again).
func (s *Store) replay(checkpoint uint64, snap *loadedSnapshot, m *wal.Metrics) (int64, error) {
	// Decoding (gunzip, protobuf, record) runs on every core; one appender
	// applies the decoded records to the head in WAL order, so the head is
	// the same as after a sequential replay (series and symbol ids, row
	// order, which copy of a duplicate profile id is kept). At most
	// replayWindow records are in flight, decoded or not.
	workers := s.opts.ReplayWorkers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	defer replayGC(s.opts.ReplayGCPercent)()
	var profiles, bad, skipped int
	var replayedBytes int64
	// A record of a version this release does not read stops the replay
	// and the start (never skipped: the WAL would be truncated without it).
	var refused atomic.Pointer[error]
	apply := func(d *decodedRecord) {
		if errors.Is(d.err, formatver.ErrUnsupported) {
			d.release()
			err := fmt.Errorf("wal segment %s: %w", filepath.Join(s.opts.walDir(), fmt.Sprintf("%08d.wal", d.pos.Segment)), d.err)
			refused.CompareAndSwap(nil, &err)
			return
		}
		n, b := s.apply(d)
		d.release()
		profiles += n
		bad += b
	}
	stopIfRefused := func() error {
		if e := refused.Load(); e != nil {
			return *e
		}
		return nil
	}
	// Segments before the checkpoint are in blocks, and those a loaded snapshot
	// holds are in it: neither is read (Replay still reads the last segment,
	// whose torn tail it must truncate; the callbacks drop what it holds
	// before the checkpoint).
	skip := func(seg uint64) bool { return seg < checkpoint || snap.skips(seg) }
	replayOpts := wal.ReplayOptions{Logger: s.log, Metrics: m, Skip: skip}
	start := time.Now()
	var err error
	if workers == 1 {
		_, err = wal.Replay(s.opts.walDir(), replayOpts, func(pos wal.Pos, payload []byte) error {
			if pos.Segment < checkpoint {
				skipped++
				return nil
			}
			replayedBytes += int64(len(payload)) + recordFraming
			apply(s.decodeRecord(pos, payload))
			return stopIfRefused()
		})
	} else {
		type job struct {
			pos     wal.Pos
			payload []byte
			done    chan *decodedRecord // buffered: a worker never waits
		}
		window := replayWindow * workers
		work := make(chan *job, window)
		order := make(chan *job, window)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range work {
					j.done <- s.decodeRecord(j.pos, j.payload)
				}
			}()
		}
		applied := make(chan struct{})
		go func() {
			defer close(applied)
			for j := range order {
				apply(<-j.done)
			}
		}()
		_, err = wal.Replay(s.opts.walDir(), replayOpts, func(pos wal.Pos, payload []byte) error {
			if pos.Segment < checkpoint {
				skipped++
				return nil
			}
			replayedBytes += int64(len(payload)) + recordFraming
			if err := stopIfRefused(); err != nil {
				return err
			}
			// payload is only valid during the call. order first: the
			// appender waits on the oldest record, which a worker gets next.
			j := &job{pos: pos, payload: append([]byte(nil), payload...), done: make(chan *decodedRecord, 1)}
			order <- j
			work <- j
			return nil
		})
		close(work)
		close(order)
		<-applied
		wg.Wait()
	}
	if err == nil {
		err = stopIfRefused()
	}
	s.log.Info("wal restored into the head", "profiles", profiles, "records_in_blocks", skipped, "unrestorable", bad, "workers", workers)
	if snap != nil {
		s.log.Info("restart from the head snapshot", "snapshot_rows", snap.st.Rows, "snapshot_bytes", snap.st.Bytes,
			"snapshot_seconds", snap.took.Seconds(), "wal_bytes_replayed_after_it", replayedBytes, "profiles_replayed", profiles,
			"replay_seconds", time.Since(start).Seconds())
	}
	return replayedBytes, err
}

// recordFraming is a WAL record's header, counted with its payload.
const recordFraming = 16

// DefaultReplayGCPercent is GOGC during replay under a memory limit
// (docs/benchmarks.md, "Restart": +19% WAL per CPU-second, heap up to 3.3×).
const DefaultReplayGCPercent = 400

// replayGC raises GOGC to pct when a memory limit is set and GOGC is lower
// (and not off); restore sets it back.
func replayGC(pct int) (restore func()) {
	if pct == 0 {
		pct = DefaultReplayGCPercent
	}
	if pct < 0 || debug.SetMemoryLimit(-1) == math.MaxInt64 {
		return func() {}
	}
	old := debug.SetGCPercent(pct)
	if old < 0 || old >= pct {
		debug.SetGCPercent(old)
		return func() {}
	}
	return func() { debug.SetGCPercent(old) }
}

// replayWindow is the number of WAL records in flight per decoding worker
// during replay (queued, being decoded, or decoded and waiting for their turn).
const replayWindow = 4

// decodedRecord is a WAL record decoded for the head.
type decodedRecord struct {
	pos     wal.Pos
	tenant  string
	entries []decodedEntry
	err     error // the record does not decode
}

type decodedEntry struct {
	id        head.ProfileID
	timeNanos int64
	prep      *head.Prepared
	arena     *pprofdec.Arena // the decoded profile's: released once committed
	err       error           // the profile does not decode, or is refused by head.Prepare
}

// release hands the record's decoding arenas back to the pool.
func (d *decodedRecord) release() {
	for i := range d.entries {
		d.entries[i].arena.Release()
		d.entries[i].arena = nil
	}
}

// decodeRecord decodes one WAL record and its profiles and prepares them for
// the head (head.Prepare: everything that needs no tenant state); it keeps no
// reference to payload.
func (s *Store) decodeRecord(pos wal.Pos, payload []byte) *decodedRecord {
	d := &decodedRecord{pos: pos}
	tenant, entries, err := record.Decode(payload)
	if err != nil {
		d.err = err
		return d
	}
	d.tenant = tenant
	d.entries = make([]decodedEntry, len(entries))
	for i, e := range entries {
		de := &d.entries[i]
		de.id, de.timeNanos = e.ID, e.TimeNanos
		var p *googlev1.Profile
		if p, de.arena, de.err = pprofdec.Decode(e.Raw, s.replayProfileSize(tenant)); de.err == nil {
			push.SanitizeStrings(p)
			de.prep, de.err = head.Prepare(e.Labels, p)
		}
	}
	return d
}

// replayProfileSize bounds a profile decoded from the WAL: the larger of the
// tenant's limit and the default (0: none).
func (s *Store) replayProfileSize(tenant string) int {
	n := s.opts.MaxProfileSize
	if s.opts.TenantLimits != nil && n > 0 {
		if m := s.opts.TenantLimits.For(tenant).MaxProfileSizeBytes; m == 0 || m > n {
			n = m
		}
	}
	return n
}

// apply appends a decoded WAL record to the head; it returns the profiles
// restored and those that could not be.
func (s *Store) apply(d *decodedRecord) (restored, bad int) {
	if d.err != nil {
		s.log.Error("wal record does not decode: skipped", "pos", d.pos.String(), "err", d.err)
		return 0, 1
	}
	for i := range d.entries {
		e := &d.entries[i]
		err := e.err
		if err == nil {
			_, err = s.active.Commit(d.tenant, e.id, e.prep, e.timeNanos)
		}
		e.prep = nil // let the collector have it while the rest is applied
		if err != nil {
			bad++
			s.log.Error("wal profile cannot be restored: skipped", "pos", d.pos.String(), "tenant", d.tenant, "err", err)
			continue
		}
		restored++
		s.replayed.Inc()
		s.markActive(e.timeNanos)
	}
	return restored, bad
}

func (s *Store) markActive(int64) {
	s.activeSince.CompareAndSwap(0, time.Now().UnixNano())
}

// ErrClosed is returned for writes after Close: the ingester is stopping.
var ErrClosed = errors.New("the ingester is shutting down and takes no more writes")

// UnavailableError is a write the store cannot take now (starting, stopping,
// the WAL failing, uploads too far behind): later, or on another replica, it
// may succeed. The API edge answers it as Unavailable (push.Classify).
type UnavailableError struct{ Err error }

func unavailable(err error) error { return &UnavailableError{Err: err} }

func (e *UnavailableError) Error() string { return "unavailable: " + e.Err.Error() }
func (e *UnavailableError) Unwrap() error { return e.Err }

// Unavailable marks the error for push.Classify, which cannot import the store.
func (e *UnavailableError) Unavailable() bool { return true }

// ErrStarting is returned for writes and cuts before the WAL is replayed.
var ErrStarting = errors.New("the ingester is starting: replaying its write-ahead log")

// Append implements push.Appender: WAL first, then the head.
func (s *Store) Append(ctx context.Context, tenant string, ps []push.Profile) error {
	s.appending.Add(1)
	defer func() {
		s.lastAppend.Store(time.Now().UnixNano())
		s.appending.Add(-1)
	}()
	// Prepare checks every profile (as symdb.Validate does) before anything is
	// written ahead, and does the head's work that needs no tenant state
	// outside its locks.
	prep := make([]*head.Prepared, len(ps))
	for i := range ps {
		var err error
		if prep[i], err = head.Prepare(ps[i].Labels, ps[i].Profile); err != nil {
			return err
		}
	}
	if lim := s.opts.MaxPendingBytes; lim > 0 && s.opts.Shipper != nil {
		if err := s.opts.Shipper.OverBudget(lim); err != nil {
			return unavailable(fmt.Errorf("%w (ingester.max-pending-upload-bytes); retry later", err))
		}
	}
	entries := make([]record.Entry, len(ps))
	for i, p := range ps {
		entries[i] = record.Entry{ID: p.ID, TimeNanos: p.TimeNanos, Labels: p.Labels, Raw: p.Raw}
	}
	rec := record.Encode(tenant, entries)

	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.opened {
		return unavailable(ErrStarting)
	}
	if s.closed || s.noWrites {
		return unavailable(ErrClosed)
	}
	if s.deleting[tenant] {
		return &TenantDeletedError{Tenant: tenant}
	}
	// The head append runs while the WAL record is written and fsynced (it costs
	// about as much as the fsync wait); the push is acknowledged only when both
	// are done. If the WAL fails, the head may keep profiles that were not
	// acknowledged: a retry carries the same profile ids, which the head
	// deduplicates, and a profile stored without an acknowledgement is allowed
	// (as with a quorum that fails after one replica stored it).
	walErr := make(chan error, 1)
	go func() {
		_, err := s.wal.Append(ctx, rec)
		if err == nil {
			s.addUnsnapshotted(int64(len(rec)) + recordFraming)
		}
		walErr <- err
	}()
	var headErr error
	for i, p := range ps {
		if _, err := s.active.Commit(tenant, p.ID, prep[i], p.TimeNanos); err != nil {
			// Refused by the head (the series limit): replay refuses the WAL
			// record the same way.
			headErr = err
			break
		}
		s.markActive(p.TimeNanos)
	}
	if err := <-walErr; err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return unavailable(fmt.Errorf("write-ahead log: %w", err))
	}
	return headErr
}

// Select implements querier.Source over the active and the frozen heads.
func (s *Store) Select(ctx context.Context, tenant, ptype string, match func(model.Labels) bool, start, end int64) ([]head.Selection, error) {
	var out []head.Selection
	packed, lazy := head.PackedRows(ctx), head.LazyRows(ctx)
	for _, h := range s.heads() {
		if t := h.Tenant(tenant); t != nil {
			switch {
			case packed:
				out = append(out, t.SelectPacked(ptype, match, start, end))
			case lazy:
				out = append(out, t.SelectLazy(ptype, match, start, end))
			default:
				out = append(out, t.Select(ptype, match, start, end))
			}
		}
	}
	return out, nil
}

// SeriesLabels implements querier.Source.
func (s *Store) SeriesLabels(_ context.Context, tenant string, match func(model.Labels) bool, start, end int64) ([]model.Labels, error) {
	var out []model.Labels
	for _, h := range s.heads() {
		if t := h.Tenant(tenant); t != nil {
			out = append(out, t.SeriesLabels(match, start, end)...)
		}
	}
	return out, nil
}

func (s *Store) heads() []*head.Head {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []*head.Head{s.active}
	for _, f := range s.frozen {
		out = append(out, f.h)
	}
	return out
}

// Tenants lists the tenants of the active and frozen heads.
func (s *Store) Tenants() []string {
	seen := map[string]bool{}
	var out []string
	for _, h := range s.heads() {
		for _, t := range h.Tenants() {
			if !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	return out
}

// Head is the active head.
func (s *Store) Head() *head.Head {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.active
}

// Usage is the active head's tenants and active series (instance limits).
func (s *Store) Usage() (tenants, series int) {
	h := s.Head()
	for _, name := range h.Tenants() {
		if t := h.Tenant(name); t != nil {
			tenants++
			series += int(t.Stats().Series)
		}
	}
	return tenants, series
}

// HasTenant reports whether the active head holds the tenant.
func (s *Store) HasTenant(tenant string) bool { return s.Head().Tenant(tenant) != nil }

// frozenHead is a cut head whose blocks are being written.
type frozenHead struct {
	h    *head.Head
	end  wal.Pos           // first WAL position after it
	done map[string]string // tenant → block id written
}

// Cut freezes the head, writes a block per tenant, queues them for upload
// and returns once they are on local disk. New pushes go to a fresh head
// meanwhile, and both are queried. A head whose blocks could not be written
// stays frozen (and queried) and is retried by the next Cut.
func (s *Store) Cut(ctx context.Context, reason string) error {
	s.cutMu.Lock()
	defer s.cutMu.Unlock()
	s.mu.Lock()
	return s.cutLocked(ctx, reason, false)
}

// cutLocked is Cut with cutMu and mu held (mu is released). rotate rotates
// the WAL even when the active head is empty, so that the checkpoint moves
// past every record written so far (DropTenant).
func (s *Store) cutLocked(ctx context.Context, reason string, rotate bool) error {
	if !s.opened {
		s.mu.Unlock()
		return ErrStarting
	}
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if rotate || !s.active.Empty() {
		end, err := s.wal.Rotate(ctx)
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("rotating the wal: %w", err)
		}
		s.frozen = append(s.frozen, &frozenHead{h: s.active, end: end, done: map[string]string{}})
		s.active = s.newHead()
		s.activeSince.Store(0)
		s.activeStart = end.Segment
		s.unsnapshotted.Store(0)
	}
	pending := append([]*frozenHead(nil), s.frozen...)
	s.mu.Unlock()

	for _, f := range pending {
		if err := s.writeBlocks(ctx, f, reason); err != nil {
			return err
		}
	}
	return nil
}

// ReplayBytes is how much WAL a start would replay now: the segments not covered
// by local blocks.
func (s *Store) ReplayBytes() int64 { return s.wal.SizeFrom(s.replayFrom.Load()) }

func (s *Store) writeBlocks(ctx context.Context, f *frozenHead, reason string) error {
	start := time.Now()
	for _, tenant := range f.h.Tenants() {
		if _, ok := f.done[tenant]; ok {
			continue
		}
		th := f.h.Tenant(tenant)
		// Packed rows stay packed: the block writer unpacks one series at a time.
		sel := th.SelectPacked("", nil, math.MinInt64, math.MaxInt64)
		if len(sel.Series) == 0 {
			continue
		}
		dir := filepath.Join(s.opts.BlocksDir(), tenant)
		id, err := s.opts.WriteBlock(dir, tenant, sel)
		if err != nil {
			// The frozen head stays queryable and its WAL stays: the next cut
			// retries, and a restart replays it.
			return fmt.Errorf("writing the block of tenant %q: %w", tenant, err)
		}
		st := th.Stats()
		s.log.Info("block written", "tenant", tenant, "block", id, "series", st.Series, "profiles", st.Profiles, "samples", st.Samples, "reason", reason)
		f.done[tenant] = id
	}
	if err := wal.WriteCheckpoint(s.opts.checkpointFile(), f.end.Segment); err != nil {
		return fmt.Errorf("writing the wal checkpoint: %w", err)
	}
	s.replayFrom.Store(max(s.replayFrom.Load(), f.end.Segment))
	c := &cut{end: f.end, pending: map[string]struct{}{}}
	for _, id := range f.done {
		c.pending[id] = struct{}{}
	}
	s.cutsMu.Lock()
	s.cuts = append(s.cuts, c)
	s.cutsMu.Unlock()
	if s.opts.BlocksWritten != nil {
		s.opts.BlocksWritten(ctx)
	}
	s.mu.Lock()
	for i, fh := range s.frozen {
		if fh == f {
			s.frozen = append(s.frozen[:i], s.frozen[i+1:]...)
			break
		}
	}
	active := s.active
	s.mu.Unlock()
	for _, t := range f.h.Tenants() {
		if active.Tenant(t) == nil {
			s.hm.Forget(t)
		}
	}
	if s.opts.Shipper != nil {
		for tenant, id := range f.done {
			if err := s.opts.Shipper.Enqueue(tenant, filepath.Join(s.opts.BlocksDir(), tenant, id)); err != nil {
				s.log.Error("queueing a block for upload (the periodic scan will find it)", "tenant", tenant, "block", id, "err", err)
			}
		}
	}
	s.cutsTotal.WithLabelValues(reason).Inc()
	s.cutDuration.Observe(time.Since(start).Seconds())
	return nil
}

// Uploaded records that a block is in the bucket; WAL segments whose every
// block is uploaded are deleted.
func (s *Store) Uploaded(tenant, id string) {
	s.cutsMu.Lock()
	defer s.cutsMu.Unlock()
	if !s.uploadsKnown {
		return // open reads the markers later: this block will not be pending
	}
	for _, c := range s.cuts {
		delete(c.pending, id)
	}
	s.truncateUploadedLocked()
}

// truncateUploadedLocked deletes the WAL segments whose every block is
// uploaded (or dropped); cutsMu is held.
func (s *Store) truncateUploadedLocked() {
	var upTo *wal.Pos
	for len(s.cuts) > 0 && len(s.cuts[0].pending) == 0 {
		upTo = &s.cuts[0].end
		s.cuts = s.cuts[1:]
	}
	if upTo != nil {
		if _, err := s.wal.Truncate(*upTo); err != nil {
			s.log.Warn("wal truncate", "err", err)
		}
	}
}

// TenantDeletedError refuses a write of a tenant that is being deleted.
type TenantDeletedError struct{ Tenant string }

func (e *TenantDeletedError) Error() string {
	return fmt.Sprintf("tenant %q is being deleted (POST /compactor/delete_tenant): its writes are refused until the deletion finishes", e.Tenant)
}

// DropTenant forgets what the store holds of a tenant being deleted: its
// writes are refused from now on (until Undelete), its rows are dropped from
// every head, and a cut moves the WAL checkpoint past every record written
// so far, so that a restart never replays the tenant's records (the other
// tenants' rows are in the cut's blocks; the segments go once those are
// uploaded). The tenant's local blocks are the shipper's to delete; the
// caller reports them with BlocksDropped.
func (s *Store) DropTenant(ctx context.Context, tenant string) error {
	s.cutMu.Lock() // no cut is writing a frozen head's blocks meanwhile
	defer s.cutMu.Unlock()
	s.mu.Lock()
	if s.deleting == nil {
		s.deleting = map[string]bool{}
	}
	s.deleting[tenant] = true
	dropped := s.active.Drop(tenant)
	for _, f := range s.frozen {
		dropped = f.h.Drop(tenant) || dropped
		delete(f.done, tenant) // its block, if written, is dropped by the caller
	}
	s.hm.Forget(tenant)
	if !s.opened {
		s.mu.Unlock()
		return nil // replay comes later: the caller drops again once started
	}
	// The cut writes the other tenants' rows into blocks and the checkpoint
	// after the rotation: the records before it are not replayed.
	if err := s.cutLocked(ctx, "tenant_deletion", true); err != nil {
		return fmt.Errorf("cutting the head after dropping tenant %q: %w", tenant, err)
	}
	s.log.Info("tenant dropped from the head and the write-ahead log", "tenant", tenant, "had_rows", dropped)
	return nil
}

// Undelete accepts the tenant's writes again (its deletion finished: a new life).
func (s *Store) Undelete(tenant string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.deleting, tenant)
}

// Deleting reports whether the tenant's writes are refused (DropTenant).
func (s *Store) Deleting(tenant string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.deleting[tenant]
}

// BlocksDropped records that local blocks will never be uploaded (their
// tenant was deleted): the WAL segments waiting for them can go.
func (s *Store) BlocksDropped(ids []string) {
	s.cutsMu.Lock()
	defer s.cutsMu.Unlock()
	for _, c := range s.cuts {
		for _, id := range ids {
			delete(c.pending, id)
		}
	}
	if s.uploadsKnown {
		s.truncateUploadedLocked()
	}
}

// Run cuts the head when it is older than MaxBlockDuration or larger than
// MaxHeadBytes, until ctx ends. It fails when the WAL directory is gone: the
// records acknowledged from then on would be written into deleted files and
// not survive a restart, so the process must stop (and replay on its start).
func (s *Store) Run(ctx context.Context) error {
	every := min(10*time.Second, max(s.opts.MaxBlockDuration/10, 100*time.Millisecond))
	ctx, cancel := context.WithCancel(ctx)
	snapDone := make(chan struct{})
	defer func() {
		cancel()
		<-snapDone
	}()
	go func() {
		defer close(snapDone)
		s.snapshotLoop(ctx)
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if st, err := os.Stat(s.opts.walDir()); err != nil || !st.IsDir() {
			if err == nil {
				err = errors.New("not a directory")
			}
			return fmt.Errorf("the write-ahead log directory %s is gone, acknowledged writes would not survive a restart: %w", s.opts.walDir(), err)
		}
		reason := ""
		if since := s.activeSince.Load(); since != 0 && s.opts.MaxBlockDuration > 0 && time.Since(time.Unix(0, since)) >= s.opts.MaxBlockDuration {
			reason = "max_block_duration"
		} else if s.opts.MaxHeadBytes > 0 && s.Head().Bytes() >= s.opts.MaxHeadBytes {
			reason = "max_head_bytes"
		}
		if reason == "" {
			continue
		}
		if err := s.Cut(ctx, reason); err != nil && !errors.Is(err, ErrClosed) {
			s.log.Error("cutting the head", "reason", reason, "err", err)
		}
	}
}

// WaitQuiet waits until no Append is in flight and none has returned for
// quiet, or ctx ends; it reports whether the store went quiet. A final stop
// calls it after the peers see this ingester LEAVING: a push routed here
// before that (by this ingester's distributor or a peer's) may still be on
// its way, and refusing it after StopWrites could fail its quorum.
func (s *Store) WaitQuiet(ctx context.Context, quiet time.Duration) bool {
	tick := time.NewTicker(min(quiet/4+time.Millisecond, 50*time.Millisecond))
	defer tick.Stop()
	for {
		if s.appending.Load() == 0 && time.Since(time.Unix(0, s.lastAppend.Load())) >= quiet {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// StopWrites refuses new writes and waits for those in flight; cuts still
// work. A final stop calls it before its last flush so nothing acknowledged
// lands after the flush.
func (s *Store) StopWrites() {
	s.mu.Lock()
	s.noWrites = true
	s.mu.Unlock()
}

// Close stops taking writes, waits for the ones in flight, and syncs the WAL.
// It does not flush: the WAL is enough to come back.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	w := s.wal
	s.mu.Unlock()
	if w == nil {
		return nil // never opened
	}
	return w.Close()
}
