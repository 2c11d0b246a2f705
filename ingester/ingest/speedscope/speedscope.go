// Package speedscope converts speedscope's JSON file format (the
// "https://www.speedscope.app/file-format-schema.json" schema, as py-spy,
// rbspy, stackprof and others export it; /ingest?format=speedscope) into
// pprof profiles, one per profile of the file, typed the way Pyroscope
// v1.18 types them:
//
//   - a file with one profile: process_cpu (cpu nanoseconds, or wall
//     nanoseconds when the application name ends in ".wall"), or memory
//     (samples in bytes) when its unit is bytes;
//   - a file with several profiles: wall (wall nanoseconds) for the time
//     units, memory (samples in bytes) for bytes; unit "none" has no type
//     there and is refused.
//
// Profiles are counted as Pyroscope counts them: ones with the same name,
// type, unit and start value are one. Each converted profile carries the
// file's profile name (Pyroscope's profile_name label); profiles whose name
// and type coincide are merged into one.
//
// Weights keep their fractions: a time is rounded to the nanosecond, bytes
// to the byte; "none" counts samples of 1e9/sampleRate nanoseconds each.
package speedscope

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// Schema is the $schema a speedscope file must name.
const Schema = "https://www.speedscope.app/file-format-schema.json"

// Options are the /ingest parameters a conversion depends on.
type Options struct {
	// AppName is the application name as sent: a single profile is wall
	// time when it ends in ".wall", CPU time otherwise.
	AppName string
	// SampleRate (Hz) gives the period of CPU and wall profiles and the
	// weight of a sample of unit "none"; 0 means 100.
	SampleRate uint32
	// TimeNanos and DurationNanos are copied into every profile.
	TimeNanos, DurationNanos int64
}

// Profile is one converted profile.
type Profile struct {
	Name    string // the profile's name in the file (may be empty)
	Metric  string // its series' __name__: process_cpu, wall or memory
	Profile *googlev1.Profile
}

// Error is a file this package refuses, with the reason.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func errorf(format string, args ...any) error { return &Error{Msg: fmt.Sprintf(format, args...)} }

// The file format, as far as it is read. Frame indexes are numbers in
// JSON; they are read as float64 and must be whole.
type file struct {
	Schema string `json:"$schema"`
	Shared struct {
		Frames []struct {
			Name string `json:"name"`
		} `json:"frames"`
	} `json:"shared"`
	Profiles []fileProfile `json:"profiles"`
}

type fileProfile struct {
	Type       string  `json:"type"`
	Name       string  `json:"name"`
	Unit       string  `json:"unit"`
	StartValue float64 `json:"startValue"`
	Events     []struct {
		Type  string  `json:"type"`
		At    float64 `json:"at"`
		Frame float64 `json:"frame"`
	} `json:"events"`
	Samples [][]float64 `json:"samples"`
	Weights []float64   `json:"weights"`
}

// unitScale is what one unit of a profile's values is in the stored unit
// (nanoseconds, or bytes); "none" is left out: its scale is the period.
var unitScale = map[string]float64{
	"nanoseconds":  1,
	"microseconds": 1e3,
	"milliseconds": 1e6,
	"seconds":      1e9,
	"bytes":        1,
}

// kind is a converted profile's type.
type kind struct {
	metric                 string
	sampleType, sampleUnit string
	periodType, periodUnit string // empty: no period
}

var (
	kindCPU    = kind{"process_cpu", "cpu", "nanoseconds", "cpu", "nanoseconds"}
	kindWall   = kind{"wall", "wall", "nanoseconds", "cpu", "nanoseconds"}
	kindMemory = kind{"memory", "samples", "bytes", "", ""}
)

// kindOf decides a profile's type from its unit, whether the file has
// several profiles and the application name (Pyroscope names a profile of
// a multi-profile file <app>.<unit> and derives the type from that suffix).
func kindOf(unit string, multi bool, app string) (kind, error) {
	switch {
	case unit == "bytes":
		return kindMemory, nil
	case multi && unit == "none":
		return kind{}, errorf("unit %q in a file of several profiles: it names no profile type (use a time unit or bytes)", unit)
	case multi, strings.HasSuffix(app, ".wall"):
		return kindWall, nil
	}
	return kindCPU, nil
}

// Convert parses a speedscope file and converts each of its profiles.
func Convert(data []byte, o Options) ([]Profile, error) {
	var f file
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, errorf("invalid speedscope JSON: %v", err)
	}
	if f.Schema != Schema {
		return nil, errorf("unknown $schema %q: want %q", f.Schema, Schema)
	}
	rate := o.SampleRate
	if rate == 0 {
		rate = 100
	}
	period := int64(1e9) / int64(rate)
	names := make([]string, len(f.Shared.Frames))
	for i, fr := range f.Shared.Frames {
		names[i] = fr.Name
	}
	multi := countProfiles(f.Profiles) > 1
	var out []Profile
	byKey := map[[2]string]*builder{}
	for i := range f.Profiles {
		fp := &f.Profiles[i]
		fail := func(err error) ([]Profile, error) {
			return nil, errorf("profile %d (%q): %v", i+1, fp.Name, err)
		}
		scale, ok := unitScale[fp.Unit]
		if fp.Unit == "none" {
			scale, ok = float64(period), true
		}
		if !ok {
			return fail(fmt.Errorf("unknown unit %q: want none, nanoseconds, microseconds, milliseconds, seconds or bytes", fp.Unit))
		}
		k, err := kindOf(fp.Unit, multi, o.AppName)
		if err != nil {
			return fail(err)
		}
		key := [2]string{fp.Name, k.metric}
		b := byKey[key]
		if b == nil {
			b = newBuilder(k, names, o, period)
			byKey[key] = b
			out = append(out, Profile{Name: fp.Name, Metric: k.metric})
		}
		switch fp.Type {
		case "evented":
			err = b.evented(fp, scale)
		case "sampled":
			err = b.sampled(fp, scale)
		default:
			err = fmt.Errorf("unknown profile type %q: want evented or sampled", fp.Type)
		}
		if err != nil {
			return fail(err)
		}
	}
	for i := range out {
		out[i].Profile = byKey[[2]string{out[i].Name, out[i].Metric}].p
	}
	return out, nil
}

// countProfiles counts the profiles as Pyroscope does before it decides
// whether a file has several: equal name, type, unit and start value are one.
func countProfiles(ps []fileProfile) int {
	type key struct {
		name, typ, unit string
		start           float64
	}
	seen := map[key]bool{}
	for _, p := range ps {
		seen[key{p.Name, p.Type, p.Unit, p.StartValue}] = true
	}
	return len(seen)
}

// toValue converts a weight or a point in time to the stored unit,
// rounded; it fails where the result does not fit an int64.
func toValue(x, scale float64) (int64, error) {
	v := math.Round(x * scale)
	if math.IsNaN(v) || v >= math.MaxInt64 || v <= math.MinInt64 {
		return 0, fmt.Errorf("value %g is out of range", x)
	}
	return int64(v), nil
}

func frameIndex(x float64, n int) (int, error) {
	if x != math.Trunc(x) || x < 0 || x >= float64(n) {
		return 0, fmt.Errorf("frame %g is not an index into the %d shared frames", x, n)
	}
	return int(x), nil
}

// evented adds an evented profile: the time between two consecutive
// events goes to the stack open during it. Events must not go back in time
// (nor before startValue), and a close must name the innermost open frame;
// frames still open at the end are not counted further.
func (b *builder) evented(fp *fileProfile, scale float64) error {
	last := fp.StartValue
	lastV, err := toValue(last, scale)
	if err != nil {
		return err
	}
	open := make([]int, 0, 64)
	for i, ev := range fp.Events {
		if ev.At < last {
			return fmt.Errorf("event %d at %g is before the previous one (%g)", i+1, ev.At, last)
		}
		fid, err := frameIndex(ev.Frame, len(b.names))
		if err != nil {
			return fmt.Errorf("event %d: %v", i+1, err)
		}
		atV, err := toValue(ev.At, scale)
		if err != nil {
			return fmt.Errorf("event %d: %v", i+1, err)
		}
		if err := b.add(open, atV-lastV); err != nil {
			return err
		}
		switch ev.Type {
		case "O":
			open = append(open, fid)
		case "C":
			if len(open) == 0 || open[len(open)-1] != fid {
				return fmt.Errorf("event %d closes frame %d, which is not the innermost open frame", i+1, fid)
			}
			open = open[:len(open)-1]
		default:
			return fmt.Errorf("event %d has unknown type %q: want O or C", i+1, ev.Type)
		}
		last, lastV = ev.At, atV
	}
	return nil
}

// sampled adds a sampled profile: stack i (frame indexes, root first) has
// weight i.
func (b *builder) sampled(fp *fileProfile, scale float64) error {
	if len(fp.Samples) != len(fp.Weights) {
		return fmt.Errorf("%d samples but %d weights", len(fp.Samples), len(fp.Weights))
	}
	stack := make([]int, 0, 64)
	for i, s := range fp.Samples {
		w := fp.Weights[i]
		if w < 0 {
			return fmt.Errorf("sample %d has negative weight %g", i+1, w)
		}
		v, err := toValue(w, scale)
		if err != nil {
			return fmt.Errorf("sample %d: %v", i+1, err)
		}
		stack = stack[:0]
		for _, x := range s {
			fid, err := frameIndex(x, len(b.names))
			if err != nil {
				return fmt.Errorf("sample %d: %v", i+1, err)
			}
			stack = append(stack, fid)
		}
		if err := b.add(stack, v); err != nil {
			return fmt.Errorf("sample %d: %v", i+1, err)
		}
	}
	return nil
}
