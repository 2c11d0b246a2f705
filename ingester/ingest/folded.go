package ingest

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// SampleKind describes the single sample type a text-format profile
// (folded, groups, lines, trie, tree) is converted to.
type SampleKind struct {
	ProfileName string // the series' __name__, e.g. process_cpu, memory
	SampleType  string
	SampleUnit  string
	PeriodType  string // "" for none
	PeriodUnit  string
	// Period is 1e9/sampleRate nanoseconds for CPU and wall samples, else 0;
	// their values are multiplied by it (samples become nanoseconds).
	Period int64
}

// ogKinds are the kinds of Pyroscope's text formats by the application name's
// suffix (app.cpu, app.alloc_objects, ...), as Pyroscope v1.18 maps them:
// name, sample type, unit. CPU and wall samples become nanoseconds when the
// sample rate is known (SampleKindFor).
var ogKinds = map[string][3]string{
	"cpu":                        {"process_cpu", "samples", "count"},
	"itimer":                     {"process_cpu", "samples", "count"},
	"wall":                       {"wall", "samples", "count"},
	"seconds":                    {"wall", "samples", "count"},
	"nanoseconds":                {"wall", "samples", "count"},
	"microseconds":               {"wall", "samples", "count"},
	"milliseconds":               {"wall", "samples", "count"},
	"inuse_objects":              {"memory", "inuse_objects", "count"},
	"inuse_space":                {"memory", "inuse_space", "bytes"},
	"alloc_objects":              {"memory", "alloc_objects", "count"},
	"alloc_space":                {"memory", "alloc_space", "bytes"},
	"bytes":                      {"memory", "samples", "bytes"},
	"live":                       {"memory", "live", "count"},
	"alloc_in_new_tlab_objects":  {"memory", "alloc_in_new_tlab_objects", "count"},
	"alloc_in_new_tlab_bytes":    {"memory", "alloc_in_new_tlab_bytes", "bytes"},
	"alloc_outside_tlab_objects": {"memory", "alloc_outside_tlab_objects", "count"},
	"alloc_outside_tlab_bytes":   {"memory", "alloc_outside_tlab_bytes", "bytes"},
	"goroutines":                 {"goroutine", "goroutines", "count"},
	"mutex_count":                {"mutex", "contentions", "count"},
	"mutex_duration":             {"mutex", "delay", "nanoseconds"},
	"block_count":                {"block", "contentions", "count"},
	"block_duration":             {"block", "delay", "nanoseconds"},
	"lock_count":                 {"block", "contentions", "count"},
	"lock_duration":              {"block", "delay", "nanoseconds"},
	"exceptions":                 {"exceptions", "samples", "count"},
}

// SampleKindFor chooses the sample type of a text-format profile from the
// application name's suffix as Pyroscope does: "app" is CPU, "app.<suffix>"
// the suffix's kind (ogKinds). An unknown suffix is an error (Pyroscope
// refuses it too). CPU and wall
// samples at a known sampleRate become nanoseconds: type cpu (or wall),
// period 1e9/sampleRate, period type cpu.
func SampleKindFor(app string, sampleRate uint32) (kind SampleKind, err error) {
	suffix := "cpu"
	if i := strings.LastIndexByte(app, '.'); i >= 0 {
		suffix = app[i+1:]
	}
	k, ok := ogKinds[suffix]
	if !ok {
		return SampleKind{}, fmt.Errorf("unknown profile type %q: the application name's suffix (after the last '.') must be one of cpu, wall, alloc_objects, inuse_space, ... (see the README)", suffix)
	}
	kind = SampleKind{ProfileName: k[0], SampleType: k[1], SampleUnit: k[2]}
	if sampleRate != 0 && (kind.ProfileName == "process_cpu" || kind.ProfileName == "wall") {
		kind.SampleType, kind.SampleUnit = "cpu", "nanoseconds"
		if kind.ProfileName == "wall" {
			kind.SampleType = "wall"
		}
		kind.PeriodType, kind.PeriodUnit = "cpu", "nanoseconds"
		kind.Period = int64(1e9) / int64(sampleRate)
	}
	return kind, nil
}

// LineError is a malformed line of a text-format profile.
type LineError struct {
	Line int // 1-based
	Msg  string
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// ParseFolded converts folded stacks ("a;b;c 12" per line: frames root
// first, separated by ';', then a blank and an integer value) into a pprof
// profile with one sample type, kind. Locations are in pprof order (leaf
// first); functions and locations are deduplicated by name and equal stacks
// merged. Empty lines are skipped; lines ending in \r are accepted. With
// lines=true it reads Pyroscope's "lines" format instead: each line is one
// stack with value 1. A line with no integer value, a negative value, an
// empty stack or an empty frame is an error naming the line; so is invalid
// UTF-8. timeNanos and durationNanos are copied into the profile.
func ParseFolded(body []byte, kind SampleKind, lines bool, timeNanos, durationNanos int64) (*googlev1.Profile, error) {
	b := newFoldedBuilder(kind, timeNanos, durationNanos)
	n := 0
	for len(body) > 0 {
		n++
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if !utf8.Valid(line) {
			return nil, &LineError{n, "not valid UTF-8"}
		}
		stack, value := string(line), int64(1)
		if !lines {
			i := strings.LastIndexAny(stack, " \t")
			if i < 0 {
				return nil, &LineError{n, fmt.Sprintf("no value: want \"frame;frame;... <integer>\", got %q", clip(stack))}
			}
			v, err := strconv.ParseInt(stack[i+1:], 10, 64)
			if err != nil {
				return nil, &LineError{n, fmt.Sprintf("value %q is not an integer", clip(stack[i+1:]))}
			}
			if v < 0 {
				return nil, &LineError{n, fmt.Sprintf("negative value %d", v)}
			}
			stack, value = strings.TrimRight(stack[:i], " \t"), v
		}
		if stack == "" {
			return nil, &LineError{n, "empty stack"}
		}
		if err := b.add(stack, value); err != nil {
			return nil, &LineError{n, err.Error()}
		}
	}
	return b.p, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// newFoldedBuilder starts an empty profile of one sample type, kind.
func newFoldedBuilder(kind SampleKind, timeNanos, durationNanos int64) *builder {
	b := &builder{
		p: &googlev1.Profile{
			StringTable:   []string{""},
			TimeNanos:     timeNanos,
			DurationNanos: durationNanos,
			Period:        kind.Period,
		},
		strings: map[string]int64{"": 0},
		funcs:   map[string]uint64{},
		stacks:  map[string]int{},
	}
	b.p.SampleType = []*googlev1.ValueType{{Type: b.str(kind.SampleType), Unit: b.str(kind.SampleUnit)}}
	if kind.PeriodType != "" {
		b.p.PeriodType = &googlev1.ValueType{Type: b.str(kind.PeriodType), Unit: b.str(kind.PeriodUnit)}
		b.scale = kind.Period
	}
	return b
}

type builder struct {
	p       *googlev1.Profile
	scale   int64 // each value is multiplied by it (0: 1)
	strings map[string]int64
	funcs   map[string]uint64 // function name -> location id (= function id)
	stacks  map[string]int    // stack -> sample index
}

func (b *builder) str(s string) int64 {
	if i, ok := b.strings[s]; ok {
		return i
	}
	i := int64(len(b.p.StringTable))
	b.p.StringTable = append(b.p.StringTable, s)
	b.strings[s] = i
	return i
}

func (b *builder) add(stack string, value int64) error {
	if b.scale > 1 {
		if value > math.MaxInt64/b.scale {
			return fmt.Errorf("the value of stack %q is more than %d nanoseconds", clip(stack), int64(math.MaxInt64))
		}
		value *= b.scale
	}
	if i, ok := b.stacks[stack]; ok {
		if b.p.Sample[i].Value[0] > math.MaxInt64-value {
			return fmt.Errorf("the values of stack %q add up to more than %d", clip(stack), int64(math.MaxInt64))
		}
		b.p.Sample[i].Value[0] += value
		return nil
	}
	frames := strings.Split(stack, ";")
	locs := make([]uint64, len(frames))
	for i, f := range frames {
		if f == "" {
			return fmt.Errorf("empty frame %d in stack %q", i+1, clip(stack))
		}
		id, ok := b.funcs[f]
		if !ok {
			id = uint64(len(b.p.Function) + 1)
			b.p.Function = append(b.p.Function, &googlev1.Function{Id: id, Name: b.str(f)})
			b.p.Location = append(b.p.Location, &googlev1.Location{Id: id, Line: []*googlev1.Line{{FunctionId: id}}})
			b.funcs[f] = id
		}
		locs[len(frames)-1-i] = id // leaf first
	}
	b.stacks[stack] = len(b.p.Sample)
	b.p.Sample = append(b.p.Sample, &googlev1.Sample{LocationId: locs, Value: []int64{value}})
	return nil
}

// ProfileName derives the series __name__ from a profile's sample types
// (DESIGN.md, wire conventions): a "wall" type gives wall; a type containing
// "cpu" (or CPU samples: period type cpu) gives process_cpu; alloc_*,
// inuse_*, *space*, *objects* give memory; mutex_* mutex; block_* block;
// goroutine(s) goroutines. The first sample type that matches decides, in
// that order of rules; otherwise "unknown".
func ProfileName(p *googlev1.Profile) string {
	str := func(i int64) string {
		if i >= 0 && i < int64(len(p.StringTable)) {
			return p.StringTable[i]
		}
		return ""
	}
	types := make([]string, 0, len(p.SampleType))
	for _, st := range p.SampleType {
		if st != nil {
			types = append(types, str(st.Type))
		}
	}
	period := ""
	if p.PeriodType != nil {
		period = str(p.PeriodType.Type)
	}
	return NameFromSampleTypes(types, period)
}

// NameFromSampleTypes is ProfileName on the sample type names and period
// type name.
func NameFromSampleTypes(types []string, periodType string) string {
	rules := []struct {
		name string
		f    func(t string) bool
	}{
		{"wall", func(t string) bool { return t == "wall" }},
		{"process_cpu", func(t string) bool { return strings.Contains(t, "cpu") }},
		{"memory", func(t string) bool {
			return strings.HasPrefix(t, "alloc_") || strings.HasPrefix(t, "inuse_") || strings.Contains(t, "space") || strings.Contains(t, "objects")
		}},
		{"mutex", func(t string) bool { return strings.HasPrefix(t, "mutex_") }},
		{"block", func(t string) bool { return strings.HasPrefix(t, "block_") }},
		{"goroutines", func(t string) bool { return t == "goroutines" || t == "goroutine" }},
	}
	for _, r := range rules {
		for _, t := range types {
			if r.f(t) {
				return r.name
			}
		}
	}
	if periodType == "cpu" {
		return "process_cpu"
	}
	if periodType == "wall" {
		return "wall"
	}
	return "unknown"
}

// ogKind is the sample kind of a text-format request (SampleKindFor); an
// unknown name suffix is a 400.
func (r *Request) ogKind() (SampleKind, error) {
	k, err := SampleKindFor(r.AppName, r.SampleRate)
	if err != nil {
		return SampleKind{}, &BadRequestError{err}
	}
	return k, nil
}

// ogLabels are the series labels a text-format profile adds: its __name__
// (service_name and app_name are the request's, normalize.TextLabels).
func ogLabels(kind SampleKind) []LabelPair {
	return []LabelPair{{Name: "__name__", Value: kind.ProfileName}}
}
