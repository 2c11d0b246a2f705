package head

import (
	"math"
	"reflect"
	"testing"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

func TestSpanSamplesKeptPerRow(t *testing.T) {
	p := &googlev1.Profile{
		StringTable: []string{"", "cpu", "nanoseconds", "main", "work", "span_id", "00000000000000a1", "00000000000000b2", "not-hex", "alloc", "bytes"},
		SampleType:  []*googlev1.ValueType{{Type: 1, Unit: 2}, {Type: 9, Unit: 10}},
		PeriodType:  &googlev1.ValueType{Type: 1, Unit: 2},
		Function:    []*googlev1.Function{{Id: 1, Name: 3}, {Id: 2, Name: 4}},
		Location:    []*googlev1.Location{{Id: 1, Line: []*googlev1.Line{{FunctionId: 1}}}, {Id: 2, Line: []*googlev1.Line{{FunctionId: 2}}}},
		Sample: []*googlev1.Sample{
			{LocationId: []uint64{2, 1}, Value: []int64{10, 1}, Label: []*googlev1.Label{{Key: 5, Str: 6}}},
			{LocationId: []uint64{2, 1}, Value: []int64{20, 0}, Label: []*googlev1.Label{{Key: 5, Str: 7}}},
			{LocationId: []uint64{1}, Value: []int64{30, 3}, Label: []*googlev1.Label{{Key: 5, Str: 6}}},
			{LocationId: []uint64{1}, Value: []int64{40, 4}},                                                // no span
			{LocationId: []uint64{2, 1}, Value: []int64{50, 5}, Label: []*googlev1.Label{{Key: 5, Str: 8}}}, // unparsable span id: no span
			{LocationId: []uint64{2, 1}, Value: []int64{1, 0}, Label: []*googlev1.Label{{Key: 5, Str: 6}}},
		},
	}
	h := New(Options{})
	if _, err := h.Append("t", ProfileID{1}, base(), p, 1); err != nil {
		t.Fatal(err)
	}
	sel := h.Tenant("t").Select("process_cpu:cpu:nanoseconds:cpu:nanoseconds", nil, math.MinInt64, math.MaxInt64)
	if len(sel.Series) != 1 || len(sel.Series[0].Profiles) != 1 {
		t.Fatalf("want one cpu row: %+v", sel.Series)
	}
	row := sel.Series[0].Profiles[0]
	if row.Total != 151 {
		t.Fatalf("total %d, want 151 (span samples count in the row)", row.Total)
	}
	got := map[uint64]int64{}
	stacks := map[uint64]int{}
	if err := DecodeSpans(row.Samples, func(span uint64, _ uint32, v int64) { got[span] += v; stacks[span]++ }); err != nil {
		t.Fatal(err)
	}
	if want := map[uint64]int64{0xa1: 41, 0xb2: 20}; !reflect.DeepEqual(got, want) {
		t.Fatalf("span totals %v, want %v", got, want)
	}
	if stacks[0xa1] != 2 {
		t.Fatalf("span a1 has %d stacks, want 2 (equal stacks summed)", stacks[0xa1])
	}
	// The second sample type: zero values are left out.
	sel = h.Tenant("t").Select("process_cpu:alloc:bytes:cpu:nanoseconds", nil, math.MinInt64, math.MaxInt64)
	got = map[uint64]int64{}
	if err := DecodeSpans(sel.Series[0].Profiles[0].Samples, func(span uint64, _ uint32, v int64) {
		if v == 0 {
			t.Fatal("a zero span sample was kept")
		}
		got[span] += v
	}); err != nil {
		t.Fatal(err)
	}
	if want := map[uint64]int64{0xa1: 4}; !reflect.DeepEqual(got, want) {
		t.Fatalf("alloc span totals %v, want %v", got, want)
	}
}

func TestRemapSamplesKeepsSpans(t *testing.T) {
	b := EncodeSamples(nil, []uint32{3, 7}, []int64{5, 6})
	b = AppendSpans(b, []SpanSample{{Span: 1, Stack: 3, Value: 2}, {Span: 1, Stack: 7, Value: 6}, {Span: 9, Stack: 3, Value: 3}})
	if !HasSpans(b) {
		t.Fatal("no spans")
	}
	out, err := RemapSamples(nil, b, func(s uint32) uint32 { return s * 10 })
	if err != nil {
		t.Fatal(err)
	}
	var main, spans []int64
	_ = DecodeSamples(out, func(st uint32, v int64) { main = append(main, int64(st), v) })
	if err := DecodeSpans(out, func(sp uint64, st uint32, v int64) { spans = append(spans, int64(sp), int64(st), v) }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(main, []int64{30, 5, 70, 6}) || !reflect.DeepEqual(spans, []int64{1, 30, 2, 1, 70, 6, 9, 30, 3}) {
		t.Fatalf("main %v spans %v", main, spans)
	}
	if HasSpans(EncodeSamples(nil, []uint32{1}, []int64{1})) {
		t.Fatal("a row without spans has spans")
	}
}

func FuzzDecodeSpans(f *testing.F) {
	b := EncodeSamples(nil, []uint32{1, 5}, []int64{1, -2})
	f.Add(AppendSpans(b, []SpanSample{{Span: 0xabc, Stack: 1, Value: 1}, {Span: 0xdef, Stack: 5, Value: -2}}))
	f.Add(append(b, 1, 0xff))
	f.Add(append(b, 2))
	f.Fuzz(func(t *testing.T, b []byte) {
		var n int
		if err := DecodeSpans(b, func(uint64, uint32, int64) { n++ }); err != nil {
			return
		}
		// What decodes re-encodes to the same span samples.
		out, err := RemapSamples(nil, b, func(s uint32) uint32 { return s })
		if err != nil {
			t.Fatalf("decodes but does not remap: %v", err)
		}
		var m int
		if err := DecodeSpans(out, func(uint64, uint32, int64) { m++ }); err != nil || m != n {
			t.Fatalf("re-encoded: %d span samples (err %v), want %d", m, err, n)
		}
	})
}

// TestRemapSamplesReorders: a renumbering that reverses the order and maps
// two stacks to one (what merging symbol tables can do) keeps the encoding
// sorted and sums what collides, in the row and in its span samples.
func TestRemapSamplesReorders(t *testing.T) {
	b := EncodeSamples(nil, []uint32{1, 2, 3}, []int64{10, 20, 30})
	b = AppendSpans(b, []SpanSample{{Span: 5, Stack: 1, Value: 1}, {Span: 5, Stack: 2, Value: 2}, {Span: 5, Stack: 3, Value: 3}})
	nm := map[uint32]uint32{1: 9, 2: 4, 3: 4}
	out, err := RemapSamples(nil, b, func(s uint32) uint32 { return nm[s] })
	if err != nil {
		t.Fatal(err)
	}
	var main, spans []int64
	_ = DecodeSamples(out, func(st uint32, v int64) { main = append(main, int64(st), v) })
	if err := DecodeSpans(out, func(sp uint64, st uint32, v int64) { spans = append(spans, int64(sp), int64(st), v) }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(main, []int64{4, 50, 9, 10}) || !reflect.DeepEqual(spans, []int64{5, 4, 5, 5, 9, 1}) {
		t.Fatalf("main %v spans %v", main, spans)
	}
}
