package head

import (
	"strings"
	"testing"
	"unsafe"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/model"
)

func oneSampleProfile(v int64) *googlev1.Profile {
	return &googlev1.Profile{
		StringTable: []string{"", "cpu", "nanoseconds", "main"},
		SampleType:  []*googlev1.ValueType{{Type: 1, Unit: 2}},
		Function:    []*googlev1.Function{{Id: 1, Name: 3}},
		Location:    []*googlev1.Location{{Id: 1, Line: []*googlev1.Line{{FunctionId: 1}}}},
		Sample:      []*googlev1.Sample{{LocationId: []uint64{1}, Value: []int64{v}}},
	}
}

// TestDuplicatesBeforeAndPastScanRows: a row id a series already holds is a
// duplicate whether the series' ids are checked one by one (up to
// dedupScanRows rows) or in the map (past it), and only in that series.
func TestDuplicatesBeforeAndPastScanRows(t *testing.T) {
	h := New(Options{})
	id := func(i int) ProfileID { return ProfileID{byte(i), byte(i >> 8), 7} }
	push := func(i int, ls model.Labels) AppendResult {
		t.Helper()
		res, err := h.Append("t", id(i), ls, oneSampleProfile(int64(i+1)), int64(i))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	other := model.Labels{{Name: "__name__", Value: "process_cpu"}, {Name: "service_name", Value: "other"}}
	for i := range 100 {
		push(i, base())
	}
	if res := push(5, base()); res.Duplicates != 1 || res.Rows != 0 {
		t.Fatalf("retry of row 5 at 100 rows: %+v, want a duplicate", res)
	}
	for i := 100; i < dedupScanRows+20; i++ {
		if res := push(i, base()); res.Rows != 1 {
			t.Fatalf("row %d: %+v", i, res)
		}
	}
	for _, i := range []int{0, 5, dedupScanRows - 1, dedupScanRows, dedupScanRows + 19} {
		if res := push(i, base()); res.Duplicates != 1 || res.Rows != 0 {
			t.Fatalf("retry of row %d past %d rows: %+v, want a duplicate", i, dedupScanRows, res)
		}
	}
	// The same ids in another series are rows of their own.
	if res := push(5, other); res.Rows != 1 || res.Duplicates != 0 {
		t.Fatalf("id 5 in another series: %+v", res)
	}
	if st := h.Tenant("t").Stats(); st.Profiles != dedupScanRows+21 || st.Series != 2 {
		t.Fatalf("stats %+v, want %d rows in 2 series", st, dedupScanRows+21)
	}
	rows := 0
	for _, s := range h.Tenant("t").Select("", nil, 0, 1<<62).Series {
		rows += len(s.Profiles)
	}
	if rows != dedupScanRows+21 {
		t.Fatalf("selected %d rows", rows)
	}
}

// TestSeriesLabelsInterned: series keep one copy of a name or value they
// share, not the pushes' strings, in a label slice without spare capacity.
func TestSeriesLabelsInterned(t *testing.T) {
	h := New(Options{})
	for i := range 2 {
		ls := model.Labels{
			{Name: strings.Clone("__name__"), Value: strings.Clone("process_cpu")},
			{Name: strings.Clone("namespace"), Value: strings.Clone("team-a")},
			{Name: strings.Clone("pod"), Value: "pod-" + string(rune('a'+i))},
			{Name: strings.Clone("service_name"), Value: strings.Clone("svc")},
		}
		if _, err := h.Append("t", ProfileID{byte(i)}, ls, oneSampleProfile(1), 1); err != nil {
			t.Fatal(err)
		}
	}
	got := h.Tenant("t").SeriesLabels(nil, 0, 1<<62)
	if len(got) != 2 {
		t.Fatalf("%d series", len(got))
	}
	for _, ls := range got {
		if len(ls) != cap(ls) {
			t.Errorf("labels %v: len %d, cap %d", ls, len(ls), cap(ls))
		}
	}
	a, b := got[0], got[1]
	if len(a) != len(b) {
		t.Fatalf("%v and %v", a, b)
	}
	for i := range a {
		if a[i].Name != b[i].Name {
			t.Fatalf("%v and %v", a, b)
		}
		if unsafe.StringData(a[i].Name) != unsafe.StringData(b[i].Name) {
			t.Errorf("label name %q: two copies", a[i].Name)
		}
		if a[i].Value == b[i].Value && unsafe.StringData(a[i].Value) != unsafe.StringData(b[i].Value) {
			t.Errorf("label value %q: two copies", a[i].Value)
		}
	}
	if a.Get("pod") == b.Get("pod") {
		t.Fatalf("pods %q and %q", a.Get("pod"), b.Get("pod"))
	}
}
