package block

import (
	"container/list"
	"sync"

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

func (c *SymbolCache) get(key string, load func() (*symdb.Snapshot, error)) (*symdb.Snapshot, error) {
	c.mu.Lock()
	if e, ok := c.entries[key]; ok {
		c.hits++
		if e.elem != nil {
			c.lru.MoveToFront(e.elem)
		}
		c.mu.Unlock()
		<-e.ready
		return e.sn, e.err
	}
	e := &symEntry{key: key, ready: make(chan struct{})}
	c.entries[key] = e
	c.loads++
	c.mu.Unlock()

	e.sn, e.err = load()
	if e.err == nil {
		e.bytes = snapshotBytes(e.sn)
	}
	close(e.ready)

	c.mu.Lock()
	defer c.mu.Unlock()
	if e.err != nil || e.bytes > c.budget {
		delete(c.entries, key) // errors are retried by the next query; oversized tables are not kept
		return e.sn, e.err
	}
	e.elem = c.lru.PushFront(e)
	c.used += e.bytes
	for c.used > c.budget && c.lru.Len() > 0 {
		old := c.lru.Remove(c.lru.Back()).(*symEntry)
		delete(c.entries, old.key)
		c.used -= old.bytes
	}
	return e.sn, e.err
}

// forget drops a block's symbols (the block went away).
func (c *SymbolCache) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok && e.elem != nil {
		c.lru.Remove(e.elem)
		delete(c.entries, key)
		c.used -= e.bytes
	}
}
