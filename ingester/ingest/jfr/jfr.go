// Package jfr converts Java Flight Recorder recordings, as the Pyroscope Java
// agent and Grafana Alloy's pyroscope.java send them to /ingest?format=jfr,
// into pprof profiles: one per event type, named as Pyroscope names them.
// The parsing and the conversion are github.com/grafana/jfr-parser's (the
// parser Pyroscope uses); this package decides what goes in and what comes
// out: the labels snapshot, the time range, the order, empty profiles.
package jfr

import (
	"fmt"
	"slices"
	"strings"
	"time"

	jfrpprof "github.com/grafana/jfr-parser/pprof"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// Options are the /ingest parameters the conversion needs.
type Options struct {
	// Start and End are from and until; zero when not given (the profiles
	// then carry no time, and the caller stamps them).
	Start, End time.Time
	// SampleRate is the CPU and wall sampling rate in Hz: a CPU or wall
	// sample is worth 1e9/SampleRate nanoseconds. 0 values them at 0.
	SampleRate uint32
}

// Profile is one event type's profile of a recording.
type Profile struct {
	// Name is its __name__ series label: process_cpu, wall, memory, mutex
	// or block.
	Name    string
	Profile *googlev1.Profile
}

// Recording is a converted recording.
type Recording struct {
	// Profiles are ordered by Name, then by their first sample type. Event
	// types with no sample are left out.
	Profiles []Profile
	// Event is async-profiler's "event" setting (cpu, itimer, wall, ...),
	// Pyroscope's jfr_event label; "" when the recording has none.
	Event string
}

// Convert converts a recording (uncompressed) with its labels snapshot (the
// agent's LabelsSnapshot protobuf, uncompressed; nil or empty for none).
// Samples whose context id the snapshot knows carry its labels as sample
// labels, and span ids as profile_id labels. An error means the recording or
// the snapshot is corrupt; a recording with no event converts to none.
func Convert(recording, labels []byte, o Options) (*Recording, error) {
	snap := new(jfrpprof.LabelsSnapshot)
	if len(labels) > 0 {
		if err := snap.UnmarshalVT(labels); err != nil {
			return nil, fmt.Errorf("invalid labels snapshot: %w", err)
		}
	}
	if err := check(recording); err != nil {
		return nil, fmt.Errorf("invalid JFR recording: %w", err)
	}
	in := parseInput(o)
	res, err := jfrpprof.ParseJFR(recording, in, snap)
	if err != nil {
		return nil, fmt.Errorf("invalid JFR recording: %s", strings.TrimPrefix(err.Error(), "jfr parser "))
	}
	out := &Recording{Event: res.JFREvent, Profiles: make([]Profile, 0, len(res.Profiles))}
	for _, p := range res.Profiles {
		if p.Profile == nil || len(p.Profile.Sample) == 0 {
			continue // an event type whose stacks were all missing
		}
		if o.Start.IsZero() {
			p.Profile.TimeNanos, p.Profile.DurationNanos = 0, 0
		} else if o.End.IsZero() {
			p.Profile.DurationNanos = 0
		}
		out.Profiles = append(out.Profiles, Profile{Name: p.Metric, Profile: p.Profile})
	}
	slices.SortFunc(out.Profiles, func(a, b Profile) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(firstSampleType(a.Profile), firstSampleType(b.Profile))
	})
	return out, nil
}

// parseInput is jfr-parser's input for o: a zero time becomes the other one
// (or the epoch), so that no time.Time{} reaches UnixNano.
func parseInput(o Options) *jfrpprof.ParseInput {
	start, end := o.Start, o.End
	if start.IsZero() {
		start = time.Unix(0, 0)
	}
	if end.IsZero() || end.Before(start) {
		end = start
	}
	return &jfrpprof.ParseInput{StartTime: start, EndTime: end, SampleRate: int64(o.SampleRate)}
}

func firstSampleType(p *googlev1.Profile) string {
	if len(p.SampleType) == 0 {
		return ""
	}
	i := p.SampleType[0].Type
	if i < 0 || i >= int64(len(p.StringTable)) {
		return ""
	}
	return p.StringTable[i]
}
