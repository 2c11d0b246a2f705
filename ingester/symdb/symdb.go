// Package symdb keeps a tenant's symbols deduplicated: strings, mappings,
// functions, locations and stack traces. Stack traces live in a tree of
// (parent, location) nodes, so a stack trace id is a node id and a common
// prefix is stored once; pushing the same profile twice adds nothing.
//
// Tables are append-only. Readers take a Snapshot (slice headers under the
// lock) and read it without locking while writers keep appending.
package symdb

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"

	"github.com/cespare/xxhash/v2"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// Mapping is a binary mapped into the profiled process. Strings are ids.
type Mapping struct {
	MemoryStart, MemoryLimit, FileOffset uint64
	Filename, BuildID                    uint32
	HasFunctions, HasFilenames           bool
	HasLineNumbers, HasInlineFrames      bool
}

// Function is a source function. Strings are ids.
type Function struct {
	Name, SystemName, Filename uint32
	StartLine                  int64
}

// Line is one (possibly inlined) frame of a location, innermost first as in pprof.
type Line struct {
	Function uint32
	Line     int64
}

// Location is a program counter with its source lines.
type Location struct {
	Mapping  uint32
	Address  uint64
	IsFolded bool
	Lines    []Line
}

// Node is a stack-trace tree node: the location called by Parent's frame.
// Node 0 is the root sentinel; a stack trace id is the id of its leaf node.
type Node struct {
	Parent   uint32
	Location uint32
}

// Symbols is one tenant's symbol tables. Id 0 of every table is a zero value,
// so a zero reference means "none", as in pprof.
type Symbols struct {
	mu sync.Mutex

	strings   []string
	stringIDs map[string]uint32

	mappings   []Mapping
	mappingIDs map[Mapping]uint32

	functions   []Function
	functionIDs map[Function]uint32

	locations   []Location
	locationIDs map[uint64][]uint32 // content hash → candidates

	nodes    []Node
	children map[uint64]uint32 // parent<<32 | location → node
	stacks   map[uint64]uint32 // hash of a whole stack → its leaf node (verified on use)

	// Keyed by value (Intern): the tenant id of a location or a stack.
	locByKey   keyMap
	stackByKey keyMap

	bytes int64
}

// New returns empty tables.
func New() *Symbols {
	s := &Symbols{
		strings:     []string{""},
		stringIDs:   map[string]uint32{"": 0},
		mappings:    []Mapping{{}},
		mappingIDs:  map[Mapping]uint32{{}: 0},
		functions:   []Function{{}},
		functionIDs: map[Function]uint32{{}: 0},
		locations:   []Location{{}},
		locationIDs: map[uint64][]uint32{},
		nodes:       []Node{{}},
		children:    map[uint64]uint32{},
		stacks:      map[uint64]uint32{},
	}
	return s
}

// Bytes approximates the memory the tables hold.
func (s *Symbols) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Snapshot is a read-only view of the tables as of the moment it was taken.
type Snapshot struct {
	Strings   []string
	Mappings  []Mapping
	Functions []Function
	Locations []Location
	Nodes     []Node
}

// Snapshot returns a consistent view that stays valid while writers append.
func (s *Symbols) Snapshot() *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &Snapshot{Strings: s.strings, Mappings: s.mappings, Functions: s.functions, Locations: s.locations, Nodes: s.nodes}
}

// Stack appends the location ids of stack trace id, leaf first, to dst.
func (sn *Snapshot) Stack(dst []uint32, id uint32) []uint32 {
	for n := 0; id != 0 && n < len(sn.Nodes); n++ { // bounded: a tree has no cycles, but ids come from files too
		nd := sn.Nodes[id]
		dst = append(dst, nd.Location)
		id = nd.Parent
	}
	return dst
}

// Mapper translates one pprof profile's ids into tenant ids. It is built by
// AddProfile and used to convert the profile's samples.
type Mapper struct {
	s      *Symbols
	byID   []uint32          // pprof location id → tenant location id, when ids are dense
	sparse map[uint64]uint32 // otherwise
	stack  []uint32
}

func (m *Mapper) location(id uint64) (uint32, bool) {
	if m.sparse != nil {
		l, ok := m.sparse[id]
		return l, ok
	}
	if id >= uint64(len(m.byID)) || m.byID[id] == 0 {
		return 0, false
	}
	return m.byID[id], true
}

// ErrInvalid reports a profile whose references do not resolve.
type ErrInvalid struct{ Reason string }

func (e *ErrInvalid) Error() string { return "invalid profile: " + e.Reason }

func invalid(format string, args ...any) error {
	return &ErrInvalid{Reason: fmt.Sprintf(format, args...)}
}

// Lock takes the tables for a batch of AddProfile/StackID calls.
func (s *Symbols) Lock()   { s.mu.Lock() }
func (s *Symbols) Unlock() { s.mu.Unlock() }

// AddProfile interns the profile's strings, mappings, functions and locations
// and returns a Mapper for its samples. The caller holds Lock.
func (s *Symbols) AddProfile(p *googlev1.Profile) (*Mapper, error) {
	strs := make([]uint32, len(p.StringTable))
	for i, str := range p.StringTable {
		strs[i] = s.internString(str)
	}
	str := func(i int64, what string) (uint32, error) {
		if i < 0 || i >= int64(len(strs)) {
			return 0, invalid("%s refers to string %d, the string table has %d", what, i, len(strs))
		}
		return strs[i], nil
	}

	mappings := make(map[uint64]uint32, len(p.Mapping))
	for _, m := range p.Mapping {
		fn, err := str(m.Filename, "mapping filename")
		if err != nil {
			return nil, err
		}
		bid, err := str(m.BuildId, "mapping build id")
		if err != nil {
			return nil, err
		}
		mappings[m.Id] = s.internMapping(Mapping{
			MemoryStart: m.MemoryStart, MemoryLimit: m.MemoryLimit, FileOffset: m.FileOffset,
			Filename: fn, BuildID: bid, HasFunctions: m.HasFunctions, HasFilenames: m.HasFilenames,
			HasLineNumbers: m.HasLineNumbers, HasInlineFrames: m.HasInlineFrames,
		})
	}

	functions := make(map[uint64]uint32, len(p.Function))
	for _, f := range p.Function {
		n, err := str(f.Name, "function name")
		if err != nil {
			return nil, err
		}
		sn, err := str(f.SystemName, "function system name")
		if err != nil {
			return nil, err
		}
		fn, err := str(f.Filename, "function filename")
		if err != nil {
			return nil, err
		}
		functions[f.Id] = s.internFunction(Function{Name: n, SystemName: sn, Filename: fn, StartLine: f.StartLine})
	}

	m := &Mapper{s: s}
	maxID := uint64(0)
	for _, l := range p.Location {
		maxID = max(maxID, l.Id)
	}
	if maxID <= uint64(2*len(p.Location)+16) {
		m.byID = make([]uint32, maxID+1)
	} else {
		m.sparse = make(map[uint64]uint32, len(p.Location))
	}
	var lines []Line
	for _, l := range p.Location {
		mid := uint32(0)
		if l.MappingId != 0 {
			var ok bool
			if mid, ok = mappings[l.MappingId]; !ok {
				return nil, invalid("location %d refers to mapping %d, which does not exist", l.Id, l.MappingId)
			}
		}
		lines = lines[:0]
		for _, ln := range l.Line {
			fid := uint32(0)
			if ln.FunctionId != 0 {
				var ok bool
				if fid, ok = functions[ln.FunctionId]; !ok {
					return nil, invalid("location %d refers to function %d, which does not exist", l.Id, ln.FunctionId)
				}
			}
			lines = append(lines, Line{Function: fid, Line: ln.Line})
		}
		if l.Id == 0 {
			return nil, invalid("location with id 0")
		}
		if _, dup := m.location(l.Id); dup {
			return nil, invalid("location id %d appears twice", l.Id)
		}
		id := s.internLocation(mid, l.Address, l.IsFolded, lines)
		if m.sparse != nil {
			m.sparse[l.Id] = id
		} else {
			m.byID[l.Id] = id
		}
	}
	return m, nil
}

// StackID interns the stack of pprof location ids (leaf first) and returns its
// tree node id. The caller holds Lock.
func (m *Mapper) StackID(pprofLocations []uint64) (uint32, error) {
	m.stack = m.stack[:0]
	for _, id := range pprofLocations {
		l, ok := m.location(id)
		if !ok {
			return 0, invalid("sample refers to location %d, which does not exist", id)
		}
		m.stack = append(m.stack, l)
	}
	return m.s.insertStack(m.stack), nil
}

func (s *Symbols) internString(str string) uint32 {
	if id, ok := s.stringIDs[str]; ok {
		return id
	}
	// A copy: the profile's strings share the memory of its decoding
	// arena, which the next push reuses.
	str = strings.Clone(str)
	id := uint32(len(s.strings))
	s.strings = append(s.strings, str)
	s.stringIDs[str] = id
	s.bytes += int64(len(str)) + 16 + 40
	return id
}

func (s *Symbols) internMapping(m Mapping) uint32 {
	if id, ok := s.mappingIDs[m]; ok {
		return id
	}
	id := uint32(len(s.mappings))
	s.mappings = append(s.mappings, m)
	s.mappingIDs[m] = id
	s.bytes += 2 * 48
	return id
}

func (s *Symbols) internFunction(f Function) uint32 {
	if id, ok := s.functionIDs[f]; ok {
		return id
	}
	id := uint32(len(s.functions))
	s.functions = append(s.functions, f)
	s.functionIDs[f] = id
	s.bytes += 2 * 24
	return id
}

func hashLocation(mapping uint32, addr uint64, folded bool, lines []Line) uint64 {
	var buf [8]byte
	h := xxhash.New()
	binary.LittleEndian.PutUint64(buf[:], uint64(mapping)<<1|b2u(folded))
	_, _ = h.Write(buf[:])
	binary.LittleEndian.PutUint64(buf[:], addr)
	_, _ = h.Write(buf[:])
	for _, l := range lines {
		binary.LittleEndian.PutUint64(buf[:], uint64(l.Function))
		_, _ = h.Write(buf[:])
		binary.LittleEndian.PutUint64(buf[:], uint64(l.Line))
		_, _ = h.Write(buf[:])
	}
	return h.Sum64()
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func (s *Symbols) internLocation(mapping uint32, addr uint64, folded bool, lines []Line) uint32 {
	h := hashLocation(mapping, addr, folded, lines)
	for _, id := range s.locationIDs[h] {
		l := &s.locations[id]
		if l.Mapping == mapping && l.Address == addr && l.IsFolded == folded && equalLines(l.Lines, lines) {
			return id
		}
	}
	id := uint32(len(s.locations))
	s.locations = append(s.locations, Location{Mapping: mapping, Address: addr, IsFolded: folded, Lines: append([]Line(nil), lines...)})
	s.locationIDs[h] = append(s.locationIDs[h], id)
	s.bytes += 64 + 16*int64(len(lines)) + 40
	return id
}

func equalLines(a, b []Line) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// insertStack returns the leaf node id of a stack (location ids, leaf
// first), adding nodes as needed. Profiles repeat their stacks push after
// push: a hash of the whole stack, verified by walking the tree up, finds a
// known stack with one map lookup instead of one per frame.
func (s *Symbols) insertStack(locs []uint32) uint32 {
	h := hashStack(locs)
	if id, ok := s.stacks[h]; ok && s.isStack(id, locs) {
		return id
	}
	parent := s.insertNodes(locs)
	if _, ok := s.stacks[h]; !ok {
		s.bytes += 24
	}
	s.stacks[h] = parent
	return parent
}

// insertNodes walks the tree from the root along locs (leaf first), adding
// the nodes missing, and returns the leaf's id.
func (s *Symbols) insertNodes(locs []uint32) uint32 {
	parent := uint32(0)
	for i := len(locs) - 1; i >= 0; i-- {
		key := uint64(parent)<<32 | uint64(locs[i])
		child, ok := s.children[key]
		if !ok {
			child = uint32(len(s.nodes))
			s.nodes = append(s.nodes, Node{Parent: parent, Location: locs[i]})
			s.children[key] = child
			s.bytes += 8 + 24
		}
		parent = child
	}
	return parent
}

// isStack reports whether node id is the leaf of exactly locs.
func (s *Symbols) isStack(id uint32, locs []uint32) bool {
	for _, l := range locs {
		if id == 0 || s.nodes[id].Location != l {
			return false
		}
		id = s.nodes[id].Parent
	}
	return id == 0
}

func hashStack(locs []uint32) uint64 {
	h := uint64(len(locs)) * 0x9E3779B97F4A7C15
	for _, l := range locs {
		h ^= uint64(l)
		h *= 0xBF58476D1CE4E5B9
		h ^= h >> 31
	}
	return h
}

// BytesLocked is Bytes for a caller that holds Lock.
func (s *Symbols) BytesLocked() int64 { return s.bytes }
