package block

import (
	"container/list"
	"context"
	"sync"
	"time"
	"weak"

	"github.com/hearth-dev/hearth/ingester/querylimit"
	"github.com/hearth-dev/hearth/ingester/symdb"
)

// SymbolCache keeps decoded symbol tables of open blocks within a memory
// budget, least recently used first out. Concurrent loads of one block's
// symbols share one read.
//
// A table larger than the whole budget, or evicted, is not kept, but it is
// remembered by a weak reference: while a query still holds it, every other
// query gets that copy instead of downloading it again (an oversized table
// was downloaded by every query, issue 21). Once no query holds it and the
// garbage collector reclaimed it, the next query downloads it again. So the
// memory held is the budget plus the tables queries are using, and a table
// is downloaded again only after a time in which nobody used it.
type SymbolCache struct {
	budget int64

	mu      sync.Mutex
	used    int64
	lru     *list.List // of *symEntry, most recent first
	entries map[string]*symEntry
	weak    map[string]weak.Pointer[symdb.Snapshot] // oversized or evicted tables, while in use

	loads, hits int64
}

type symEntry struct {
	key   string
	ready chan struct{}
	sn    *symdb.Snapshot
	err   error
	bytes int64
	elem  *list.Element
}

// NewSymbolCache returns a cache holding at most budget bytes (approximate) of symbols.
func NewSymbolCache(budget int64) *SymbolCache {
	return &SymbolCache{budget: budget, lru: list.New(), entries: map[string]*symEntry{}, weak: map[string]weak.Pointer[symdb.Snapshot]{}}
}

// Stats returns how many loads and hits the cache has seen, and the bytes it holds.
func (c *SymbolCache) Stats() (loads, hits, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loads, c.hits, c.used
}

// loadTimeout bounds a shared load (it runs detached from the callers' contexts).
const loadTimeout = 5 * time.Minute

// get returns the cached table of key, or loads it once for every caller
// asking meanwhile. The load runs under its own context (the first caller's
// values, not its cancellation, bounded by loadTimeout): a caller that gives
// up returns its own ctx error and the others keep waiting.
func (c *SymbolCache) get(ctx context.Context, key string, load func(context.Context) (*symdb.Snapshot, error)) (*symdb.Snapshot, error) {
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok {
		c.hits++
		if e.elem != nil {
			c.lru.MoveToFront(e.elem)
		}
	} else if sn := c.held(key); sn != nil {
		c.hits++
		c.mu.Unlock()
		return sn, nil
	} else {
		e = &symEntry{key: key, ready: make(chan struct{})}
		c.entries[key] = e
		c.loads++
		go c.load(querylimit.Lenient(context.WithoutCancel(ctx)), e, load) // shared: charged, never refused
	}
	c.mu.Unlock()
	select {
	case <-e.ready:
		return e.sn, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *SymbolCache) load(ctx context.Context, e *symEntry, load func(context.Context) (*symdb.Snapshot, error)) {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	sn, err := load(ctx)
	var n int64
	if err == nil {
		n = snapshotBytes(sn)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e.sn, e.err, e.bytes = sn, err, n
	close(e.ready)
	if c.entries[e.key] != e {
		return // forgotten meanwhile
	}
	if err != nil || n > c.budget {
		delete(c.entries, e.key) // errors are retried by the next query
		if err == nil {
			c.remember(e.key, sn) // oversized: shared while in use, not kept
		}
		return
	}
	e.elem = c.lru.PushFront(e)
	c.used += n
	for c.used > c.budget && c.lru.Len() > 0 {
		old := c.lru.Remove(c.lru.Back()).(*symEntry)
		delete(c.entries, old.key)
		c.used -= old.bytes
		c.remember(old.key, old.sn)
	}
}

// remember keeps a weak reference to a table not kept in the cache. c.mu is held.
func (c *SymbolCache) remember(key string, sn *symdb.Snapshot) {
	if len(c.weak) >= 1024 && len(c.weak)%1024 == 0 { // drop the reclaimed ones now and then
		for k, w := range c.weak {
			if w.Value() == nil {
				delete(c.weak, k)
			}
		}
	}
	c.weak[key] = weak.Make(sn)
}

// held returns the table of key that a query still holds, or nil. c.mu is held.
func (c *SymbolCache) held(key string) *symdb.Snapshot {
	w, ok := c.weak[key]
	if !ok {
		return nil
	}
	sn := w.Value()
	if sn == nil {
		delete(c.weak, key)
	}
	return sn
}

// forget drops a block's symbols (the block went away).
func (c *SymbolCache) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok {
		if e.elem != nil {
			c.lru.Remove(e.elem)
			c.used -= e.bytes
		}
		delete(c.entries, key)
	}
	delete(c.weak, key)
}
