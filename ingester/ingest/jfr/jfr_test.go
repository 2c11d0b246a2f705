package jfr

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	jfrpprof "github.com/grafana/jfr-parser/pprof"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// The recordings committed under testdata, made from testdata/Workload.java
// on OpenJDK 17 by TestRecordTestdata, with the JDK's own reading of them
// (jdkReference) next to each as <name>.stacks.gz.
var committed = []struct {
	name     string
	settings string // -XX:StartFlightRecording options
	seconds  int
	types    []string // the profile types the recording must give
}{
	{"workload", "settings=profile,gc=high", 2, hotspotTypes},
	{"tiny", "settings=testdata/tiny.jfc", 1, []string{
		"block:contentions:count:block:count", "block:delay:nanoseconds:block:count",
		"memory:alloc_outside_tlab_bytes:bytes:space:bytes", "memory:alloc_outside_tlab_objects:count:space:bytes",
		"process_cpu:cpu:nanoseconds:cpu:nanoseconds",
	}},
}

// hotspotTypes are the profile types a HotSpot recording with the profile
// settings and allocation events (gc=high) gives, as Pyroscope names them.
var hotspotTypes = []string{
	"block:contentions:count:block:count",
	"block:delay:nanoseconds:block:count",
	"memory:alloc_in_new_tlab_bytes:bytes:space:bytes",
	"memory:alloc_in_new_tlab_objects:count:space:bytes",
	"memory:alloc_outside_tlab_bytes:bytes:space:bytes",
	"memory:alloc_outside_tlab_objects:count:space:bytes",
	"memory:alloc_sample_bytes:bytes:space:bytes",
	"memory:alloc_sample_objects:count:space:bytes",
	"mutex:contentions:count:mutex:count",
	"mutex:delay:nanoseconds:mutex:count",
	"process_cpu:cpu:nanoseconds:cpu:nanoseconds",
}

// workloadFrames: for each profile type's name and first sample type, the
// Workload method that must appear in its stacks (what the JVM was doing).
var workloadFrames = map[string]string{
	"process_cpu:cpu":                   "Workload.burn",
	"memory:alloc_in_new_tlab_objects":  "Workload.allocate",
	"memory:alloc_outside_tlab_objects": "Workload.largeArray",
	"memory:alloc_sample_objects":       "Workload.allocate",
	"mutex:contentions":                 "Workload.contend",
	"block:contentions":                 "Workload.parkABit",
	"memory:alloc_in_new_tlab_bytes":    "Workload.allocate",
	"memory:alloc_outside_tlab_bytes":   "Workload.largeArray",
	"memory:alloc_sample_bytes":         "Workload.allocate",
	"mutex:delay":                       "Workload.contend",
	"block:delay":                       "Workload.parkABit",
}

func typeIDs(s Stacks) []string {
	var ids []string
	for id := range s {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// checkWorkload checks a Workload recording's conversion against the JDK's
// reading of it, stack for stack, and that each type saw the workload.
func checkWorkload(t *testing.T, got, want Stacks, types []string) {
	t.Helper()
	if ids := typeIDs(got); !slices.Equal(ids, types) {
		t.Errorf("profile types:\n got %v\nwant %v", ids, types)
	}
	if d := diffStacks(want, got); len(d) > 0 {
		t.Errorf("conversion differs from the JDK's reading of the recording:\n%s", strings.Join(d, "\n"))
	}
	for id, m := range got {
		parts := strings.Split(id, ":")
		frame := workloadFrames[parts[0]+":"+parts[1]]
		found := false
		for st := range m {
			if strings.Contains(st, frame) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s: no stack through %s", id, frame)
		}
	}
}

func TestConvertCommittedRecordings(t *testing.T) {
	for _, c := range committed {
		t.Run(c.name, func(t *testing.T) {
			rec, err := Convert(readGz(t, "testdata/"+c.name+".jfr.gz"), nil, Options{SampleRate: 100})
			if err != nil {
				t.Fatal(err)
			}
			checkWorkload(t, stacksOf(rec), readStacks(t, "testdata/"+c.name+".stacks.gz"), c.types)
		})
	}
}

// TestConvertFreshRecording records the workload on this machine's JVM with
// the settings the docs suggest and compares the conversion with the JDK's
// own reading of the recording.
func TestConvertFreshRecording(t *testing.T) {
	tool := jfrTool(t)
	file := recordJVM(t, 2, "settings=profile,gc=high")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := Convert(b, nil, Options{SampleRate: 100})
	if err != nil {
		t.Fatal(err)
	}
	checkWorkload(t, stacksOf(rec), jdkReference(t, tool, file, 100), hotspotTypes)
}

// TestRecordTestdata re-records the committed recordings and their references
// (HEARTH_JFR_RECORD=1).
func TestRecordTestdata(t *testing.T) {
	if os.Getenv("HEARTH_JFR_RECORD") == "" {
		t.Skip("set HEARTH_JFR_RECORD=1 to re-record testdata/*.jfr.gz")
	}
	tool := jfrTool(t)
	for _, c := range committed {
		opts := strings.Replace(c.settings, "testdata/", mustAbs(t, "testdata")+"/", 1)
		file := recordJVM(t, c.seconds, opts)
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = zw.Write(raw)
		_ = zw.Close()
		if err := os.WriteFile("testdata/"+c.name+".jfr.gz", buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := writeStacks("testdata/"+c.name+".stacks.gz", jdkReference(t, tool, file, 100)); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes gzipped", c.name, buf.Len())
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// jfrParserTestdata is github.com/grafana/jfr-parser's testdata directory in
// the module cache (recordings from async-profiler, the Pyroscope Java agent,
// dd-trace-java and HotSpot, Apache-2.0); the test skips without it.
func jfrParserTestdata(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/grafana/jfr-parser").Output()
	dir := filepath.Join(strings.TrimSpace(string(out)), "parser", "testdata")
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Skip("github.com/grafana/jfr-parser not in the module cache")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skip("jfr-parser testdata not in the module cache")
	}
	return dir
}

// TestEventTypes converts recordings with every event type Pyroscope v1.18
// converts (jfr-parser's testdata) and checks the profile types, named as
// Pyroscope names them, and the recordings' async-profiler event.
func TestEventTypes(t *testing.T) {
	dir := jfrParserTestdata(t)
	cpu := []string{"process_cpu:cpu:nanoseconds:cpu:nanoseconds"}
	wall := []string{"wall:wall:nanoseconds:wall:nanoseconds"}
	tlab := []string{"memory:alloc_in_new_tlab_bytes:bytes:space:bytes", "memory:alloc_in_new_tlab_objects:count:space:bytes"}
	outside := []string{"memory:alloc_outside_tlab_bytes:bytes:space:bytes", "memory:alloc_outside_tlab_objects:count:space:bytes"}
	sample := []string{"memory:alloc_sample_bytes:bytes:space:bytes", "memory:alloc_sample_objects:count:space:bytes"}
	mutex := []string{"mutex:contentions:count:mutex:count", "mutex:delay:nanoseconds:mutex:count"}
	block := []string{"block:contentions:count:block:count", "block:delay:nanoseconds:block:count"}
	live := []string{"memory:live:count:objects:count"}
	malloc := []string{"memory:malloc_bytes:bytes::", "memory:malloc_objects:count::"}
	cat := func(l ...[]string) []string { s := slices.Concat(l...); slices.Sort(s); return s }
	for _, tc := range []struct {
		file, labels, event string
		types               []string
	}{
		{"cortex-dev-01__kafka-0__cpu__0", "", "cpu", cpu},
		{"cortex-dev-01__kafka-0__cpu_lock_alloc__0", "", "cpu", cat(cpu, tlab)},
		{"cortex-dev-01__kafka-0__cpu_lock0_alloc0__0", "", "cpu", cat(cpu, tlab, outside, mutex, block)},
		{"dump1", "dump1.labels.pb.gz", "itimer", cpu},
		{"dump2", "dump2.labels.pb.gz", "wall", cat(cpu, wall, tlab, live)},
		{"wall_tick_sample", "", "wall", wall},
		{"FastSlow_2024_01_16_180855", "", "wall", cat(cpu, wall, sample)},
		{"nativemem", "", "", malloc},
		{"object-allocation-sample", "", "", cat(cpu, sample, block)},
		{"dd-trace-java", "", "", cat(cpu, tlab, outside, block)},
		{"new_spancontext", "new_spancontext.labels.gz", "ctimer", cpu},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var labels []byte
			if tc.labels != "" {
				labels = readGz(t, filepath.Join(dir, tc.labels))
			}
			rec, err := Convert(readGz(t, filepath.Join(dir, tc.file+".jfr.gz")), labels, Options{SampleRate: 100})
			if err != nil {
				t.Fatal(err)
			}
			if got := typeIDs(stacksOf(rec)); !slices.Equal(got, tc.types) {
				t.Errorf("profile types:\n got %v\nwant %v", got, tc.types)
			}
			if rec.Event != tc.event {
				t.Errorf("event %q, want %q", rec.Event, tc.event)
			}
			for i := 1; i < len(rec.Profiles); i++ {
				a, b := rec.Profiles[i-1], rec.Profiles[i]
				if a.Name > b.Name || a.Name == b.Name && firstSampleType(a.Profile) >= firstSampleType(b.Profile) {
					t.Errorf("profiles out of order: %s %s before %s %s", a.Name, firstSampleType(a.Profile), b.Name, firstSampleType(b.Profile))
				}
			}
		})
	}
}

func sampleLabels(p *googlev1.Profile) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, s := range p.Sample {
		for _, l := range s.Label {
			k, v := p.StringTable[l.Key], p.StringTable[l.Str]
			if out[k] == nil {
				out[k] = map[string]int{}
			}
			out[k][v]++
		}
	}
	return out
}

// TestLabelsSnapshot: the agent's labels snapshot turns context ids into
// sample labels (the head makes them series labels), and span ids into
// profile_id labels; without the snapshot the same samples carry none, and
// the totals do not change.
func TestLabelsSnapshot(t *testing.T) {
	dir := jfrParserTestdata(t)
	recording := readGz(t, filepath.Join(dir, "dump1.jfr.gz"))
	labels := readGz(t, filepath.Join(dir, "dump1.labels.pb.gz"))
	with, err := Convert(recording, labels, Options{SampleRate: 100})
	if err != nil {
		t.Fatal(err)
	}
	without, err := Convert(recording, nil, Options{SampleRate: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(with.Profiles) != 1 || len(without.Profiles) != 1 {
		t.Fatalf("got %d and %d profiles, want 1 and 1", len(with.Profiles), len(without.Profiles))
	}
	threads := sampleLabels(with.Profiles[0].Profile)["thread_name"]
	for _, want := range []string{"pool-2-thread-1", "pool-2-thread-3", "pool-2-thread-5", "pool-2-thread-7"} {
		if threads[want] == 0 {
			t.Errorf("no sample labelled thread_name=%s: %v", want, threads)
		}
	}
	if l := sampleLabels(without.Profiles[0].Profile); len(l) != 0 {
		t.Errorf("without a snapshot the samples carry labels %v", l)
	}
	if a, b := totals(stacksOf(with)), totals(stacksOf(without)); a["process_cpu:cpu:nanoseconds:cpu:nanoseconds"] != b["process_cpu:cpu:nanoseconds:cpu:nanoseconds"] || len(a) != 1 {
		t.Errorf("totals with labels %v, without %v", a, b)
	}

	spans, err := Convert(readGz(t, filepath.Join(dir, "new_spancontext.jfr.gz")), readGz(t, filepath.Join(dir, "new_spancontext.labels.gz")), Options{SampleRate: 100})
	if err != nil {
		t.Fatal(err)
	}
	sl := sampleLabels(spans.Profiles[0].Profile)
	for id := range sl["profile_id"] {
		if len(id) != 16 {
			t.Errorf("profile_id %q: want 16 hex digits", id)
		}
	}
	if len(sl["profile_id"]) == 0 || len(sl["span_name"]) == 0 {
		t.Errorf("span context labels: %v", sl)
	}
}

// TestLabelsSnapshotOwnContexts builds a snapshot for the context ids a
// recording carries and checks each sample gets its context's labels.
func TestLabelsSnapshotOwnContexts(t *testing.T) {
	dir := jfrParserTestdata(t)
	recording := readGz(t, filepath.Join(dir, "dump1.jfr.gz"))
	var orig jfrpprof.LabelsSnapshot
	if err := orig.UnmarshalVT(readGz(t, filepath.Join(dir, "dump1.labels.pb.gz"))); err != nil {
		t.Fatal(err)
	}
	// Relabel every context: region=ctx<id>, strings of our own.
	snap := &jfrpprof.LabelsSnapshot{Contexts: map[int64]*jfrpprof.Context{}, Strings: map[int64]string{1: "region"}}
	next := int64(2)
	for id := range orig.Contexts {
		snap.Strings[next] = "ctx" + itoa64(id)
		snap.Contexts[id] = &jfrpprof.Context{Labels: map[int64]int64{1: next}}
		next++
	}
	b, err := snap.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := Convert(recording, b, Options{SampleRate: 100})
	if err != nil {
		t.Fatal(err)
	}
	regions := sampleLabels(rec.Profiles[0].Profile)["region"]
	if len(regions) == 0 || len(regions) > len(orig.Contexts) {
		t.Fatalf("regions %v for %d contexts", regions, len(orig.Contexts))
	}
	for r := range regions {
		if !strings.HasPrefix(r, "ctx") {
			t.Errorf("region %q", r)
		}
	}
}

func itoa64(i int64) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	neg := i < 0
	if neg {
		i = -i
	}
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	if neg {
		b = append([]byte{'-'}, b...)
	}
	return string(b)
}

func TestConvertBadInput(t *testing.T) {
	good := readGz(t, "testdata/tiny.jfr.gz")
	corrupt := bytes.Clone(good)
	corrupt[0] = 0 // Pyroscope's own corrupt-recording test
	for _, tc := range []struct {
		name              string
		recording, labels []byte
		want              string
	}{
		{"corrupt magic", corrupt, nil, "invalid JFR recording: chunk at byte 0: invalid chunk magic"},
		{"one byte", []byte{'F'}, nil, "invalid JFR recording"},
		{"truncated", good[:len(good)/2], nil, "invalid JFR recording"},
		{"text", []byte("main;work 10\n"), nil, "invalid JFR recording"},
		{"bad labels", good, []byte{0xff, 0xff, 0xff}, "invalid labels snapshot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := Convert(tc.recording, tc.labels, Options{SampleRate: 100})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Convert = %v, %v; want an error containing %q", rec, err, tc.want)
			}
		})
	}
	// An empty recording has no event: nothing to store, no error (Pyroscope).
	rec, err := Convert(nil, nil, Options{SampleRate: 100})
	if err != nil || len(rec.Profiles) != 0 {
		t.Fatalf("empty recording: %v, %v", rec, err)
	}
}

func TestConvertTimeAndRate(t *testing.T) {
	b := readGz(t, "testdata/tiny.jfr.gz")
	from := time.Unix(1700000000, 0)
	const cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
	at := func(o Options) *Recording {
		rec, err := Convert(b, nil, o)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	r100 := at(Options{Start: from, End: from.Add(10 * time.Second), SampleRate: 100})
	for _, p := range r100.Profiles {
		if p.Profile.TimeNanos != from.UnixNano() || p.Profile.DurationNanos != 10e9 {
			t.Errorf("%s: time %d duration %d, want %d and 10s", p.Name, p.Profile.TimeNanos, p.Profile.DurationNanos, from.UnixNano())
		}
	}
	for _, p := range at(Options{SampleRate: 100}).Profiles {
		if p.Profile.TimeNanos != 0 || p.Profile.DurationNanos != 0 {
			t.Errorf("no from: %s has time %d duration %d, want 0 (stamped on arrival)", p.Name, p.Profile.TimeNanos, p.Profile.DurationNanos)
		}
	}
	for _, p := range at(Options{Start: from, SampleRate: 100}).Profiles {
		if p.Profile.TimeNanos != from.UnixNano() || p.Profile.DurationNanos != 0 {
			t.Errorf("no until: %s has time %d duration %d", p.Name, p.Profile.TimeNanos, p.Profile.DurationNanos)
		}
	}
	// A CPU sample is worth 1e9/sampleRate ns; other types do not scale.
	t100, t50 := totals(stacksOf(r100)), totals(stacksOf(at(Options{SampleRate: 50})))
	if t100[cpu] == 0 || t50[cpu] != 2*t100[cpu] {
		t.Errorf("cpu at 50 Hz %d, at 100 Hz %d: want twice", t50[cpu], t100[cpu])
	}
	if t100[cpu]%1e7 != 0 {
		t.Errorf("cpu total %d is not a multiple of 10 ms", t100[cpu])
	}
	for id, v := range t100 {
		if id != cpu && t50[id] != v {
			t.Errorf("%s: %d at 50 Hz, %d at 100 Hz", id, t50[id], v)
		}
	}
}

// TestHugeCountRefused: a recording whose constant pool claims two billion
// entries (a few bytes changed) is refused before jfr-parser sizes anything
// by it; unchecked, jfr-parser allocated 1.2 GB for such a 157 KB recording.
func TestHugeCountRefused(t *testing.T) {
	b := readGz(t, "testdata/tiny.jfr.gz")
	cp := int(binary.BigEndian.Uint64(b[16:]))
	r := reader{b: b, pos: cp, end: len(b)}
	for i := 0; i < 6; i++ { // size, type, start, duration, delta, flush
		r.varLong()
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	bad := bytes.Clone(b)
	copy(bad[r.pos:], []byte{0xff, 0xff, 0xff, 0xff, 0x07}) // the pool count: 2^31-1
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Convert(bad, nil, Options{SampleRate: 100})
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "a count exceeds the bytes that could hold it") {
		t.Fatalf("Convert = %v, want the count refused", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20 {
		t.Errorf("refusing it allocated %d MB", n>>20)
	}
}

// TestCheckAcceptsRealRecordings: the walk refuses none of the recordings
// jfr-parser reads (its testdata: async-profiler, the Java agent, HotSpot,
// dd-trace-java, several chunks).
func TestCheckAcceptsRealRecordings(t *testing.T) {
	files := []string{"testdata/tiny.jfr.gz", "testdata/workload.jfr.gz"}
	if dir := jfrParserTestdataOrEmpty(); dir != "" {
		more, _ := filepath.Glob(filepath.Join(dir, "*.jfr.gz"))
		files = append(files, more...)
	}
	for _, f := range files {
		if err := check(readGz(t, f)); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
	}
}

func jfrParserTestdataOrEmpty() string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/grafana/jfr-parser").Output()
	if err != nil {
		return ""
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "parser", "testdata")
	if _, err := os.Stat(dir); err != nil {
		return ""
	}
	return dir
}
