package querier

import (
	"encoding/binary"
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/symdb"
)

// DecodeTree reads Pyroscope's tree bytes into "a;b;c" → self; it is the
// format's reader, written from its description, used to check treeBytes.
func decodeTree(b []byte) (map[string]int64, error) {
	out := map[string]int64{}
	if len(b) == 0 {
		return out, nil
	}
	type frame struct {
		path string
		left uint64 // children still to read
	}
	var stack []frame
	first := true
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, errors.New("bad name length")
		}
		name := string(b[k : k+int(n)])
		b = b[k+int(n):]
		self, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, errors.New("bad self")
		}
		b = b[k:]
		kids, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, errors.New("bad children")
		}
		b = b[k:]
		path := ""
		if first {
			first = false
		} else {
			for len(stack) > 0 && stack[len(stack)-1].left == 0 {
				stack = stack[:len(stack)-1]
			}
			if len(stack) == 0 {
				return nil, errors.New("node without parent")
			}
			stack[len(stack)-1].left--
			path = stack[len(stack)-1].path
			if path != "" {
				path += ";"
			}
			path += name
		}
		if self != 0 {
			out[path] += int64(self)
		}
		stack = append(stack, frame{path: path, left: kids})
	}
	return out, nil
}

func TestTreeBytesRoundTrip(t *testing.T) {
	tr := newNameTree()
	in := map[string]int64{"a;b;c": 5, "a;b": 2, "a;d": 7, "e": 1, "a;b;f": 3}
	for k, v := range in {
		tr.add(strings.Split(k, ";"), v)
	}
	got, err := decodeTree(tr.treeBytes(0))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Fatalf("got %v, want %v", got, in)
	}
	// Cut to 3 nodes (a, a;d, a;b): the rest folds into "other" children, totals unchanged.
	got, err = decodeTree(tr.treeBytes(4))
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for k, v := range got {
		sum += v
		if strings.Count(k, "other") > 1 {
			t.Fatalf("nested other: %v", got)
		}
	}
	if sum != 18 || got["a;b;other"] != 8 || got["other"] != 1 {
		t.Fatalf("cut tree %v", got)
	}
	if b := newNameTree().treeBytes(10); len(b) != 0 {
		t.Fatalf("empty tree: %d bytes", len(b))
	}
}

func TestFlameGraphCutShipsOnlyUsedNames(t *testing.T) {
	tr := newNameTree()
	for i, k := range []string{"a;b;c", "a;b;d", "a;x;y", "z;q", "a;b;c;e"} {
		tr.add(strings.Split(k, ";"), int64(10*(i+1)))
	}
	fg := tr.flameGraph(3)
	used := map[int64]bool{}
	for _, lv := range fg.Levels {
		for i := 3; i < len(lv.Values); i += 4 {
			used[lv.Values[i]] = true
		}
	}
	if len(used) != len(fg.Names) {
		t.Fatalf("names %v, %d used", fg.Names, len(used))
	}
	if fg.Total != 150 {
		t.Fatalf("total %d", fg.Total)
	}
}

func TestTruncateProfileKeepsTotals(t *testing.T) {
	p := &googlev1.Profile{StringTable: []string{"", "f1", "f2", "f3", "f4"}, SampleType: []*googlev1.ValueType{{}}}
	for i := uint64(1); i <= 4; i++ {
		p.Function = append(p.Function, &googlev1.Function{Id: i, Name: int64(i)})
		p.Location = append(p.Location, &googlev1.Location{Id: i, Line: []*googlev1.Line{{FunctionId: i}}})
	}
	p.Sample = []*googlev1.Sample{
		{LocationId: []uint64{4, 2, 1}, Value: []int64{10}},
		{LocationId: []uint64{3, 2, 1}, Value: []int64{20}},
		{LocationId: []uint64{3, 1}, Value: []int64{1}},
		{LocationId: []uint64{1}, Value: []int64{5}},
	}
	out := truncateProfile(p, 3) // nodes: 1, 1/2, 1/2/3 kept; 1/2/4 and 1/3 cut
	var total int64
	for _, s := range out.Sample {
		total += s.Value[0]
	}
	if total != 36 {
		t.Fatalf("total %d, want 36", total)
	}
	names := map[string]bool{}
	for _, f := range out.Function {
		names[out.StringTable[f.Name]] = true
	}
	if names["f4"] || !names["other"] || !names["f3"] {
		t.Fatalf("functions %v", names)
	}
	if len(out.Sample) != 4 {
		t.Fatalf("%d samples", len(out.Sample))
	}
}

func TestPGOTrimsStacks(t *testing.T) {
	syms := &symdb.Snapshot{
		Strings:   []string{"", "leaf", "mid", "root"},
		Functions: []symdb.Function{{}, {Name: 1}, {Name: 2}, {Name: 3}},
		Locations: []symdb.Location{{}, {Address: 0x10, Lines: []symdb.Line{{Function: 1, Line: 5}}}, {Address: 0x11, Lines: []symdb.Line{{Function: 1, Line: 6}}},
			{Address: 0x20, Lines: []symdb.Line{{Function: 2, Line: 7}}}, {Address: 0x30, Lines: []symdb.Line{{Function: 3, Line: 8}}}},
	}
	b := newPprofBuilder(model.ProfileType{SampleType: "cpu"}, 0, 0)
	src := b.source(syms)
	pgo := &typesv1.GoPGO{KeepLocations: 2, AggregateCallees: true}
	src.addPGO([]uint32{1, 3, 4}, 5, pgo)
	src.addPGO([]uint32{2, 3, 4}, 7, pgo)
	p := b.profile()
	if len(p.Sample) != 1 || p.Sample[0].Value[0] != 12 || len(p.Sample[0].LocationId) != 2 {
		t.Fatalf("want one 2-location sample of 12 (the leaf's lines aggregated): %v", p.Sample)
	}
	for _, l := range p.Location {
		if l.Id == p.Sample[0].LocationId[0] && (l.Address != 0 || l.Line[0].Line != 0) {
			t.Fatalf("leaf keeps address %x line %d", l.Address, l.Line[0].Line)
		}
	}
}

func TestParseTime(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	for in, want := range map[string]int64{
		"now": 1_700_000_000_000, "now-1h": 1_700_000_000_000 - 3_600_000, "now-1h30m": 1_700_000_000_000 - 5_400_000,
		"now-2d": 1_700_000_000_000 - 2*86_400_000, "1700000000": 1_700_000_000_000, "1700000000123": 1_700_000_000_123,
		"1700000000123456": 1_700_000_000_123, "1700000000123456789": 1_700_000_000_123,
	} {
		got, err := ParseTime(in, now)
		if err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "now-", "now-1", "now-1x", "now*1h", "-5", "now-99999999999999h"} {
		if _, err := ParseTime(in, now); err == nil {
			t.Errorf("%q parsed", in)
		}
	}
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"now", "now-1h", "now-1h30m15s", "1700000000", "now+1w", "now-100y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseTime(s, time.Now())
	})
}

func FuzzParseRenderQuery(f *testing.F) {
	for _, s := range []string{`process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="a"}`, `memory:alloc_objects:count:space:bytes`, `{}`, `a:b:c:d:e{x=~"["}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := parseRenderQuery(s)
		if err != nil {
			return
		}
		if _, err := model.ParseProfileType(q.ptype); err != nil {
			t.Fatalf("accepted %q with profile type %q: %v", s, q.ptype, err)
		}
	})
}

// FuzzAdhocProfile: whatever an upload holds, parsing it and drawing every
// sample type answers or refuses, never panics.
func FuzzAdhocProfile(f *testing.F) {
	f.Add([]byte("main;work 3\nmain 1\n"))
	p := &googlev1.Profile{StringTable: []string{"", "cpu", "ns", "f"}, SampleType: []*googlev1.ValueType{{Type: 1, Unit: 2}},
		Function: []*googlev1.Function{{Id: 1, Name: 3}}, Location: []*googlev1.Location{{Id: 1, Line: []*googlev1.Line{{FunctionId: 1}}}},
		Sample: []*googlev1.Sample{{LocationId: []uint64{1}, Value: []int64{5}}}}
	b, _ := p.MarshalVT()
	f.Add(b)
	f.Add([]byte{0x0a, 0x02, 0x08, 0x05, 0x32, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseAdhoc(b, 1<<20)
		if err != nil {
			return
		}
		for i, ty := range adhocTypes(p) {
			if _, err := adhocResponse(adhocMeta{ID: "x"}, p, &ty, nil); err != nil {
				continue
			}
			if tr, err := pprofTree(p, i); err == nil {
				_ = tr.treeBytes(10)
			}
		}
	})
}

func TestRenderMaxNodes(t *testing.T) {
	for _, c := range []struct {
		query string
		want  int64 // 0: unset
	}{
		{"", 0},
		{"maxNodes=50", 50},
		{"max-nodes=50", 50},
		{"max_nodes=50", 50},
		{"maxNodes=0", 0},
		{"maxNodes=invalid", 0},
		{"maxNodes=invalid&max-nodes=7", 7},
		{"maxNodes=9&max-nodes=7", 9}, // maxNodes wins, as in Pyroscope
		{"maxNodes=0&max-nodes=7", 7},
		{"maxNodes=-3", -3}, // refused later (DOT: its default)
	} {
		qv, err := url.ParseQuery(c.query)
		if err != nil {
			t.Fatal(err)
		}
		got := renderMaxNodes(qv)
		if (got == nil) != (c.want == 0) || (got != nil && *got != c.want) {
			t.Errorf("%q: got %v, want %d", c.query, got, c.want)
		}
	}
}

func TestRenderRangeRefusesZero(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, c := range []struct {
		from, until string
		ok          bool
	}{
		{"now-15m", "now", true},
		{"", "", true}, // the last hour
		{"0", "now", false},
		{"now-15m", "0", false},
		{"0", "0", false},
		{"1", "now", true}, // one second after the epoch is a time
		{"now", "now-15m", false},
	} {
		_, _, err := renderRange(c.from, c.until, now)
		if (err == nil) != c.ok {
			t.Errorf("from %q until %q: %v, want ok %v", c.from, c.until, err, c.ok)
		}
	}
}

func TestCheckMerge(t *testing.T) {
	for _, c := range []struct {
		sel        string
		start, end int64
		ok         bool
	}{
		{"{}", 1, 2, true},
		{`{a="b"}`, -5, 2, true}, // a negative start is a time
		{"", 1, 2, false},
		{"  ", 1, 2, false},
		{"{}", 0, 2, false},
		{"{}", 1, 0, false},
	} {
		err := checkMerge(c.sel, c.start, c.end)
		if (err == nil) != c.ok {
			t.Errorf("%q %d..%d: %v, want ok %v", c.sel, c.start, c.end, err, c.ok)
		}
	}
}
