// Package shipper uploads finished blocks from local disk to object storage and
// deletes local copies once they are uploaded and older than the local retention.
//
// Local layout: <Dir>/<tenant>/<ULID>/ holds one block; a directory whose name is not
// a ULID (e.g. "<ULID>.tmp", being written) or that has no meta.json is not a block and
// is ignored. Bucket layout: <tenant>/<ULID>/<file>, meta.json uploaded last, so a
// reader that sees meta.json sees the whole block.
//
// Uploaded state is a marker file <block>/.uploaded written atomically after the last
// object is in the bucket: a restart neither uploads a block twice nor forgets one (at
// start every tenant's directory is scanned and every block without the marker queued).
// A crash between the meta.json upload and the marker is detected at the next attempt
// (meta.json already in the bucket with the local size) and the block is not sent again.
package shipper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/dskit/backoff"
	"github.com/grafana/dskit/services"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"

	"github.com/hearth-dev/hearth/internal/durable"
)

const (
	// MetaFile is uploaded last.
	MetaFile = "meta.json"
	// MarkerFile marks a block as uploaded.
	MarkerFile = ".uploaded"
	// deletingSuffix: a block being deleted is renamed first, so no reader or restart
	// sees a half-deleted block under its ULID.
	deletingSuffix = ".deleting"

	DefaultLocalRetention    = 6 * time.Hour
	DefaultMinBackoff        = 500 * time.Millisecond
	DefaultMaxBackoff        = time.Minute
	DefaultRetentionInterval = time.Minute
)

// Options configure a Shipper. Dir and Bucket are required.
type Options struct {
	// Dir is the local blocks directory, <data-dir>/blocks, holding <tenant>/<ULID>/.
	Dir    string
	Bucket objstore.Bucket
	Logger *slog.Logger
	// Registerer receives the hearth_shipper_* metrics (nil: none registered).
	Registerer prometheus.Registerer
	// LocalRetention: uploaded blocks whose ULID time is older than this are deleted
	// locally. 0 means DefaultLocalRetention; negative keeps them forever. A block not
	// uploaded is never deleted.
	LocalRetention time.Duration
	// OnUploaded is called (from the upload goroutine, after the marker is durable)
	// once per block uploaded by this process. It must not block for long.
	OnUploaded func(tenant string, id ulid.ULID)

	// Retry backoff after a failed attempt: exponential from MinBackoff to MaxBackoff,
	// with jitter. Zero values mean the defaults.
	MinBackoff, MaxBackoff time.Duration
	// RetentionInterval is how often local retention runs and the directory is
	// rescanned for blocks nobody enqueued (0: DefaultRetentionInterval).
	RetentionInterval time.Duration
	// Now is the clock (nil: time.Now); tests set it.
	Now func() time.Time
}

// BlockInfo describes a local block.
type BlockInfo struct {
	Tenant     string
	ULID       ulid.ULID
	Dir        string
	Bytes      int64
	Uploaded   bool
	UploadedAt time.Time // zero unless Uploaded
}

// Status is the shipper's state for health checks and error messages.
type Status struct {
	PendingBlocks int
	PendingBytes  int64
	// LastError is the last failed attempt's error, nil once an attempt succeeds.
	LastError error
	// FailingSince is when the current run of failures began (zero when healthy).
	FailingSince time.Time
	// LastSuccess is when the last block finished uploading (zero: none yet).
	LastSuccess time.Time
}

type item struct {
	tenant string
	id     ulid.ULID
	dir    string
	bytes  int64
	seq    uint64
	done   map[string]bool // objects already uploaded by this process
}

// Shipper uploads blocks. Create it with New, start Run (or the service,
// whose running is Run), feed it with Enqueue.
type Shipper struct {
	services.Service

	opts    Options
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics

	mu           sync.Mutex
	queue        []*item // pending, upload order; queue[0] is the one being uploaded
	byDir        map[string]*item
	seq          uint64
	pendingBytes int64
	changed      chan struct{} // closed and replaced whenever an item leaves the queue
	lastErr      error
	failingSince time.Time
	lastSuccess  time.Time

	wake    chan struct{} // new work, or a Flush asking to retry now
	running atomic.Bool
}

// New creates a Shipper and scans Dir: every complete block without the uploaded
// marker, of every tenant, is queued (oldest first), and deletions interrupted by a
// crash are finished. Scan problems are logged, not fatal: the scan is repeated every
// RetentionInterval while Run runs.
func New(opts Options) *Shipper {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LocalRetention == 0 {
		opts.LocalRetention = DefaultLocalRetention
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = opts.MinBackoff
	}
	if opts.RetentionInterval <= 0 {
		opts.RetentionInterval = DefaultRetentionInterval
	}
	s := &Shipper{
		opts:    opts,
		log:     opts.Logger.With("component", "shipper"),
		now:     opts.Now,
		byDir:   map[string]*item{},
		changed: make(chan struct{}),
		wake:    make(chan struct{}, 1),
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.Service = services.NewBasicService(nil, s.Run, nil).WithName("shipper")
	s.metrics = newMetrics(opts.Registerer, s)
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		s.log.Error("cannot create the blocks directory", "dir", opts.Dir, "err", err)
	}
	n, bytes := s.scan()
	if n > 0 {
		s.log.Info("found blocks not yet uploaded", "blocks", n, "bytes", bytes)
	}
	return s
}

// Enqueue queues the block in blockDir (normally <Dir>/<tenant>/<ULID>) for upload to
// <tenant>/<ULID>/. A block already queued or already uploaded is not queued again.
func (s *Shipper) Enqueue(tenant, blockDir string) error {
	if tenant == "" || strings.ContainsAny(tenant, "/\\") || tenant == "." || tenant == ".." {
		return fmt.Errorf("shipper: invalid tenant %q", tenant)
	}
	id, err := ulid.ParseStrict(filepath.Base(blockDir))
	if err != nil {
		return fmt.Errorf("shipper: %s is not a block directory (its name is not a ULID): %w", blockDir, err)
	}
	if _, err := os.Stat(filepath.Join(blockDir, MetaFile)); err != nil {
		return fmt.Errorf("shipper: block %s is incomplete: %w", blockDir, err)
	}
	if _, ok := readMarker(blockDir); ok {
		return nil
	}
	size, err := dirSize(blockDir)
	if err != nil {
		return fmt.Errorf("shipper: block %s: %w", blockDir, err)
	}
	s.add(tenant, id, blockDir, size)
	return nil
}

func (s *Shipper) add(tenant string, id ulid.ULID, dir string, size int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	dir = filepath.Clean(dir)
	if _, ok := s.byDir[dir]; ok {
		return false
	}
	// A scan may have looked before the uploader marked the block and finished it;
	// the marker is durable before finish takes the lock, so look again.
	if _, ok := readMarker(dir); ok {
		return false
	}
	s.seq++
	it := &item{tenant: tenant, id: id, dir: dir, bytes: size, seq: s.seq, done: map[string]bool{}}
	s.queue = append(s.queue, it)
	s.byDir[dir] = it
	s.pendingBytes += size
	s.kick()
	return true
}

// DropTenant deletes a deleted tenant's local blocks, uploaded or not, and
// forgets its queued uploads (one in flight may still land: the tenant's
// compactor deletes it). It returns the ids of the blocks that were not
// uploaded, which the store stops waiting for.
func (s *Shipper) DropTenant(tenant string) ([]string, error) {
	if tenant == "" || strings.ContainsAny(tenant, "/\\") || tenant == "." || tenant == ".." {
		return nil, fmt.Errorf("shipper: invalid tenant %q", tenant)
	}
	s.mu.Lock()
	var ids []string
	kept := s.queue[:0]
	for _, it := range s.queue {
		if it.tenant != tenant {
			kept = append(kept, it)
			continue
		}
		ids = append(ids, it.id.String())
		delete(s.byDir, it.dir)
		s.pendingBytes -= it.bytes
	}
	clear(s.queue[len(kept):])
	s.queue = kept
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	// Not queued yet (the periodic scan finds them) and not uploaded.
	tdir := filepath.Join(s.opts.Dir, tenant)
	entries, err := os.ReadDir(tdir)
	if errors.Is(err, fs.ErrNotExist) {
		return ids, nil
	}
	if err != nil {
		return ids, err
	}
	var errs []error
	for _, e := range entries {
		id, perr := ulid.ParseStrict(e.Name())
		if perr != nil || !e.IsDir() {
			continue
		}
		dir := filepath.Join(tdir, e.Name())
		if _, up := readMarker(dir); !up && !slices.Contains(ids, id.String()) {
			ids = append(ids, id.String())
		}
		// Renamed first, as retention does: a crash leaves a directory the
		// next scan deletes, never a block it would upload.
		gone := dir + deletingSuffix
		if err := os.Rename(dir, gone); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.RemoveAll(gone); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(tdir); err != nil {
		errs = append(errs, err)
	}
	if len(ids) > 0 {
		s.log.Info("local blocks of a deleted tenant dropped", "tenant", tenant, "not_uploaded", len(ids))
	}
	return ids, errors.Join(errs...)
}

func (s *Shipper) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run uploads queued blocks and applies local retention until ctx ends. A failed
// upload is retried forever (exponential backoff with jitter, at most MaxBackoff
// apart), each failure logged and counted. Call it once.
func (s *Shipper) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("shipper: Run called twice")
	}
	defer s.running.Store(false)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.retentionLoop(ctx)
	}()
	s.uploadLoop(ctx)
	wg.Wait()
	return nil
}

// Flush waits until every block queued before the call is uploaded (a pending retry
// is attempted at once), or ctx ends; then it returns an error naming what is left
// and the last upload error. Run must be running for blocks to be uploaded.
func (s *Shipper) Flush(ctx context.Context) error {
	s.mu.Lock()
	target := s.seq
	s.mu.Unlock()
	s.kick()
	for {
		s.mu.Lock()
		left, bytes := 0, int64(0)
		for _, it := range s.queue {
			if it.seq <= target {
				left++
				bytes += it.bytes
			}
		}
		ch, lastErr := s.changed, s.lastErr
		s.mu.Unlock()
		if left == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			msg := fmt.Sprintf("shipper: flush: %d blocks (%s) not uploaded yet", left, formatBytes(bytes))
			if lastErr != nil {
				msg += "; last upload error: " + lastErr.Error()
			}
			if !s.running.Load() {
				msg += "; the shipper is not running"
			}
			return fmt.Errorf("%s: %w", msg, context.Cause(ctx))
		}
	}
}

// PendingBytes is the size of the local blocks not yet uploaded.
func (s *Shipper) PendingBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pendingBytes
}

// PendingBlocks is the number of local blocks not yet uploaded.
func (s *Shipper) PendingBlocks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// Status returns the shipper's state.
func (s *Shipper) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{
		PendingBlocks: len(s.queue),
		PendingBytes:  s.pendingBytes,
		LastError:     s.lastErr,
		FailingSince:  s.failingSince,
		LastSuccess:   s.lastSuccess,
	}
}

// Healthy is false while uploads fail (from the first failed attempt until the next
// success), with a readable reason such as
// "bucket unreachable for 3m0s: <err>; 1.2 GiB in 4 blocks waiting to upload".
func (s *Shipper) Healthy() (bool, string) {
	st := s.Status()
	if st.LastError == nil {
		return true, ""
	}
	return false, s.reason(st)
}

func (s *Shipper) reason(st Status) string {
	r := fmt.Sprintf("%s in %d blocks waiting to upload", formatBytes(st.PendingBytes), st.PendingBlocks)
	if st.LastError != nil {
		d := s.now().Sub(st.FailingSince).Round(time.Second)
		r = fmt.Sprintf("bucket unreachable for %s: %v; %s", d, st.LastError, r)
	}
	return r
}

// OverBudget returns nil while the blocks waiting to upload take at most budget bytes
// (budget <= 0: no limit), else an error saying why writes should be refused, e.g.
// "1.2 GiB in 4 blocks waiting to upload exceeds the disk budget of 1.0 GiB; bucket
// unreachable for 3m0s: <err>".
func (s *Shipper) OverBudget(budget int64) error {
	st := s.Status()
	if budget <= 0 || st.PendingBytes <= budget {
		return nil
	}
	msg := fmt.Sprintf("%s in %d blocks waiting to upload exceeds the disk budget of %s",
		formatBytes(st.PendingBytes), st.PendingBlocks, formatBytes(budget))
	if st.LastError != nil {
		msg += fmt.Sprintf("; bucket unreachable for %s: %v", s.now().Sub(st.FailingSince).Round(time.Second), st.LastError)
	}
	return errors.New(msg)
}

// LocalBlocks lists the blocks on local disk (every tenant), oldest first.
func (s *Shipper) LocalBlocks() ([]BlockInfo, error) {
	var out []BlockInfo
	err := s.walkBlocks(func(b BlockInfo) { out = append(out, b) })
	slices.SortFunc(out, func(a, b BlockInfo) int { return a.ULID.Compare(b.ULID) })
	return out, err
}

// NotUploaded lists the ids of the local blocks not in the bucket yet.
func (s *Shipper) NotUploaded() ([]string, error) {
	blocks, err := s.LocalBlocks()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, b := range blocks {
		if !b.Uploaded {
			ids = append(ids, b.ULID.String())
		}
	}
	return ids, nil
}

// walkBlocks calls fn for every complete local block; it finishes interrupted deletions.
func (s *Shipper) walkBlocks(fn func(BlockInfo)) error {
	tenants, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range tenants {
		if !t.IsDir() || strings.HasPrefix(t.Name(), ".") {
			continue
		}
		tdir := filepath.Join(s.opts.Dir, t.Name())
		entries, err := os.ReadDir(tdir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			dir := filepath.Join(tdir, e.Name())
			if strings.HasSuffix(e.Name(), deletingSuffix) {
				if _, err := ulid.ParseStrict(strings.TrimSuffix(e.Name(), deletingSuffix)); err == nil {
					if err := os.RemoveAll(dir); err != nil {
						errs = append(errs, err)
					}
				}
				continue
			}
			id, err := ulid.ParseStrict(e.Name())
			if err != nil {
				continue // e.g. <ULID>.tmp being written
			}
			if _, err := os.Stat(filepath.Join(dir, MetaFile)); err != nil {
				continue // incomplete
			}
			b := BlockInfo{Tenant: t.Name(), ULID: id, Dir: dir}
			b.UploadedAt, b.Uploaded = readMarker(dir)
			if b.Bytes, err = dirSize(dir); err != nil {
				errs = append(errs, err)
				continue
			}
			fn(b)
		}
	}
	return errors.Join(errs...)
}

// scan queues every complete local block without the marker, oldest first.
func (s *Shipper) scan() (int, int64) {
	var todo []BlockInfo
	if err := s.walkBlocks(func(b BlockInfo) {
		if !b.Uploaded {
			todo = append(todo, b)
		}
	}); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("scanning local blocks", "dir", s.opts.Dir, "err", err)
	}
	slices.SortFunc(todo, func(a, b BlockInfo) int { return a.ULID.Compare(b.ULID) })
	n, bytes := 0, int64(0)
	for _, b := range todo {
		if s.add(b.Tenant, b.ULID, b.Dir, b.Bytes) {
			n++
			bytes += b.Bytes
		}
	}
	return n, bytes
}

func (s *Shipper) uploadLoop(ctx context.Context) {
	failures := 0
	retry := newBackoff(ctx, s.opts.MinBackoff, s.opts.MaxBackoff)
	for ctx.Err() == nil {
		s.mu.Lock()
		var it *item
		if len(s.queue) > 0 {
			it = s.queue[0]
		}
		s.mu.Unlock()
		if it == nil {
			select {
			case <-s.wake:
			case <-ctx.Done():
			}
			continue
		}
		start := time.Now()
		err := s.upload(ctx, it)
		if ctx.Err() != nil {
			return // shutting down: the block stays queued (and unmarked on disk)
		}
		switch {
		case err == nil:
			failures = 0
			retry.Reset()
			s.metrics.uploads.Inc()
			s.metrics.duration.Observe(time.Since(start).Seconds())
			s.metrics.uploadedBytes.Add(float64(it.bytes))
			s.log.Info("block uploaded", "tenant", it.tenant, "block", it.id.String(), "bytes", it.bytes, "duration", time.Since(start).Round(time.Millisecond))
			s.finish(it, true)
			if s.opts.OnUploaded != nil {
				s.opts.OnUploaded(it.tenant, it.id)
			}
		case errors.Is(err, errBlockGone):
			s.log.Error("block disappeared from local disk before it was uploaded; dropping it", "tenant", it.tenant, "block", it.id.String(), "dir", it.dir, "err", err)
			s.metrics.dropped.Inc()
			s.finish(it, false)
		default:
			failures++
			delay := retry.NextDelay()
			s.metrics.failures.Inc()
			s.fail(it, err)
			s.log.Warn("block upload failed; will retry", "tenant", it.tenant, "block", it.id.String(), "attempt", failures, "retry_in", delay.Round(time.Millisecond), "err", err)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-s.wake:
			case <-ctx.Done():
			}
			t.Stop()
		}
	}
}

// finish removes it from the queue; uploaded records a success.
func (s *Shipper) finish(it *item, uploaded bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byDir[it.dir] != it {
		return // dropped meanwhile (DropTenant)
	}
	s.queue = slices.DeleteFunc(s.queue, func(x *item) bool { return x == it })
	delete(s.byDir, it.dir)
	s.pendingBytes -= it.bytes
	if uploaded {
		s.lastErr = nil
		s.failingSince = time.Time{}
		s.lastSuccess = s.now()
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// fail records a failed attempt and moves it to the back of the queue, so one bad
// block does not hold back the others.
func (s *Shipper) fail(it *item, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastErr == nil {
		s.failingSince = s.now()
	}
	s.lastErr = err
	if i := slices.Index(s.queue, it); i >= 0 && len(s.queue) > 1 {
		s.queue = append(slices.Delete(s.queue, i, i+1), it)
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

var errBlockGone = errors.New("block directory is gone")

// upload sends every file of the block, meta.json last, then writes the marker.
func (s *Shipper) upload(ctx context.Context, it *item) error {
	metaPath := filepath.Join(it.dir, MetaFile)
	st, err := os.Stat(metaPath)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %v", errBlockGone, err)
	}
	if err != nil {
		return err
	}
	prefix := it.tenant + "/" + it.id.String() + "/"
	bkt := s.opts.Bucket

	// A crash after meta.json was uploaded but before the marker: the block is whole
	// in the bucket already.
	var reader objstore.BucketReader = bkt
	if ib, ok := bkt.(objstore.InstrumentedBucket); ok {
		reader = ib.ReaderWithExpectedErrs(bkt.IsObjNotFoundErr)
	}
	attrs, err := reader.Attributes(ctx, prefix+MetaFile)
	switch {
	case err == nil && attrs.Size == st.Size():
		s.log.Info("block already in the bucket (upload interrupted before it was marked)", "tenant", it.tenant, "block", it.id.String())
		return writeMarker(it.dir, s.now())
	case err != nil && !bkt.IsObjNotFoundErr(err):
		return fmt.Errorf("checking %s: %w", prefix+MetaFile, err)
	}

	files, err := blockFiles(it.dir)
	if err != nil {
		return err
	}
	for _, f := range files {
		if it.done[f] {
			continue
		}
		if err := uploadFile(ctx, bkt, filepath.Join(it.dir, filepath.FromSlash(f)), prefix+f); err != nil {
			return err
		}
		it.done[f] = true
	}
	if err := uploadFile(ctx, bkt, metaPath, prefix+MetaFile); err != nil {
		return err
	}
	if err := writeMarker(it.dir, s.now()); err != nil {
		// Uploaded but not marked: the next attempt finds meta.json and only marks.
		return fmt.Errorf("writing the uploaded marker: %w", err)
	}
	return nil
}

func uploadFile(ctx context.Context, bkt objstore.Bucket, local, name string) error {
	f, err := os.Open(local)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %v", errBlockGone, err)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := bkt.Upload(ctx, name, f); err != nil {
		return fmt.Errorf("upload %s: %w", name, err)
	}
	return nil
}

// blockFiles lists the block's regular files as slash-separated relative paths, in
// lexical order, without meta.json and without hidden files (the marker, temporaries).
func blockFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w: %v", errBlockGone, err)
			}
			return err
		}
		if p == dir {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel != MetaFile {
			files = append(files, rel)
		}
		return nil
	})
	slices.Sort(files)
	return files, err
}

type marker struct {
	UploadedAt time.Time `json:"uploaded_at"`
}

// writeMarker durably creates <dir>/.uploaded.
func writeMarker(dir string, now time.Time) error {
	b, err := json.Marshal(marker{UploadedAt: now.UTC()})
	if err != nil {
		return err
	}
	return durable.WriteFile(filepath.Join(dir, MarkerFile), b, 0o644)
}

// readMarker tells whether the block is marked uploaded, and when.
func readMarker(dir string) (time.Time, bool) {
	p := filepath.Join(dir, MarkerFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return time.Time{}, false
	}
	var m marker
	if json.Unmarshal(b, &m) != nil || m.UploadedAt.IsZero() {
		if st, err := os.Stat(p); err == nil {
			return st.ModTime(), true
		}
	}
	return m.UploadedAt, true
}

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

func (s *Shipper) retentionLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.RetentionInterval)
	defer t.Stop()
	for {
		s.applyRetention()
		if n, bytes := s.scan(); n > 0 {
			s.log.Warn("found local blocks nobody queued; queued them", "blocks", n, "bytes", bytes)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// applyRetention deletes uploaded local blocks whose ULID time is older than
// LocalRetention. Blocks without the marker are never deleted.
func (s *Shipper) applyRetention() int {
	if s.opts.LocalRetention < 0 {
		return 0
	}
	cutoff := s.now().Add(-s.opts.LocalRetention)
	deleted := 0
	err := s.walkBlocks(func(b BlockInfo) {
		if !b.Uploaded || !ulid.Time(b.ULID.Time()).Before(cutoff) {
			return
		}
		s.mu.Lock()
		_, queued := s.byDir[filepath.Clean(b.Dir)]
		s.mu.Unlock()
		if queued {
			return
		}
		gone := b.Dir + deletingSuffix
		if err := os.Rename(b.Dir, gone); err != nil {
			s.log.Error("deleting local block", "tenant", b.Tenant, "block", b.ULID.String(), "err", err)
			return
		}
		if err := os.RemoveAll(gone); err != nil {
			s.log.Error("deleting local block", "tenant", b.Tenant, "block", b.ULID.String(), "err", err)
		}
		deleted++
		s.metrics.deleted.Inc()
		s.log.Info("deleted local block past retention", "tenant", b.Tenant, "block", b.ULID.String(), "bytes", b.Bytes)
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("local retention", "dir", s.opts.Dir, "err", err)
	}
	return deleted
}

// newBackoff is dskit's backoff shaped as the options describe it: the delay
// before retry n (n >= 1) is min·2^(n-1) capped at max, with jitter in [d/2, d].
func newBackoff(ctx context.Context, lo, hi time.Duration) *backoff.Backoff {
	return backoff.New(ctx, backoff.Config{MinBackoff: lo / 2, MaxBackoff: hi})
}

func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
