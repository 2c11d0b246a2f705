package remote

import (
	"math"
	"reflect"
	"strings"
	"testing"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
)

// spanFrames resolves a selection's span samples: span → "leaf;...;root" → value.
func spanFrames(t *testing.T, sel head.Selection) map[uint64]map[string]int64 {
	t.Helper()
	out := map[uint64]map[string]int64{}
	for _, s := range sel.Series {
		for _, p := range s.Profiles {
			if err := head.DecodeSpans(p.Samples, func(span uint64, st uint32, v int64) {
				var names []string
				for _, l := range sel.Symbols.Stack(nil, st) {
					names = append(names, sel.Symbols.Strings[sel.Symbols.Functions[sel.Symbols.Locations[l].Lines[0].Function].Name])
				}
				if out[span] == nil {
					out[span] = map[string]int64{}
				}
				out[span][strings.Join(names, ";")] += v
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// TestSelectionKeepsSpans: a selection pruned to one service's symbols (its
// stacks renumbered) and sent to another ingester keeps its span samples.
func TestSelectionKeepsSpans(t *testing.T) {
	h := head.New(head.Options{})
	mk := func(fn string) *googlev1.Profile {
		return &googlev1.Profile{
			StringTable: []string{"", "cpu", "nanoseconds", "main", fn, "span_id", "00000000000000a1", "00000000000000b2"},
			SampleType:  []*googlev1.ValueType{{Type: 1, Unit: 2}},
			Function:    []*googlev1.Function{{Id: 1, Name: 3}, {Id: 2, Name: 4}},
			Location:    []*googlev1.Location{{Id: 1, Line: []*googlev1.Line{{FunctionId: 1}}}, {Id: 2, Line: []*googlev1.Line{{FunctionId: 2}}}},
			Sample: []*googlev1.Sample{
				{LocationId: []uint64{2, 1}, Value: []int64{10}, Label: []*googlev1.Label{{Key: 5, Str: 6}}},
				{LocationId: []uint64{1}, Value: []int64{7}, Label: []*googlev1.Label{{Key: 5, Str: 7}}},
				{LocationId: []uint64{2, 1}, Value: []int64{3}},
			},
		}
	}
	for i, fn := range []string{"other_service_fn", "work"} {
		ls := model.Labels{{Name: "__name__", Value: "process_cpu"}, {Name: "service_name", Value: fn}}
		if _, err := h.Append("t", head.ProfileID{byte(i + 1)}, ls, mk(fn), 1); err != nil {
			t.Fatal(err)
		}
	}
	sel := h.Tenant("t").Select("", func(ls model.Labels) bool { return ls.Get("service_name") == "work" }, math.MinInt64, math.MaxInt64)
	want := spanFrames(t, sel)
	if !reflect.DeepEqual(want, map[uint64]map[string]int64{0xa1: {"work;main": 10}, 0xb2: {"main": 7}}) {
		t.Fatalf("head spans %v", want)
	}
	b, err := EncodeSelections([]head.Selection{sel})
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSelections(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got[0].Symbols.Nodes) >= len(sel.Symbols.Nodes) {
		t.Fatalf("not pruned: %d nodes of %d", len(got[0].Symbols.Nodes), len(sel.Symbols.Nodes))
	}
	if g := spanFrames(t, got[0]); !reflect.DeepEqual(g, want) {
		t.Fatalf("after the round trip %v, want %v", g, want)
	}
}
