package normalize

import (
	"slices"
	"strings"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// mergeEqualRef is mergeEqual as it was before it hashed its keys (one
// strings.Builder key per location and sample), kept to check that the
// faster one gives the same profile.
//
// It renumbers functions, mappings and locations so that equal ones
// (by their strings and fields, in first-seen order) share an id, and sums
// samples with equal stacks and labels. Ids that refer to nothing are left
// for validation.
func mergeEqualRef(p *googlev1.Profile) {
	str := func(i int64) string {
		if i >= 0 && i < int64(len(p.StringTable)) {
			return p.StringTable[i]
		}
		return ""
	}
	type fnKey struct {
		name, system, file string
		start              int64
	}
	fnID := map[uint64]uint64{}
	fnSeen := map[fnKey]uint64{}
	var fns []*googlev1.Function
	for _, f := range p.Function {
		k := fnKey{str(f.Name), str(f.SystemName), str(f.Filename), f.StartLine}
		id, ok := fnSeen[k]
		if !ok {
			id = uint64(len(fns) + 1)
			fnSeen[k] = id
			fns = append(fns, f)
		}
		fnID[f.Id] = id
	}
	for i, f := range fns {
		f.Id = uint64(i + 1)
	}
	p.Function = fns

	// Mappings are equal by size (rounded up to 4 KiB, as pprof does against
	// address randomization), offset and build id, else file name.
	type mapKey struct {
		size, offset uint64
		id           string
	}
	mapID := map[uint64]uint64{}
	mapSeen := map[mapKey]uint64{}
	var maps []*googlev1.Mapping
	for _, m := range p.Mapping {
		size := m.MemoryLimit - m.MemoryStart
		size = (size + 0xfff) &^ 0xfff
		k := mapKey{size: size, offset: m.FileOffset}
		switch {
		case m.BuildId != 0:
			k.id = "b" + str(m.BuildId)
		case m.Filename != 0:
			k.id = "f" + str(m.Filename)
		}
		id, ok := mapSeen[k]
		if !ok {
			id = uint64(len(maps) + 1)
			mapSeen[k] = id
			maps = append(maps, m)
		}
		mapID[m.Id] = id
	}
	for i, m := range maps {
		m.Id = uint64(i + 1)
	}
	p.Mapping = maps

	var kb strings.Builder
	locID := map[uint64]uint64{}
	locSeen := map[string]uint64{}
	var locs []*googlev1.Location
	for _, l := range p.Location {
		for _, ln := range l.Line {
			if id, ok := fnID[ln.FunctionId]; ok {
				ln.FunctionId = id
			}
		}
		if id, ok := mapID[l.MappingId]; ok {
			l.MappingId = id
		}
		kb.Reset()
		writeUintsRef(&kb, l.MappingId, l.Address)
		for _, ln := range l.Line {
			writeUintsRef(&kb, ln.FunctionId, uint64(ln.Line))
		}
		id, ok := locSeen[kb.String()]
		if !ok {
			id = uint64(len(locs) + 1)
			locSeen[kb.String()] = id
			locs = append(locs, l)
		}
		locID[l.Id] = id
	}
	for i, l := range locs {
		l.Id = uint64(i + 1)
	}
	p.Location = locs

	sampleSeen := map[string]*googlev1.Sample{}
	samples := p.Sample[:0]
	for _, s := range p.Sample {
		ids := make([]uint64, len(s.LocationId))
		for i, id := range s.LocationId {
			if nid, ok := locID[id]; ok {
				ids[i] = nid
			} else {
				ids[i] = id
			}
		}
		s.LocationId = ids
		kb.Reset()
		writeUintsRef(&kb, ids...)
		kb.WriteByte(0)
		labels := slices.Clone(s.Label)
		slices.SortFunc(labels, func(a, b *googlev1.Label) int {
			if a.Key != b.Key {
				return int(a.Key - b.Key)
			}
			return int(a.Str - b.Str)
		})
		for _, l := range labels {
			writeUintsRef(&kb, uint64(l.Key), uint64(l.Str))
		}
		if first, ok := sampleSeen[kb.String()]; ok && len(first.Value) == len(s.Value) {
			for i, v := range s.Value {
				first.Value[i] += v
			}
			continue
		}
		sampleSeen[kb.String()] = s
		samples = append(samples, s)
	}
	clear(p.Sample[len(samples):])
	p.Sample = samples
}

func writeUintsRef(b *strings.Builder, vs ...uint64) {
	for _, v := range vs {
		for i := 0; i < 8; i++ {
			b.WriteByte(byte(v >> (8 * i)))
		}
	}
}

// repairTruncatedGoStacksRef is RepairTruncatedGoStacks before it sorted
// precomputed keys and copied stacks into shared arrays, kept to check that
// the current one gives the same profile, sample order included.
//
// It completes Go stacks cut at the runtime's depth
// limit with the root-most frames of another stack of the profile, as
// Pyroscope's FixGoProfile guesses them: stacks of 24 frames or more are
// grouped by their root-most 24 frames; when the root-most 16 frames of a
// group appear in another group's root-most 24 shifted by k (1..8) frames
// toward the leaf, the group is missing that group's k root-most frames
// (followed transitively, at most 56 steps). The stacks of each completed
// group get those frames appended. Returns whether a stack changed.
func repairTruncatedGoStacksRef(p *googlev1.Profile) bool {
	samples := p.Sample
	slices.SortFunc(samples, func(a, b *googlev1.Sample) int {
		if len(a.LocationId) < repairSuffix {
			return -1
		}
		if len(b.LocationId) < repairSuffix {
			return 1
		}
		return leCompare(tailOf(a.LocationId, repairSuffix), tailOf(b.LocationId, repairSuffix))
	})
	first, _ := slices.BinarySearchFunc(samples, true, func(s *googlev1.Sample, _ bool) int {
		if len(s.LocationId) >= repairSuffix {
			return 1
		}
		return -1
	})
	samples = samples[first:]
	if len(samples) == 0 {
		return false
	}
	// groups[i] is the index of group i's first sample.
	var groups []int
	for i, s := range samples {
		if i == 0 || leCompare(tailOf(s.LocationId, repairSuffix), tailOf(samples[i-1].LocationId, repairSuffix)) != 0 {
			groups = append(groups, i)
		}
	}
	groupEnd := func(i int) int {
		if i+1 < len(groups) {
			return groups[i+1]
		}
		return len(samples)
	}

	// For each 16-frame window of a group's suffix, shifted k frames toward
	// the leaf, the group where it sits furthest from the root (the first
	// such group in sorted order on ties).
	type place struct {
		group int // 1-based; 0: none
		shift int
	}
	best := map[tokenKey]place{}
	for gi, g := range groups {
		suffix := tailOf(samples[g].LocationId, repairSuffix)
		for k := 1; k <= repairShifts; k++ {
			var t tokenKey
			copy(t[:], suffix[repairShifts-k:repairSuffix-k])
			if c, ok := best[t]; !ok || k > c.shift {
				best[t] = place{group: gi + 1, shift: k}
			}
		}
	}
	// next[i]: the group whose frames continue group i's root, if any.
	next := make([]place, len(groups))
	for gi, g := range groups {
		var t tokenKey
		copy(t[:], tailOf(samples[g].LocationId, repairToken))
		if c, ok := best[t]; ok && c.group-1 != gi {
			next[gi] = c
		}
	}
	changed := false
	for gi, g := range groups {
		c := next[gi]
		missing := 0
		for steps := 0; c.group > 0 && c.shift > 0; {
			missing += c.shift
			n := next[c.group-1]
			if n.group == 0 {
				break
			}
			c = n
			if steps++; steps == repairMaxChains {
				return changed // a cycle: leave the rest as they are
			}
		}
		if missing == 0 {
			continue
		}
		ref := samples[groups[c.group-1]].LocationId
		if missing >= len(ref) {
			continue
		}
		tail := ref[len(ref)-missing:]
		for _, s := range samples[g:groupEnd(gi)] {
			// Never append in place: decoded samples may share one array.
			s.LocationId = slices.Concat(s.LocationId, tail)
		}
		changed = true
	}
	return changed
}
