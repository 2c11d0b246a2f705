package head

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/symdb"
)

// row is one series' share of a pushed profile, ready to append.
type row struct {
	labels  model.Labels // full series labels, sorted
	hash    uint64       // labels.Hash()
	ptype   model.ProfileType
	stacks  []uint32
	values  []int64
	total   int64
	samples int
	spans   []SpanSample // samples that carried a span id, by span then stack
}

type spanStack struct {
	span  uint64
	stack uint32
}

// ParseSpanID parses a span id as pprof labels and queries carry it: 16
// hexadecimal digits (fewer are accepted), not all zero.
func ParseSpanID(s string) (uint64, bool) {
	if len(s) == 0 || len(s) > 16 {
		return 0, false
	}
	id, err := strconv.ParseUint(s, 16, 64)
	if err != nil || id == 0 {
		return 0, false
	}
	return id, true
}

// SampleTypes resolves a profile's sample type names ("cpu", "alloc_space", ...).
func SampleTypes(p *googlev1.Profile) ([]string, error) {
	out := make([]string, len(p.SampleType))
	for i, st := range p.SampleType {
		if st.Type < 0 || st.Type >= int64(len(p.StringTable)) {
			return nil, fmt.Errorf("sample type %d refers to string %d, the string table has %d", i, st.Type, len(p.StringTable))
		}
		out[i] = p.StringTable[st.Type]
	}
	return out, nil
}

func profileTypes(name string, p *googlev1.Profile) ([]model.ProfileType, error) {
	str := func(i int64) (string, error) {
		if i < 0 || i >= int64(len(p.StringTable)) {
			return "", fmt.Errorf("string index %d out of range (the string table has %d)", i, len(p.StringTable))
		}
		return p.StringTable[i], nil
	}
	var periodType, periodUnit string
	var err error
	if p.PeriodType != nil {
		if periodType, err = str(p.PeriodType.Type); err != nil {
			return nil, fmt.Errorf("period type: %w", err)
		}
		if periodUnit, err = str(p.PeriodType.Unit); err != nil {
			return nil, fmt.Errorf("period unit: %w", err)
		}
	}
	// Copies: the types become series labels, which outlive the profile's
	// strings (they share the memory of its decoding arena).
	periodType, periodUnit = strings.Clone(periodType), strings.Clone(periodUnit)
	out := make([]model.ProfileType, len(p.SampleType))
	for i, st := range p.SampleType {
		t := model.ProfileType{Name: name, PeriodType: periodType, PeriodUnit: periodUnit}
		if t.SampleType, err = str(st.Type); err != nil {
			return nil, fmt.Errorf("sample type %d: %w", i, err)
		}
		if t.SampleUnit, err = str(st.Unit); err != nil {
			return nil, fmt.Errorf("sample type %d unit: %w", i, err)
		}
		t.SampleType, t.SampleUnit = strings.Clone(t.SampleType), strings.Clone(t.SampleUnit)
		out[i] = t
	}
	return out, nil
}

// Prepared is a profile split for the head without the tenant's state: its
// rows (one per sample label set × sample type) with their series labels,
// each row's samples by the profile's own distinct stacks, and its symbols
// keyed by value. Prepare makes it on any goroutine; Head.Commit interns the
// symbols and appends the rows under the tenant's locks.
type Prepared struct {
	syms   *symdb.Keyed
	nt     int // sample types
	groups []prepGroup
	rows   []prepRow
}

// prepGroup is the samples of one sample label set.
type prepGroup struct {
	stacks []int32 // per entry (a sample): its stack's AddStack index
	vals   []int64 // nt values per entry
	// Samples that carried a span id.
	spanKeys []spanStack // stack: the AddStack index
	spanVals []int64     // nt values per span entry
}

type prepRow struct {
	labels model.Labels // full series labels, sorted
	hash   uint64       // labels.Hash()
	ptype  model.ProfileType
	group  int
	ti     int // sample type
}

// Prepare checks a profile (every reference, the sample value counts, the
// sample types) and splits it by sample type and by sample label set. String
// sample labels other than span_id become series labels. It uses no tenant
// state, so pushes and replay workers run it in parallel; the profile must not
// change until it is committed.
func Prepare(base model.Labels, p *googlev1.Profile) (*Prepared, error) {
	name := base.Get(model.LabelProfileName)
	types, err := profileTypes(name, p)
	if err != nil {
		return nil, &symdb.ErrInvalid{Reason: err.Error()}
	}
	if len(types) == 0 {
		return nil, &symdb.ErrInvalid{Reason: "profile has no sample types"}
	}
	keyed, err := symdb.KeyProfile(p)
	if err != nil {
		return nil, err
	}
	nt := len(types)
	pp := &Prepared{syms: keyed, nt: nt}

	// Each sample's values go to its group, one entry per sample (a stack's
	// values for every type side by side); Commit sums the entries of equal
	// stacks once they have tenant ids.
	groupIdx := map[string]int32{}
	var groupLabels []model.Labels
	var keyBuf []byte
	var extraBuf model.Labels
	for si, s := range p.Sample {
		if len(s.Value) != nt {
			return nil, &symdb.ErrInvalid{Reason: fmt.Sprintf("sample %d has %d values, the profile has %d sample types", si, len(s.Value), nt)}
		}
		extra := extraBuf[:0]
		span, hasSpan := uint64(0), false
		for _, l := range s.Label {
			if l.Str == 0 || l.Key <= 0 || l.Key >= int64(len(p.StringTable)) || l.Str >= int64(len(p.StringTable)) || l.Str < 0 {
				continue // numeric labels and dangling references carry no series identity
			}
			k := p.StringTable[l.Key]
			if model.PerSampleOnly(k) {
				if id, ok := ParseSpanID(p.StringTable[l.Str]); ok {
					span, hasSpan = id, true
				}
				continue
			}
			if k == "" {
				continue
			}
			extra = extra.Set(k, p.StringTable[l.Str])
		}
		keyBuf = keyBuf[:0]
		if len(extra) > 0 {
			if len(extra) > 1 {
				extra.Sort()
			}
			for _, l := range extra {
				keyBuf = append(keyBuf, l.Name...)
				keyBuf = append(keyBuf, 0)
				keyBuf = append(keyBuf, l.Value...)
				keyBuf = append(keyBuf, 0)
			}
		}
		extraBuf = extra                   // reused by the next sample: a group keeps a copy
		gi, ok := groupIdx[string(keyBuf)] // no allocation for the lookup
		if !ok {
			gi = int32(len(pp.groups))
			groupIdx[string(keyBuf)] = gi
			n := len(p.Sample) / (len(pp.groups) + 1)
			pp.groups = append(pp.groups, prepGroup{stacks: make([]int32, 0, n), vals: make([]int64, 0, n*nt)})
			// The group's labels become series labels: copies, not the
			// profile's strings (see profileTypes).
			groupLabels = append(groupLabels, extra.CopyStrings())
		}
		g := &pp.groups[gi]
		stack, err := keyed.AddStack(s.LocationId)
		if err != nil {
			return nil, err
		}
		g.stacks = append(g.stacks, stack)
		g.vals = append(g.vals, s.Value...)
		if hasSpan {
			g.spanKeys = append(g.spanKeys, spanStack{span: span, stack: uint32(stack)})
			g.spanVals = append(g.spanVals, s.Value...)
		}
	}

	keys := make([]string, 0, len(groupIdx))
	for k := range groupIdx {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		gi := int(groupIdx[k])
		ls := base.Clone()
		for _, l := range groupLabels[gi] {
			if !ls.Has(l.Name) { // the pushed labels win over sample labels
				ls = append(ls, l)
			}
		}
		for ti, t := range types {
			sl := t.SeriesLabels(ls.Clone()).Sort()
			pp.rows = append(pp.rows, prepRow{labels: sl, hash: sl.Hash(), ptype: t, group: gi, ti: ti})
		}
	}
	return pp, nil
}

// buildRows turns the prepared rows into rows by tenant stack ids (ids: the
// tenant stack of each AddStack index): stacks ascending, values summed per
// stack, zeros left out.
func (pp *Prepared) buildRows(ids []uint32) []row {
	nt := pp.nt
	orders := make([][]uint64, len(pp.groups))
	spanOrders := make([][]int32, len(pp.groups))
	rows := make([]row, len(pp.rows))
	for ri, pr := range pp.rows {
		g := &pp.groups[pr.group]
		order := orders[pr.group]
		spanOrder := spanOrders[pr.group]
		if order == nil {
			// tenant stack << 32 | entry: sorting the words sorts by stack.
			order = make([]uint64, len(g.stacks))
			for i, st := range g.stacks {
				order[i] = uint64(ids[st])<<32 | uint64(i)
			}
			slices.Sort(order)
			orders[pr.group] = order
			if len(g.spanKeys) > 0 {
				spanOrder = make([]int32, len(g.spanKeys))
				for i := range spanOrder {
					spanOrder[i] = int32(i)
				}
				slices.SortFunc(spanOrder, func(a, b int32) int {
					ka, kb := g.spanKeys[a], g.spanKeys[b]
					if c := cmp.Compare(ka.span, kb.span); c != 0 {
						return c
					}
					return cmp.Compare(ids[ka.stack], ids[kb.stack])
				})
				spanOrders[pr.group] = spanOrder
			}
		}
		r := &rows[ri]
		r.labels, r.hash, r.ptype = pr.labels, pr.hash, pr.ptype
		ti := pr.ti
		n := 0
		for i := 0; i < len(order); i = n {
			id := uint32(order[i] >> 32)
			var v int64
			for n = i; n < len(order) && uint32(order[n]>>32) == id; n++ {
				v += g.vals[int(uint32(order[n]))*nt+ti]
			}
			if v != 0 {
				if r.stacks == nil {
					r.stacks = make([]uint32, 0, len(order)-i)
					r.values = make([]int64, 0, len(order)-i)
				}
				r.stacks = append(r.stacks, id)
				r.values = append(r.values, v)
				r.total += v
			}
		}
		r.samples = len(r.stacks)
		for i := 0; i < len(spanOrder); i = n {
			k := g.spanKeys[spanOrder[i]]
			id := ids[k.stack]
			var v int64
			for n = i; n < len(spanOrder); n++ {
				kn := g.spanKeys[spanOrder[n]]
				if kn.span != k.span || ids[kn.stack] != id {
					break
				}
				v += g.spanVals[int(spanOrder[n])*nt+ti]
			}
			if v != 0 {
				r.spans = append(r.spans, SpanSample{Span: k.span, Stack: id, Value: v})
			}
		}
	}
	return rows
}
