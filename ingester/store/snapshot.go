package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/wal"
	"github.com/hearth-dev/hearth/internal/durable"
)

// Head snapshots: a fuzzy checkpoint of the active head, so that a crash
// restart loads it and replays only the WAL written after it (decoding the
// pushed profiles is most of a replay's CPU). The WAL stays the source of
// truth: a snapshot that is missing, stale, damaged or of another version is
// ignored (with a log line) and the WAL replays in full.
//
// Writing one: under the write lock, rotate the WAL (to segment N) and note
// the head's first segment; then write the head tenant by tenant while
// pushes go on (head.WriteSnapshot). The snapshot holds every record before
// N and maybe some after it. Loading it: replay the segments from the
// checkpoint up to the head's first one (a frozen head that was not written
// into blocks), skip [head start, N), replay from N. A record after N that
// the snapshot already holds changes nothing when applied again: the head
// keeps one row per (profile id, series), and symbols are interned by value.
//
// A snapshot whose head starts before the checkpoint is stale: its head was
// cut into blocks since (a cut or a tenant deletion, which always cuts), so
// it is deleted, never loaded: a deleted tenant stays deleted.

// snapshotFile is the snapshot's path: in the WAL directory, which it
// belongs to (its positions name the WAL's segments).
func (o Options) snapshotFile() string { return filepath.Join(o.DataDir, "wal", "head.snapshot") }

type snapshotMetrics struct {
	written  *prometheus.CounterVec
	loads    *prometheus.CounterVec
	duration prometheus.Histogram
	bytes    prometheus.Gauge
}

func newSnapshotMetrics(reg prometheus.Registerer) *snapshotMetrics {
	m := &snapshotMetrics{
		written: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_head_snapshots_total", Help: "Head snapshots written (success), failed to write (failure), or discarded because the head was cut meanwhile (stale).",
		}, []string{"result"}),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_head_snapshot_loads_total", Help: "Head snapshots found at start, by what became of them: loaded, or ignored (the WAL replays in full) because stale, corrupt or unsupported (another version).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hearth_head_snapshot_duration_seconds", Help: "Time to write a head snapshot.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hearth_head_snapshot_bytes", Help: "Size of the last head snapshot written.",
		}),
	}
	for _, r := range []string{"success", "failure", "stale"} {
		m.written.WithLabelValues(r)
	}
	for _, r := range []string{"loaded", "stale", "corrupt", "unsupported"} {
		m.loads.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.written, m.loads, m.duration, m.bytes)
	}
	return m
}

// Snapshot writes the active head's snapshot (nothing when it is empty). One
// runs at a time; pushes and cuts go on meanwhile.
func (s *Store) Snapshot(ctx context.Context) error {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	start := time.Now()
	s.mu.Lock()
	if !s.opened {
		s.mu.Unlock()
		return ErrStarting
	}
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	h, headStart := s.active, s.activeStart
	if h.Empty() {
		s.mu.Unlock()
		return nil
	}
	end, err := s.wal.Rotate(ctx)
	if err != nil {
		s.mu.Unlock()
		s.snapMetrics.written.WithLabelValues("failure").Inc()
		return fmt.Errorf("head snapshot: rotating the wal: %w", err)
	}
	covered := s.unsnapshotted.Swap(0)
	s.mu.Unlock()
	if s.testAfterRotate != nil {
		s.testAfterRotate()
	}

	meta := head.SnapshotMeta{WALSegment: end.Segment, HeadStart: headStart, CreatedNano: start.UnixNano()}
	st, err := writeSnapshotFile(ctx, s.opts.snapshotFile(), h, meta, func() bool {
		// Not renamed into place if the head was cut meanwhile: it is stale.
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.active == h
	})
	if errors.Is(err, errSnapshotStale) {
		s.snapMetrics.written.WithLabelValues("stale").Inc()
		return nil // the cut started the count again
	}
	if err != nil {
		s.unsnapshotted.Add(covered) // still to be covered by the next one
		s.snapMetrics.written.WithLabelValues("failure").Inc()
		return fmt.Errorf("head snapshot (a restart replays more wal): %w", err)
	}
	d := time.Since(start)
	s.snapMetrics.written.WithLabelValues("success").Inc()
	s.snapMetrics.duration.Observe(d.Seconds())
	s.snapMetrics.bytes.Set(float64(st.Bytes))
	s.log.Info("head snapshot written", "wal_segment", end.Segment, "head_start", headStart, "tenants", st.Tenants,
		"series", st.Series, "rows", st.Rows, "bytes", st.Bytes, "wal_bytes_covered", covered, "seconds", d.Seconds())
	return nil
}

var errSnapshotStale = errors.New("the head was cut while its snapshot was written")

// writeSnapshotFile writes h's snapshot to path atomically: a temporary
// file, fsynced, renamed over path (if keep still says so), the directory
// fsynced.
func writeSnapshotFile(ctx context.Context, path string, h *head.Head, meta head.SnapshotMeta, keep func() bool) (st head.SnapshotStats, err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return st, err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(ctxWriter{ctx, f}, 1<<20)
	if st, err = head.WriteSnapshot(bw, h, meta); err != nil {
		return st, err
	}
	if err = bw.Flush(); err != nil {
		return st, err
	}
	if err = f.Sync(); err != nil {
		return st, err
	}
	if err = f.Close(); err != nil {
		return st, err
	}
	if !keep() {
		err = errSnapshotStale
		return st, err
	}
	if err = os.Rename(tmp, path); err != nil {
		return st, err
	}
	return st, durable.SyncDir(filepath.Dir(path))
}

// loadedSnapshot is a snapshot loaded at start.
type loadedSnapshot struct {
	h    *head.Head
	meta head.SnapshotMeta
	st   head.SnapshotStats
	took time.Duration
}

// skips reports whether a WAL segment's records are in the snapshot.
func (l *loadedSnapshot) skips(seg uint64) bool {
	return l != nil && seg >= l.meta.HeadStart && seg < l.meta.WALSegment
}

// loadSnapshot reads the head snapshot if there is a usable one: nil
// otherwise, having said why (never an error: the WAL replays in full).
func (s *Store) loadSnapshot(checkpoint uint64) *loadedSnapshot {
	path := s.opts.snapshotFile()
	_ = os.Remove(path + ".tmp") // a write cut short by the crash
	start := time.Now()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	ignore := func(result, why string, err error, remove bool) *loadedSnapshot {
		s.snapMetrics.loads.WithLabelValues(result).Inc()
		s.log.Warn("head snapshot ignored: the wal replays in full", "file", path, "why", why, "err", err)
		if remove {
			_ = os.Remove(path)
		}
		return nil
	}
	if err != nil {
		return ignore("corrupt", "cannot open it", err, false)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ignore("corrupt", "cannot stat it", err, false)
	}
	h, meta, st, err := head.ReadSnapshot(f, fi.Size(), s.headOptions())
	switch {
	case errors.Is(err, head.ErrSnapshotVersion):
		// Kept: the release that wrote it may run here again.
		return ignore("unsupported", "written by another release", err, false)
	case err != nil:
		return ignore("corrupt", "damaged", err, true)
	case meta.HeadStart < checkpoint:
		return ignore("stale", fmt.Sprintf("its head (from wal segment %d) was cut into blocks since (checkpoint %d)", meta.HeadStart, checkpoint), nil, true)
	case meta.WALSegment < meta.HeadStart:
		return ignore("corrupt", fmt.Sprintf("it covers wal segments %d to %d", meta.HeadStart, meta.WALSegment), nil, true)
	}
	segs, err := wal.ListSegments(s.opts.walDir())
	if err != nil {
		return ignore("corrupt", "cannot list the wal", err, false)
	}
	if len(segs) == 0 || segs[len(segs)-1] < meta.WALSegment {
		return ignore("stale", fmt.Sprintf("the wal does not reach its segment %d", meta.WALSegment), nil, true)
	}
	s.snapMetrics.loads.WithLabelValues("loaded").Inc()
	l := &loadedSnapshot{h: h, meta: meta, st: st, took: time.Since(start)}
	s.log.Info("head snapshot loaded", "tenants", st.Tenants, "series", st.Series, "rows", st.Rows, "bytes", st.Bytes,
		"seconds", l.took.Seconds(), "head_start", meta.HeadStart, "wal_segment", meta.WALSegment,
		"age_seconds", time.Since(time.Unix(0, meta.CreatedNano)).Seconds())
	return l
}

// snapshotLoop writes a snapshot whenever Options.HeadSnapshotWALBytes of
// WAL were written since the last one, until ctx ends.
func (s *Store) snapshotLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.snapKick:
		}
		if lim := s.opts.HeadSnapshotWALBytes; lim <= 0 || s.unsnapshotted.Load() < lim {
			continue // a kick from before the last snapshot
		}
		start := time.Now()
		if err := s.Snapshot(ctx); err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrStarting) && ctx.Err() == nil {
			s.log.Error("writing the head snapshot", "err", err)
		}
		// A large head written at a high push rate: rest snapshotRest times
		// as long as the write took, so writing snapshots takes at most a
		// fifth of a core, whatever the rate (more WAL to replay instead).
		rest := time.NewTimer(snapshotRest * time.Since(start))
		select {
		case <-ctx.Done():
			rest.Stop()
			return
		case <-rest.C:
		}
	}
}

// snapshotRest is the pause after a snapshot, in multiples of its duration.
const snapshotRest = 4

// addUnsnapshotted counts WAL bytes written since the last snapshot and
// kicks the snapshot loop past the threshold.
func (s *Store) addUnsnapshotted(n int64) {
	lim := s.opts.HeadSnapshotWALBytes
	if s.unsnapshotted.Add(n) >= lim && lim > 0 {
		select {
		case s.snapKick <- struct{}{}:
		default:
		}
	}
}

// ctxWriter stops a snapshot's write when its context ends (a stop).
type ctxWriter struct {
	ctx context.Context
	f   *os.File
}

func (w ctxWriter) Write(b []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	return w.f.Write(b)
}
