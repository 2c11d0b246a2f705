package otlp

import (
	"fmt"
	"strings"
	"testing"
	"time"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	collectorv1 "go.opentelemetry.io/proto/otlp/collector/profiles/v1development"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	profilesv1 "go.opentelemetry.io/proto/otlp/profiles/v1development"
	resourcev1 "go.opentelemetry.io/proto/otlp/resource/v1"

	"github.com/hearth-dev/hearth/ingester/ingest"
)

var now = time.Unix(1_700_000_000, 0)

// oneProfile wraps a profile and its dictionary in a request.
func oneProfile(d *dict, res []*commonv1.KeyValue, p *profilesv1.Profile) *collectorv1.ExportProfilesServiceRequest {
	return &collectorv1.ExportProfilesServiceRequest{
		Dictionary: d.d,
		ResourceProfiles: []*profilesv1.ResourceProfiles{{
			Resource:      &resourcev1.Resource{Attributes: res},
			ScopeProfiles: []*profilesv1.ScopeProfiles{{Profiles: []*profilesv1.Profile{p}}},
		}},
	}
}

// twoFrames is a dictionary with a symbolized stack (main → work, in
// "app") and an unsymbolized one (two addresses in "lib.so").
func twoFrames() (d *dict, symbolized, unsymbolized int32) {
	d = newDict()
	app := int32(len(d.d.MappingTable))
	d.d.MappingTable = append(d.d.MappingTable, &profilesv1.Mapping{MemoryStart: 0x400000, MemoryLimit: 0x800000, FilenameStrindex: d.str("app")})
	lib := int32(len(d.d.MappingTable))
	d.d.MappingTable = append(d.d.MappingTable, &profilesv1.Mapping{MemoryStart: 0x1000, MemoryLimit: 0x2000, FileOffset: 0x10, FilenameStrindex: d.str("lib.so"),
		AttributeIndices: []int32{d.attr(attrBuildID, strVal("abcd"))}})
	for _, n := range []string{"main", "work"} {
		d.d.FunctionTable = append(d.d.FunctionTable, &profilesv1.Function{NameStrindex: d.str(n), FilenameStrindex: d.str("main.go")})
	}
	d.d.LocationTable = append(d.d.LocationTable,
		&profilesv1.Location{MappingIndex: app, Address: 0x401000, Lines: []*profilesv1.Line{{FunctionIndex: 1, Line: 10}}},
		&profilesv1.Location{MappingIndex: app, Address: 0x402000, Lines: []*profilesv1.Line{{FunctionIndex: 2, Line: 20}}},
		&profilesv1.Location{MappingIndex: lib, Address: 0x1e0},
		&profilesv1.Location{MappingIndex: lib, Address: 0x2f0},
	)
	return d, d.stack(2, 1), d.stack(3, 4)
}

func vt(d *dict, t, u string) *profilesv1.ValueType {
	return &profilesv1.ValueType{TypeStrindex: d.str(t), UnitStrindex: d.str(u)}
}

func labelMap(ls []ingest.LabelPair) map[string]string {
	m := map[string]string{}
	for _, l := range ls {
		m[l.Name] = l.Value
	}
	return m
}

func mustConvert(t *testing.T, req *collectorv1.ExportProfilesServiceRequest) []ingest.Decoded {
	t.Helper()
	out, err := Convert(req, now)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestServiceName(t *testing.T) {
	for _, c := range []struct {
		attrs []*commonv1.KeyValue
		want  string
	}{
		{nil, "unknown_service"},
		{[]*commonv1.KeyValue{kv("process.executable.name", strVal("bash"))}, "unknown_service:bash"},
		{[]*commonv1.KeyValue{kv("process.executable.name", strVal("bash")), kv("service.name", strVal("shop"))}, "shop"},
		{[]*commonv1.KeyValue{kv("service.name", strVal("")), kv("process.executable.name", strVal(""))}, "unknown_service"},
		{[]*commonv1.KeyValue{kv("service.name", intVal(3))}, "unknown_service"},
	} {
		if got := serviceName(c.attrs); got != c.want {
			t.Errorf("%v: %q, want %q", c.attrs, got, c.want)
		}
	}
}

// TestSeriesLabels: resource then scope attributes with a string value, the
// first of a key winning, sanitized; service.name merged into service_name;
// __name__ from the type; ints, empty strings and __name__ attributes left out.
func TestSeriesLabels(t *testing.T) {
	d, st, _ := twoFrames()
	req := oneProfile(d, []*commonv1.KeyValue{
		kv("service.name", strVal("shop")), kv("k8s.namespace.name", strVal("prod")), kv("process.pid", intVal(7)),
		kv("container.id", strVal("")), kv("__name__", strVal("evil")), kv("region", strVal("eu")),
	}, &profilesv1.Profile{SampleType: vt(d, "samples", "count"), PeriodType: vt(d, "cpu", "nanoseconds"), Period: 10,
		Samples: []*profilesv1.Sample{{StackIndex: st, Values: []int64{1}}}})
	req.ResourceProfiles[0].ScopeProfiles[0].Scope = &commonv1.InstrumentationScope{Name: "s", Attributes: []*commonv1.KeyValue{
		kv("region", strVal("us")), kv("scope.attr", strVal("x")),
	}}
	out := mustConvert(t, req)
	if len(out) != 1 {
		t.Fatalf("%d profiles", len(out))
	}
	got := labelMap(out[0].Labels)
	want := map[string]string{"service_name": "shop", "k8s_namespace_name": "prod", "region": "eu", "scope_attr": "x", "__name__": "process_cpu"}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(out[0].Labels) != len(want) {
		t.Fatalf("labels %v, want %v", out[0].Labels, want)
	}
}

// TestBadAttributeNamesRefused: as Pyroscope's label validation, a name
// that is no label name even sanitized, or two attributes that sanitize to
// one name with different values (a sample's service.name against the
// resource's among them), refuse the request.
func TestBadAttributeNamesRefused(t *testing.T) {
	d, st, _ := twoFrames()
	billing := d.attr("service.name", strVal("billing"))
	p := &profilesv1.Profile{SampleType: vt(d, "samples", "count"), PeriodType: vt(d, "cpu", "nanoseconds"), Period: 10,
		Samples: []*profilesv1.Sample{{StackIndex: st, Values: []int64{1}}}}
	split := &profilesv1.Profile{SampleType: p.SampleType, PeriodType: p.PeriodType, Period: 10,
		Samples: []*profilesv1.Sample{{StackIndex: st, Values: []int64{1}, AttributeIndices: []int32{billing}}}}
	for name, req := range map[string]*collectorv1.ExportProfilesServiceRequest{
		"invalid name":        oneProfile(d, []*commonv1.KeyValue{kv("pod-name", strVal("x"))}, p),
		"sanitized collision": oneProfile(d, []*commonv1.KeyValue{kv("a.b", strVal("1")), kv("a_b", strVal("2"))}, p),
		"service.name twice":  oneProfile(d, []*commonv1.KeyValue{kv("service.name", strVal("shop"))}, split),
	} {
		if _, err := Convert(req, now); err == nil || !strings.Contains(err.Error(), "label") {
			t.Errorf("%s: got %v, want a label error", name, err)
		}
	}
	if _, err := Convert(oneProfile(d, []*commonv1.KeyValue{kv("a.b", strVal("1")), kv("a_b", strVal("1"))}, p), now); err != nil {
		t.Errorf("a sanitized collision with equal values: %v", err)
	}
}

// TestProfileTypes: CPU samples become cpu:nanoseconds times the period;
// events:nanoseconds without period is off_cpu, values summed; other types
// are named after their period type; no period and no known type: no name.
func TestProfileTypes(t *testing.T) {
	d, st, _ := twoFrames()
	cases := []struct {
		name           string
		p              *profilesv1.Profile
		wantName, want string // want: type:unit=values
	}{
		{"cpu", &profilesv1.Profile{SampleType: vt(d, "samples", "count"), PeriodType: vt(d, "cpu", "nanoseconds"), Period: 1000,
			Samples: []*profilesv1.Sample{{StackIndex: st, Values: []int64{3}}, {StackIndex: st, TimestampsUnixNano: []uint64{1, 2}}}},
			"process_cpu", "cpu:nanoseconds=[3000] [2000]"},
		{"off-cpu", &profilesv1.Profile{SampleType: vt(d, "events", "nanoseconds"),
			Samples: []*profilesv1.Sample{{StackIndex: st, Values: []int64{1, 2, 3}}}},
			"off_cpu", "events:nanoseconds=[6]"},
		{"custom", &profilesv1.Profile{SampleType: vt(d, "alloc_space", "bytes"), PeriodType: vt(d, "space", "bytes"), Period: 512,
			Samples: []*profilesv1.Sample{{StackIndex: st, Values: []int64{4096}}}},
			"space", "alloc_space:bytes=[4096]"},
		{"no period", &profilesv1.Profile{SampleType: vt(d, "samples", "count"),
			Samples: []*profilesv1.Sample{{StackIndex: st, Values: []int64{5}}}},
			"", "samples:count=[5]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := mustConvert(t, oneProfile(d, nil, c.p))
			if len(out) != 1 {
				t.Fatalf("%d profiles", len(out))
			}
			gp := out[0].Profile
			var vals []string
			for _, s := range gp.Sample {
				vals = append(vals, fmt.Sprint(s.Value))
			}
			got := gp.StringTable[gp.SampleType[0].Type] + ":" + gp.StringTable[gp.SampleType[0].Unit] + "=" + strings.Join(vals, " ")
			if got != c.want {
				t.Errorf("%s, want %s", got, c.want)
			}
			if n := labelMap(out[0].Labels)["__name__"]; n != c.wantName {
				t.Errorf("__name__ %q, want %q", n, c.wantName)
			}
			if gp.TimeNanos != now.UnixNano() || gp.DurationNanos != int64(10*time.Second) {
				t.Errorf("time %d duration %d: want now and 10 s when the profile gives none", gp.TimeNanos, gp.DurationNanos)
			}
		})
	}
}

// TestSampleServiceSplits: samples with a service.name attribute form a
// profile of that service; the others keep the resource's.
func TestSampleServiceSplits(t *testing.T) {
	d, st, un := twoFrames()
	a := d.attr("service.name", strVal("billing"))
	th := d.attr("thread.name", strVal("main"))
	req := oneProfile(d, []*commonv1.KeyValue{kv("process.executable.name", strVal("worker"))}, &profilesv1.Profile{
		SampleType: vt(d, "samples", "count"), PeriodType: vt(d, "cpu", "nanoseconds"), Period: 1,
		Samples: []*profilesv1.Sample{
			{StackIndex: st, Values: []int64{1}, AttributeIndices: []int32{a, th}},
			{StackIndex: un, Values: []int64{2}},
			{StackIndex: st, Values: []int64{4}, AttributeIndices: []int32{a}},
		}})
	out := mustConvert(t, req)
	totals := map[string]int64{}
	for _, o := range out {
		for _, s := range o.Profile.Sample {
			totals[labelMap(o.Labels)["service_name"]] += s.Value[0]
			for _, l := range s.Label {
				if o.Profile.StringTable[l.Key] == "service.name" || o.Profile.StringTable[l.Key] == "service_name" {
					t.Errorf("service.name stays a sample label")
				}
			}
		}
	}
	if fmt.Sprint(totals) != "map[billing:5 unknown_service:worker:2]" {
		t.Fatalf("totals by service %v", totals)
	}
	if labels := out[0].Profile.Sample[0].Label; len(labels) != 1 || out[0].Profile.StringTable[labels[0].Key] != "thread_name" {
		t.Fatalf("sample labels %v: want thread_name (sanitized)", labels)
	}
}

// TestFrames: symbolized frames lose their addresses (their mapping has
// functions), unsymbolized ones keep address, mapping range, offset, file
// and build id.
func TestFrames(t *testing.T) {
	d, st, un := twoFrames()
	out := mustConvert(t, oneProfile(d, nil, &profilesv1.Profile{SampleType: vt(d, "samples", "count"), PeriodType: vt(d, "cpu", "nanoseconds"), Period: 1,
		Samples: []*profilesv1.Sample{{StackIndex: st, Values: []int64{1}}, {StackIndex: un, Values: []int64{1}}}}))
	gp := out[0].Profile
	describe := func(s *googlev1.Sample) string {
		var fr []string
		for _, id := range s.LocationId {
			l := gp.Location[id-1]
			m := gp.Mapping[l.MappingId-1]
			f := fmt.Sprintf("%#x %s(%s)[%#x-%#x@%#x] fn=%v", l.Address, gp.StringTable[m.Filename], gp.StringTable[m.BuildId], m.MemoryStart, m.MemoryLimit, m.FileOffset, m.HasFunctions)
			for _, ln := range l.Line {
				f += " " + gp.StringTable[gp.Function[ln.FunctionId-1].Name] + fmt.Sprint(":", ln.Line)
			}
			fr = append(fr, f)
		}
		return strings.Join(fr, "; ")
	}
	if got, want := describe(gp.Sample[0]), "0x0 app()[0x0-0x0@0x0] fn=true work:20; 0x0 app()[0x0-0x0@0x0] fn=true main:10"; got != want {
		t.Errorf("symbolized: %s\nwant %s", got, want)
	}
	if got, want := describe(gp.Sample[1]), "0x1e0 lib.so(abcd)[0x1000-0x2000@0x10] fn=false; 0x2f0 lib.so(abcd)[0x1000-0x2000@0x10] fn=false"; got != want {
		t.Errorf("unsymbolized: %s\nwant %s", got, want)
	}
}

func TestLinkBecomesSpanID(t *testing.T) {
	d, st, _ := twoFrames()
	l := d.link([]byte{0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1})
	out := mustConvert(t, oneProfile(d, nil, &profilesv1.Profile{SampleType: vt(d, "samples", "count"), PeriodType: vt(d, "cpu", "nanoseconds"), Period: 1,
		Samples: []*profilesv1.Sample{{StackIndex: st, Values: []int64{1}, LinkIndex: l}}}))
	gp := out[0].Profile
	lb := gp.Sample[0].Label
	if len(lb) != 1 || gp.StringTable[lb[0].Key] != "span_id" || gp.StringTable[lb[0].Str] != "deadbeef00000001" {
		t.Fatalf("labels %v", lb)
	}
}

func TestEmptyProfileGivesNothing(t *testing.T) {
	d, _, _ := twoFrames()
	if out := mustConvert(t, oneProfile(d, nil, &profilesv1.Profile{})); len(out) != 0 {
		t.Fatalf("%d profiles from a profile without samples", len(out))
	}
}

// TestCorruptRefused: every reference out of its table, a sample without
// values and a missing dictionary are errors naming the problem.
func TestCorruptRefused(t *testing.T) {
	cpu := func(d *dict, s *profilesv1.Sample) *profilesv1.Profile {
		return &profilesv1.Profile{SampleType: vt(d, "samples", "count"), PeriodType: vt(d, "cpu", "nanoseconds"), Period: 1, Samples: []*profilesv1.Sample{s}}
	}
	cases := map[string]struct {
		mutate func(d *dict) *profilesv1.Profile
		says   string
	}{
		"stack": {func(d *dict) *profilesv1.Profile {
			return cpu(d, &profilesv1.Sample{StackIndex: 1_000_000_000, Values: []int64{1}})
		}, "stack index 1000000000"},
		"location": {func(d *dict) *profilesv1.Profile {
			return cpu(d, &profilesv1.Sample{StackIndex: d.stack(99), Values: []int64{1}})
		}, "location index 99"},
		"mapping": {func(d *dict) *profilesv1.Profile {
			d.d.LocationTable[1].MappingIndex = 42
			return cpu(d, &profilesv1.Sample{StackIndex: 1, Values: []int64{1}})
		}, "mapping index 42"},
		"function": {func(d *dict) *profilesv1.Profile {
			d.d.LocationTable[1].Lines[0].FunctionIndex = -3
			return cpu(d, &profilesv1.Sample{StackIndex: 1, Values: []int64{1}})
		}, "function index -3"},
		"function name": {func(d *dict) *profilesv1.Profile {
			d.d.FunctionTable[1].NameStrindex = 1e6
			return cpu(d, &profilesv1.Sample{StackIndex: 1, Values: []int64{1}})
		}, "function name string index 1000000"},
		"attribute": {func(d *dict) *profilesv1.Profile {
			return cpu(d, &profilesv1.Sample{StackIndex: 1, Values: []int64{1}, AttributeIndices: []int32{500}})
		}, "attribute index 500"},
		"link": {func(d *dict) *profilesv1.Profile {
			return cpu(d, &profilesv1.Sample{StackIndex: 1, Values: []int64{1}, LinkIndex: 7})
		}, "link index 7"},
		"sample type string": {func(d *dict) *profilesv1.Profile {
			p := cpu(d, &profilesv1.Sample{StackIndex: 1, Values: []int64{1}})
			p.SampleType.UnitStrindex = 1e6
			return p
		}, "sample type unit string index"},
		"no sample type": {func(d *dict) *profilesv1.Profile {
			p := cpu(d, &profilesv1.Sample{StackIndex: 1, Values: []int64{1}})
			p.SampleType = nil
			return p
		}, "sample type is missing"},
		"no values": {func(d *dict) *profilesv1.Profile {
			return cpu(d, &profilesv1.Sample{StackIndex: 1})
		}, "sample value is required"},
		"values for one type": {func(d *dict) *profilesv1.Profile {
			return cpu(d, &profilesv1.Sample{StackIndex: 1, Values: []int64{1, 2}})
		}, "values length mismatch"},
		"sample attribute name": {func(d *dict) *profilesv1.Profile {
			return cpu(d, &profilesv1.Sample{StackIndex: 1, Values: []int64{1}, AttributeIndices: []int32{d.attr("bad-name", strVal("x"))}})
		}, `"bad-name"`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			d, _, _ := twoFrames()
			_, err := Convert(oneProfile(d, nil, c.mutate(d)), now)
			if err == nil || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("got %v, want an error mentioning %q", err, c.says)
			}
		})
	}
	if _, err := Convert(&collectorv1.ExportProfilesServiceRequest{ResourceProfiles: []*profilesv1.ResourceProfiles{{}}}, now); err == nil || !strings.Contains(err.Error(), "dictionary") {
		t.Fatalf("no dictionary: %v", err)
	}
	if _, err := Convert(&collectorv1.ExportProfilesServiceRequest{Dictionary: newDict().d}, now); err == nil || !strings.Contains(err.Error(), "resource profiles") {
		t.Fatalf("no resource profiles: %v", err)
	}
}

// TestTestdataConverts: the committed request gives the profiles the
// server tests query: three services, CPU and off-CPU, unsymbolized frames.
func TestTestdataConverts(t *testing.T) {
	out := mustConvert(t, loadTestdata(t))
	got := map[string]int{}
	unsym := 0
	for _, o := range out {
		ls := labelMap(o.Labels)
		got[ls["service_name"]+"/"+ls["__name__"]]++
		for _, m := range o.Profile.Mapping {
			if !m.HasFunctions && o.Profile.StringTable[m.BuildId] != "" {
				unsym++
			}
		}
	}
	if fmt.Sprint(got) != "map[billing/process_cpu:1 checkout/off_cpu:1 checkout/process_cpu:1 unknown_service:worker/process_cpu:1]" {
		t.Fatalf("profiles %v", got)
	}
	if unsym == 0 {
		t.Fatal("no unsymbolized mapping with a build id")
	}
}

func TestIsRPC(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc": true, "application/grpc+proto": true, "application/grpc-web+proto": true,
		"application/connect+proto": true, "application/proto": true,
		"application/protobuf": false, "application/x-protobuf": false, "application/json": false,
		"application/json; charset=utf-8": false, "text/plain": false, "": false,
	} {
		if got := isRPC(ct); got != want {
			t.Errorf("%q: %v, want %v", ct, got, want)
		}
	}
}
