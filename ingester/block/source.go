package block

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/querylimit"
)

// BucketSource is a querier.Source over the blocks of a bucket laid out as
// <tenant>/<ULID>/ (the bucket itself, or the local blocks directory through
// objstore's filesystem provider). It lists a tenant's blocks and caches
// their meta.json, refreshing the list at most every SyncInterval (and on
// Sync); a block without meta.json is incomplete and ignored. A query prunes
// blocks by their meta time range before opening any other file, and opens
// the rest lazily, keeping up to MaxOpenBlocks open readers (LRU).
//
// The zero value with Bucket set is ready to use; set the other fields before
// the first call.
type BucketSource struct {
	Bucket objstore.BucketReader
	// SyncInterval is the longest a tenant's block list is reused before a
	// query lists the bucket again; 0: 30s, negative: list on every query.
	SyncInterval time.Duration
	// MaxOpenBlocks bounds the open readers (each holds its series index); 0: 256.
	MaxOpenBlocks int
	// SymbolsBudget bounds the decoded symbols kept in memory, bytes; 0: 256 MiB.
	SymbolsBudget int64
	// Now is the clock (default time.Now).
	Now func() time.Time
	// IndexMaxAge: a tenant's bucket index (bucket-index.json, written by the
	// compactor) younger than this gives the metas and deletion marks of the
	// blocks it lists, so they need not be read one by one; an older or
	// missing one is ignored and the markers are listed. The tenant's
	// directory is listed either way, so blocks uploaded after the index was
	// written are seen. 0: 1h; negative: never read the index.
	IndexMaxAge time.Duration

	initOnce sync.Once
	mu       sync.Mutex
	tenants  map[string]*tenantBlocks
	open     map[ulid.ULID]*list.Element // of *openBlock
	lru      *list.List
	syms     *SymbolCache
	swept    time.Time // last sweep of idle tenants
}

type tenantBlocks struct {
	name      string
	mu        sync.Mutex // serialises listing
	synced    time.Time
	metas     map[ulid.ULID]*Meta         // complete blocks
	marks     map[ulid.ULID]*DeletionMark // of complete blocks
	fromIndex bool                        // the last sync used the bucket index
	used      atomic.Value                // time.Time of the last query
}

type openBlock struct {
	id   ulid.ULID
	done chan struct{} // closed when r, err are set
	r    *Reader
	err  error
}

func (s *BucketSource) init() {
	s.initOnce.Do(func() {
		s.tenants = map[string]*tenantBlocks{}
		s.open = map[ulid.ULID]*list.Element{}
		s.lru = list.New()
		budget := s.SymbolsBudget
		if budget <= 0 {
			budget = 256 << 20
		}
		s.syms = NewSymbolCache(budget)
		if s.Now == nil {
			s.Now = time.Now
		}
		if s.SyncInterval == 0 {
			s.SyncInterval = 30 * time.Second
		}
		if s.MaxOpenBlocks <= 0 {
			s.MaxOpenBlocks = 256
		}
		if s.IndexMaxAge == 0 {
			s.IndexMaxAge = time.Hour
		}
	})
}

// SymbolCache returns the cache the source's readers share.
func (s *BucketSource) SymbolCache() *SymbolCache {
	s.init()
	return s.syms
}

// tenantIdle: a tenant's listing not used for this long is forgotten (it is
// listed again when queried), so the source does not keep every tenant id
// ever queried.
const tenantIdle = time.Hour

func (s *BucketSource) tenant(t string) *tenantBlocks {
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.swept) >= tenantIdle/4 {
		s.swept = now
		for name, tb := range s.tenants {
			if name != t && now.Sub(tb.used.Load().(time.Time)) >= tenantIdle {
				delete(s.tenants, name)
			}
		}
	}
	tb := s.tenants[t]
	if tb == nil {
		tb = &tenantBlocks{name: t, metas: map[ulid.ULID]*Meta{}, marks: map[ulid.ULID]*DeletionMark{}}
		s.tenants[t] = tb
	}
	tb.used.Store(now)
	return tb
}

// Tenants is how many tenants' listings the source keeps.
func (s *BucketSource) Tenants() int {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tenants)
}

// TimeSpan returns the oldest and newest profile time (ns) of the tenant's
// visible blocks from their meta.json, without reading a row (ok false: no
// block holds a profile).
func (s *BucketSource) TimeSpan(ctx context.Context, tenant string) (oldest, newest int64, ok bool, err error) {
	return s.timeSpan(ctx, tenant, nil)
}

func (s *BucketSource) timeSpan(ctx context.Context, tenant string, keep func(*Meta) bool) (oldest, newest int64, ok bool, err error) {
	metas, err := s.Blocks(ctx, tenant)
	if err != nil {
		return 0, 0, false, err
	}
	for _, m := range metas {
		if m.Stats.Profiles == 0 || (keep != nil && !keep(m)) {
			continue
		}
		if !ok {
			oldest, newest, ok = m.MinTime, m.MaxTime, true
			continue
		}
		oldest, newest = min(oldest, m.MinTime), max(newest, m.MaxTime)
	}
	return oldest, newest, ok, nil
}

// TimeSpan is BucketSource.TimeSpan over the view's blocks.
func (v *SourceView) TimeSpan(ctx context.Context, tenant string) (oldest, newest int64, ok bool, err error) {
	return v.s.timeSpan(ctx, tenant, v.keep)
}

// Sync lists every tenant's blocks now.
func (s *BucketSource) Sync(ctx context.Context) error {
	s.init()
	var tenants []string
	err := s.Bucket.Iter(ctx, "", func(name string) error {
		if strings.HasSuffix(name, "/") {
			tenants = append(tenants, strings.TrimSuffix(name, "/"))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list tenants: %w", err)
	}
	var errs []error
	for _, t := range tenants {
		if err := s.syncTenant(ctx, s.tenant(t)); err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", t, err))
		}
	}
	return errors.Join(errs...)
}

// Superseded reports whether a reader may skip a block with deletion mark d
// (nil: not marked) when the complete blocks it sees are visible: a block
// past its retention at once, a compacted one once every block that replaces
// it is visible. Until then the reader reads both, and the querier counts
// each profile once by (series, profile id).
func Superseded(d *DeletionMark, visible map[ulid.ULID]*Meta) bool {
	if d == nil {
		return false
	}
	if d.Reason == ReasonRetention {
		return true
	}
	if len(d.ReplacedBy) == 0 {
		return false
	}
	for _, r := range d.ReplacedBy {
		if _, ok := visible[r]; !ok {
			return false
		}
	}
	return true
}

// FromIndex reports whether the tenant's last sync used its bucket index.
func (s *BucketSource) FromIndex(tenant string) bool {
	s.init()
	tb := s.tenant(tenant)
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.fromIndex
}

// Blocks returns the metas of the tenant's complete blocks, oldest first,
// listing the bucket when the cached list is older than SyncInterval. Blocks
// superseded by others (see Superseded) are left out.
func (s *BucketSource) Blocks(ctx context.Context, tenant string) ([]*Meta, error) {
	s.init()
	tb := s.tenant(tenant)
	tb.mu.Lock()
	defer tb.mu.Unlock()
	// Checked under the listing's lock: queries that found the list stale
	// together list the bucket once, the others reuse what the first listed.
	if s.SyncInterval < 0 || tb.synced.IsZero() || s.Now().Sub(tb.synced) >= s.SyncInterval {
		if err := s.syncLocked(ctx, tb); err != nil {
			return nil, err
		}
	}
	out := make([]*Meta, 0, len(tb.metas))
	for id, m := range tb.metas {
		if Superseded(tb.marks[id], tb.metas) {
			continue
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ULID.Compare(out[j].ULID) < 0 })
	return out, nil
}

func (s *BucketSource) syncTenant(ctx context.Context, tb *tenantBlocks) error {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return s.syncLocked(ctx, tb)
}

func (s *BucketSource) syncLocked(ctx context.Context, tb *tenantBlocks) error {
	tenant := tb.name
	var ix *Index
	if s.IndexMaxAge > 0 {
		if b, err := readAll(ctx, s.Bucket, IndexPath(tenant)); err == nil {
			if got, err := ParseIndex(b); err == nil && got.Tenant == tenant && s.Now().Sub(got.UpdatedAt) <= s.IndexMaxAge {
				ix = got
			}
		}
	}
	seen := map[ulid.ULID]bool{}
	var fresh []ulid.ULID
	err := s.Bucket.Iter(ctx, tenant+"/", func(name string) error {
		if !strings.HasSuffix(name, "/") {
			return nil
		}
		id, err := ulid.ParseStrict(path.Base(strings.TrimSuffix(name, "/")))
		if err != nil {
			return nil // not a block (a .tmp directory, the markers)
		}
		seen[id] = true
		if _, ok := tb.metas[id]; !ok {
			fresh = append(fresh, id)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list blocks: %w", err)
	}
	for id := range tb.metas {
		if !seen[id] {
			delete(tb.metas, id)
			delete(tb.marks, id)
			s.drop(id)
		}
	}
	var indexed map[ulid.ULID]*Meta
	if ix != nil {
		indexed = make(map[ulid.ULID]*Meta, len(ix.Blocks))
		for _, m := range ix.Blocks {
			indexed[m.ULID] = m
		}
	}
	var errs []error
	for _, id := range fresh {
		if m, ok := indexed[id]; ok {
			tb.metas[id] = m
			continue
		}
		m, err := ReadMeta(ctx, s.Bucket, tenant, id)
		if err != nil {
			// Absent: not uploaded yet. Refused in a compactor's block: a torn
			// upload, or one this build cannot read (the compactor alerts on
			// it). A failed read is the query's error, never a silent skip:
			// the block's sources may be long gone.
			if !errors.Is(err, ErrIncomplete) && !(errors.Is(err, ErrMetaRefused) && CompactorPartial(ctx, s.Bucket, tenant, id)) {
				errs = append(errs, err)
			}
			continue
		}
		tb.metas[id] = m
	}
	// Deletion marks: from the index when it is fresh, else listed. A mark
	// never goes away before its block, so known ones are kept.
	if ix != nil {
		for _, d := range ix.DeletionMarks {
			if _, ok := tb.metas[d.ID]; ok {
				tb.marks[d.ID] = d
			}
		}
	} else {
		marks, err := ListDeletionMarks(ctx, s.Bucket, tenant, func(id ulid.ULID) bool {
			_, known := tb.marks[id]
			_, complete := tb.metas[id]
			return complete && !known
		})
		if err != nil {
			errs = append(errs, err)
		}
		for id, d := range marks {
			tb.marks[id] = d
		}
	}
	tb.fromIndex = ix != nil
	if len(errs) > 0 {
		// Not synced: the next query lists again rather than answering
		// without the blocks this one could not read.
		tb.synced = time.Time{}
		return errors.Join(errs...)
	}
	tb.synced = s.Now()
	return nil
}

// ErrIncomplete is returned by ReadMeta for a block without meta.json: being
// written or uploaded, or a leftover of a crash.
var ErrIncomplete = errors.New("block has no meta.json")

// ErrMetaRefused is returned by ReadMeta for a meta.json that was read but
// that this build refuses: torn, too large, a newer format, or naming another
// block. Unlike ErrIncomplete it never proves a block partial.
var ErrMetaRefused = errors.New("meta.json refused")

// CompactorPartial reports whether block id is the compactor's (it holds
// CompactorMarker): a meta.json that does not parse there is a torn upload
// (a filesystem bucket writes objects in place), not a damaged block.
func CompactorPartial(ctx context.Context, bkt objstore.BucketReader, tenant string, id ulid.ULID) bool {
	ok, err := bkt.Exists(ctx, path.Join(tenant, id.String(), CompactorMarker))
	return err == nil && ok
}

// ReadMeta reads and checks the meta.json of block id of tenant.
func ReadMeta(ctx context.Context, bkt objstore.BucketReader, tenant string, id ulid.ULID) (*Meta, error) {
	name := path.Join(tenant, id.String(), MetaFile)
	b, err := readLimited(ctx, bkt, name, maxMetaSize+1)
	if err != nil {
		if bkt.IsObjNotFoundErr(errors.Unwrap(err)) || bkt.IsObjNotFoundErr(err) {
			return nil, fmt.Errorf("block %s/%s: %w", tenant, id, ErrIncomplete)
		}
		return nil, err
	}
	m, err := ParseMeta(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, ErrMetaRefused, err)
	}
	if m.ULID != id || m.Tenant != tenant {
		return nil, fmt.Errorf("%s: %w: %w: meta.json names block %s of tenant %q", name, ErrMetaRefused, ErrCorrupt, m.ULID, m.Tenant)
	}
	return m, nil
}

// ListDeletionMarks lists the tenant's deletion marks and reads those want
// asks for (nil: all). A mark that cannot be parsed is an error; one that
// went away meanwhile is skipped.
func ListDeletionMarks(ctx context.Context, bkt objstore.BucketReader, tenant string, want func(ulid.ULID) bool) (map[ulid.ULID]*DeletionMark, error) {
	var ids []ulid.ULID
	err := bkt.Iter(ctx, path.Join(tenant, MarkersDir)+"/", func(name string) error {
		if id, ok := ParseDeletionMarkName(name); ok && (want == nil || want(id)) {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list deletion marks: %w", err)
	}
	out := map[ulid.ULID]*DeletionMark{}
	var errs []error
	for _, id := range ids {
		b, err := readAll(ctx, bkt, DeletionMarkPath(tenant, id))
		if err != nil {
			if bkt.IsObjNotFoundErr(errors.Unwrap(err)) || bkt.IsObjNotFoundErr(err) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		d, err := ParseDeletionMark(b)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", DeletionMarkPath(tenant, id), err))
			continue
		}
		if d.ID != id {
			errs = append(errs, fmt.Errorf("%s: names block %s", DeletionMarkPath(tenant, id), d.ID))
			continue
		}
		out[id] = d
	}
	return out, errors.Join(errs...)
}

// drop forgets an open reader and its symbols.
func (s *BucketSource) drop(id ulid.ULID) {
	s.mu.Lock()
	if e, ok := s.open[id]; ok {
		s.lru.Remove(e)
		delete(s.open, id)
	}
	s.mu.Unlock()
	s.syms.forget(id.String())
}

// reader returns block m's reader, opening it once for every query asking
// meanwhile. The open runs under its own context (bounded by loadTimeout):
// a query that gives up returns its own error, the others keep waiting.
func (s *BucketSource) reader(ctx context.Context, m *Meta) (*Reader, error) {
	s.mu.Lock()
	e, ok := s.open[m.ULID]
	if ok {
		s.lru.MoveToFront(e)
	} else {
		e = s.lru.PushFront(&openBlock{id: m.ULID, done: make(chan struct{})})
		s.open[m.ULID] = e
		for s.lru.Len() > s.MaxOpenBlocks {
			old := s.lru.Remove(s.lru.Back()).(*openBlock)
			delete(s.open, old.id)
		}
		go s.openBlock(querylimit.Lenient(context.WithoutCancel(ctx)), e, m) // shared: charged, never refused
	}
	ob := e.Value.(*openBlock)
	s.mu.Unlock()
	select {
	case <-ob.done:
		return ob.r, ob.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *BucketSource) openBlock(ctx context.Context, e *list.Element, m *Meta) {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	ob := e.Value.(*openBlock)
	ob.r, ob.err = Open(ctx, s.Bucket, m.Tenant+"/"+m.ULID.String()+"/", ReaderOptions{Meta: m, Symbols: s.syms})
	close(ob.done)
	if ob.err != nil {
		s.mu.Lock()
		if cur, ok := s.open[m.ULID]; ok && cur == e {
			s.lru.Remove(e)
			delete(s.open, m.ULID) // retry on the next query
		}
		s.mu.Unlock()
	}
}

// View is a querier.Source over the blocks of s that keep accepts (sharing
// s's listing and open readers).
func (s *BucketSource) View(keep func(*Meta) bool) *SourceView { return &SourceView{s: s, keep: keep} }

// SourceView is BucketSource.View.
type SourceView struct {
	s    *BucketSource
	keep func(*Meta) bool
}

// Select implements querier.Source.
func (v *SourceView) Select(ctx context.Context, tenant, ptype string, match func(model.Labels) bool, start, end int64) ([]head.Selection, error) {
	return v.s.selectKeep(ctx, tenant, ptype, match, start, end, v.keep)
}

// SeriesLabels implements querier.Source.
func (v *SourceView) SeriesLabels(ctx context.Context, tenant string, match func(model.Labels) bool, start, end int64) ([]model.Labels, error) {
	return v.s.seriesLabelsKeep(ctx, tenant, match, start, end, v.keep)
}

// Select implements querier.Source.
func (s *BucketSource) Select(ctx context.Context, tenant, ptype string, match func(model.Labels) bool, start, end int64) ([]head.Selection, error) {
	return s.selectKeep(ctx, tenant, ptype, match, start, end, nil)
}

func (s *BucketSource) selectKeep(ctx context.Context, tenant, ptype string, match func(model.Labels) bool, start, end int64, keep func(*Meta) bool) ([]head.Selection, error) {
	out, err := s.selectOnce(ctx, tenant, ptype, match, start, end, keep)
	if err != nil && s.notFound(err) {
		// A block went away since the last listing (the compactor deleted it
		// after its deletion delay): list again, which also shows what
		// replaced it, and read once more.
		if err := s.syncTenant(ctx, s.tenant(tenant)); err != nil {
			return nil, err
		}
		return s.selectOnce(ctx, tenant, ptype, match, start, end, keep)
	}
	return out, err
}

// notFound reports whether err, or an error it wraps, is the bucket's "no such object".
func (s *BucketSource) notFound(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if s.Bucket.IsObjNotFoundErr(e) {
			return true
		}
	}
	return false
}

func (s *BucketSource) selectOnce(ctx context.Context, tenant, ptype string, match func(model.Labels) bool, start, end int64, keep func(*Meta) bool) ([]head.Selection, error) {
	metas, err := s.Blocks(ctx, tenant)
	if err != nil {
		return nil, err
	}
	var out []head.Selection
	for _, m := range metas {
		if !m.Overlaps(start, end) || (keep != nil && !keep(m)) {
			continue
		}
		r, err := s.reader(ctx, m)
		if err != nil {
			return nil, err
		}
		sel, err := r.Select(ctx, ptype, match, start, end)
		if err != nil {
			return nil, err
		}
		if len(sel.Series) > 0 {
			out = append(out, sel)
		}
	}
	return out, nil
}

// SeriesLabels implements querier.Source.
func (s *BucketSource) SeriesLabels(ctx context.Context, tenant string, match func(model.Labels) bool, start, end int64) ([]model.Labels, error) {
	return s.seriesLabelsKeep(ctx, tenant, match, start, end, nil)
}

func (s *BucketSource) seriesLabelsKeep(ctx context.Context, tenant string, match func(model.Labels) bool, start, end int64, keep func(*Meta) bool) ([]model.Labels, error) {
	metas, err := s.Blocks(ctx, tenant)
	if err != nil {
		return nil, err
	}
	var out []model.Labels
	for _, m := range metas {
		if !m.Overlaps(start, end) || (keep != nil && !keep(m)) {
			continue
		}
		r, err := s.reader(ctx, m)
		if err != nil {
			return nil, err
		}
		out = append(out, r.SeriesLabels(match, start, end)...)
	}
	return out, nil
}
