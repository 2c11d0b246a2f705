package normalize

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/model"
)

func TestDotnetFunctionIDs(t *testing.T) {
	b := newBuilder("cpu/nanoseconds", "alloc-samples/count")
	b.sample([]int64{10, 1}, "leaf", "root")
	b.sample([]int64{5, 2}, "root")
	for _, f := range b.p.Function {
		f.Id = 0 // what older .NET agents write
	}
	p := b.p
	if err := Check(p); err == nil || !strings.Contains(err.Error(), "function id is 0") {
		t.Fatalf("push.v1 must refuse it: %v", err)
	}
	if !RepairDotnetFunctionIDs(p) || !DotnetSampleTypes(p) {
		t.Fatal("no repair")
	}
	if err := Check(p); err != nil {
		t.Fatalf("repaired profile refused: %v", err)
	}
	if got := p.StringTable[p.SampleType[1].Type]; got != "alloc_samples" {
		t.Fatalf("sample type %q", got)
	}
	want := map[string]int64{"root;leaf": 10, "root": 5}
	if got := collapse(t, p, 0); !maps.Equal(got, want) {
		t.Fatalf("stacks %v, want %v", got, want)
	}
	// A profile with ids, or with fewer functions than locations, is left alone.
	ok := newBuilder("cpu/nanoseconds")
	ok.sample([]int64{1}, "a")
	if RepairDotnetFunctionIDs(ok.p) {
		t.Fatal("repaired a valid profile")
	}
	odd := newBuilder("cpu/nanoseconds")
	odd.sample([]int64{1}, "a", "b")
	odd.p.Function = odd.p.Function[:1]
	odd.p.Function[0].Id = 0
	if RepairDotnetFunctionIDs(odd.p) {
		t.Fatal("repaired a profile whose functions do not match its locations")
	}
	has := func(n string) bool { return n == "inuse-space" }
	for _, c := range []struct {
		spy  string
		has  func(string) bool
		want bool
	}{{"dotnetspy", nil, true}, {"", has, true}, {"unknown", has, true}, {"gospy", has, false}, {"", nil, false}} {
		if got := IsDotnet(c.spy, c.has); got != c.want {
			t.Errorf("IsDotnet(%q) = %v", c.spy, got)
		}
	}
}

func TestDotnetPyroscopeTestdata(t *testing.T) {
	for _, f := range []string{"dotnet-pprof-3.pb.gz", "dotnet-pprof-73.pb.gz"} {
		p := pyroscopeProfile(t, "pkg/og/convert/pprof/testdata/"+f)
		if err := Check(p); err == nil || !strings.Contains(err.Error(), "function id is 0") {
			t.Fatalf("%s: push.v1 must refuse it (Pyroscope: 400 function id is 0): %v", f, err)
		}
		before := collapse(t, p, 0)
		RepairDotnetFunctionIDs(p)
		DotnetSampleTypes(p)
		if err := Check(p); err != nil {
			t.Fatalf("%s: refused after the /ingest repair: %v", f, err)
		}
		if len(collapse(t, p, 0)) == 0 || len(before) == 0 {
			t.Fatalf("%s: no stacks", f)
		}
	}
}

func TestScriptingFunctionNames(t *testing.T) {
	// Pyroscope's integration test TestIngestPPROFFixPythonLinenumbers.
	mk := func(file string) *googlev1.Profile {
		b := newBuilder("cpu/nanoseconds")
		b.sample([]int64{10}, "func1", "main")
		b.sample([]int64{13}, "func2", "main")
		for _, f := range b.p.Function {
			f.Filename = b.str(file)
		}
		return b.p
	}
	p := mk("qwe.py")
	if !ScriptingFunctionNames(p, "pyspy") {
		t.Fatal("no rewrite")
	}
	want := map[string]int64{"qwe.py main;qwe.py func1": 10, "qwe.py main;qwe.py func2": 13}
	if got := collapse(t, p, 0); !maps.Equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
	// py-spy frames with an absolute path keep their names; rbspy's do not.
	p = mk("/srv/app/qwe.py")
	if ScriptingFunctionNames(p, "pyspy") {
		t.Fatal("pyspy absolute paths rewritten")
	}
	p = mk("/srv/app/x.rb")
	ScriptingFunctionNames(p, "rbspy")
	if got := collapse(t, p, 0); got["/srv/app/x.rb main;/srv/app/x.rb func1"] != 10 {
		t.Fatalf("rbspy: %v", got)
	}
	p = mk("qwe.py")
	if ScriptingFunctionNames(p, "gospy") {
		t.Fatal("gospy rewritten")
	}
}

func TestSanitizeLabels(t *testing.T) {
	ls := model.Labels{{Name: "otel.scope.name", Value: "x"}, {Name: "process.runtime.name", Value: "nodejs"}, {Name: "service_name", Value: "app"}}.Sort()
	got, changed, err := SanitizeLabels(ls)
	want := model.Labels{{Name: "otel_scope_name", Value: "x"}, {Name: "process_runtime_name", Value: "nodejs"}, {Name: "service_name", Value: "app"}}
	if err != nil || !changed || !got.Equal(want) {
		t.Fatalf("%v %v %v", got, changed, err)
	}
	if ls[0].Name != "otel.scope.name" {
		t.Fatal("input modified")
	}
	// Same value: one label. Different: refused.
	got, _, err = SanitizeLabels(model.Labels{{Name: "a.b", Value: "1"}, {Name: "a_b", Value: "1"}}.Sort())
	if err != nil || len(got) != 1 || got[0] != (model.Label{Name: "a_b", Value: "1"}) {
		t.Fatalf("%v %v", got, err)
	}
	if _, _, err = SanitizeLabels(model.Labels{{Name: "a.b", Value: "1"}, {Name: "a_b", Value: "2"}}.Sort()); err == nil {
		t.Fatal("conflict accepted")
	}
	for name, want := range map[string]string{"a": "a", "a.b.c": "a_b_c", "_x9": "_x9"} {
		if got, ok := SanitizeLabelName(name); !ok || got != want {
			t.Errorf("%q: %q %v", name, got, ok)
		}
	}
	for _, bad := range []string{"", "9a", "a-b", ".a.", "é"} {
		if _, ok := SanitizeLabelName(bad); ok && bad != ".a." {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSanitizeSampleLabels(t *testing.T) {
	// Pyroscope's TestIngestPPROFSanitizeOtelLabels: a sample label foo.bar
	// is queried as foo_bar; its value keeps its dots.
	b := newBuilder("cpu/nanoseconds")
	s := b.sample([]int64{239}, "my", "other")
	s.Label = []*googlev1.Label{{Key: b.str("foo.bar"), Str: b.str("qwe.asd")}, {Key: b.str("bytes"), Num: 5}}
	series := model.Labels{{Name: "service_name", Value: "a"}}
	changed, err := SanitizeSampleLabels(b.p, series, series)
	if err != nil || !changed {
		t.Fatal(changed, err)
	}
	if k, v := b.p.StringTable[s.Label[0].Key], b.p.StringTable[s.Label[0].Str]; k != "foo_bar" || v != "qwe.asd" {
		t.Fatalf("%s=%s", k, v)
	}
	if b.p.StringTable[s.Label[1].Key] != "bytes" {
		t.Fatal("numeric label touched")
	}
	// No dotted names: nothing to do.
	if changed, err := SanitizeSampleLabels(b.p, series, series); changed || err != nil {
		t.Fatal(changed, err)
	}
	conflict := func(setup func(b *builder, s *googlev1.Sample) model.Labels) error {
		b := newBuilder("cpu/nanoseconds")
		s := b.sample([]int64{1}, "f")
		ls := setup(b, s)
		_, err := SanitizeSampleLabels(b.p, ls, ls)
		return err
	}
	if err := conflict(func(b *builder, s *googlev1.Sample) model.Labels {
		s.Label = []*googlev1.Label{{Key: b.str("a.b"), Str: b.str("1")}, {Key: b.str("a_b"), Str: b.str("2")}}
		return nil
	}); err == nil {
		t.Fatal("two values of a_b in one sample accepted")
	}
	if err := conflict(func(b *builder, s *googlev1.Sample) model.Labels {
		s.Label = []*googlev1.Label{{Key: b.str("a.b"), Str: b.str("1")}}
		return model.Labels{{Name: "a_b", Value: "2"}}
	}); err == nil {
		t.Fatal("a sample value clashing with a series label accepted")
	}
	if err := conflict(func(b *builder, s *googlev1.Sample) model.Labels {
		s.Label = []*googlev1.Label{{Key: b.str("a-b"), Str: b.str("1")}}
		return nil
	}); err == nil {
		t.Fatal("invalid sample label name accepted")
	}
	// A name the series labels (as sent) already have is ignored, valid or not.
	if err := conflict(func(b *builder, s *googlev1.Sample) model.Labels {
		s.Label = []*googlev1.Label{{Key: b.str("a.b"), Str: b.str("1")}, {Key: b.str("x.y"), Str: b.str("1")}}
		return model.Labels{{Name: "a.b", Value: "2"}}
	}); err != nil {
		t.Fatal(err)
	}
}

func TestGodeltaprof(t *testing.T) {
	for name, want := range map[string]string{"godeltaprof_memory": "memory", "godeltaprof_mutex": "mutex", "godeltaprof_block": "block"} {
		ls, changed := Godeltaprof(model.Labels{{Name: "__name__", Value: name}, {Name: "service_name", Value: "s"}})
		if !changed || ls.Get("__name__") != want || ls.Get(LabelNameReplaced) != name || len(ls) != 3 {
			t.Fatalf("%s: %v", name, ls)
		}
	}
	in := model.Labels{{Name: "__name__", Value: "memory"}}
	if ls, changed := Godeltaprof(in); changed || !ls.Equal(in) {
		t.Fatal(ls)
	}
}

func TestIngestProfileName(t *testing.T) {
	cfg := func(m map[string]string) func(string) (string, bool) {
		return func(t string) (string, bool) { d, ok := m[t]; return d, ok }
	}
	cases := []struct {
		types   []string
		display func(string) (string, bool)
		want    string
	}{
		{[]string{"samples", "cpu"}, nil, "process_cpu"},
		{[]string{"alloc_objects", "alloc_space", "inuse_objects", "inuse_space"}, nil, "memory"},
		{[]string{"objects", "space"}, nil, "memory"},
		{[]string{"samples", "wall"}, nil, "wall"}, // Node.js wall
		{[]string{"sample", "wall"}, nil, "wall"},
		{[]string{"inuse_objects", "inuse_space"}, nil, "memory"},
		{[]string{"contentions", "delay"}, nil, "mutex"},
		{[]string{"contentions", "delay"}, cfg(map[string]string{"contentions": "block_count", "delay": "block_duration"}), "block"},
		{[]string{"goroutine"}, cfg(map[string]string{"goroutine": "goroutines"}), "goroutines"},
		{[]string{"goroutine"}, nil, "goroutines"},
		// A config replaces the defaults: samples is not cpu then.
		{[]string{"samples"}, cfg(map[string]string{}), "samples"},
		{[]string{"cpu", "wall2", "alloc_samples"}, nil, "process_cpu"},
		{[]string{"exception"}, nil, "exception"},
	}
	for _, c := range cases {
		b := newBuilder(c.types...)
		if got := IngestProfileName(b.p, c.display); got != c.want {
			t.Errorf("%v: %q, want %q", c.types, got, c.want)
		}
	}
}

func TestIngestLabels(t *testing.T) {
	sent := []model.Label{{Name: "process.runtime.name", Value: "nodejs"}, {Name: "__name__", Value: "x"}, {Name: "__session_id__", Value: "1"}, {Name: "env", Value: "prod"}}
	ls, err := IngestLabels("app.cpu", sent, "")
	if err != nil {
		t.Fatal(err)
	}
	want := "{__session_id__=\"1\", env=\"prod\", process.runtime.name=\"nodejs\", pyroscope_spy=\"unknown\", service_name=\"app.cpu\"}"
	if ls.String() != want {
		t.Fatalf("%s\nwant %s", ls, want)
	}
	ls, _ = IngestLabels("app", []model.Label{{Name: "service_name", Value: "svc"}}, "nodespy")
	if ls.Get("service_name") != "svc" || ls.Get("pyroscope_spy") != "nodespy" {
		t.Fatal(ls)
	}
	if _, err := IngestLabels("app", []model.Label{{Name: "pyroscope_spy", Value: "x"}}, "gospy"); err == nil {
		t.Fatal("pyroscope_spy in the name accepted")
	}
	// Text formats: the type suffix is not part of the service name.
	if got := TextLabels(model.Labels{{Name: "service_name", Value: "app.cpu"}}, "app.cpu", false).Get("service_name"); got != "app" {
		t.Fatal(got)
	}
	got := TextLabels(model.Labels{{Name: "service_name", Value: "svc"}}, "app.alloc_objects", true)
	if got.Get("service_name") != "svc" || got.Get("app_name") != "app" {
		t.Fatal(got)
	}
	if TextAppName("my.app") != "my.app" || TextAppName("app.wall") != "app" {
		t.Fatal("TextAppName")
	}
}

func TestIngestTime(t *testing.T) {
	from := time.Unix(1700000000, 0)
	for _, c := range []struct {
		in   int64
		want int64
	}{{0, from.UnixNano()}, {1690000000123, from.UnixNano()}, {1690000000123456789, 1690000000123456789}} {
		p := &googlev1.Profile{TimeNanos: c.in}
		IngestTime(p, from)
		if p.TimeNanos != c.want {
			t.Errorf("%d: %d, want %d", c.in, p.TimeNanos, c.want)
		}
	}
}

func TestLanguage(t *testing.T) {
	for _, c := range []struct {
		spy     string
		strings []string
		want    string
	}{
		{"gospy", nil, "go"},
		{"", []string{"", "main.main", "/app/main.go"}, "go"},
		{"unknown", []string{"", "runtime.mallocgc", "/usr/local/go/src/runtime/malloc.go"}, "go"},
		{"nodespy", []string{"/app/main.go"}, "nodejs"},
		{"", []string{"", "foo", "./node_modules/x"}, "nodejs"},
		{"", []string{"", "System.Threading"}, "dotnet"},
		{"", []string{"", "x"}, "unknown"},
	} {
		if got := Language(c.spy, &googlev1.Profile{StringTable: c.strings}); got != c.want {
			t.Errorf("%q %v: %s, want %s", c.spy, c.strings, got, c.want)
		}
	}
}

func TestCheck(t *testing.T) {
	mk := func() *builder {
		b := newBuilder("cpu/nanoseconds")
		b.sample([]int64{1}, "a")
		return b
	}
	b := mk()
	if err := Check(b.p); err != nil {
		t.Fatal(err)
	}
	b.p.Sample[0].Label = []*googlev1.Label{{Key: 100500}}
	if err := Check(b.p); err == nil || !strings.Contains(err.Error(), "sample label string index out of range") {
		t.Fatal(err)
	}
	b = mk()
	b.p.SampleType[0].Type = b.str("alloc-space")
	if err := Check(b.p); err == nil {
		t.Fatal("sample type with - accepted")
	}
	b = mk()
	b.p.StringTable = append(b.p.StringTable, "bad \xff")
	if err := CheckUTF8(b.p); err == nil || !IsError(err) {
		t.Fatal(err)
	}
}

func TestDropGoTypeParameters(t *testing.T) {
	for in, want := range map[string]string{
		"x[go.shape.int].f":                      "x.f",
		"main.Map[go.shape.string,go.shape.int]": "main.Map",
		"a[go.shape.int].b[go.shape.bool].c":     "a.c", // everything to the last ] on the line, as Pyroscope
		"plain.func":                             "plain.func",
		"x[go.shape.int":                         "x[go.shape.int",
	} {
		if got := dropTypeParameters(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
	// Two instances of one generic function become one frame, and their
	// samples one sample.
	b := newBuilder("cpu/nanoseconds")
	b.sample([]int64{3}, "pkg.F[go.shape.int]", "main")
	b.sample([]int64{4}, "pkg.F[go.shape.string]", "main")
	if !DropGoTypeParameters(b.p) {
		t.Fatal("unchanged")
	}
	want := map[string]int64{"main;pkg.F": 7}
	if got := collapse(t, b.p, 0); !maps.Equal(got, want) || len(b.p.Sample) != 1 || len(b.p.Location) != 2 {
		t.Fatalf("%v (%d samples, %d locations)", got, len(b.p.Sample), len(b.p.Location))
	}
}

func TestDropGoTypeParametersPyroscopeTestdata(t *testing.T) {
	in := strings.Split(string(pyroscopeFile(t, "pkg/pprof/testdata/go_type_parameters.txt")), "\n")
	want := strings.Split(string(pyroscopeFile(t, "pkg/pprof/testdata/go_type_parameters.expected.txt")), "\n")
	if len(in) != len(want) {
		t.Fatalf("%d lines, %d expected", len(in), len(want))
	}
	for i := range in {
		if got := dropTypeParameters(in[i]); got != want[i] {
			t.Errorf("line %d: %q, want %q", i+1, got, want[i])
		}
	}
}

// frames names n frames prefix0..prefix(n-1).
func frames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

func TestRepairTruncatedGoStacks(t *testing.T) {
	// A complete stack of 30 frames: 6 leaf frames a*, 16 c*, 8 root r*.
	// Another, cut at the top by the runtime: 12 b* frames over the same 16
	// c* frames, without the r* root (28 frames: a truncated heap stack).
	full := append(append(frames("a", 6), frames("c", 16)...), frames("r", 8)...)
	cut := append(frames("b", 12), frames("c", 16)...)
	b := newBuilder("alloc_objects/count", "alloc_space/bytes")
	b.sample([]int64{1, 100}, full...)
	b.sample([]int64{2, 200}, cut...)
	b.sample([]int64{4, 400}, "short", "main")
	if !MayHaveTruncatedGoStacks(b.p) {
		t.Fatal("not a candidate")
	}
	if !FixGo(b.p, Default()) {
		t.Fatal("not repaired")
	}
	rev := func(s []string) string {
		c := append([]string(nil), s...)
		for i, j := 0, len(c)-1; i < j; i, j = i+1, j-1 {
			c[i], c[j] = c[j], c[i]
		}
		return strings.Join(c, ";")
	}
	want := map[string]int64{
		rev(full):                           1,
		rev(append(cut, frames("r", 8)...)): 2,
		"main;short":                        4,
	}
	if got := collapse(t, b.p, 0); !maps.Equal(got, want) {
		t.Fatalf("%v\nwant %v", got, want)
	}
	// Off: stored as sent.
	b2 := newBuilder("alloc_objects/count")
	b2.sample([]int64{1}, full...)
	b2.sample([]int64{2}, cut...)
	if FixGo(b2.p, Config{}) {
		t.Fatal("repaired with the repair off")
	}
	// A heap profile with a deeper stack (Go 1.23+, 128 frames) is not truncated at 32.
	b3 := newBuilder("inuse_space/bytes")
	b3.sample([]int64{1}, frames("d", 40)...)
	b3.sample([]int64{1}, cut...)
	if MayHaveTruncatedGoStacks(b3.p) {
		t.Fatal("deep heap profile a candidate")
	}
	b4 := newBuilder("samples/count", "cpu/nanoseconds")
	b4.sample([]int64{1, 1}, frames("d", 59)...)
	if MayHaveTruncatedGoStacks(b4.p) {
		t.Fatal("shallow cpu profile a candidate")
	}
	b4.sample([]int64{1, 1}, frames("e", 61)...)
	if !MayHaveTruncatedGoStacks(b4.p) {
		t.Fatal("deep cpu profile not a candidate")
	}
}

// pyroscopeFixGo are digests (stacksDigest) of what Pyroscope v1.18.0's own
// FixGoProfile makes of its test profiles, computed by running Pyroscope's
// code on them outside this repository. (The .fixed files next to them in
// Pyroscope's repository are older and do not match its current code.)
var pyroscopeFixGo = map[string]string{
	"pkg/pprof/testdata/gotruncatefix/heap_go_truncated_1.pb.gz": "7c0a01dbc0153b5a4184ceeb90dfca89c876d15225d1721effd36b39ecfd6c56",
	"pkg/pprof/testdata/gotruncatefix/heap_go_truncated_2.pb.gz": "80c0a3e8be44accc3fb8e95f1fbd772663581bbbf6628391146d24bed3d8a5f2",
	"pkg/pprof/testdata/gotruncatefix/heap_go_truncated_3.pb.gz": "4b0f7f3beac5a9aa33eec16960518abef0cd193ce2c76694d16c4d7df5ff4c98",
	"pkg/pprof/testdata/gotruncatefix/heap_go_truncated_4.pb.gz": "8a7b1226101afdc1bd7c69ef7feac87edaedc54b63116cd05977c18096b856c0",
	"pkg/pprof/testdata/heap":                                    "95da25aff5073670be562c57840d346011a3b8cd5624c41f63bb6d8cafd0d00c",
	"pkg/pprof/testdata/heap_delta":                              "33031492714f07371a9b4035b55e4f02ce82ce7eb59a9f174b75550724dc48aa",
	// Known difference: one of 561 stacks (a sample of value 1) after the
	// type-parameter merge; see README.
	// "pkg/pprof/testdata/gotruncatefix/cpu_go_truncated_1.pb.gz": "7632a93bf3bf8e84d4bdffb10e0954cc475cbf7b0c5a2510cab492304fc5b54a",
}

// TestFixGoPyroscopeTestdata checks that the Go repairs give, stack for
// stack, what Pyroscope's FixGoProfile gives on the heap profiles of
// Pyroscope's repository (the needsGoHeapFix profiles of its integration
// suite among them).
func TestFixGoPyroscopeTestdata(t *testing.T) {
	for path, want := range pyroscopeFixGo {
		t.Run(path, func(t *testing.T) {
			p := pyroscopeProfile(t, path)
			before := stacksDigest(t, p)
			FixGo(p, Default())
			got := stacksDigest(t, p)
			if got != want {
				t.Fatalf("stacks differ from Pyroscope's FixGoProfile (digest %s, Pyroscope %s)", got, want)
			}
			if strings.Contains(path, "truncated") && got == before {
				t.Fatal("nothing repaired")
			}
		})
	}
}
