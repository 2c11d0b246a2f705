package querier

import (
	"encoding/binary"
	"sort"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
)

// addPGO adds a stack (leaf first) trimmed for Go PGO, as types.v1.GoPGO
// documents it: only the keep_locations leaf locations are kept (0: all),
// and with aggregate_callees the leaf location's line numbers (and address)
// are dropped, so every sample of the leaf function aggregates into one
// location while the callers keep theirs.
func (s *pprofSource) addPGO(locs []uint32, value int64, pgo *typesv1.GoPGO) {
	if k := int(pgo.KeepLocations); k > 0 && len(locs) > k {
		locs = locs[:k]
	}
	ids := make([]uint64, len(locs))
	for i, l := range locs {
		if i == 0 && pgo.AggregateCallees {
			ids[i] = s.locationWithoutLines(l)
			continue
		}
		ids[i] = s.location(l)
	}
	s.b.addSample(ids, value)
}

// locationWithoutLines is location id with its address and line numbers zeroed.
func (s *pprofSource) locationWithoutLines(id uint32) uint64 {
	l := s.syms.Locations[id]
	mid := s.mapping(l.Mapping)
	lines := make([]*googlev1.Line, len(l.Lines))
	key := binary.AppendUvarint(nil, mid)
	key = binary.AppendUvarint(key, 0)
	key = append(key, 2) // never equal to a location that keeps its lines
	for i, ln := range l.Lines {
		fid := s.function(ln.Function)
		lines[i] = &googlev1.Line{FunctionId: fid}
		key = binary.AppendUvarint(key, fid)
	}
	if out, ok := s.b.locations[string(key)]; ok {
		return out
	}
	out := uint64(len(s.b.p.Location) + 1)
	s.b.p.Location = append(s.b.p.Location, &googlev1.Location{Id: out, MappingId: mid, Line: lines, IsFolded: l.IsFolded})
	s.b.locations[string(key)] = out
	return out
}

// truncateProfile cuts a merged profile (one value per sample) to the
// maxNodes heaviest nodes of its call tree (a node is a root-first path of
// locations). A sample whose stack leaves the kept tree ends at its deepest
// kept frame with one more location, the function "other", that carries its
// value: totals do not change. Locations, functions and mappings no sample
// uses any more are dropped.
func truncateProfile(p *googlev1.Profile, maxNodes int) *googlev1.Profile {
	type node struct {
		parent int32
		total  int64
	}
	nodes := []node{{parent: -1}}
	kids := map[[2]uint64]int32{}
	paths := make([][]int32, len(p.Sample)) // per sample: its nodes, root first
	for i, smp := range p.Sample {
		v := int64(0)
		if len(smp.Value) > 0 {
			v = smp.Value[0]
		}
		n := int32(0)
		nodes[0].total += v
		path := make([]int32, 0, len(smp.LocationId))
		for j := len(smp.LocationId) - 1; j >= 0; j-- {
			k := [2]uint64{uint64(n), smp.LocationId[j]}
			c, ok := kids[k]
			if !ok {
				c = int32(len(nodes))
				nodes = append(nodes, node{parent: n})
				kids[k] = c
			}
			nodes[c].total += v
			n = c
			path = append(path, c)
		}
		paths[i] = path
	}
	if len(nodes)-1 <= maxNodes {
		return p
	}
	order := make([]int32, len(nodes)-1)
	for i := range order {
		order[i] = int32(i + 1)
	}
	sort.SliceStable(order, func(i, j int) bool { return abs64(nodes[order[i]].total) > abs64(nodes[order[j]].total) })
	keep := make([]bool, len(nodes))
	keep[0] = true
	for _, n := range order[:maxNodes] {
		for ; n > 0 && !keep[n]; n = nodes[n].parent {
			keep[n] = true
		}
	}

	b := &pprofBuilder{p: p, samples: map[string]*googlev1.Sample{}}
	var otherLoc uint64
	samples := p.Sample
	p.Sample = nil
	for i, smp := range samples {
		path := paths[i]
		cut := len(path)
		for d, n := range path {
			if !keep[n] {
				cut = d
				break
			}
		}
		locs := smp.LocationId // leaf first
		if cut < len(path) {
			if otherLoc == 0 {
				otherLoc = addOtherLocation(p)
			}
			kept := locs[len(locs)-cut:]
			locs = append([]uint64{otherLoc}, kept...)
		}
		v := int64(0)
		if len(smp.Value) > 0 {
			v = smp.Value[0]
		}
		b.addSample(locs, v)
	}
	sort.SliceStable(p.Sample, func(i, j int) bool { return p.Sample[i].Value[0] > p.Sample[j].Value[0] })
	dropUnused(p)
	return p
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// addOtherLocation adds the location of the function "other" and returns its id.
func addOtherLocation(p *googlev1.Profile) uint64 {
	name := int64(len(p.StringTable))
	p.StringTable = append(p.StringTable, otherName)
	var fid, lid uint64
	for _, f := range p.Function {
		fid = max(fid, f.Id)
	}
	for _, l := range p.Location {
		lid = max(lid, l.Id)
	}
	fid++
	lid++
	p.Function = append(p.Function, &googlev1.Function{Id: fid, Name: name, SystemName: name})
	p.Location = append(p.Location, &googlev1.Location{Id: lid, Line: []*googlev1.Line{{FunctionId: fid}}})
	return lid
}

// dropUnused removes the locations, functions and mappings no sample uses.
func dropUnused(p *googlev1.Profile) {
	usedLoc := map[uint64]bool{}
	for _, s := range p.Sample {
		for _, id := range s.LocationId {
			usedLoc[id] = true
		}
	}
	usedFn, usedMap := map[uint64]bool{}, map[uint64]bool{}
	locs := p.Location[:0]
	for _, l := range p.Location {
		if !usedLoc[l.Id] {
			continue
		}
		locs = append(locs, l)
		usedMap[l.MappingId] = true
		for _, ln := range l.Line {
			usedFn[ln.FunctionId] = true
		}
	}
	p.Location = locs
	fns := p.Function[:0]
	for _, f := range p.Function {
		if usedFn[f.Id] {
			fns = append(fns, f)
		}
	}
	p.Function = fns
	maps := p.Mapping[:0]
	for _, m := range p.Mapping {
		if usedMap[m.Id] {
			maps = append(maps, m)
		}
	}
	p.Mapping = maps
}
