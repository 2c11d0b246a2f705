package normalize

import (
	"slices"
	"strings"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/model"
)

// Label names Pyroscope adds or reads on ingestion.
const (
	LabelServiceNamePrivate = "__service_name__"  // every series: service_name again, for Pyroscope's storage order
	LabelPyroscopeSpy       = "pyroscope_spy"     // /ingest: the spyName parameter ("unknown" when absent)
	LabelNameReplaced       = "__name_replaced__" // godeltaprof_*: the __name__ as sent
	LabelSessionID          = "__session_id__"    // dropped (Pyroscope's max-sessions-per-series is 0 by default)
	LabelAppName            = "app_name"          // /ingest text formats with an explicit service_name
	UnknownSpy              = "unknown"
)

// SanitizeLabelName is Pyroscope's rule for label names: [a-zA-Z_][a-zA-Z0-9_.]*
// with every dot replaced by an underscore (OpenTelemetry-style names such as
// process.runtime.name, which the Pyroscope Node.js SDK sends, are stored as
// process_runtime_name). ok is false for any other name.
func SanitizeLabelName(n string) (string, bool) {
	if n == "" {
		return n, false
	}
	dots := false
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		case c == '.':
			dots = true
		default:
			return n, false
		}
	}
	if !dots {
		return n, true
	}
	return strings.ReplaceAll(n, ".", "_"), true
}

// SanitizeLabels replaces the dots in series label names with underscores
// (for the OpenTelemetry-style names of the Pyroscope Node.js SDK and any
// other client). A sanitized name that another label already has is dropped
// when the values agree and refused when they differ, as Pyroscope does.
// Invalid names are left for validation to report. ls must be sorted; the
// result is sorted, and ls is not modified.
func SanitizeLabels(ls model.Labels) (model.Labels, bool, error) {
	dotted := false
	for _, l := range ls {
		if strings.IndexByte(l.Name, '.') >= 0 {
			dotted = true
			break
		}
	}
	if !dotted {
		return ls, false, nil
	}
	out := make(model.Labels, 0, len(ls))
	var renamed model.Labels
	for _, l := range ls {
		if s, ok := SanitizeLabelName(l.Name); ok && s != l.Name {
			renamed = append(renamed, model.Label{Name: s, Value: l.Value})
			continue
		}
		out = append(out, l)
	}
	out.Sort()
	for _, r := range renamed {
		i, found := slices.BinarySearchFunc(out, r.Name, func(l model.Label, n string) int { return strings.Compare(l.Name, n) })
		if found {
			if out[i].Value != r.Value {
				return nil, false, errorf("label %q has two values after replacing dots in label names with underscores: %q and %q", r.Name, out[i].Value, r.Value)
			}
			continue
		}
		out = slices.Insert(out, i, r)
	}
	return out, true, nil
}

// SanitizeSampleLabels applies Pyroscope's label-name rule to the string
// labels of the samples, which become series labels: dots become
// underscores, a name that is not [a-zA-Z_][a-zA-Z0-9_.]* is refused, and a
// sanitized name that ends up with two values (in one sample, or in a
// sample and the series labels) is refused. For every client that labels
// samples (the Go SDK's pprof labels, OpenTelemetry attributes). sent are
// the series labels as the client sent them (a sample label they already
// name is ignored, as Pyroscope ignores it), series the same after
// SanitizeLabels; both sorted. It returns whether the profile changed.
func SanitizeSampleLabels(p *googlev1.Profile, sent, series model.Labels) (bool, error) {
	n := int64(len(p.StringTable))
	type keyInfo struct {
		name     string // sanitized
		key      int64  // string index of the sanitized name
		invalid  bool
		shadowed bool // the series labels as sent have this name
	}
	keys := map[int64]*keyInfo{}
	renamed := false
	var added map[string]int64
	valid := func(l *googlev1.Label) bool {
		return l.Str > 0 && l.Key >= 0 && l.Key < n && l.Str < n // numeric labels carry no series identity; Check refuses dangling ones
	}
	for _, s := range p.Sample {
		for _, l := range s.Label {
			if !valid(l) {
				continue
			}
			if _, ok := keys[l.Key]; ok {
				continue
			}
			raw := p.StringTable[l.Key]
			ki := &keyInfo{name: raw, key: l.Key}
			_, ki.shadowed = seriesValue(sent, raw)
			if s, ok := SanitizeLabelName(raw); !ok {
				ki.invalid = !ki.shadowed && !model.PerSampleOnly(raw)
			} else if s != raw {
				renamed = true
				ki.name = s
				if k, ok := added[s]; ok {
					ki.key = k
				} else {
					if added == nil {
						added = map[string]int64{}
					}
					ki.key = int64(len(p.StringTable))
					p.StringTable = append(p.StringTable, s)
					added[s] = ki.key
				}
			}
			keys[l.Key] = ki
		}
	}
	for _, ki := range keys {
		if ki.invalid {
			return len(added) > 0, errorf("a sample label has an invalid name %q: it must match [a-zA-Z_][a-zA-Z0-9_.]*", p.StringTable[ki.key])
		}
	}
	if !renamed {
		return false, nil
	}
	// With renamed names, check each sample as Pyroscope builds its label
	// set: the series labels, then each sample label whose name (as sent)
	// is not there yet, then the names sanitized.
	type entry struct{ raw, name, value string }
	var set []entry
	for si, s := range p.Sample {
		set = set[:0]
		for _, l := range s.Label {
			if !valid(l) {
				continue
			}
			ki := keys[l.Key]
			if ki.shadowed || model.PerSampleOnly(ki.name) {
				continue
			}
			raw := p.StringTable[l.Key]
			if slices.ContainsFunc(set, func(e entry) bool { return e.raw == raw }) {
				continue // the first value of a name wins
			}
			set = append(set, entry{raw: raw, name: ki.name, value: p.StringTable[l.Str]})
		}
		for i, e := range set {
			if v, ok := seriesValue(series, e.name); ok && v != e.value {
				return true, errorf("sample %d: label %q has two values after replacing dots in label names with underscores: %q and %q", si, e.name, v, e.value)
			}
			for _, o := range set[:i] {
				if o.name == e.name && o.value != e.value {
					return true, errorf("sample %d: label %q has two values after replacing dots in label names with underscores: %q and %q", si, e.name, o.value, e.value)
				}
			}
		}
		for _, l := range s.Label {
			if valid(l) {
				l.Key = keys[l.Key].key
			}
		}
	}
	return true, nil
}

func seriesValue(ls model.Labels, name string) (string, bool) {
	for _, l := range ls {
		if l.Name == name {
			return l.Value, true
		}
	}
	return "", false
}

// Godeltaprof renames the profiles of Pyroscope's godeltaprof package (the
// Go SDK's delta heap, mutex and block profiles, pushed as
// godeltaprof_memory, godeltaprof_mutex, godeltaprof_block): __name__ loses
// the prefix and __name_replaced__ keeps the name as sent, as Pyroscope's
// default relabeling rules do. Returns ls unchanged (and false) otherwise.
func Godeltaprof(ls model.Labels) (model.Labels, bool) {
	name := ls.Get(model.LabelProfileName)
	rest, ok := strings.CutPrefix(name, "godeltaprof_")
	if !ok {
		return ls, false
	}
	ls = ls.Clone().Set(LabelNameReplaced, name)
	if rest == "" {
		ls = ls.Delete(model.LabelProfileName)
	} else {
		ls = ls.Set(model.LabelProfileName, rest)
	}
	return ls.Sort(), true
}
