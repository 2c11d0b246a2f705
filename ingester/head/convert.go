package head

import (
	"fmt"
	"sort"
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

	type group struct {
		labels model.Labels
		agg    map[uint32][]int64 // stack → value per sample type
	}
	groups := map[string]*group{}
	var keyBuf strings.Builder
	for si, s := range p.Sample {
		if len(s.Value) != len(types) {
			return nil, &symdb.ErrInvalid{Reason: fmt.Sprintf("sample %d has %d values, the profile has %d sample types", si, len(s.Value), len(types))}
		}
		keyBuf.Reset()
		var extra model.Labels
		for _, l := range s.Label {
			if l.Str == 0 || l.Key <= 0 || l.Key >= int64(len(p.StringTable)) || l.Str >= int64(len(p.StringTable)) || l.Str < 0 {
				continue // numeric labels and dangling references carry no series identity
			}
			k := p.StringTable[l.Key]
			if k == "" || model.PerSampleOnly(k) {
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
			g = &group{labels: extra, agg: make(map[uint32][]int64, len(p.Sample)/max(1, len(groups)+1))}
			groups[key] = g
		}
		stack, err := mapper.StackID(s.LocationId)
		if err != nil {
			return nil, err
		}
		vals, ok := g.agg[stack]
		if !ok {
			vals = make([]int64, len(types))
			g.agg[stack] = vals
		}
		for i, v := range s.Value {
			vals[i] += v
		}
	}

	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var rows []row
	for _, k := range keys {
		g := groups[k]
		stacks := make([]uint32, 0, len(g.agg))
		for st := range g.agg {
			stacks = append(stacks, st)
		}
		sort.Slice(stacks, func(i, j int) bool { return stacks[i] < stacks[j] })
		ls := base.Clone()
		for _, l := range g.labels {
			if !ls.Has(l.Name) { // the pushed labels win over sample labels
				ls = append(ls, l)
			}
		}
		for ti, t := range types {
			r := row{labels: t.SeriesLabels(ls.Clone()).Sort(), ptype: t}
			for _, st := range stacks {
				if v := g.agg[st][ti]; v != 0 {
					r.stacks = append(r.stacks, st)
					r.values = append(r.values, v)
					r.total += v
				}
			}
			r.samples = len(r.stacks)
			rows = append(rows, r)
		}
	}
	return rows, nil
}
