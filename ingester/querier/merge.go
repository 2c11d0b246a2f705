package querier

import (
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/symdb"
)

// rowFilter decides which rows take part in a query; it also counts each
// profile once across sources (head, blocks, replicas) by (profile id, series).
type rowFilter struct {
	seen map[rowKey]struct{}
	ids  map[head.ProfileID]struct{} // profile_id_selector; nil: all
}

type rowKey struct {
	id     head.ProfileID
	series uint64
}

func newRowFilter(ids []head.ProfileID) *rowFilter {
	f := &rowFilter{seen: map[rowKey]struct{}{}}
	if len(ids) > 0 {
		f.ids = map[head.ProfileID]struct{}{}
		for _, id := range ids {
			f.ids[id] = struct{}{}
		}
	}
	return f
}

// take reports whether the row counts, marking it seen.
func (f *rowFilter) take(series uint64, p *head.Profile) bool {
	if f.ids != nil {
		if _, ok := f.ids[p.ID]; !ok {
			return false
		}
	}
	k := rowKey{id: p.ID, series: series}
	if _, dup := f.seen[k]; dup {
		return false
	}
	f.seen[k] = struct{}{}
	return true
}

// stackValues is one source's merged samples: stack id → value, resolved with its symbols.
type stackValues struct {
	syms   *symdb.Snapshot
	values map[uint32]int64
}

// mergeStacks sums the selected rows of every selection by stack trace.
func mergeStacks(sels []head.Selection, f *rowFilter) ([]stackValues, error) {
	out := make([]stackValues, 0, len(sels))
	for _, sel := range sels {
		sv := stackValues{syms: sel.Symbols, values: map[uint32]int64{}}
		for _, s := range sel.Series {
			h := s.Labels.Hash()
			for i := range s.Profiles {
				p := &s.Profiles[i]
				if !f.take(h, p) {
					continue
				}
				if err := head.DecodeSamples(p.Samples, func(st uint32, v int64) { sv.values[st] += v }); err != nil {
					return nil, err
				}
			}
		}
		out = append(out, sv)
	}
	return out, nil
}

// frames resolves a stack into function names, root first, inlined frames expanded.
func frames(dst []string, syms *symdb.Snapshot, locs []uint32) []string {
	for i := len(locs) - 1; i >= 0; i-- {
		loc := syms.Locations[locs[i]]
		if len(loc.Lines) == 0 {
			dst = append(dst, unknownFrame(syms, loc))
			continue
		}
		// pprof lists a location's lines innermost first; root-first order reverses them.
		for j := len(loc.Lines) - 1; j >= 0; j-- {
			fn := syms.Functions[loc.Lines[j].Function]
			dst = append(dst, syms.Strings[fn.Name])
		}
	}
	return dst
}

// unknownFrame names a location without symbols by its mapping and address, as pprof does.
func unknownFrame(syms *symdb.Snapshot, loc symdb.Location) string {
	if loc.Mapping != 0 {
		if m := syms.Mappings[loc.Mapping]; m.Filename != 0 {
			return syms.Strings[m.Filename] + " 0x" + hex(loc.Address)
		}
	}
	return "0x" + hex(loc.Address)
}

func hex(v uint64) string {
	const digits = "0123456789abcdef"
	if v == 0 {
		return "0"
	}
	var b [16]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = digits[v&15]
		v >>= 4
	}
	return string(b[i:])
}

// callSiteMatcher keeps stacks whose root-first frames start with the call site.
func callSiteMatcher(callSite []string) func([]string) bool {
	if len(callSite) == 0 {
		return nil
	}
	return func(fr []string) bool {
		if len(fr) < len(callSite) {
			return false
		}
		for i, n := range callSite {
			if fr[i] != n {
				return false
			}
		}
		return true
	}
}

// seriesKey groups labels by the group_by names.
func seriesKey(ls model.Labels, groupBy []string) model.Labels {
	if len(groupBy) == 0 {
		return nil
	}
	out := make(model.Labels, 0, len(groupBy))
	for _, n := range groupBy {
		if ls.Has(n) {
			out = append(out, model.Label{Name: n, Value: ls.Get(n)})
		}
	}
	return out.Sort()
}
