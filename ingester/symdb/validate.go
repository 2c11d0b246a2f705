package symdb

import googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

// Validate checks every reference of a profile without storing anything, so
// a push can be refused before it is written ahead; AddProfile would refuse
// the same profiles.
func Validate(p *googlev1.Profile) error {
	n := int64(len(p.StringTable))
	str := func(i int64, what string) error {
		if i < 0 || i >= n {
			return invalid("%s refers to string %d, the string table has %d", what, i, n)
		}
		return nil
	}
	mappings := make(map[uint64]struct{}, len(p.Mapping))
	for _, m := range p.Mapping {
		if err := str(m.Filename, "mapping filename"); err != nil {
			return err
		}
		if err := str(m.BuildId, "mapping build id"); err != nil {
			return err
		}
		mappings[m.Id] = struct{}{}
	}
	functions := make(map[uint64]struct{}, len(p.Function))
	for _, f := range p.Function {
		for _, s := range []int64{f.Name, f.SystemName, f.Filename} {
			if err := str(s, "function"); err != nil {
				return err
			}
		}
		functions[f.Id] = struct{}{}
	}
	// Location ids are usually dense: a bitmap is much cheaper than a map for
	// the per-sample lookups below.
	maxID := uint64(0)
	for _, l := range p.Location {
		maxID = max(maxID, l.Id)
	}
	var dense []bool
	var sparse map[uint64]struct{}
	if maxID <= uint64(2*len(p.Location)+16) {
		dense = make([]bool, maxID+1)
	} else {
		sparse = make(map[uint64]struct{}, len(p.Location))
	}
	has := func(id uint64) bool {
		if dense != nil {
			return id < uint64(len(dense)) && dense[id]
		}
		_, ok := sparse[id]
		return ok
	}
	for _, l := range p.Location {
		if l.Id == 0 {
			return invalid("location with id 0")
		}
		if has(l.Id) {
			return invalid("location id %d appears twice", l.Id)
		}
		if dense != nil {
			dense[l.Id] = true
		} else {
			sparse[l.Id] = struct{}{}
		}
		if _, ok := mappings[l.MappingId]; l.MappingId != 0 && !ok {
			return invalid("location %d refers to mapping %d, which does not exist", l.Id, l.MappingId)
		}
		for _, ln := range l.Line {
			if _, ok := functions[ln.FunctionId]; ln.FunctionId != 0 && !ok {
				return invalid("location %d refers to function %d, which does not exist", l.Id, ln.FunctionId)
			}
		}
	}
	for _, st := range p.SampleType {
		if err := str(st.Type, "sample type"); err != nil {
			return err
		}
		if err := str(st.Unit, "sample unit"); err != nil {
			return err
		}
	}
	if p.PeriodType != nil {
		if err := str(p.PeriodType.Type, "period type"); err != nil {
			return err
		}
		if err := str(p.PeriodType.Unit, "period unit"); err != nil {
			return err
		}
	}
	for _, s := range p.Sample {
		if len(s.Value) != len(p.SampleType) {
			return invalid("a sample has %d values, the profile has %d sample types", len(s.Value), len(p.SampleType))
		}
		for _, id := range s.LocationId {
			if !has(id) {
				return invalid("sample refers to location %d, which does not exist", id)
			}
		}
	}
	return nil
}
