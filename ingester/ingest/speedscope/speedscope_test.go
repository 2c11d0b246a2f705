package speedscope

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// Stacks folds a profile back into "root;...;leaf" -> value.
func Stacks(p *googlev1.Profile) map[string]int64 {
	fn := map[uint64]string{}
	for _, f := range p.Function {
		fn[f.Id] = p.StringTable[f.Name]
	}
	loc := map[uint64]string{}
	for _, l := range p.Location {
		loc[l.Id] = fn[l.Line[0].FunctionId]
	}
	out := map[string]int64{}
	for _, s := range p.Sample {
		fs := make([]string, len(s.LocationId))
		for i, id := range s.LocationId {
			fs[len(fs)-1-i] = loc[id]
		}
		out[strings.Join(fs, ";")] += s.Value[0]
	}
	return out
}

// typeID is the profile type id: metric:sample type:unit:period type:unit.
func typeID(p Profile) string {
	st := p.Profile.SampleType[0]
	id := p.Metric + ":" + p.Profile.StringTable[st.Type] + ":" + p.Profile.StringTable[st.Unit] + ":"
	if pt := p.Profile.PeriodType; pt != nil {
		id += p.Profile.StringTable[pt.Type] + ":" + p.Profile.StringTable[pt.Unit]
	} else {
		id += ":"
	}
	return id
}

// An evented profile in unit none, as a profiler of call counts writes it:
// serve opens, then parse (2), then query (4, with a nested scan of 1),
// then serve alone for 3 more.
const evented = `{
  "$schema": "https://www.speedscope.app/file-format-schema.json",
  "shared": {"frames": [{"name": "serve"}, {"name": "parse"}, {"name": "query"}, {"name": "scan", "file": "db.go", "line": 7}]},
  "profiles": [{
    "type": "evented", "name": "requests", "unit": "none", "startValue": 10, "endValue": 20,
    "events": [
      {"type": "O", "frame": 0, "at": 10},
      {"type": "O", "frame": 1, "at": 10},
      {"type": "C", "frame": 1, "at": 12},
      {"type": "O", "frame": 2, "at": 12},
      {"type": "O", "frame": 3, "at": 14},
      {"type": "C", "frame": 3, "at": 15},
      {"type": "C", "frame": 2, "at": 16},
      {"type": "C", "frame": 0, "at": 19}
    ]
  }]
}`

func TestEventedSingleProfile(t *testing.T) {
	ps, err := Convert([]byte(evented), Options{AppName: "api", SampleRate: 100, TimeNanos: 5, DurationNanos: 7})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Name != "requests" || typeID(ps[0]) != "process_cpu:cpu:nanoseconds:cpu:nanoseconds" {
		t.Fatalf("got %d profiles, %+v", len(ps), ps)
	}
	p := ps[0].Profile
	if p.TimeNanos != 5 || p.DurationNanos != 7 || p.Period != 1e7 {
		t.Fatalf("time %d duration %d period %d", p.TimeNanos, p.DurationNanos, p.Period)
	}
	// One unit of "none" is a sample at 100 Hz: 10 ms.
	want := map[string]int64{"serve;parse": 2e7, "serve;query": 3e7, "serve;query;scan": 1e7, "serve": 3e7}
	if got := Stacks(p); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// At 50 Hz a sample weighs 20 ms.
	ps, _ = Convert([]byte(evented), Options{AppName: "api", SampleRate: 50})
	if got := Stacks(ps[0].Profile)["serve;parse"]; got != 4e7 {
		t.Fatalf("serve;parse at 50 Hz: %d", got)
	}
}

// Two sampled profiles (two threads) in seconds, fractions included.
const twoSampled = `{
  "$schema": "https://www.speedscope.app/file-format-schema.json",
  "exporter": "py-spy@0.3.14", "name": "two threads", "activeProfileIndex": 0,
  "shared": {"frames": [{"name": "main"}, {"name": "loop"}, {"name": "read"}, {"name": "write"}]},
  "profiles": [
    {"type": "sampled", "name": "thread 1", "unit": "seconds", "startValue": 0, "endValue": 9,
     "samples": [[0, 1, 2], [0, 1, 3], [0, 1, 2], [0]], "weights": [2, 0.25, 3, 1.5]},
    {"type": "sampled", "name": "thread 2", "unit": "milliseconds", "startValue": 0, "endValue": 9000,
     "samples": [[0, 1], [0, 1, 3]], "weights": [1500, 0.001]}
  ]
}`

func TestSampledSeveralProfiles(t *testing.T) {
	ps, err := Convert([]byte(twoSampled), Options{AppName: "worker", SampleRate: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 {
		t.Fatalf("%d profiles", len(ps))
	}
	want := []struct {
		name   string
		stacks map[string]int64
	}{
		{"thread 1", map[string]int64{"main;loop;read": 5e9, "main;loop;write": 25e7, "main": 15e8}},
		{"thread 2", map[string]int64{"main;loop": 15e8, "main;loop;write": 1000}},
	}
	for i, w := range want {
		if ps[i].Name != w.name || typeID(ps[i]) != "wall:wall:nanoseconds:cpu:nanoseconds" {
			t.Errorf("profile %d: %q %s", i, ps[i].Name, typeID(ps[i]))
		}
		if got := Stacks(ps[i].Profile); !reflect.DeepEqual(got, w.stacks) {
			t.Errorf("profile %d: got %v, want %v", i, got, w.stacks)
		}
	}
}

func TestBytesProfiles(t *testing.T) {
	doc := strings.ReplaceAll(strings.ReplaceAll(twoSampled, `"seconds"`, `"bytes"`), `"milliseconds"`, `"bytes"`)
	ps, err := Convert([]byte(doc), Options{AppName: "worker", SampleRate: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || typeID(ps[0]) != "memory:samples:bytes::" || ps[0].Profile.Period != 0 {
		t.Fatalf("%d profiles, %s", len(ps), typeID(ps[0]))
	}
	if got := Stacks(ps[0].Profile); got["main;loop;read"] != 5 || got["main"] != 2 {
		t.Fatalf("bytes: %v", got)
	}
}

func TestDuplicatesAreOneProfile(t *testing.T) {
	// Three profiles of one name, type, unit and start (one recorded in
	// three parts) make a single-profile file: process_cpu, summed.
	one := `{"type": "sampled", "name": "main", "unit": "seconds", "startValue": 1, "endValue": 3, "samples": [[0], [0, 1]], "weights": [1, 2]}`
	doc := `{"$schema": "https://www.speedscope.app/file-format-schema.json",
	  "shared": {"frames": [{"name": "a"}, {"name": "b"}]},
	  "profiles": [` + one + "," + one + "," + one + `]}`
	ps, err := Convert([]byte(doc), Options{AppName: "job"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || typeID(ps[0]) != "process_cpu:cpu:nanoseconds:cpu:nanoseconds" {
		t.Fatalf("%d profiles, %s", len(ps), typeID(ps[0]))
	}
	if got, want := Stacks(ps[0].Profile), map[string]int64{"a": 3e9, "a;b": 6e9}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// A different start value makes them several: wall, merged by name.
	doc2 := strings.Replace(doc, `"startValue": 1`, `"startValue": 2`, 1)
	ps, err = Convert([]byte(doc2), Options{AppName: "job"})
	if err != nil || len(ps) != 1 || typeID(ps[0]) != "wall:wall:nanoseconds:cpu:nanoseconds" || Stacks(ps[0].Profile)["a;b"] != 6e9 {
		t.Fatalf("%v %d", err, len(ps))
	}
}

func TestSingleWallProfile(t *testing.T) {
	ps, err := Convert([]byte(evented), Options{AppName: "api.wall"})
	if err != nil || typeID(ps[0]) != "wall:wall:nanoseconds:cpu:nanoseconds" {
		t.Fatalf("%v %s", err, typeID(ps[0]))
	}
}

func TestEventedKeepsFractionsAndParentTime(t *testing.T) {
	// Times in ms with fractions; time a frame spends before its child
	// opens counts at full weight (Pyroscope counts it 1/100).
	doc := `{"$schema": "https://www.speedscope.app/file-format-schema.json",
	  "shared": {"frames": [{"name": "a"}, {"name": "b"}]},
	  "profiles": [{"type": "evented", "name": "", "unit": "milliseconds", "startValue": 0.5, "endValue": 4,
	    "events": [{"type": "O", "frame": 0, "at": 0.5}, {"type": "O", "frame": 1, "at": 1.25},
	               {"type": "C", "frame": 1, "at": 3.0000004}, {"type": "O", "frame": 1, "at": 3.5}]}]}`
	ps, err := Convert([]byte(doc), Options{})
	if err != nil {
		t.Fatal(err)
	}
	// b is still open at the end: its last stretch is not counted.
	want := map[string]int64{"a": 750000 + 500000, "a;b": 1750000}
	if got := Stacks(ps[0].Profile); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if ps[0].Name != "" {
		t.Fatalf("name %q", ps[0].Name)
	}
}

func TestSameNameFramesShareAFunction(t *testing.T) {
	doc := `{"$schema": "https://www.speedscope.app/file-format-schema.json",
	  "shared": {"frames": [{"name": "f", "file": "a.py"}, {"name": "f", "file": "b.py"}]},
	  "profiles": [{"type": "sampled", "name": "p", "unit": "bytes", "startValue": 0, "endValue": 1,
	    "samples": [[0], [1], []], "weights": [1, 2, 9]}]}`
	ps, err := Convert([]byte(doc), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := ps[0].Profile
	if len(p.Function) != 1 || len(p.Sample) != 1 || p.Sample[0].Value[0] != 3 {
		t.Fatalf("functions %d samples %v", len(p.Function), p.Sample)
	}
}

func TestRefused(t *testing.T) {
	base := func(profiles string) string {
		return `{"$schema": "https://www.speedscope.app/file-format-schema.json",
		  "shared": {"frames": [{"name": "a"}, {"name": "b"}]}, "profiles": [` + profiles + `]}`
	}
	sampled := func(extra string) string {
		return base(`{"type": "sampled", "name": "p", "unit": "seconds", "startValue": 0, ` + extra + `}`)
	}
	ev := func(events string) string {
		return base(`{"type": "evented", "name": "p", "unit": "seconds", "startValue": 1, "events": [` + events + `]}`)
	}
	cases := []struct{ name, doc, msg string }{
		{"not JSON", `{"$schema": `, "invalid speedscope JSON"},
		{"not an object", `[1, 2]`, "invalid speedscope JSON"},
		{"no schema", `{"profiles": []}`, "unknown $schema"},
		{"other schema", `{"$schema": "https://example.invalid/x.json"}`, "unknown $schema"},
		{"unknown unit", strings.Replace(sampled(`"samples": [], "weights": []`), "seconds", "hours", 1), `unknown unit "hours"`},
		{"no unit", base(`{"type": "sampled", "name": "p", "samples": [], "weights": []}`), `unknown unit ""`},
		{"unknown type", base(`{"type": "flat", "unit": "seconds"}`), `unknown profile type "flat"`},
		{"weights missing", sampled(`"samples": [[0]], "weights": []`), "1 samples but 0 weights"},
		{"negative weight", sampled(`"samples": [[0]], "weights": [-1]`), "negative weight"},
		{"frame past the end", sampled(`"samples": [[2]], "weights": [1]`), "frame 2 is not an index"},
		{"negative frame", sampled(`"samples": [[-1]], "weights": [1]`), "frame -1 is not an index"},
		{"fractional frame", sampled(`"samples": [[0.5]], "weights": [1]`), "frame 0.5 is not an index"},
		{"weight too large", sampled(`"samples": [[0]], "weights": [1e12]`), "out of range"},
		{"sum too large", sampled(`"samples": [[0], [0]], "weights": [9e9, 9e9]`), "add up to more than"},
		{"event before start", ev(`{"type": "O", "frame": 0, "at": 0}`), "before the previous one"},
		{"events out of order", ev(`{"type": "O", "frame": 0, "at": 3}, {"type": "O", "frame": 1, "at": 2}`), "before the previous one"},
		{"close not open", ev(`{"type": "C", "frame": 0, "at": 1}`), "not the innermost open frame"},
		{"close not innermost", ev(`{"type": "O", "frame": 0, "at": 1}, {"type": "O", "frame": 1, "at": 1}, {"type": "C", "frame": 0, "at": 2}`), "not the innermost"},
		{"unknown event", ev(`{"type": "X", "frame": 0, "at": 1}`), `unknown type "X"`},
		{"event frame past the end", ev(`{"type": "O", "frame": 5, "at": 1}`), "frame 5 is not an index"},
		{"none in several profiles", base(`{"type": "sampled", "name": "p", "unit": "none", "samples": [], "weights": []},
		  {"type": "sampled", "name": "q", "unit": "none", "samples": [], "weights": []}`), `unit "none" in a file of several profiles`},
	}
	for _, c := range cases {
		_, err := Convert([]byte(c.doc), Options{})
		var e *Error
		if !errors.As(err, &e) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: got %v, want an *Error mentioning %q", c.name, err, c.msg)
		}
	}
}

func TestEmptyFile(t *testing.T) {
	ps, err := Convert([]byte(`{"$schema": "https://www.speedscope.app/file-format-schema.json", "profiles": []}`), Options{})
	if err != nil || len(ps) != 0 {
		t.Fatalf("%v %d", err, len(ps))
	}
}
