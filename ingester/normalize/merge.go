package normalize

import (
	"cmp"
	"hash/maphash"
	"slices"
	"sync"
	"unsafe"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// mergeEqual renumbers functions, mappings and locations so that equal ones
// (by their strings and fields, in first-seen order) share an id, and sums
// samples with equal stacks and labels (label keys and string values; a
// sample whose number of values differs is kept apart, and later equal
// samples go to the latest kept). Ids that refer to nothing are left for
// validation.
//
// It runs on every push of a Go profile with generic functions, so its keys
// are seeded hashes of the ids with collision chains checked field by field
// (no key allocated per location or sample), the profile's slices are
// compacted in place, a sample's stack is rewritten only when a location id
// in it changed (in place when no two stacks share memory), and its maps and
// arrays are pooled.
func mergeEqual(p *googlev1.Profile) {
	str := func(i int64) string {
		if i >= 0 && i < int64(len(p.StringTable)) {
			return p.StringTable[i]
		}
		return ""
	}
	sc := scratchPool.Get().(*scratch)
	defer sc.put()
	fnID := resetRemap(&sc.fnID, p.Function, func(f *googlev1.Function) uint64 { return f.Id })
	fnSeen := sc.fnSeen
	fns := p.Function[:0]
	for _, f := range p.Function {
		k := fnKey{str(f.Name), str(f.SystemName), str(f.Filename), f.StartLine}
		id, ok := fnSeen[k]
		if !ok {
			id = uint64(len(fns) + 1)
			fnSeen[k] = id
			fns = append(fns, f)
		}
		fnID.set(f.Id, id)
	}
	for i, f := range fns {
		f.Id = uint64(i + 1)
	}
	clear(p.Function[len(fns):])
	p.Function = fns

	// Mappings are equal by size (rounded up to 4 KiB, as pprof does against
	// address randomization), offset and build id, else file name.
	mapID := resetRemap(&sc.mapID, p.Mapping, func(m *googlev1.Mapping) uint64 { return m.Id })
	mapSeen := sc.mapSeen
	maps := p.Mapping[:0]
	for _, m := range p.Mapping {
		size := m.MemoryLimit - m.MemoryStart
		size = (size + 0xfff) &^ 0xfff
		k := mapKey{size: size, offset: m.FileOffset}
		switch {
		case m.BuildId != 0:
			k.kind, k.id = 'b', str(m.BuildId)
		case m.Filename != 0:
			k.kind, k.id = 'f', str(m.Filename)
		}
		id, ok := mapSeen[k]
		if !ok {
			id = uint64(len(maps) + 1)
			mapSeen[k] = id
			maps = append(maps, m)
		}
		mapID.set(m.Id, id)
	}
	for i, m := range maps {
		m.Id = uint64(i + 1)
	}
	clear(p.Mapping[len(maps):])
	p.Mapping = maps

	// Locations are equal by mapping, address and lines (function, line).
	key := sc.key[:0]
	defer func() { sc.key = key[:0] }()
	locID := resetRemap(&sc.locID, p.Location, func(l *googlev1.Location) uint64 { return l.Id })
	chains := &sc.chains
	chains.reset(len(p.Location))
	locs := p.Location[:0]
	for _, l := range p.Location {
		for _, ln := range l.Line {
			if id, ok := fnID.get(ln.FunctionId); ok {
				ln.FunctionId = id
			}
		}
		if id, ok := mapID.get(l.MappingId); ok {
			l.MappingId = id
		}
		key = append(key[:0], l.MappingId, l.Address)
		for _, ln := range l.Line {
			key = append(key, ln.FunctionId, uint64(ln.Line))
		}
		h := hashUints(key)
		found := -1
		for j := chains.first(h); j >= 0; j = chains.next(j) {
			if equalLocation(locs[j], key) {
				found = j
				break
			}
		}
		if found < 0 {
			found = len(locs)
			chains.add(h, found)
			locs = append(locs, l)
		}
		locID.set(l.Id, uint64(found+1))
	}
	for i, l := range locs {
		l.Id = uint64(i + 1)
	}
	clear(p.Location[len(locs):])
	p.Location = locs

	// Samples are equal by stack (renumbered) and sorted (key, string) labels.
	// A renumbered stack is written over the old one when no two samples
	// share memory (the decoder's arena cuts them from one array in order),
	// else into a copy.
	inPlace := disjointInOrder(p.Sample)
	var ids idSlab
	lbl, other := sc.lbl[:0], sc.other[:0]
	defer func() { sc.lbl, sc.other = lbl[:0], other[:0] }()
	chains.reset(len(p.Sample))
	samples := p.Sample[:0]
	for _, s := range p.Sample {
		key = key[:0]
		changed := false
		for _, id := range s.LocationId {
			if nid, ok := locID.get(id); ok {
				changed = changed || nid != id
				id = nid
			}
			key = append(key, id)
		}
		n := len(key)
		lbl = sortedLabels(lbl, s.Label)
		for _, l := range lbl {
			key = append(key, uint64(l.key), uint64(l.str))
		}
		key = append(key, uint64(n))
		h := hashUints(key)
		found := -1
		for j := chains.first(h); j >= 0; j = chains.next(j) {
			c := samples[j]
			if slices.Equal(c.LocationId, key[:n]) && len(c.Label) == len(lbl) {
				if other = sortedLabels(other, c.Label); slices.Equal(other, lbl) {
					found = j
					break
				}
			}
		}
		if found >= 0 && len(samples[found].Value) == len(s.Value) {
			first := samples[found]
			for i, v := range s.Value {
				first.Value[i] += v
			}
			continue
		}
		if changed {
			if inPlace {
				copy(s.LocationId, key[:n])
			} else {
				s.LocationId = ids.copy(key[:n])
			}
		}
		chains.add(h, len(samples))
		samples = append(samples, s)
	}
	clear(p.Sample[len(samples):])
	p.Sample = samples
}

// disjointInOrder reports whether the samples' stacks lie one after another
// in memory, in sample order: then no two share an element.
func disjointInOrder(samples []*googlev1.Sample) bool {
	var end uintptr
	for _, s := range samples {
		if len(s.LocationId) == 0 {
			continue
		}
		start := uintptr(unsafe.Pointer(&s.LocationId[0]))
		if start < end {
			return false
		}
		end = start + uintptr(len(s.LocationId))*8
	}
	return true
}

func equalLocation(l *googlev1.Location, key []uint64) bool {
	if l.MappingId != key[0] || l.Address != key[1] || len(l.Line) != (len(key)-2)/2 {
		return false
	}
	for i, ln := range l.Line {
		if ln.FunctionId != key[2+2*i] || uint64(ln.Line) != key[3+2*i] {
			return false
		}
	}
	return true
}

type labelPair struct{ key, str int64 }

// sortedLabels is ls's (key, string value) pairs in order, in buf.
func sortedLabels(buf []labelPair, ls []*googlev1.Label) []labelPair {
	buf = buf[:0]
	for _, l := range ls {
		buf = append(buf, labelPair{l.Key, l.Str})
	}
	if len(buf) > 1 {
		slices.SortFunc(buf, func(a, b labelPair) int {
			if c := cmp.Compare(a.key, b.key); c != 0 {
				return c
			}
			return cmp.Compare(a.str, b.str)
		})
	}
	return buf
}

// hashSeed is random per process: keys come from pushed profiles, and
// colliding chains must not be something a client can construct.
var hashSeed = maphash.MakeSeed()

func hashUints(k []uint64) uint64 {
	if len(k) == 0 {
		return maphash.Bytes(hashSeed, nil)
	}
	return maphash.Bytes(hashSeed, unsafe.Slice((*byte)(unsafe.Pointer(&k[0])), len(k)*8))
}

type fnKey struct {
	name, system, file string
	start              int64
}

type mapKey struct {
	size, offset uint64
	kind         byte // 'b': build id, 'f': file name, 0: neither
	id           string
}

// scratch is the memory of one mergeEqual or repair, pooled: every push of
// a Go profile with generic functions needs these maps and arrays again.
type scratch struct {
	fnSeen             map[fnKey]uint64
	mapSeen            map[mapKey]uint64
	fnID, mapID, locID idRemap
	chains             hashChains
	key                []uint64
	lbl, other         []labelPair
	groups             []int
	best               map[tokenKey]place
	next               []place
}

var scratchPool = sync.Pool{New: func() any {
	return &scratch{fnSeen: map[fnKey]uint64{}, mapSeen: map[mapKey]uint64{}}
}}

// put empties sc (its maps hold the profile's strings) and pools it.
func (sc *scratch) put() {
	clear(sc.fnSeen)
	clear(sc.mapSeen)
	clear(sc.best)
	sc.chains.reset(0)
	for _, r := range []*idRemap{&sc.fnID, &sc.mapID, &sc.locID} {
		clear(r.sparse)
	}
	scratchPool.Put(sc)
}

// hashChains finds the indexes added under a hash, the latest first: an
// open-addressing table of the hashes (already random: no hashing again),
// sized for the number of indexes to add, with the chains in links.
type hashChains struct {
	slots []chainSlot // power of two, at most half full
	links []int32     // index -> index+1 of the one before it, 0: none
}

type chainSlot struct {
	h    uint64
	head int32 // index+1 of the latest under h; 0: empty slot
}

// reset empties c for up to n adds.
func (c *hashChains) reset(n int) {
	size := 16
	for size < 2*n {
		size *= 2
	}
	if cap(c.slots) < size {
		c.slots = make([]chainSlot, size)
	} else {
		c.slots = c.slots[:size]
		clear(c.slots)
	}
	c.links = c.links[:0]
}

// slot is where h is, or the empty slot where it goes.
func (c *hashChains) slot(h uint64) *chainSlot {
	mask := uint64(len(c.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		if s := &c.slots[i]; s.head == 0 || s.h == h {
			return s
		}
	}
}

func (c *hashChains) first(h uint64) int { return int(c.slot(h).head) - 1 }
func (c *hashChains) next(i int) int     { return int(c.links[i]) - 1 }

// add adds index i (the next index: i == number added so far) under h.
func (c *hashChains) add(h uint64, i int) {
	s := c.slot(h)
	c.links = append(c.links, s.head)
	s.h, s.head = h, int32(i+1)
}

// idRemap maps old ids to new ones (new ids are ≥ 1): a slice when the old
// ids are at most a few times their number, as pprof writers number them,
// else a map.
type idRemap struct {
	dense     []uint64 // old id -> new id, 0: none
	sparse    map[uint64]uint64
	useSparse bool
}

// resetRemap empties r for the ids of xs, reusing its memory, and returns it.
func resetRemap[T any](r *idRemap, xs []T, id func(T) uint64) *idRemap {
	var top uint64
	for _, x := range xs {
		top = max(top, id(x))
	}
	if top <= uint64(4*len(xs)+64) {
		n := int(top) + 1
		if cap(r.dense) < n {
			r.dense = make([]uint64, n)
		} else {
			r.dense = r.dense[:n]
			clear(r.dense)
		}
		r.useSparse = false
		return r
	}
	r.useSparse = true
	if r.sparse == nil {
		r.sparse = make(map[uint64]uint64, len(xs))
	} else {
		clear(r.sparse)
	}
	return r
}

func (r *idRemap) set(old, new uint64) {
	if !r.useSparse {
		r.dense[old] = new
		return
	}
	r.sparse[old] = new
}

func (r *idRemap) get(old uint64) (uint64, bool) {
	if !r.useSparse {
		if old < uint64(len(r.dense)) && r.dense[old] != 0 {
			return r.dense[old], true
		}
		return 0, false
	}
	id, ok := r.sparse[old]
	return id, ok
}

// idSlab hands out copies of stacks from a few large arrays instead of one
// allocation per sample. Each copy's capacity is its length: appending to one
// never writes into the next.
type idSlab struct{ free []uint64 }

func (s *idSlab) copy(ids []uint64) []uint64 { return s.concat(ids, nil) }

// concat is a copy of a followed by b.
func (s *idSlab) concat(a, b []uint64) []uint64 {
	n := len(a) + len(b)
	if n > cap(s.free) {
		s.free = make([]uint64, 0, max(n, 16<<10))
	}
	out := append(append(s.free[:0:n], a...), b...)
	s.free = s.free[n:n]
	return out
}
