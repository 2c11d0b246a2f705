package wal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Pos is the position of a record: the segment that holds it and the byte
// offset of its header in that segment. Positions increase in append order.
type Pos struct {
	Segment uint64
	Offset  int64
}

// Less reports whether p comes before q in the log.
func (p Pos) Less(q Pos) bool {
	if p.Segment != q.Segment {
		return p.Segment < q.Segment
	}
	return p.Offset < q.Offset
}

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Segment, p.Offset) }

// Defaults of Options.
const (
	DefaultSegmentSize   = 128 << 20
	DefaultSyncInterval  = 100 * time.Millisecond
	DefaultMaxRecordSize = 64 << 20
	DefaultMaxBatchBytes = 16 << 20
)

// Options configure Open. The zero value is usable.
type Options struct {
	// SegmentSize is the size at which a new segment is started
	// (default 128 MiB). A record larger than it gets a segment of its own.
	SegmentSize int64
	// Policy is the fsync policy (default PolicyAlways).
	Policy Policy
	// SyncInterval is the fsync period of PolicyInterval (default 100ms).
	SyncInterval time.Duration
	// MaxRecordSize bounds a payload (default 64 MiB, at most 4 GiB-1).
	MaxRecordSize int
	// MaxBatchBytes bounds the bytes written by one group commit
	// (default 16 MiB).
	MaxBatchBytes int
	Logger        *slog.Logger // default slog.Default()
	Metrics       *Metrics     // default: private unregistered metrics
}

func (o *Options) defaults() {
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.MaxRecordSize <= 0 {
		o.MaxRecordSize = DefaultMaxRecordSize
	}
	if uint64(o.MaxRecordSize) > 1<<32-1 {
		o.MaxRecordSize = 1<<32 - 1
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
}

var (
	// ErrClosed is returned by operations on a closed WAL.
	ErrClosed = errors.New("wal: closed")
	// ErrRecordTooLarge is returned by Append for payloads above MaxRecordSize.
	ErrRecordTooLarge = errors.New("wal: record too large")
)

// WAL is an open write-ahead log. Its methods are safe for concurrent use.
type WAL struct {
	dir  string
	opts Options
	log  *slog.Logger
	m    *Metrics

	reqs      chan *request
	quit      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
	closeErr  error // set by the writer goroutine before stopped is closed

	mu   sync.Mutex // guards segs and cur (cur is written only by the writer, under mu)
	segs []uint64
	cur  uint64

	// Owned by the writer goroutine.
	f        segFile
	off      int64 // end of the last good record in f
	dirty    bool  // f may hold bytes past off (a failed write) to truncate before the next write
	unsynced bool  // bytes written since the last fsync
	syncing  chan error
	buf      []byte
	batch    []*request

	testBeforeBatch func() // tests: runs in the writer before a batch is collected
}

const (
	reqPending int32 = iota
	reqTaken
	reqCancelled
)

type request struct {
	payload []byte
	rotate  bool
	state   atomic.Int32
	done    chan result
}

type result struct {
	pos Pos
	err error
}

// Open opens (creating if needed) the WAL in dir for appending. Call Replay
// first to read what is there: Open repairs a torn tail of the last segment
// (like Replay) and continues it, or starts a new segment if the last one is
// corrupt. Only one WAL may be open on a directory at a time.
func Open(dir string, opts Options) (*WAL, error) {
	return open(dir, opts, nil)
}

func open(dir string, opts Options, beforeBatch func()) (*WAL, error) {
	opts.defaults()
	w := &WAL{
		testBeforeBatch: beforeBatch,
		dir:             dir,
		opts:            opts,
		log:             opts.Logger.With("component", "wal", "dir", dir),
		m:               opts.Metrics,
		reqs:            make(chan *request, 1024),
		quit:            make(chan struct{}),
		stopped:         make(chan struct{}),
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	idxs, err := listSegments(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	w.segs = idxs
	if len(idxs) == 0 {
		if err := w.createSegment(1); err != nil {
			return nil, err
		}
	} else {
		last := idxs[len(idxs)-1]
		rec, err := recoverSegment(dir, last, true, 0, w.log, w.m, nil)
		if err != nil {
			return nil, err
		}
		if rec.corrupt {
			// Keep the corrupt segment as it is (Replay skips its rest) and
			// continue in a fresh one.
			if err := w.createSegment(last + 1); err != nil {
				return nil, err
			}
		} else {
			f, err := os.OpenFile(filepath.Join(dir, segmentName(last)), os.O_WRONLY, 0)
			if err != nil {
				return nil, fmt.Errorf("wal: %w", err)
			}
			w.f, w.cur, w.off = wrapFile(f), last, rec.size
		}
	}
	w.m.segments.Set(float64(len(w.segs)))
	w.m.currentSegment.Set(float64(w.cur))
	w.log.Info("wal opened", "segment", w.cur, "offset", w.off, "segments", len(w.segs),
		"fsync", opts.Policy.String(), "segment_size", opts.SegmentSize)
	go w.run()
	return w, nil
}

// Dir returns the directory of the WAL.
func (w *WAL) Dir() string { return w.dir }

// Segments returns the indexes of the segment files, ascending; the last one
// is being written.
func (w *WAL) Segments() []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]uint64(nil), w.segs...)
}

// Append writes payload as one record and returns its position once the
// record is durable per the fsync policy (written and fsynced for
// PolicyAlways; written to the OS for PolicyInterval and PolicyOff).
// Concurrent appends are written and fsynced together (group commit).
//
// If Append returns an error the record is not in the log, with one
// exception: a failed fsync under PolicyAlways is reported as an error, and
// the WAL removes the batch from the file, but a crash before that removal
// completes may leave it in. Callers must therefore treat an error as "not
// acknowledged", never as "certainly absent". If ctx ends before the writer
// has taken the record, Append returns ctx.Err() and the record is never
// written; once taken, Append waits for the (bounded) write and fsync.
// payload must not be modified until Append returns.
func (w *WAL) Append(ctx context.Context, payload []byte) (Pos, error) {
	if len(payload) > w.opts.MaxRecordSize {
		return Pos{}, fmt.Errorf("%w: %d bytes > %d", ErrRecordTooLarge, len(payload), w.opts.MaxRecordSize)
	}
	return w.do(ctx, &request{payload: payload, done: make(chan result, 1)})
}

// Rotate finishes the current segment (fsyncing it unless the policy is
// off) and starts a new one. It returns the position of the first record of
// the new segment: every record appended before Rotate was called is before
// it, so Truncate(pos) deletes them once they are durable elsewhere. Rotate
// on an empty segment does nothing and returns its start.
func (w *WAL) Rotate(ctx context.Context) (Pos, error) {
	return w.do(ctx, &request{rotate: true, done: make(chan result, 1)})
}

func (w *WAL) do(ctx context.Context, r *request) (Pos, error) {
	if err := ctx.Err(); err != nil {
		return Pos{}, err
	}
	select {
	case <-w.quit:
		return Pos{}, ErrClosed
	default:
	}
	select {
	case w.reqs <- r:
	case <-ctx.Done():
		return Pos{}, ctx.Err()
	case <-w.quit:
		return Pos{}, ErrClosed
	}
	select {
	case res := <-r.done:
		return res.pos, res.err
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqPending, reqCancelled) {
			return Pos{}, ctx.Err() // never written
		}
	case <-w.stopped:
		if r.state.CompareAndSwap(reqPending, reqCancelled) {
			return Pos{}, ErrClosed
		}
	}
	// The writer took the request: it will answer.
	res := <-r.done
	return res.pos, res.err
}

// Truncate deletes the segments that lie entirely before upTo, i.e. those
// with an index below upTo.Segment, never the segment being written. Call it
// once every record before upTo is durable elsewhere. It returns the number
// of segments deleted.
func (w *WAL) Truncate(upTo Pos) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.quit:
		return 0, ErrClosed
	default:
	}
	kept := w.segs[:0:0]
	deleted := 0
	var errs []error
	for _, idx := range w.segs {
		if idx >= upTo.Segment || idx >= w.cur {
			kept = append(kept, idx)
			continue
		}
		err := os.Remove(filepath.Join(w.dir, segmentName(idx)))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			kept = append(kept, idx)
			continue
		}
		deleted++
	}
	w.segs = kept
	w.m.segments.Set(float64(len(w.segs)))
	w.m.segmentsDeleted.Add(float64(deleted))
	if deleted > 0 {
		if err := syncDir(w.dir); err != nil {
			errs = append(errs, err)
		}
		w.log.Info("wal truncated", "up_to", upTo.String(), "deleted_segments", deleted, "segments", len(w.segs))
	}
	if len(errs) > 0 {
		return deleted, fmt.Errorf("wal truncate: %w", errors.Join(errs...))
	}
	return deleted, nil
}

// Close writes what is queued, fsyncs (unless the policy is off) and closes
// the WAL. Appends after Close fail with ErrClosed.
func (w *WAL) Close() error {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		close(w.quit)
		w.mu.Unlock()
		<-w.stopped
	})
	return w.closeErr
}

// run is the writer goroutine: it batches whatever is queued into one write
// (and one fsync under PolicyAlways).
func (w *WAL) run() {
	defer close(w.stopped)
	var tick <-chan time.Time
	if w.opts.Policy == PolicyInterval {
		t := time.NewTicker(w.opts.SyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case r := <-w.reqs:
			if h := w.testBeforeBatch; h != nil {
				h()
			}
			w.collect(r)
			w.process()
		case <-tick:
			if w.unsynced && w.syncing == nil {
				w.unsynced = false
				ch := make(chan error, 1)
				f := w.f
				go func() { ch <- w.fsync(f) }()
				w.syncing = ch
			}
		case err := <-w.syncing:
			w.syncing = nil
			if err != nil {
				w.unsynced = true
				w.log.Error("wal periodic fsync failed; acknowledged records may be lost on power loss", "err", err)
			}
		case <-w.quit:
			for {
				select {
				case r := <-w.reqs:
					w.collect(r)
					w.process()
					continue
				default:
				}
				break
			}
			w.closeErr = w.shutdown()
			return
		}
	}
}

// collect starts a batch with r and adds whatever else is queued, up to
// MaxBatchBytes.
func (w *WAL) collect(r *request) {
	w.batch = w.batch[:0]
	bytes := 0
	add := func(r *request) {
		if r.state.CompareAndSwap(reqPending, reqTaken) {
			w.batch = append(w.batch, r)
			bytes += headerSize + len(r.payload)
		}
	}
	add(r)
	for bytes < w.opts.MaxBatchBytes && len(w.batch) < 4096 {
		select {
		case r := <-w.reqs:
			add(r)
			continue
		default:
		}
		break
	}
}

// process writes the batch: appends are grouped into chunks that fit in the
// current segment; each chunk is one write (+ fsync under PolicyAlways).
func (w *WAL) process() {
	batch := w.batch
	for i := 0; i < len(batch); {
		r := batch[i]
		if r.rotate {
			pos, err := w.rotate()
			r.done <- result{pos, err}
			i++
			continue
		}
		recLen := int64(headerSize + len(r.payload))
		if w.off > 0 && w.off+recLen > w.opts.SegmentSize {
			if _, err := w.rotate(); err != nil {
				w.m.appendErrors.Inc()
				r.done <- result{err: err}
				i++
				continue
			}
		}
		w.buf = w.buf[:0]
		end := w.off
		j := i
		for ; j < len(batch) && !batch[j].rotate; j++ {
			l := int64(headerSize + len(batch[j].payload))
			if j > i && end+l > w.opts.SegmentSize {
				break
			}
			w.buf = appendRecord(w.buf, batch[j].payload)
			end += l
		}
		start := w.off
		err := w.write(w.buf)
		off := start
		for _, q := range batch[i:j] {
			if err != nil {
				q.done <- result{err: err}
				continue
			}
			q.done <- result{pos: Pos{Segment: w.cur, Offset: off}}
			off += int64(headerSize + len(q.payload))
		}
		if err != nil {
			w.m.appendErrors.Add(float64(j - i))
		} else {
			w.m.recordsAppended.Add(float64(j - i))
			w.m.bytesAppended.Add(float64(len(w.buf)))
			w.m.batchRecords.Observe(float64(j - i))
			w.m.batchBytes.Observe(float64(len(w.buf)))
		}
		if cap(w.buf) > 4*w.opts.MaxBatchBytes {
			w.buf = nil
		}
		i = j
	}
	clear(w.batch)
}

// write appends buf (whole records) at the end of the current segment and
// fsyncs it under PolicyAlways. On failure the segment is cut back to its
// last good record, so no partial record stays behind.
func (w *WAL) write(buf []byte) error {
	if w.dirty {
		if err := w.repair(); err != nil {
			return err
		}
	}
	if _, err := w.f.WriteAt(buf, w.off); err != nil {
		w.dirty = true
		w.tryRepair("write", err)
		return fmt.Errorf("wal write: %w", err)
	}
	if w.opts.Policy == PolicyAlways {
		if err := w.fsync(w.f); err != nil {
			w.dirty = true
			w.tryRepair("fsync", err)
			return fmt.Errorf("wal fsync: %w", err)
		}
	} else {
		w.unsynced = true
	}
	w.off += int64(len(buf))
	return nil
}

func (w *WAL) tryRepair(op string, cause error) {
	if err := w.repair(); err != nil {
		w.log.Error("wal "+op+" failed and the segment could not be cut back yet; will retry before the next write",
			"segment", w.cur, "offset", w.off, "err", cause, "repair_err", err)
		return
	}
	w.log.Error("wal "+op+" failed; segment cut back to its last good record", "segment", w.cur, "offset", w.off, "err", cause)
}

// repair truncates the current segment to its last good record.
func (w *WAL) repair() error {
	w.waitSync()
	if err := w.f.Truncate(w.off); err != nil {
		return fmt.Errorf("wal: cut back segment after failed write: %w", err)
	}
	if w.opts.Policy != PolicyOff {
		if err := w.fsync(w.f); err != nil {
			return fmt.Errorf("wal: cut back segment after failed write: %w", err)
		}
	}
	w.dirty = false
	return nil
}

// waitSync waits for an in-flight periodic fsync.
func (w *WAL) waitSync() {
	if w.syncing == nil {
		return
	}
	if err := <-w.syncing; err != nil {
		w.unsynced = true
		w.log.Error("wal periodic fsync failed; acknowledged records may be lost on power loss", "err", err)
	}
	w.syncing = nil
}

// flush fsyncs the current segment if anything is unsynced (not under PolicyOff).
func (w *WAL) flush() error {
	w.waitSync()
	if w.opts.Policy == PolicyOff || !w.unsynced {
		return nil
	}
	if err := w.fsync(w.f); err != nil {
		return err
	}
	w.unsynced = false
	return nil
}

func (w *WAL) rotate() (Pos, error) {
	if w.off == 0 {
		return Pos{Segment: w.cur}, nil
	}
	if w.dirty {
		if err := w.repair(); err != nil {
			return Pos{}, err
		}
	}
	if err := w.flush(); err != nil {
		return Pos{}, fmt.Errorf("wal rotate: %w", err)
	}
	old := w.f
	if err := w.createSegment(w.cur + 1); err != nil {
		return Pos{}, err
	}
	if err := old.Close(); err != nil {
		w.log.Warn("wal: closing old segment", "err", err)
	}
	w.m.segments.Set(float64(len(w.Segments())))
	w.m.currentSegment.Set(float64(w.cur))
	return Pos{Segment: w.cur}, nil
}

// createSegment creates segment idx and makes it current.
func (w *WAL) createSegment(idx uint64) error {
	path := filepath.Join(w.dir, segmentName(idx))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("wal: create segment: %w", err)
	}
	if w.opts.Policy != PolicyOff {
		if err := syncDir(w.dir); err != nil {
			f.Close()
			os.Remove(path)
			return fmt.Errorf("wal: create segment: %w", err)
		}
	}
	w.mu.Lock()
	w.segs = append(w.segs, idx)
	w.cur = idx
	w.mu.Unlock()
	w.f, w.off, w.dirty, w.unsynced = wrapFile(f), 0, false, false
	w.m.segmentsCreated.Inc()
	return nil
}

func (w *WAL) shutdown() error {
	var errs []error
	if w.dirty {
		if err := w.repair(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := w.flush(); err != nil {
		errs = append(errs, err)
	}
	if err := w.f.Close(); err != nil {
		errs = append(errs, err)
	}
	w.log.Info("wal closed", "segment", w.cur, "offset", w.off)
	return errors.Join(errs...)
}

func (w *WAL) fsync(f segFile) error {
	start := time.Now()
	err := f.Sync()
	w.m.fsyncDuration.Observe(time.Since(start).Seconds())
	w.m.fsyncs.Inc()
	if err != nil {
		w.m.fsyncErrors.Inc()
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// segFile is the part of *os.File the writer uses (an interface so tests can
// inject write, truncate and fsync failures).
type segFile interface {
	WriteAt(b []byte, off int64) (int, error)
	Truncate(size int64) error
	Sync() error // fdatasync
	Close() error
}

type osFile struct{ *os.File }

func (f osFile) Sync() error { return fdatasync(f.File) }

// testWrapFile, when set by tests, wraps every segment file opened for writing.
var testWrapFile func(segFile) segFile

func wrapFile(f *os.File) segFile {
	var sf segFile = osFile{f}
	if testWrapFile != nil {
		sf = testWrapFile(sf)
	}
	return sf
}

// SizeFrom is the bytes of the segments from index seg on: what a replay that
// starts at seg reads.
func (w *WAL) SizeFrom(seg uint64) int64 {
	var n int64
	for _, idx := range w.Segments() {
		if idx < seg {
			continue
		}
		if fi, err := os.Stat(filepath.Join(w.dir, segmentName(idx))); err == nil {
			n += fi.Size()
		}
	}
	return n
}
