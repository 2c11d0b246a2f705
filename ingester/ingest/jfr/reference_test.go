package jfr

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// Stacks are per-stack totals by profile type id
// (__name__:type:unit:period_type:period_unit), the stack root first with
// frames joined by ";".
type Stacks map[string]map[string]int64

func (s Stacks) add(typeID, stack string, v int64) {
	if v == 0 {
		return
	}
	m := s[typeID]
	if m == nil {
		m = map[string]int64{}
		s[typeID] = m
	}
	m[stack] += v
}

// collapse gives a converted profile's per-stack totals for each of its
// sample types.
func collapse(name string, p *googlev1.Profile, into Stacks) {
	str := func(i int64) string { return p.StringTable[i] }
	var pt, pu string
	if p.PeriodType != nil {
		pt, pu = str(p.PeriodType.Type), str(p.PeriodType.Unit)
	}
	ids := make([]string, len(p.SampleType))
	for i, st := range p.SampleType {
		ids[i] = strings.Join([]string{name, str(st.Type), str(st.Unit), pt, pu}, ":")
	}
	locs := map[uint64]*googlev1.Location{}
	for _, l := range p.Location {
		locs[l.Id] = l
	}
	funcs := map[uint64]string{}
	for _, f := range p.Function {
		funcs[f.Id] = str(f.Name)
	}
	for _, s := range p.Sample {
		frames := make([]string, 0, len(s.LocationId))
		for i := len(s.LocationId) - 1; i >= 0; i-- {
			l := locs[s.LocationId[i]]
			for j := len(l.Line) - 1; j >= 0; j-- {
				frames = append(frames, funcs[l.Line[j].FunctionId])
			}
		}
		stack := strings.Join(frames, ";")
		for i, v := range s.Value {
			into.add(ids[i], stack, v)
		}
	}
}

// stacksOf collapses every profile of a recording.
func stacksOf(rec *Recording) Stacks {
	s := Stacks{}
	for _, p := range rec.Profiles {
		collapse(p.Name, p.Profile, s)
	}
	return s
}

// The JDK's own reading of a recording, `jfr print --json`, turned into the
// profiles Pyroscope makes of it (the event → profile type table of
// Pyroscope v1.18, written here from its documentation and tests): an
// independent reference for the conversion of recordings from HotSpot.
var jdkEvents = []string{"jdk.ExecutionSample", "jdk.ObjectAllocationInNewTLAB", "jdk.ObjectAllocationOutsideTLAB",
	"jdk.ObjectAllocationSample", "jdk.JavaMonitorEnter", "jdk.ThreadPark"}

type jdkFrame struct {
	Method struct {
		Type struct {
			Name string `json:"name"`
		} `json:"type"`
		Name string `json:"name"`
	} `json:"method"`
}

type jdkEvent struct {
	Type   string `json:"type"`
	Values struct {
		State          string                       `json:"state"`
		TLABSize       int64                        `json:"tlabSize"`
		AllocationSize int64                        `json:"allocationSize"`
		Weight         int64                        `json:"weight"`
		Duration       string                       `json:"duration"`
		StackTrace     *struct{ Frames []jdkFrame } `json:"stackTrace"`
	} `json:"values"`
}

// jdkReference runs the JDK's jfr tool on a recording (uncompressed) and
// returns the per-stack totals Pyroscope's conversion should give at
// sampleRate Hz.
func jdkReference(t *testing.T, jfrTool, file string, sampleRate int64) Stacks {
	t.Helper()
	cmd := exec.Command(jfrTool, "print", "--json", "--stack-depth", "4096", "--events", strings.Join(jdkEvents, ","), file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("jfr print: %v\n%s", err, stderr.String())
	}
	var doc struct {
		Recording struct {
			Events []jdkEvent `json:"events"`
		} `json:"recording"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("jfr print --json: %v", err)
	}
	period := int64(1e9) / sampleRate
	s := Stacks{}
	for _, e := range doc.Recording.Events {
		v := e.Values
		if v.StackTrace == nil {
			continue // jfr-parser finds no stack: the event is not counted
		}
		frames := make([]string, 0, len(v.StackTrace.Frames))
		for i := len(v.StackTrace.Frames) - 1; i >= 0; i-- {
			f := v.StackTrace.Frames[i]
			frames = append(frames, f.Method.Type.Name+"."+f.Method.Name)
		}
		stack := strings.Join(frames, ";")
		switch e.Type {
		case "jdk.ExecutionSample":
			if v.State != "STATE_SLEEPING" {
				s.add("process_cpu:cpu:nanoseconds:cpu:nanoseconds", stack, period)
			}
		case "jdk.ObjectAllocationInNewTLAB":
			s.add("memory:alloc_in_new_tlab_objects:count:space:bytes", stack, 1)
			s.add("memory:alloc_in_new_tlab_bytes:bytes:space:bytes", stack, v.TLABSize)
		case "jdk.ObjectAllocationOutsideTLAB":
			s.add("memory:alloc_outside_tlab_objects:count:space:bytes", stack, 1)
			s.add("memory:alloc_outside_tlab_bytes:bytes:space:bytes", stack, v.AllocationSize)
		case "jdk.ObjectAllocationSample":
			s.add("memory:alloc_sample_objects:count:space:bytes", stack, 1)
			s.add("memory:alloc_sample_bytes:bytes:space:bytes", stack, v.Weight)
		case "jdk.JavaMonitorEnter":
			s.add("mutex:contentions:count:mutex:count", stack, 1)
			s.add("mutex:delay:nanoseconds:mutex:count", stack, isoNanos(t, v.Duration))
		case "jdk.ThreadPark":
			s.add("block:contentions:count:block:count", stack, 1)
			s.add("block:delay:nanoseconds:block:count", stack, isoNanos(t, v.Duration))
		}
	}
	return s
}

// isoNanos parses the ISO-8601 durations jfr print writes (PT0.0199S, PT1M2S).
func isoNanos(t *testing.T, s string) int64 {
	t.Helper()
	rest, ok := strings.CutPrefix(s, "PT")
	if !ok {
		t.Fatalf("duration %q: want PT...", s)
	}
	var d time.Duration
	for rest != "" {
		i := strings.IndexAny(rest, "HMS")
		if i <= 0 {
			t.Fatalf("duration %q", s)
		}
		num, unit := rest[:i], rest[i]
		rest = rest[i+1:]
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			t.Fatalf("duration %q: %v", s, err)
		}
		switch unit {
		case 'H':
			d += time.Duration(f * float64(time.Hour))
		case 'M':
			d += time.Duration(f * float64(time.Minute))
		case 'S':
			// seconds carry up to 9 decimals: parse them exactly
			whole, frac, _ := strings.Cut(num, ".")
			sec, _ := strconv.ParseInt(whole, 10, 64)
			frac = (frac + "000000000")[:9]
			ns, _ := strconv.ParseInt(frac, 10, 64)
			d += time.Duration(sec)*time.Second + time.Duration(ns)
		}
	}
	return int64(d)
}

// writeStacks writes per-stack totals as sorted "type\tstack\tvalue" lines,
// gzipped.
func writeStacks(file string, s Stacks) error {
	var lines []string
	for id, m := range s {
		for st, v := range m {
			lines = append(lines, fmt.Sprintf("%s\t%s\t%d", id, st, v))
		}
	}
	slices.Sort(lines)
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = io.WriteString(zw, strings.Join(lines, "\n")+"\n")
	_ = zw.Close()
	return os.WriteFile(file, buf.Bytes(), 0o644)
}

func readStacks(t *testing.T, file string) Stacks {
	t.Helper()
	b := readGz(t, file)
	s := Stacks{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		parts := strings.Split(sc.Text(), "\t")
		if len(parts) != 3 {
			t.Fatalf("%s: bad line %q", file, sc.Text())
		}
		v, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		s.add(parts[0], parts[1], v)
	}
	return s
}

func readGz(t testing.TB, file string) []byte {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte{0x1f, 0x8b}) {
		return raw
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// diffStacks reports how got differs from want, at most a few lines per type.
func diffStacks(want, got Stacks) []string {
	var out []string
	ids := map[string]bool{}
	for id := range want {
		ids[id] = true
	}
	for id := range got {
		ids[id] = true
	}
	for id := range ids {
		n := 0
		for st, w := range want[id] {
			if g := got[id][st]; g != w && n < 3 {
				out = append(out, fmt.Sprintf("%s: %s: got %d, want %d", id, shorten(st), g, w))
				n++
			}
		}
		for st, g := range got[id] {
			if _, ok := want[id][st]; !ok && n < 3 {
				out = append(out, fmt.Sprintf("%s: %s: got %d, want none", id, shorten(st), g))
				n++
			}
		}
	}
	slices.Sort(out)
	return out
}

// totals sums every profile type's values.
func totals(s Stacks) map[string]int64 {
	out := map[string]int64{}
	for id, m := range s {
		for _, v := range m {
			out[id] += v
		}
	}
	return out
}

// recordJVM runs testdata/Workload.java for the given seconds under
// -XX:StartFlightRecording with the given options and returns the
// recording's path; it skips the test when java is absent.
func recordJVM(t testing.TB, seconds int, options string) string {
	t.Helper()
	java, err := exec.LookPath("java")
	if err != nil {
		t.Skip("java not found: no JVM to record")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "workload.jfr")
	src, err := filepath.Abs("testdata/Workload.java")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(java, "-XX:StartFlightRecording=filename="+file+","+options, src, strconv.Itoa(seconds))
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("java: %v\n%s", err, out)
	}
	return file
}

// jfrTool is the JDK's jfr command next to java, or "" (the test skips).
func jfrTool(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("jfr"); err == nil {
		return p
	}
	if java, err := exec.LookPath("java"); err == nil {
		if real, err := filepath.EvalSymlinks(java); err == nil {
			p := filepath.Join(filepath.Dir(real), "jfr")
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	t.Skip("the JDK's jfr tool not found")
	return ""
}

// shorten keeps a stack's leaf end for messages.
func shorten(stack string) string {
	if len(stack) > 160 {
		return "..." + stack[len(stack)-160:]
	}
	return stack
}
