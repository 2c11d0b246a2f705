package head

import (
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"testing"
	"time"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/internal/testutil"
)

func testProfile() *googlev1.Profile {
	return &googlev1.Profile{
		StringTable: []string{"", "cpu", "nanoseconds", "main", "work", "main.go", "handler", "checkout", "span_id", "abc"},
		SampleType:  []*googlev1.ValueType{{Type: 1, Unit: 2}},
		PeriodType:  &googlev1.ValueType{Type: 1, Unit: 2},
		Function:    []*googlev1.Function{{Id: 1, Name: 3, Filename: 5}, {Id: 2, Name: 4, Filename: 5}},
		Location:    []*googlev1.Location{{Id: 1, Line: []*googlev1.Line{{FunctionId: 1, Line: 10}}}, {Id: 2, Line: []*googlev1.Line{{FunctionId: 2, Line: 20}}}},
		Sample: []*googlev1.Sample{
			{LocationId: []uint64{2, 1}, Value: []int64{300}, Label: []*googlev1.Label{{Key: 6, Str: 7}, {Key: 8, Str: 9}}},
			{LocationId: []uint64{1}, Value: []int64{100}},
			{LocationId: []uint64{1}, Value: []int64{5}},
		},
	}
}

func base() model.Labels {
	return model.Labels{{Name: "__name__", Value: "process_cpu"}, {Name: "service_name", Value: "svc"}}
}

func TestAppendSplitsBySampleLabels(t *testing.T) {
	h := New(Options{})
	res, err := h.Append("t", ProfileID{1}, base(), testProfile(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 2 || res.NewSeries != 2 || res.Samples != 2 {
		t.Fatalf("%+v", res)
	}
	th := h.Tenant("t")
	sel := th.Select("", func(ls model.Labels) bool { return ls.Get("handler") == "checkout" }, 0, math.MaxInt64)
	if len(sel.Series) != 1 || sel.Series[0].Profiles[0].Total != 300 {
		t.Fatalf("checkout series: %+v", sel.Series)
	}
	if sel.Series[0].Labels.Has("span_id") {
		t.Fatal("span_id became a series label")
	}
	// Duplicate stacks in one series are summed: 100 + 5.
	sel = th.Select("process_cpu:cpu:nanoseconds:cpu:nanoseconds", func(ls model.Labels) bool { return !ls.Has("handler") }, 0, math.MaxInt64)
	if len(sel.Series) != 1 || sel.Series[0].Profiles[0].Total != 105 {
		t.Fatalf("unlabelled series: %+v", sel.Series)
	}
	// Time range excludes.
	if sel := th.Select("", nil, 2000, 3000); len(sel.Series) != 0 {
		t.Fatalf("out of range: %+v", sel.Series)
	}
}

func TestSamePushTwiceAddsNoSymbolsAndCountsOnce(t *testing.T) {
	h := New(Options{})
	if _, err := h.Append("t", ProfileID{1}, base(), testProfile(), 1000); err != nil {
		t.Fatal(err)
	}
	syms := h.Tenant("t").syms.Bytes()
	res, err := h.Append("t", ProfileID{1}, base(), testProfile(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicates != 2 || res.Rows != 0 {
		t.Fatalf("retry: %+v", res)
	}
	if _, err := h.Append("t", ProfileID{2}, base(), testProfile(), 2000); err != nil {
		t.Fatal(err)
	}
	if got := h.Tenant("t").syms.Bytes(); got != syms {
		t.Fatalf("symbols grew from %d to %d bytes for the same profile", syms, got)
	}
	if st := h.Tenant("t").Stats(); st.Profiles != 4 || st.Series != 2 {
		t.Fatalf("%+v", st)
	}
}

func TestTenantsAreIsolated(t *testing.T) {
	h := New(Options{})
	_, _ = h.Append("a", ProfileID{1}, base(), testProfile(), 1000)
	if h.Tenant("b") != nil {
		t.Fatal("tenant b exists")
	}
	if got := h.Tenants(); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatal(got)
	}
}

func TestSeriesLimit(t *testing.T) {
	h := New(Options{MaxSeriesPerTenant: 1})
	_, err := h.Append("t", ProfileID{1}, base(), testProfile(), 1000)
	if err == nil {
		t.Fatal("2 series accepted with a limit of 1")
	}
	if st := h.Tenant("t").Stats(); st.Series != 0 || st.Profiles != 0 {
		t.Fatalf("a refused push changed the head: %+v", st)
	}
}

func TestSamplesCodecRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 600; n += 37 {
		stacks := make([]uint32, n)
		values := make([]int64, n)
		s := uint32(0)
		for i := range stacks {
			s += uint32(r.IntN(1000)) + 1
			stacks[i] = s
			values[i] = r.Int64() - math.MaxInt64/2
		}
		var gs []uint32
		var gv []int64
		if err := DecodeSamples(EncodeSamples(nil, stacks, values), func(st uint32, v int64) { gs = append(gs, st); gv = append(gv, v) }); err != nil {
			t.Fatal(err)
		}
		if len(gs) != n || (n > 0 && (!reflect.DeepEqual(gs, stacks) || !reflect.DeepEqual(gv, values))) {
			t.Fatalf("n=%d: round trip differs", n)
		}
	}
}

func FuzzDecodeSamples(f *testing.F) {
	f.Add(EncodeSamples(nil, []uint32{1, 5, 9}, []int64{1, -2, 3}))
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = DecodeSamples(b, func(uint32, int64) {})
	})
}

// FuzzAppend feeds arbitrary bytes through the whole write path below
// validation: decode, then Append. Nothing may panic; what is stored must
// be selectable.
func FuzzAppend(f *testing.F) {
	b, _ := testProfile().MarshalVT()
	f.Add(b)
	f.Add([]byte{0x0a, 0x02, 0x08, 0x01})
	if d := testutil.CorpusDir(); d != "" {
		for _, name := range []string{"cpu.pb.gz", "no_addr_no_line.pb.gz", "invalid_utf8.pb.gz", "pyspy-1.pb.gz"} {
			if raw, err := os.ReadFile(d + "/" + name); err == nil {
				if p, err := pprofdec.DecodePprof(raw, 0); err == nil {
					if b, err := p.MarshalVT(); err == nil {
						f.Add(b)
					}
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := pprofdec.DecodePprof(b, 1<<20)
		if err != nil {
			return
		}
		h := New(Options{MaxSeriesPerTenant: 100})
		if _, err := h.Append("t", ProfileID{1}, base(), p, time.Now().UnixNano()); err != nil {
			return
		}
		th := h.Tenant("t")
		sel := th.Select("", nil, math.MinInt64, math.MaxInt64)
		for _, s := range sel.Series {
			for _, r := range s.Profiles {
				if err := DecodeSamples(r.Samples, func(st uint32, _ int64) {
					if int(st) >= len(sel.Symbols.Nodes) {
						t.Fatalf("stack %d beyond %d nodes", st, len(sel.Symbols.Nodes))
					}
					sel.Symbols.Stack(nil, st)
				}); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}
