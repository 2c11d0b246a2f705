package querier

import (
	"encoding/binary"
	"sort"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/symdb"
)

// pprofBuilder merges stacks from several symbol tables into one pprof
// profile, deduplicating strings, mappings, functions and locations by content.
type pprofBuilder struct {
	p         *googlev1.Profile
	strings   map[string]int64
	mappings  map[symdb.Mapping]uint64
	functions map[symdb.Function]uint64
	locations map[string]uint64
	samples   map[string]*googlev1.Sample
	keyBuf    []byte
}

func newPprofBuilder(pt model.ProfileType, startNanos, endNanos int64) *pprofBuilder {
	b := &pprofBuilder{
		p:         &googlev1.Profile{StringTable: []string{""}},
		strings:   map[string]int64{"": 0},
		mappings:  map[symdb.Mapping]uint64{},
		functions: map[symdb.Function]uint64{},
		locations: map[string]uint64{},
		samples:   map[string]*googlev1.Sample{},
	}
	b.p.SampleType = []*googlev1.ValueType{{Type: b.str(pt.SampleType), Unit: b.str(pt.SampleUnit)}}
	b.p.PeriodType = &googlev1.ValueType{Type: b.str(pt.PeriodType), Unit: b.str(pt.PeriodUnit)}
	b.p.TimeNanos = startNanos
	if endNanos > startNanos {
		b.p.DurationNanos = endNanos - startNanos
	}
	return b
}

func (b *pprofBuilder) str(s string) int64 {
	if id, ok := b.strings[s]; ok {
		return id
	}
	id := int64(len(b.p.StringTable))
	b.p.StringTable = append(b.p.StringTable, s)
	b.strings[s] = id
	return id
}

// source resolves one symbol table's ids into the output's, memoised.
type pprofSource struct {
	b    *pprofBuilder
	syms *symdb.Snapshot
	locs map[uint32]uint64
}

func (b *pprofBuilder) source(syms *symdb.Snapshot) *pprofSource {
	return &pprofSource{b: b, syms: syms, locs: map[uint32]uint64{}}
}

func (s *pprofSource) mapping(id uint32) uint64 {
	if id == 0 {
		return 0
	}
	m := s.syms.Mappings[id]
	key := m
	key.Filename = uint32(s.b.str(s.syms.Strings[m.Filename]))
	key.BuildID = uint32(s.b.str(s.syms.Strings[m.BuildID]))
	if out, ok := s.b.mappings[key]; ok {
		return out
	}
	out := uint64(len(s.b.p.Mapping) + 1)
	s.b.p.Mapping = append(s.b.p.Mapping, &googlev1.Mapping{
		Id: out, MemoryStart: m.MemoryStart, MemoryLimit: m.MemoryLimit, FileOffset: m.FileOffset,
		Filename: int64(key.Filename), BuildId: int64(key.BuildID), HasFunctions: m.HasFunctions,
		HasFilenames: m.HasFilenames, HasLineNumbers: m.HasLineNumbers, HasInlineFrames: m.HasInlineFrames,
	})
	s.b.mappings[key] = out
	return out
}

func (s *pprofSource) function(id uint32) uint64 {
	if id == 0 {
		return 0
	}
	f := s.syms.Functions[id]
	key := symdb.Function{
		Name: uint32(s.b.str(s.syms.Strings[f.Name])), SystemName: uint32(s.b.str(s.syms.Strings[f.SystemName])),
		Filename: uint32(s.b.str(s.syms.Strings[f.Filename])), StartLine: f.StartLine,
	}
	if out, ok := s.b.functions[key]; ok {
		return out
	}
	out := uint64(len(s.b.p.Function) + 1)
	s.b.p.Function = append(s.b.p.Function, &googlev1.Function{
		Id: out, Name: int64(key.Name), SystemName: int64(key.SystemName), Filename: int64(key.Filename), StartLine: f.StartLine,
	})
	s.b.functions[key] = out
	return out
}

func (s *pprofSource) location(id uint32) uint64 {
	if out, ok := s.locs[id]; ok {
		return out
	}
	l := s.syms.Locations[id]
	mid := s.mapping(l.Mapping)
	lines := make([]*googlev1.Line, len(l.Lines))
	key := binary.AppendUvarint(nil, mid)
	key = binary.AppendUvarint(key, l.Address)
	if l.IsFolded {
		key = append(key, 1)
	} else {
		key = append(key, 0)
	}
	for i, ln := range l.Lines {
		fid := s.function(ln.Function)
		lines[i] = &googlev1.Line{FunctionId: fid, Line: ln.Line}
		key = binary.AppendUvarint(key, fid)
		key = binary.AppendVarint(key, ln.Line)
	}
	out, ok := s.b.locations[string(key)]
	if !ok {
		out = uint64(len(s.b.p.Location) + 1)
		s.b.p.Location = append(s.b.p.Location, &googlev1.Location{Id: out, MappingId: mid, Address: l.Address, Line: lines, IsFolded: l.IsFolded})
		s.b.locations[string(key)] = out
	}
	s.locs[id] = out
	return out
}

// add adds value to the stack of this source's location ids (leaf first).
func (s *pprofSource) add(locs []uint32, value int64) {
	ids := make([]uint64, len(locs))
	for i, l := range locs {
		ids[i] = s.location(l)
	}
	s.b.addSample(ids, value)
}

// addSample adds value to the stack of output location ids (leaf first).
func (b *pprofBuilder) addSample(ids []uint64, value int64) {
	b.keyBuf = b.keyBuf[:0]
	for _, id := range ids {
		b.keyBuf = binary.AppendUvarint(b.keyBuf, id)
	}
	if smp, ok := b.samples[string(b.keyBuf)]; ok {
		smp.Value[0] += value
		return
	}
	smp := &googlev1.Sample{LocationId: ids, Value: []int64{value}}
	b.samples[string(b.keyBuf)] = smp
	b.p.Sample = append(b.p.Sample, smp)
}

func (b *pprofBuilder) profile() *googlev1.Profile {
	// Deterministic output: heaviest samples first.
	sort.SliceStable(b.p.Sample, func(i, j int) bool { return b.p.Sample[i].Value[0] > b.p.Sample[j].Value[0] })
	return b.p
}
