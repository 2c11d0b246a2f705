package querier

import (
	"errors"
	"maps"
	"math/bits"
	"slices"
	"sync"

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

func newRowFilter(ids []head.ProfileID) *rowFilter { return newRowFilterSized(ids, 0) }

// newRowFilterSized is newRowFilter for a query of about rows rows: the set
// of rows seen is made that large at once (a week-long query takes ~10^5
// rows; growing the set row by row rehashed it ~17 times, a sixth of the
// query's CPU).
func newRowFilterSized(ids []head.ProfileID, rows int) *rowFilter {
	f := &rowFilter{seen: make(map[rowKey]struct{}, rows)}
	if len(ids) > 0 {
		f.ids = map[head.ProfileID]struct{}{}
		for _, id := range ids {
			f.ids[id] = struct{}{}
		}
	}
	return f
}

// selectedRows counts the rows of the selections (an upper bound of the rows
// a filter over them takes).
func selectedRows(sels []head.Selection) int {
	n := 0
	for i := range sels {
		for j := range sels[i].Series {
			n += len(sels[i].Series[j].Profiles)
		}
	}
	return n
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

// stackValues is one source's merged samples: its stack ids, ascending, with
// their summed values, resolved with its symbols.
type stackValues struct {
	syms   *symdb.Snapshot
	stacks []uint32
	values []int64
}

// denseMinNodes: symbol tables up to this many stack nodes are always merged
// into a dense slice indexed by stack id (8 MiB of sums at most); larger ones
// only when the rows to read are at least half as many bytes as the table has
// nodes, else into a map.
const denseMinNodes = 1 << 20

// mergeStacks sums the selected rows of every selection by stack trace.
func mergeStacks(sels []head.Selection, f *rowFilter) ([]stackValues, error) {
	out := make([]stackValues, 0, len(sels))
	var rows [][]byte
	var taken []int
	for _, sel := range sels {
		rows = rows[:0]
		bytes := 0
		for si := range sel.Series {
			s := &sel.Series[si]
			h := s.Labels.Hash()
			aggs := s.Aggregates
			for i := 0; i < len(s.Profiles); {
				for len(aggs) > 0 && aggs[0].First < i {
					aggs = aggs[1:]
				}
				if len(aggs) > 0 && aggs[0].First == i && aggs[0].Valid(s.Profiles) {
					// A chunk merged ahead of time: it stands for its rows
					// when every one of them counts (none filtered out,
					// none seen in another source). Its rows may still be
					// packed in the head (a lazy selection): unpacked only
					// when the aggregate cannot stand for them.
					a := &aggs[0]
					taken = taken[:0]
					for ; i < a.First+a.Rows; i++ {
						if f.take(h, &s.Profiles[i]) {
							taken = append(taken, i)
						}
					}
					if len(taken) == a.Rows {
						rows = append(rows, a.Samples)
						continue
					}
					chunk := s.Profiles[a.First : a.First+a.Rows]
					for _, j := range taken {
						if chunk[j-a.First].Samples == nil {
							chunk = s.Unpacked(a.First, a.First+a.Rows)
							break
						}
					}
					for _, j := range taken {
						rows = append(rows, chunk[j-a.First].Samples)
					}
					continue
				}
				if p := &s.Profiles[i]; f.take(h, p) {
					samples := p.Samples
					if samples == nil { // not expected: only rows an aggregate covers are left packed
						samples = s.Unpacked(i, i+1)[0].Samples
					}
					rows = append(rows, samples)
				}
				i++
			}
		}
		for _, r := range rows {
			bytes += len(r)
		}
		sv := stackValues{syms: sel.Symbols}
		if len(rows) > 0 {
			var err error
			if nodes := len(sel.Symbols.Nodes); nodes <= denseMinNodes || nodes <= 2*bytes {
				sv.stacks, sv.values, err = sumDense(rows, nodes)
			} else {
				sv.stacks, sv.values, err = sumSparse(rows, nodes)
			}
			if err != nil {
				return nil, err
			}
		}
		out = append(out, sv)
	}
	return out, nil
}

// denseSums is a reusable accumulator: sums and a bitmap of the stacks seen,
// both indexed by stack id and all zero between uses.
type denseSums struct {
	sums    []int64
	seen    []uint64
	scratch []uint32
}

var densePool sync.Pool // *denseSums

// sumDense sums rows into a slice indexed by stack id: one pass over the rows,
// no hashing. The result lists the stacks ascending.
func sumDense(rows [][]byte, nodes int) ([]uint32, []int64, error) {
	d, _ := densePool.Get().(*denseSums)
	if d == nil {
		d = &denseSums{}
	}
	defer densePool.Put(d)
	if len(d.sums) < nodes {
		d.sums = make([]int64, nodes)
		d.seen = make([]uint64, (nodes+63)/64)
	}
	sums, seen := d.sums[:nodes], d.seen[:(nodes+63)/64]
	var err error
	for _, r := range rows {
		if d.scratch, err = head.SumSamples(r, sums, seen, d.scratch); err != nil {
			break
		}
	}
	n := 0
	for _, w := range seen {
		n += bits.OnesCount64(w)
	}
	stacks, values := head.DrainSums(sums, seen, make([]uint32, 0, n), make([]int64, 0, n))
	if err != nil {
		return nil, nil, err
	}
	return stacks, values, nil
}

// sumSparse sums rows into a map: for a few rows over a large symbol table.
func sumSparse(rows [][]byte, nodes int) ([]uint32, []int64, error) {
	m := map[uint32]int64{}
	for _, r := range rows {
		if err := head.DecodeSamples(r, func(st uint32, v int64) { m[st] += v }); err != nil {
			return nil, nil, err
		}
	}
	for st := range m {
		if int(st) >= nodes {
			return nil, nil, errors.New("encoded samples refer to a stack beyond the symbols")
		}
	}
	stacks, values := sortedSums(m)
	return stacks, values, nil
}

// sortedSums lists a map of sums by stack id, ascending.
func sortedSums(m map[uint32]int64) ([]uint32, []int64) {
	stacks := slices.Sorted(maps.Keys(m))
	values := make([]int64, len(stacks))
	for i, st := range stacks {
		values[i] = m[st]
	}
	return stacks, values
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
