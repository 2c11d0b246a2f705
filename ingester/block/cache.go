package block

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/hearth-dev/hearth/ingester/querylimit"
	"github.com/hearth-dev/hearth/ingester/symdb"
)

// SymbolCache keeps decoded symbol tables of open blocks within a memory
// budget, least recently used first out. Concurrent loads of one block's
// symbols share one read. A table larger than the whole budget is returned
// to its caller and not kept.
type SymbolCache struct {
	budget int64

	mu      sync.Mutex
	used    int64
	lru     *list.List // of *symEntry, most recent first
	entries map[string]*symEntry

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
	return &SymbolCache{budget: budget, lru: list.New(), entries: map[string]*symEntry{}}
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
		delete(c.entries, e.key) // errors are retried by the next query; oversized tables are not kept
		return
	}
	e.elem = c.lru.PushFront(e)
	c.used += n
	for c.used > c.budget && c.lru.Len() > 0 {
		old := c.lru.Remove(c.lru.Back()).(*symEntry)
		delete(c.entries, old.key)
		c.used -= old.bytes
	}
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
}
