package ingest

import (
	"strings"

	"github.com/hearth-dev/hearth/ingester/ingest/jfr"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
)

// Series labels Pyroscope gives every profile of a JFR recording.
const (
	labelJFREvent     = "jfr_event"
	labelPyroscopeSpy = "pyroscope_spy"
	labelAppName      = "app_name"
	labelSessionID    = "__session_id__"
)

// setJFR converts a format=jfr body: the recording itself (raw or gzipped),
// or multipart/form-data with the recording in the part "jfr" and the Java
// agent's labels snapshot (context ids → label sets) in "labels", each raw or
// gzipped. As in Pyroscope, any failure to convert is an UnprocessableError
// (422), and an empty raw body is a recording without events: nothing to store.
func (r *Request) setJFR(body []byte, parts Parts, maxDecompressed int) error {
	var labels []byte
	if parts != nil {
		rec, ok := parts["jfr"]
		switch {
		case !ok:
			return unprocessablef("multipart body has no jfr part (the recording)")
		case len(rec) == 0:
			return unprocessablef("the jfr part is empty")
		}
		body = rec
		if l := parts["labels"]; len(l) > 0 {
			var err error
			if labels, err = pprofdec.Gunzip(l, maxDecompressed); err != nil {
				return unprocessablef("labels part: %w", err)
			}
		}
	}
	rec, err := pprofdec.Gunzip(body, maxDecompressed)
	if err != nil {
		return unprocessablef("jfr recording: %w", err)
	}
	body = nil // only the decompressed copy from here on
	conv, err := jfr.Convert(rec, labels, jfr.Options{Start: r.From, End: r.Until, SampleRate: r.SampleRate})
	if err != nil {
		return &UnprocessableError{err}
	}
	r.Labels = ingestibleLabels(r.Labels)
	r.Profiles = make([]Decoded, 0, len(conv.Profiles))
	for _, p := range conv.Profiles {
		r.Profiles = append(r.Profiles, Decoded{Profile: p.Profile, Labels: r.jfrSeriesLabels(p.Name, conv.Event)})
	}
	return nil
}

// jfrSeriesLabels are the series labels Pyroscope adds to a JFR profile:
// __name__, pyroscope_spy (the spyName parameter, "unknown" when absent),
// jfr_event (when the recording names one), and app_name carrying the
// application name when the name parameter's labels already set
// service_name.
func (r *Request) jfrSeriesLabels(name, event string) []LabelPair {
	spy := r.SpyName
	if spy == "" {
		spy = "unknown"
	}
	ls := []LabelPair{{Name: "__name__", Value: name}, {Name: labelPyroscopeSpy, Value: spy}}
	if event != "" {
		ls = append(ls, LabelPair{Name: labelJFREvent, Value: event})
	}
	if r.AppName != "" && hasLabel(r.Labels, "service_name") {
		ls = append(ls, LabelPair{Name: labelAppName, Value: r.AppName})
	}
	return ls
}

// ingestibleLabels drops the name parameter's reserved labels (__*__) but
// __session_id__, as Pyroscope does for JFR: a __name__ sent there must not
// rename every event type's profile.
func ingestibleLabels(ls []LabelPair) []LabelPair {
	out := ls[:0:0]
	for _, l := range ls {
		if strings.HasPrefix(l.Name, "__") && l.Name != labelSessionID {
			continue
		}
		out = append(out, l)
	}
	return out
}

func hasLabel(ls []LabelPair, name string) bool {
	for _, l := range ls {
		if l.Name == name {
			return true
		}
	}
	return false
}
