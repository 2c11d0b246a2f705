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
	out := make([]model.ProfileType, len(p.SampleType))
	for i, st := range p.SampleType {
		t := model.ProfileType{Name: name, PeriodType: periodType, PeriodUnit: periodUnit}
		if t.SampleType, err = str(st.Type); err != nil {
			return nil, fmt.Errorf("sample type %d: %w", i, err)
		}
		if t.SampleUnit, err = str(st.Unit); err != nil {
			return nil, fmt.Errorf("sample type %d unit: %w", i, err)
		}
		out[i] = t
	}
	return out, nil
}

// splitRows turns a profile into rows: one per (sample label set × sample type).
// String sample labels other than span_id become series labels. The caller
// holds the symbols' lock.
func splitRows(base model.Labels, p *googlev1.Profile, syms *symdb.Symbols) ([]row, error) {
	name := base.Get(model.LabelProfileName)
	types, err := profileTypes(name, p)
	if err != nil {
		return nil, &symdb.ErrInvalid{Reason: err.Error()}
	}
	if len(types) == 0 {
		return nil, &symdb.ErrInvalid{Reason: "profile has no sample types"}
	}
	mapper, err := syms.AddProfile(p)
	if err != nil {
		return nil, err
	}

	// Values are summed per (sample labels, stack) into one flat slice per group (a
	// stack's values for every type side by side): no allocation per stack.
	nt := len(types)
	type group struct {
		labels model.Labels
		index  map[uint32]int32 // stack → its position in stacks
		stacks []uint32
		vals   []int64 // nt values per position
		// Samples that carried a span id, summed per (span, stack).
		spanIndex map[spanStack]int32
		spanKeys  []spanStack
		spanVals  []int64 // nt values per span key
	}
	groups := map[string]*group{}
	var keyBuf strings.Builder
	for si, s := range p.Sample {
		if len(s.Value) != nt {
			return nil, &symdb.ErrInvalid{Reason: fmt.Sprintf("sample %d has %d values, the profile has %d sample types", si, len(s.Value), nt)}
		}
		keyBuf.Reset()
		var extra model.Labels
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
		if len(extra) > 1 {
			extra.Sort()
		}
		for _, l := range extra {
			keyBuf.WriteString(l.Name)
			keyBuf.WriteByte(0)
			keyBuf.WriteString(l.Value)
			keyBuf.WriteByte(0)
		}
		key := keyBuf.String()
		g, ok := groups[key]
		if !ok {
			n := len(p.Sample) / max(1, len(groups)+1)
			g = &group{labels: extra, index: make(map[uint32]int32, n), stacks: make([]uint32, 0, n), vals: make([]int64, 0, n*nt)}
			groups[key] = g
		}
		stack, err := mapper.StackID(s.LocationId)
		if err != nil {
			return nil, err
		}
		pos, ok := g.index[stack]
		if !ok {
			pos = int32(len(g.stacks))
			g.index[stack] = pos
			g.stacks = append(g.stacks, stack)
			g.vals = append(g.vals, make([]int64, nt)...)
		}
		vals := g.vals[int(pos)*nt : int(pos)*nt+nt]
		for i, v := range s.Value {
			vals[i] += v
		}
		if hasSpan {
			if g.spanIndex == nil {
				g.spanIndex = map[spanStack]int32{}
			}
			key := spanStack{span: span, stack: stack}
			sp, ok := g.spanIndex[key]
			if !ok {
				sp = int32(len(g.spanKeys))
				g.spanIndex[key] = sp
				g.spanKeys = append(g.spanKeys, key)
				g.spanVals = append(g.spanVals, make([]int64, nt)...)
			}
			svals := g.spanVals[int(sp)*nt : int(sp)*nt+nt]
			for i, v := range s.Value {
				svals[i] += v
			}
		}
	}

	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var rows []row
	for _, k := range keys {
		g := groups[k]
		// Positions in stack order: rows list their stacks ascending.
		order := make([]int32, len(g.stacks))
		for i := range order {
			order[i] = int32(i)
		}
		slices.SortFunc(order, func(a, b int32) int { return cmp.Compare(g.stacks[a], g.stacks[b]) })
		spanOrder := make([]int32, len(g.spanKeys))
		for i := range spanOrder {
			spanOrder[i] = int32(i)
		}
		slices.SortFunc(spanOrder, func(a, b int32) int {
			ka, kb := g.spanKeys[a], g.spanKeys[b]
			if c := cmp.Compare(ka.span, kb.span); c != 0 {
				return c
			}
			return cmp.Compare(ka.stack, kb.stack)
		})
		ls := base.Clone()
		for _, l := range g.labels {
			if !ls.Has(l.Name) { // the pushed labels win over sample labels
				ls = append(ls, l)
			}
		}
		for ti, t := range types {
			r := row{labels: t.SeriesLabels(ls.Clone()).Sort(), ptype: t}
			for _, pos := range order {
				if v := g.vals[int(pos)*nt+ti]; v != 0 {
					r.stacks = append(r.stacks, g.stacks[pos])
					r.values = append(r.values, v)
					r.total += v
				}
			}
			r.samples = len(r.stacks)
			for _, sp := range spanOrder {
				if v := g.spanVals[int(sp)*nt+ti]; v != 0 {
					k := g.spanKeys[sp]
					r.spans = append(r.spans, SpanSample{Span: k.span, Stack: k.stack, Value: v})
				}
			}
			rows = append(rows, r)
		}
	}
	return rows, nil
}
