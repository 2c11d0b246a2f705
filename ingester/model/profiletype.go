package model

import (
	"fmt"
	"strings"

	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
)

// ProfileType identifies one sample type of one kind of profile, the unit a
// query asks for: process_cpu:cpu:nanoseconds:cpu:nanoseconds.
type ProfileType struct {
	Name, SampleType, SampleUnit, PeriodType, PeriodUnit string
}

// ID is the colon-joined form Pyroscope's clients use.
func (t ProfileType) ID() string {
	return t.Name + ":" + t.SampleType + ":" + t.SampleUnit + ":" + t.PeriodType + ":" + t.PeriodUnit
}

// Proto is the wire form.
func (t ProfileType) Proto() *typesv1.ProfileType {
	return &typesv1.ProfileType{
		ID: t.ID(), Name: t.Name, SampleType: t.SampleType, SampleUnit: t.SampleUnit,
		PeriodType: t.PeriodType, PeriodUnit: t.PeriodUnit,
	}
}

// ParseProfileType parses name:sample_type:sample_unit:period_type:period_unit.
func ParseProfileType(id string) (ProfileType, error) {
	parts := strings.Split(id, ":")
	if len(parts) != 5 {
		return ProfileType{}, fmt.Errorf("profile type %q: want 5 colon-separated parts name:sample_type:sample_unit:period_type:period_unit, got %d", id, len(parts))
	}
	return ProfileType{Name: parts[0], SampleType: parts[1], SampleUnit: parts[2], PeriodType: parts[3], PeriodUnit: parts[4]}, nil
}

// SeriesLabels adds the profile type labels Pyroscope puts on every series.
func (t ProfileType) SeriesLabels(ls Labels) Labels {
	ls = ls.Set(LabelProfileName, t.Name)
	ls = ls.Set(LabelProfileType, t.ID())
	ls = ls.Set(LabelType, t.SampleType)
	ls = ls.Set(LabelUnit, t.SampleUnit)
	ls = ls.Set(LabelPeriodType, t.PeriodType)
	ls = ls.Set(LabelPeriodUnit, t.PeriodUnit)
	return ls
}
