package otlp

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	collectorv1 "go.opentelemetry.io/proto/otlp/collector/profiles/v1development"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	profilesv1 "go.opentelemetry.io/proto/otlp/profiles/v1development"
	resourcev1 "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/hearth-dev/hearth/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite testdata/go-cpu.otlp.pb from a fresh Go CPU profile")

// testdataFile is a realistic export request committed with the package: a
// real Go CPU profile of this test process converted to OTLP the way the
// OpenTelemetry eBPF profiler shapes its requests (see genRequest).
const testdataFile = "testdata/go-cpu.otlp.pb"

// dict builds a ProfilesDictionary; index 0 of every table is the zero
// entry, as OTLP requires.
type dict struct {
	d     *profilesv1.ProfilesDictionary
	strs  map[string]int32
	attrs map[string]int32
}

func newDict() *dict {
	return &dict{
		d: &profilesv1.ProfilesDictionary{
			StringTable:    []string{""},
			MappingTable:   []*profilesv1.Mapping{{}},
			LocationTable:  []*profilesv1.Location{{}},
			FunctionTable:  []*profilesv1.Function{{}},
			LinkTable:      []*profilesv1.Link{{}},
			AttributeTable: []*profilesv1.KeyValueAndUnit{{}},
			StackTable:     []*profilesv1.Stack{{}},
		},
		strs: map[string]int32{"": 0}, attrs: map[string]int32{},
	}
}

func (d *dict) str(s string) int32 {
	if i, ok := d.strs[s]; ok {
		return i
	}
	i := int32(len(d.d.StringTable))
	d.d.StringTable = append(d.d.StringTable, s)
	d.strs[s] = i
	return i
}

func strVal(s string) *commonv1.AnyValue {
	return &commonv1.AnyValue{Value: &commonv1.AnyValue_StringValue{StringValue: s}}
}

func intVal(v int64) *commonv1.AnyValue {
	return &commonv1.AnyValue{Value: &commonv1.AnyValue_IntValue{IntValue: v}}
}

func kv(k string, v *commonv1.AnyValue) *commonv1.KeyValue {
	return &commonv1.KeyValue{Key: k, Value: v}
}

func (d *dict) attr(k string, v *commonv1.AnyValue) int32 {
	key := k + "\x00" + v.String()
	if i, ok := d.attrs[key]; ok {
		return i
	}
	i := int32(len(d.d.AttributeTable))
	d.d.AttributeTable = append(d.d.AttributeTable, &profilesv1.KeyValueAndUnit{KeyStrindex: d.str(k), Value: v})
	d.attrs[key] = i
	return i
}

func (d *dict) stack(locs ...int32) int32 {
	d.d.StackTable = append(d.d.StackTable, &profilesv1.Stack{LocationIndices: locs})
	return int32(len(d.d.StackTable) - 1)
}

func (d *dict) link(span []byte) int32 {
	d.d.LinkTable = append(d.d.LinkTable, &profilesv1.Link{TraceId: make([]byte, 16), SpanId: span})
	return int32(len(d.d.LinkTable) - 1)
}

// fromPprof adds a Go pprof profile's symbols to the dictionary: its
// locations by pprof id (leaf first, as both formats order stacks).
func (d *dict) fromPprof(p *profile.Profile) map[uint64]int32 {
	maps := map[uint64]int32{}
	for _, m := range p.Mapping {
		d.d.MappingTable = append(d.d.MappingTable, &profilesv1.Mapping{
			MemoryStart: m.Start, MemoryLimit: m.Limit, FileOffset: m.Offset, FilenameStrindex: d.str(m.File),
			AttributeIndices: []int32{d.attr(attrBuildID, strVal(m.BuildID))},
		})
		maps[m.ID] = int32(len(d.d.MappingTable) - 1)
	}
	fns := map[uint64]int32{}
	for _, f := range p.Function {
		d.d.FunctionTable = append(d.d.FunctionTable, &profilesv1.Function{
			NameStrindex: d.str(f.Name), SystemNameStrindex: d.str(f.SystemName), FilenameStrindex: d.str(f.Filename), StartLine: f.StartLine,
		})
		fns[f.ID] = int32(len(d.d.FunctionTable) - 1)
	}
	locs := map[uint64]int32{}
	for _, l := range p.Location {
		ol := &profilesv1.Location{Address: l.Address}
		if l.Mapping != nil {
			ol.MappingIndex = maps[l.Mapping.ID]
		}
		for _, ln := range l.Line {
			ol.Lines = append(ol.Lines, &profilesv1.Line{FunctionIndex: fns[ln.Function.ID], Line: ln.Line})
		}
		d.d.LocationTable = append(d.d.LocationTable, ol)
		locs[l.ID] = int32(len(d.d.LocationTable) - 1)
	}
	return locs
}

// genRequest converts a Go CPU profile into an export request shaped like
// the eBPF profiler's, with every feature the conversion handles:
//
//   - resource "checkout" (service.name, dotted attributes, an int one) with
//     a CPU profile (samples:count, period cpu:nanoseconds, one timestamp per
//     sample): the Go frames symbolized, every third sample under an
//     unsymbolized native leaf frame of libc.so.6 (address and build id
//     only), thread.name sample attributes, a link (span id) on some;
//   - the same resource's off-CPU profile (events:nanoseconds, no period,
//     several values per sample);
//   - a resource without service.name (process.executable.name "worker"),
//     whose samples partly carry service.name "billing": two services.
func genRequest(p *profile.Profile, now time.Time) *collectorv1.ExportProfilesServiceRequest {
	d := newDict()
	locs := d.fromPprof(p)
	libc := int32(len(d.d.MappingTable))
	d.d.MappingTable = append(d.d.MappingTable, &profilesv1.Mapping{
		MemoryStart: 0x7f0000000000, MemoryLimit: 0x7f0000187000, FilenameStrindex: d.str("libc.so.6"),
		AttributeIndices: []int32{d.attr(attrBuildID, strVal("16e7fc798f754633a38d91ba09be84f8aa839464"))},
	})
	native := func(i int) int32 {
		d.d.LocationTable = append(d.d.LocationTable, &profilesv1.Location{MappingIndex: libc, Address: 0x7ee9f + uint64(i%4)*0x10})
		return int32(len(d.d.LocationTable) - 1)
	}
	stackOf := func(s *profile.Sample, i int) int32 {
		var ls []int32
		if i%3 == 0 {
			ls = append(ls, native(i))
		}
		for _, l := range s.Location {
			ls = append(ls, locs[l.ID])
		}
		return d.stack(ls...)
	}
	period := p.Period
	if period == 0 {
		period = 10_000_000
	}
	ts := uint64(now.UnixNano())
	var cpu, off, worker []*profilesv1.Sample
	threads := []string{"main", "worker-1", "worker-2"}
	for i, s := range p.Sample {
		st := stackOf(s, i)
		count := s.Value[0]
		if count <= 0 {
			continue
		}
		stamps := make([]uint64, count)
		for j := range stamps {
			stamps[j] = ts - uint64(j)*uint64(period)
		}
		cs := &profilesv1.Sample{StackIndex: st, TimestampsUnixNano: stamps, AttributeIndices: []int32{
			d.attr("thread.name", strVal(threads[i%3])), d.attr("thread.id", intVal(int64(100+i%3))),
		}}
		if i%4 == 1 {
			cs.LinkIndex = d.link([]byte{1, 2, 3, 4, 5, 6, 7, byte(i)})
		}
		cpu = append(cpu, cs)
		off = append(off, &profilesv1.Sample{StackIndex: st, Values: []int64{int64(1000 * (i + 1)), int64(7 * (i + 1))}})
		ws := &profilesv1.Sample{StackIndex: st, Values: []int64{count}}
		if i%2 == 0 {
			ws.AttributeIndices = []int32{d.attr(attrServiceName, strVal("billing"))}
		}
		worker = append(worker, ws)
	}
	vt := func(t, u string) *profilesv1.ValueType {
		return &profilesv1.ValueType{TypeStrindex: d.str(t), UnitStrindex: d.str(u)}
	}
	scope := &commonv1.InstrumentationScope{Name: "hearth-otlp-test", Version: "v1", Attributes: []*commonv1.KeyValue{kv("test.run", strVal("committed"))}}
	return &collectorv1.ExportProfilesServiceRequest{
		Dictionary: d.d,
		ResourceProfiles: []*profilesv1.ResourceProfiles{{
			Resource: &resourcev1.Resource{Attributes: []*commonv1.KeyValue{
				kv("service.name", strVal("checkout")), kv("deployment.environment", strVal("test")),
				kv("host.name", strVal("node-1")), kv("process.pid", intVal(4242)), kv("container.id", strVal("")),
			}},
			ScopeProfiles: []*profilesv1.ScopeProfiles{{Scope: scope, Profiles: []*profilesv1.Profile{{
				SampleType: vt("samples", "count"), PeriodType: vt("cpu", "nanoseconds"), Period: period,
				TimeUnixNano: ts, DurationNano: uint64(p.DurationNanos), Samples: cpu,
			}, {
				SampleType: vt("events", "nanoseconds"), PeriodType: vt("", ""),
				TimeUnixNano: ts, DurationNano: uint64(p.DurationNanos), Samples: off,
			}}}},
		}, {
			Resource: &resourcev1.Resource{Attributes: []*commonv1.KeyValue{kv("process.executable.name", strVal("worker"))}},
			ScopeProfiles: []*profilesv1.ScopeProfiles{{Scope: scope, Profiles: []*profilesv1.Profile{{
				SampleType: vt("samples", "count"), PeriodType: vt("cpu", "nanoseconds"), Period: period,
				TimeUnixNano: ts, Samples: worker,
			}}}},
		}},
	}
}

// loadTestdata reads the committed request and stamps its profiles now.
func loadTestdata(t testing.TB) *collectorv1.ExportProfilesServiceRequest {
	t.Helper()
	b, err := os.ReadFile(testdataFile)
	if err != nil {
		t.Fatal(err)
	}
	req, err := DecodeProto(b)
	if err != nil {
		t.Fatal(err)
	}
	stamp(req, time.Now())
	return req
}

// stamp moves every profile of req to now (the committed file is old, and
// -limits.reject-older-than refuses old profiles).
func stamp(req *collectorv1.ExportProfilesServiceRequest, now time.Time) {
	for _, rp := range req.ResourceProfiles {
		for _, sp := range rp.ScopeProfiles {
			for _, p := range sp.Profiles {
				p.TimeUnixNano = uint64(now.UnixNano())
			}
		}
	}
}

// TestGenerateTestdata rewrites the committed request with -update.
func TestGenerateTestdata(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite " + testdataFile)
	}
	files := testutil.WriteProfiles(t, t.TempDir())
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Sample) < 3 {
		t.Fatalf("the CPU profile has %d samples: too few for a useful testdata file, run again", len(p.Sample))
	}
	b, err := proto.Marshal(genRequest(p, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(testdataFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(testdataFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s: %d bytes, %d samples", testdataFile, len(b), len(p.Sample))
}

// seedRequests are small requests covering the conversion's branches, for
// the fuzzers' seed corpora.
func seedRequests() map[string]*collectorv1.ExportProfilesServiceRequest {
	out := map[string]*collectorv1.ExportProfilesServiceRequest{}
	d, st, un := twoFrames()
	billing := d.attr(attrServiceName, strVal("billing"))
	th := d.attr("thread.name", strVal("main"))
	link := d.link([]byte{1, 2, 3, 4, 5, 6, 7, 8})
	res := []*commonv1.KeyValue{kv("service.name", strVal("shop")), kv("k8s.pod.name", strVal("p"))}
	out["cpu"] = oneProfile(d, res, &profilesv1.Profile{SampleType: vt(d, "samples", "count"), PeriodType: vt(d, "cpu", "nanoseconds"), Period: 10,
		Samples: []*profilesv1.Sample{{StackIndex: st, Values: []int64{2}, AttributeIndices: []int32{th}, LinkIndex: link}, {StackIndex: un, TimestampsUnixNano: []uint64{1, 2}}}})
	out["offcpu"] = oneProfile(d, nil, &profilesv1.Profile{SampleType: vt(d, "events", "nanoseconds"),
		Samples: []*profilesv1.Sample{{StackIndex: st, Values: []int64{1, 2, 3}}}})
	out["split"] = oneProfile(d, []*commonv1.KeyValue{kv("process.executable.name", strVal("w"))}, &profilesv1.Profile{SampleType: vt(d, "alloc_space", "bytes"), PeriodType: vt(d, "space", "bytes"), Period: 1,
		Samples: []*profilesv1.Sample{{StackIndex: st, Values: []int64{1}, AttributeIndices: []int32{billing}}, {StackIndex: un, Values: []int64{3}}}})
	out["corrupt"] = oneProfile(d, nil, &profilesv1.Profile{SampleType: vt(d, "samples", "count"),
		Samples: []*profilesv1.Sample{{StackIndex: 1_000_000_000, Values: []int64{1}}}})
	return out
}

// TestGenerateFuzzSeeds rewrites the fuzzers' seed corpora with -update.
func TestGenerateFuzzSeeds(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	write := func(fuzzer, name string, b []byte) {
		dir := filepath.Join("testdata", "fuzz", fuzzer)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, req := range seedRequests() {
		b, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		write("FuzzDecodeProto", name, b)
		j, err := protojson.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		write("FuzzDecodeJSON", name, j)
	}
	write("FuzzDecodeJSON", "empty", []byte(`{}`))
	write("FuzzDecodeProto", "truncated", []byte{0x0a, 0x05, 0x12})
}
