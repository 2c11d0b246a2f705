package symdb

import (
	"encoding/binary"
	"hash/maphash"
	"slices"
	"sync"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// Appending a profile has two phases. Keyed (no tenant state, so it runs in
// parallel, on the push's goroutine or a replay worker) checks every reference
// of the profile and keys its locations and its distinct stacks by value: a
// 128-bit hash of what they hold (strings, addresses, lines), not of pprof or
// tenant ids. Symbols.Intern (under the tenant's lock) then needs one map
// lookup per location and one per distinct stack for symbols the tenant has
// already seen, and interns strings, mappings, functions and tree nodes only
// for the new ones.
//
// A key stands for its value: two different locations (or stacks) with the
// same 128-bit key would share a tenant id. The two 64-bit halves are keyed
// hashes with independent random seeds, so for n distinct symbols in a tenant
// the chance of any collision is about n²/2¹²⁹ (1e-25 for ten million).
// Keys never leave the process (the seeds are per process).

// Key is a 128-bit hash of a symbol's value.
type Key struct{ A, B uint64 }

var seedA, seedB = maphash.MakeSeed(), maphash.MakeSeed()

func keyOf(b []byte) Key { return Key{maphash.Bytes(seedA, b), maphash.Bytes(seedB, b)} }

func appendKey(b []byte, k Key) []byte {
	b = binary.LittleEndian.AppendUint64(b, k.A)
	return binary.LittleEndian.AppendUint64(b, k.B)
}

// idIndex maps pprof ids to positions in a profile's table: a slice when the
// ids are dense (the usual case), a map otherwise.
type idIndex struct {
	dense  []int32 // id → position+1
	sparse map[uint64]int32
}

// reset empties x for n ids up to maxID, reusing its memory.
func (x *idIndex) reset(n int, maxID uint64) {
	if maxID <= uint64(2*n+16) {
		x.dense, x.sparse = zeroedSlice(x.dense, int(maxID)+1), nil
		return
	}
	x.dense = x.dense[:0]
	if x.sparse == nil {
		x.sparse = make(map[uint64]int32, n)
	} else {
		clear(x.sparse)
	}
}

// zeroedSlice is s resized to n zero values, reusing its array when it can.
func zeroedSlice[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

func (x *idIndex) get(id uint64) (int32, bool) {
	if x.sparse != nil {
		i, ok := x.sparse[id]
		return i, ok
	}
	if id >= uint64(len(x.dense)) || x.dense[id] == 0 {
		return 0, false
	}
	return x.dense[id] - 1, true
}

// set records position i for id; false if id is already there.
func (x *idIndex) set(id uint64, i int32) bool {
	if _, dup := x.get(id); dup {
		return false
	}
	if x.sparse != nil {
		x.sparse[id] = i
	} else {
		x.dense[id] = i + 1
	}
	return true
}

// Keyed is one profile's symbols keyed by value, and its distinct stacks
// (AddStack), ready for Symbols.Intern. It keeps a reference to the profile.
type Keyed struct {
	p        *googlev1.Profile
	loc      idIndex // pprof location id → position in p.Location
	mapping  idIndex
	function idIndex
	locKeys  []Key // per p.Location

	stackKeys []Key   // per AddStack call
	frames    []int32 // positions in p.Location of every stack, leaf first
	frameOff  []int32 // stack i is frames[frameOff[i]:frameOff[i+1]]

	// KeyProfile's scratch, kept with the rest for the next profile.
	strKeys, mapKeys, fnKeys []Key
	strDone                  []bool
	buf                      []byte
}

// keyedPool keeps Keyed memory between pushes (Release): a large profile's
// frames and keys are megabytes a push otherwise allocates and the collector
// then scans.
var keyedPool = sync.Pool{New: func() any { return new(Keyed) }}

// maxPooledKeyed bounds the memory a Keyed may keep in the pool.
const maxPooledKeyed = 16 << 20

// Release hands k's memory back for another profile: k must not be used
// after (Symbols.Intern copies what it keeps). Release of nil does nothing.
func (k *Keyed) Release() {
	if k == nil {
		return
	}
	k.p = nil
	n := 16*(cap(k.locKeys)+cap(k.stackKeys)+cap(k.strKeys)+cap(k.mapKeys)+cap(k.fnKeys)) +
		4*(cap(k.frames)+cap(k.frameOff)+cap(k.loc.dense)+cap(k.mapping.dense)+cap(k.function.dense)) +
		cap(k.strDone) + cap(k.buf)
	if n > maxPooledKeyed || len(k.loc.sparse)+len(k.mapping.sparse)+len(k.function.sparse) > 1<<16 {
		return
	}
	keyedPool.Put(k)
}

// KeyProfile checks the profile's string, mapping, function and location
// references (as AddProfile does) and keys its locations by value.
func KeyProfile(p *googlev1.Profile) (*Keyed, error) {
	k := keyedPool.Get().(*Keyed)
	if _, err := keyProfile(k, p); err != nil {
		k.Release()
		return nil, err
	}
	return k, nil
}

func keyProfile(k *Keyed, p *googlev1.Profile) (*Keyed, error) {
	k.p = p
	n := int64(len(p.StringTable))
	k.strKeys = zeroedSlice(k.strKeys, int(n))
	k.strDone = zeroedSlice(k.strDone, int(n))
	strKeys, strDone := k.strKeys, k.strDone
	str := func(i int64, what string) (Key, error) {
		if i < 0 || i >= n {
			return Key{}, invalid("%s refers to string %d, the string table has %d", what, i, n)
		}
		if !strDone[i] {
			s := p.StringTable[i]
			strKeys[i] = Key{maphash.String(seedA, s), maphash.String(seedB, s)}
			strDone[i] = true
		}
		return strKeys[i], nil
	}

	maxID := uint64(0)
	for _, m := range p.Mapping {
		maxID = max(maxID, m.Id)
	}
	k.mapping.reset(len(p.Mapping), maxID)
	k.mapKeys = zeroedSlice(k.mapKeys, len(p.Mapping))
	mapKeys := k.mapKeys
	if k.buf == nil {
		k.buf = make([]byte, 0, 256)
	}
	buf := k.buf[:0]
	defer func() { k.buf = buf[:0] }()
	for i, m := range p.Mapping {
		fn, err := str(m.Filename, "mapping filename")
		if err != nil {
			return nil, err
		}
		bid, err := str(m.BuildId, "mapping build id")
		if err != nil {
			return nil, err
		}
		buf = binary.LittleEndian.AppendUint64(buf[:0], m.MemoryStart)
		buf = binary.LittleEndian.AppendUint64(buf, m.MemoryLimit)
		buf = binary.LittleEndian.AppendUint64(buf, m.FileOffset)
		buf = appendKey(buf, fn)
		buf = appendKey(buf, bid)
		buf = append(buf, byte(b2u(m.HasFunctions)|b2u(m.HasFilenames)<<1|b2u(m.HasLineNumbers)<<2|b2u(m.HasInlineFrames)<<3))
		mapKeys[i] = keyOf(buf)
		k.mapping.setLast(m.Id, int32(i)) // a repeated id: the last one wins, as in AddProfile
	}

	maxID = 0
	for _, f := range p.Function {
		maxID = max(maxID, f.Id)
	}
	k.function.reset(len(p.Function), maxID)
	k.fnKeys = zeroedSlice(k.fnKeys, len(p.Function))
	fnKeys := k.fnKeys
	for i, f := range p.Function {
		name, err := str(f.Name, "function name")
		if err != nil {
			return nil, err
		}
		sys, err := str(f.SystemName, "function system name")
		if err != nil {
			return nil, err
		}
		file, err := str(f.Filename, "function filename")
		if err != nil {
			return nil, err
		}
		buf = appendKey(buf[:0], name)
		buf = appendKey(buf, sys)
		buf = appendKey(buf, file)
		buf = binary.LittleEndian.AppendUint64(buf, uint64(f.StartLine))
		fnKeys[i] = keyOf(buf)
		k.function.setLast(f.Id, int32(i))
	}

	maxID = 0
	for _, l := range p.Location {
		maxID = max(maxID, l.Id)
	}
	k.loc.reset(len(p.Location), maxID)
	k.locKeys = zeroedSlice(k.locKeys, len(p.Location))
	for i, l := range p.Location {
		buf = buf[:0]
		if l.MappingId != 0 {
			mi, ok := k.mapping.get(l.MappingId)
			if !ok {
				return nil, invalid("location %d refers to mapping %d, which does not exist", l.Id, l.MappingId)
			}
			buf = appendKey(buf, mapKeys[mi])
		} else {
			buf = appendKey(buf, Key{})
		}
		buf = binary.LittleEndian.AppendUint64(buf, l.Address)
		buf = append(buf, byte(b2u(l.IsFolded)))
		for _, ln := range l.Line {
			if ln.FunctionId != 0 {
				fi, ok := k.function.get(ln.FunctionId)
				if !ok {
					return nil, invalid("location %d refers to function %d, which does not exist", l.Id, ln.FunctionId)
				}
				buf = appendKey(buf, fnKeys[fi])
			} else {
				buf = appendKey(buf, Key{})
			}
			buf = binary.LittleEndian.AppendUint64(buf, uint64(ln.Line))
		}
		if l.Id == 0 {
			return nil, invalid("location with id 0")
		}
		if !k.loc.set(l.Id, int32(i)) {
			return nil, invalid("location id %d appears twice", l.Id)
		}
		k.locKeys[i] = keyOf(buf)
	}
	frames := 0
	for _, s := range p.Sample {
		frames += len(s.LocationId)
	}
	k.frames = slices.Grow(k.frames[:0], frames)
	k.frameOff = append(slices.Grow(k.frameOff[:0], len(p.Sample)+1), 0)
	k.stackKeys = slices.Grow(k.stackKeys[:0], len(p.Sample))
	return k, nil
}

// setLast records position i for id, replacing an earlier one.
func (x *idIndex) setLast(id uint64, i int32) {
	if x.sparse != nil {
		x.sparse[id] = i
	} else {
		x.dense[id] = i + 1
	}
}

// AddStack keys a sample's stack (pprof location ids, leaf first) and
// returns its index: 0 for the first call, 1 for the next, ... (equal stacks
// are not merged: Intern gives them the same tenant id).
//
// A stack's key folds its locations' keys in, each half on its own:
// h = (h ^ k) * odd. Each step is a bijection of h for a given k, so two
// different stacks end on the same half only if, at their last difference,
// h ^ k₁ = h' ^ k₂ for the two locations' keys there, which are independent
// random values: a chance of 2⁻⁶⁴ per half.
func (k *Keyed) AddStack(pprofLocations []uint64) (int32, error) {
	start := len(k.frames)
	a := uint64(len(pprofLocations))*stackMulA + 1
	b := uint64(len(pprofLocations))*stackMulB + 1
	for _, id := range pprofLocations {
		i, ok := k.loc.get(id)
		if !ok {
			k.frames = k.frames[:start]
			return 0, invalid("sample refers to location %d, which does not exist", id)
		}
		k.frames = append(k.frames, i)
		lk := k.locKeys[i]
		a = (a ^ lk.A) * stackMulA
		b = (b ^ lk.B) * stackMulB
	}
	s := int32(len(k.stackKeys))
	k.stackKeys = append(k.stackKeys, Key{a, b})
	k.frameOff = append(k.frameOff, int32(len(k.frames)))
	return s, nil
}

const (
	stackMulA = 0x9E3779B97F4A7C15
	stackMulB = 0xBF58476D1CE4E5B9
)

// Stacks is the number of stacks added.
func (k *Keyed) Stacks() int { return len(k.stackKeys) }

// Intern adds the keyed profile's locations and stacks to the tables and
// appends the tenant stack id of each stack added (AddStack) to dst. The
// caller holds Lock. It cannot fail: KeyProfile checked the references.
func (s *Symbols) Intern(k *Keyed, dst []uint32) []uint32 {
	p := k.p
	locs := make([]uint32, len(p.Location))
	var lines []Line
	for i, l := range p.Location {
		if id, ok := s.locByKey.get(k.locKeys[i]); ok {
			locs[i] = id
			continue
		}
		mid := uint32(0)
		if l.MappingId != 0 {
			mi, _ := k.mapping.get(l.MappingId)
			m := p.Mapping[mi]
			mid = s.internMapping(Mapping{
				MemoryStart: m.MemoryStart, MemoryLimit: m.MemoryLimit, FileOffset: m.FileOffset,
				Filename: s.internString(p.StringTable[m.Filename]), BuildID: s.internString(p.StringTable[m.BuildId]),
				HasFunctions: m.HasFunctions, HasFilenames: m.HasFilenames,
				HasLineNumbers: m.HasLineNumbers, HasInlineFrames: m.HasInlineFrames,
			})
		}
		lines = lines[:0]
		for _, ln := range l.Line {
			fid := uint32(0)
			if ln.FunctionId != 0 {
				fi, _ := k.function.get(ln.FunctionId)
				f := p.Function[fi]
				fid = s.internFunction(Function{
					Name: s.internString(p.StringTable[f.Name]), SystemName: s.internString(p.StringTable[f.SystemName]),
					Filename: s.internString(p.StringTable[f.Filename]), StartLine: f.StartLine,
				})
			}
			lines = append(lines, Line{Function: fid, Line: ln.Line})
		}
		id := s.internLocation(mid, l.Address, l.IsFolded, lines)
		s.bytes += s.locByKey.put(k.locKeys[i], id)
		locs[i] = id
	}
	var stack []uint32
	for i, key := range k.stackKeys {
		if id, ok := s.stackByKey.get(key); ok {
			dst = append(dst, id)
			continue
		}
		stack = stack[:0]
		for _, f := range k.frames[k.frameOff[i]:k.frameOff[i+1]] {
			stack = append(stack, locs[f])
		}
		id := s.insertNodes(stack)
		s.bytes += s.stackByKey.put(key, id)
		dst = append(dst, id)
	}
	return dst
}

// keyMap maps keys to tenant ids. Keys are looked up by their first half (a
// map with 8-byte keys is much faster than one with 16) and checked against
// the second; a key whose first half is taken by another goes to slow.
type keyMap struct {
	fast map[uint64]keyed
	slow map[Key]uint32
}

type keyed struct {
	b  uint64
	id uint32
}

func (m *keyMap) get(k Key) (uint32, bool) {
	if e, ok := m.fast[k.A]; ok && e.b == k.B {
		return e.id, true
	}
	if m.slow != nil {
		id, ok := m.slow[k]
		return id, ok
	}
	return 0, false
}

// put adds a key that get did not find and returns the bytes it costs.
func (m *keyMap) put(k Key, id uint32) int64 {
	if m.fast == nil {
		m.fast = map[uint64]keyed{}
	}
	if _, taken := m.fast[k.A]; !taken {
		m.fast[k.A] = keyed{b: k.B, id: id}
		return 40
	}
	if m.slow == nil {
		m.slow = map[Key]uint32{}
	}
	m.slow[k] = id
	return 48
}
