package querier

import (
	"testing"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
)

// TestRowFilterSized: the presized filter counts the selections' rows and
// takes each (series, profile id) once across selections, as the unsized one.
func TestRowFilterSized(t *testing.T) {
	a := model.Labels{{Name: "service_name", Value: "a"}}
	b := model.Labels{{Name: "service_name", Value: "b"}}
	p := func(id byte) head.Profile { return head.Profile{ID: head.ProfileID{id}} }
	sels := []head.Selection{
		{Series: []head.SeriesRows{{Labels: a, Profiles: []head.Profile{p(1), p(2), p(3)}}, {Labels: b, Profiles: []head.Profile{p(1)}}}},
		{Series: []head.SeriesRows{{Labels: a, Profiles: []head.Profile{p(2), p(4)}}}}, // a replica's copy of (a, 2)
	}
	if n := selectedRows(sels); n != 6 {
		t.Fatalf("selectedRows = %d, want 6", n)
	}
	for _, f := range []*rowFilter{newRowFilter(nil), newRowFilterSized(nil, selectedRows(sels))} {
		taken := 0
		for _, sel := range sels {
			for _, s := range sel.Series {
				for i := range s.Profiles {
					if f.take(s.Labels.Hash(), &s.Profiles[i]) {
						taken++
					}
				}
			}
		}
		if taken != 5 {
			t.Fatalf("took %d rows, want 5 (the copy of (a, 2) once)", taken)
		}
	}
}
