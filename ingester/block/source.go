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
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
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

	initOnce sync.Once
	mu       sync.Mutex
	tenants  map[string]*tenantBlocks
	open     map[ulid.ULID]*list.Element // of *openBlock
	lru      *list.List
	syms     *SymbolCache
}

type tenantBlocks struct {
	name   string
	mu     sync.Mutex // serialises listing
	synced time.Time
	metas  map[ulid.ULID]*Meta // complete blocks
}

type openBlock struct {
	id   ulid.ULID
	once sync.Once
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
	})
}

// SymbolCache returns the cache the source's readers share.
func (s *BucketSource) SymbolCache() *SymbolCache {
	s.init()
	return s.syms
}

func (s *BucketSource) tenant(t string) *tenantBlocks {
	s.mu.Lock()
	defer s.mu.Unlock()
	tb := s.tenants[t]
	if tb == nil {
		tb = &tenantBlocks{name: t, metas: map[ulid.ULID]*Meta{}}
		s.tenants[t] = tb
	}
	return tb
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

// Blocks returns the metas of the tenant's complete blocks, oldest first,
// listing the bucket when the cached list is older than SyncInterval.
func (s *BucketSource) Blocks(ctx context.Context, tenant string) ([]*Meta, error) {
	s.init()
	tb := s.tenant(tenant)
	tb.mu.Lock()
	stale := s.SyncInterval < 0 || tb.synced.IsZero() || s.Now().Sub(tb.synced) >= s.SyncInterval
	tb.mu.Unlock()
	if stale {
		if err := s.syncTenant(ctx, tb); err != nil {
			return nil, err
		}
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	out := make([]*Meta, 0, len(tb.metas))
	for _, m := range tb.metas {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ULID.Compare(out[j].ULID) < 0 })
	return out, nil
}

func (s *BucketSource) syncTenant(ctx context.Context, tb *tenantBlocks) error {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tenant := tb.name
	seen := map[ulid.ULID]bool{}
	var fresh []ulid.ULID
	err := s.Bucket.Iter(ctx, tenant+"/", func(name string) error {
		if !strings.HasSuffix(name, "/") {
			return nil
		}
		id, err := ulid.ParseStrict(path.Base(strings.TrimSuffix(name, "/")))
		if err != nil {
			return nil // not a block (e.g. a .tmp directory)
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
			s.drop(id)
		}
	}
	var errs []error
	for _, id := range fresh {
		b, err := readAll(ctx, s.Bucket, path.Join(tenant, id.String(), MetaFile))
		if err != nil {
			if s.Bucket.IsObjNotFoundErr(errors.Unwrap(err)) || s.Bucket.IsObjNotFoundErr(err) {
				continue // incomplete: being written or uploaded
			}
			errs = append(errs, err)
			continue
		}
		m, err := ParseMeta(b)
		if err != nil {
			errs = append(errs, fmt.Errorf("block %s/%s: %w", tenant, id, err))
			continue
		}
		if m.ULID != id || m.Tenant != tenant {
			errs = append(errs, fmt.Errorf("block %s/%s: %w: meta.json names block %s of tenant %q", tenant, id, ErrCorrupt, m.ULID, m.Tenant))
			continue
		}
		tb.metas[id] = m
	}
	tb.synced = s.Now()
	return errors.Join(errs...)
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

func (s *BucketSource) reader(ctx context.Context, m *Meta) (*Reader, error) {
	s.mu.Lock()
	e, ok := s.open[m.ULID]
	if ok {
		s.lru.MoveToFront(e)
	} else {
		e = s.lru.PushFront(&openBlock{id: m.ULID})
		s.open[m.ULID] = e
		for s.lru.Len() > s.MaxOpenBlocks {
			old := s.lru.Remove(s.lru.Back()).(*openBlock)
			delete(s.open, old.id)
		}
	}
	ob := e.Value.(*openBlock)
	s.mu.Unlock()
	ob.once.Do(func() {
		ob.r, ob.err = Open(ctx, s.Bucket, m.Tenant+"/"+m.ULID.String()+"/", ReaderOptions{Meta: m, Symbols: s.syms})
	})
	if ob.err != nil {
		s.mu.Lock()
		if cur, ok := s.open[m.ULID]; ok && cur == e {
			s.lru.Remove(e)
			delete(s.open, m.ULID) // retry on the next query
		}
		s.mu.Unlock()
	}
	return ob.r, ob.err
}

// Select implements querier.Source.
func (s *BucketSource) Select(ctx context.Context, tenant, ptype string, match func(model.Labels) bool, start, end int64) ([]head.Selection, error) {
	metas, err := s.Blocks(ctx, tenant)
	if err != nil {
		return nil, err
	}
	var out []head.Selection
	for _, m := range metas {
		if !m.Overlaps(start, end) {
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
	metas, err := s.Blocks(ctx, tenant)
	if err != nil {
		return nil, err
	}
	var out []model.Labels
	for _, m := range metas {
		if !m.Overlaps(start, end) {
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
