// Package model holds the small value types every part of the ingester shares:
// label sets, series fingerprints and profile type ids.
package model

import (
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
)

// Label names with a meaning of their own, as Pyroscope uses them.
const (
	LabelProfileName = "__name__"         // process_cpu, memory, ...
	LabelServiceName = "service_name"     // the application
	LabelProfileType = "__profile_type__" // name:sample_type:sample_unit:period_type:period_unit
	LabelType        = "__type__"
	LabelUnit        = "__unit__"
	LabelPeriodType  = "__period_type__"
	LabelPeriodUnit  = "__period_unit__"
	LabelSpanID      = "span_id"    // a per-sample attribute, never a series label
	LabelProfileID   = "profile_id" // the older name of span_id (pyroscope-go's otel integration)

	UnknownService = "unknown_service"
)

// Label is one name=value pair.
type Label struct {
	Name, Value string
}

// Labels is a label set sorted by name, names unique.
type Labels []Label

// FromProto copies wire labels; the result is not sorted.
func FromProto(ls []*typesv1.LabelPair) Labels {
	out := make(Labels, 0, len(ls))
	for _, l := range ls {
		out = append(out, Label{Name: l.Name, Value: l.Value})
	}
	return out
}

// Proto converts to wire labels.
func (ls Labels) Proto() []*typesv1.LabelPair {
	out := make([]*typesv1.LabelPair, len(ls))
	for i, l := range ls {
		out[i] = &typesv1.LabelPair{Name: l.Name, Value: l.Value}
	}
	return out
}

// Sort sorts by name in place and returns ls.
func (ls Labels) Sort() Labels {
	slices.SortFunc(ls, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	return ls
}

// Get returns the value of name, "" if absent.
func (ls Labels) Get(name string) string {
	for _, l := range ls {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

// Has reports whether name is present.
func (ls Labels) Has(name string) bool {
	for _, l := range ls {
		if l.Name == name {
			return true
		}
	}
	return false
}

// Set returns ls with name set to value (replacing or appending); the result is unsorted when appended.
func (ls Labels) Set(name, value string) Labels {
	for i := range ls {
		if ls[i].Name == name {
			ls[i].Value = value
			return ls
		}
	}
	return append(ls, Label{Name: name, Value: value})
}

// Delete returns ls without name.
func (ls Labels) Delete(name string) Labels {
	for i := range ls {
		if ls[i].Name == name {
			return append(ls[:i:i], ls[i+1:]...)
		}
	}
	return ls
}

// Clone copies ls.
func (ls Labels) Clone() Labels { return append(Labels(nil), ls...) }

// CopyStrings is a Clone whose names and values are copies too, in one
// allocation: for labels made from strings whose memory is reused later (a
// decoded profile's, see pprofdec.Arena).
func (ls Labels) CopyStrings() Labels {
	if len(ls) == 0 {
		return nil
	}
	n := 0
	for _, l := range ls {
		n += len(l.Name) + len(l.Value)
	}
	var b strings.Builder
	b.Grow(n)
	for _, l := range ls {
		b.WriteString(l.Name)
		b.WriteString(l.Value)
	}
	all := b.String()
	out := make(Labels, len(ls))
	for i, l := range ls {
		out[i].Name, all = all[:len(l.Name)], all[len(l.Name):]
		out[i].Value, all = all[:len(l.Value)], all[len(l.Value):]
	}
	return out
}

var sep = []byte{0xff}

// Hash is a stable fingerprint of a sorted label set.
func (ls Labels) Hash() uint64 {
	h := xxhash.New()
	for _, l := range ls {
		_, _ = h.WriteString(l.Name)
		_, _ = h.Write(sep)
		_, _ = h.WriteString(l.Value)
		_, _ = h.Write(sep)
	}
	return h.Sum64()
}

// Equal compares two sorted label sets.
func (ls Labels) Equal(o Labels) bool {
	if len(ls) != len(o) {
		return false
	}
	for i := range ls {
		if ls[i] != o[i] {
			return false
		}
	}
	return true
}

// String renders {a="b", c="d"}.
func (ls Labels) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(l.Name)
		b.WriteString(`="`)
		b.WriteString(strings.ReplaceAll(l.Value, `"`, `\"`))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// Bytes is the approximate memory a label set holds, for head accounting.
func (ls Labels) Bytes() int {
	n := 24 + 32*len(ls)
	for _, l := range ls {
		n += len(l.Name) + len(l.Value)
	}
	return n
}

// PerSampleOnly reports whether a pprof sample label must not become a series
// label: span ids are unique per request and would explode the index.
func PerSampleOnly(name string) bool {
	return name == LabelSpanID || name == LabelProfileID
}
