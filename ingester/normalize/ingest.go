package normalize

import (
	"strings"
	"time"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/model"
)

// defaultDisplayNames are the display names Pyroscope gives the Go runtime's
// sample types when an /ingest request has no sample_type_config.
var defaultDisplayNames = map[string]string{
	"samples":     "cpu",
	"goroutine":   "goroutines",
	"contentions": "mutex_count",
	"delay":       "mutex_duration",
}

// IngestProfileName is the __name__ Pyroscope gives a pprof profile sent to
// /ingest (every SDK that sends pprof there: Go, Node.js, .NET, Python,
// Ruby, Rust): "wall" when a sample type is named wall; else, by the first
// sample type (its display name from the request's sample_type_config, or
// the Go runtime defaults when the request has none) that contains "cpu"
// (process_cpu), alloc_/inuse_ or is space/objects (memory), mutex_ (mutex),
// block_ (block) or goroutines (goroutines); else the last sample type's
// name. The sample types themselves are stored as sent.
func IngestProfileName(p *googlev1.Profile, displayName func(sampleType string) (string, bool)) string {
	str := func(i int64) string {
		if i >= 0 && i < int64(len(p.StringTable)) {
			return p.StringTable[i]
		}
		return ""
	}
	for _, st := range p.SampleType {
		if str(st.Type) == "wall" {
			return "wall"
		}
	}
	if displayName == nil {
		displayName = func(t string) (string, bool) { d, ok := defaultDisplayNames[t]; return d, ok }
	}
	last := ""
	for _, st := range p.SampleType {
		t := str(st.Type)
		if d, ok := displayName(t); ok && d != "" {
			t = d
		}
		last = t
		switch {
		case strings.Contains(t, "cpu"):
			return "process_cpu"
		case strings.Contains(t, "alloc_"), strings.Contains(t, "inuse_"), t == "space", t == "objects":
			return "memory"
		case strings.Contains(t, "mutex_"):
			return "mutex"
		case strings.Contains(t, "block_"):
			return "block"
		case strings.Contains(t, "goroutines"):
			return "goroutines"
		}
	}
	return last
}

// SpyName is the pyroscope_spy label value of an /ingest request: its
// spyName parameter, "unknown" when absent.
func SpyName(param string) string {
	if param == "" {
		return UnknownSpy
	}
	return param
}

// IngestLabels builds the series labels Pyroscope gives an /ingest request
// (every SDK): the labels of the name parameter except those starting with
// "__" (__session_id__ excepted), service_name = the application name unless
// the labels have one, and pyroscope_spy = the spy name. A pyroscope_spy in
// the name parameter is refused, as Pyroscope refuses the duplicate.
// Profile names (__name__) are added by the caller, per profile. The result
// is sorted.
func IngestLabels(app string, sent []model.Label, spyName string) (model.Labels, error) {
	ls := make(model.Labels, 0, len(sent)+2)
	for _, l := range sent {
		if strings.HasPrefix(l.Name, "__") && l.Name != LabelSessionID {
			continue
		}
		if l.Name == LabelPyroscopeSpy {
			return nil, errorf("label %q is set by the server from the spyName parameter: remove it from the name parameter", LabelPyroscopeSpy)
		}
		ls = ls.Set(l.Name, l.Value)
	}
	if !ls.Has(model.LabelServiceName) {
		ls = ls.Set(model.LabelServiceName, app)
	}
	ls = ls.Set(LabelPyroscopeSpy, SpyName(spyName))
	return ls.Sort(), nil
}

// textProfileTypes are the application name suffixes Pyroscope knows for the
// text formats (folded, lines, trie, tree): myapp.cpu, myapp.alloc_objects...
var textProfileTypes = map[string]bool{
	"cpu": true, "wall": true, "inuse_objects": true, "inuse_space": true, "alloc_objects": true, "alloc_space": true,
	"goroutines": true, "mutex_count": true, "mutex_duration": true, "block_count": true, "block_duration": true,
	"itimer": true, "alloc_in_new_tlab_objects": true, "alloc_in_new_tlab_bytes": true, "alloc_outside_tlab_objects": true,
	"alloc_outside_tlab_bytes": true, "lock_count": true, "lock_duration": true, "live": true, "exceptions": true,
	"seconds": true, "nanoseconds": true, "microseconds": true, "milliseconds": true, "bytes": true,
}

// TextAppName is the service name Pyroscope stores for an /ingest request
// in a text format (older agents: folded, lines, trie, tree): the
// application name without its profile type suffix (myapp.cpu gives myapp).
func TextAppName(app string) string {
	if i := strings.LastIndexByte(app, '.'); i >= 0 && textProfileTypes[app[i+1:]] {
		return app[:i]
	}
	return app
}

// TextLabels adjusts IngestLabels for the text formats as Pyroscope does:
// service_name is the application name without its type suffix, and when
// the name parameter sets service_name itself, app_name keeps that
// application name (unless it sets app_name too).
func TextLabels(ls model.Labels, app string, sentServiceName bool) model.Labels {
	name := TextAppName(app)
	if !sentServiceName {
		return ls.Clone().Set(model.LabelServiceName, name).Sort()
	}
	if !ls.Has(LabelAppName) {
		return ls.Clone().Set(LabelAppName, name).Sort()
	}
	return ls
}

// IngestTime fixes the time of an /ingest pprof profile as Pyroscope does:
// a time of zero, or in 1970 (older py-spy, rbspy and pyroscope-rs agents
// wrote microseconds or milliseconds), becomes the request's from time
// (now when from is absent).
func IngestTime(p *googlev1.Profile, from time.Time) bool {
	if p.TimeNanos != 0 && time.Unix(0, p.TimeNanos).UTC().Year() != 1970 {
		return false
	}
	p.TimeNanos = from.UnixNano()
	return true
}
