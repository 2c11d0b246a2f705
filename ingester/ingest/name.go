// Package ingest parses requests of Pyroscope's HTTP ingest API
// (POST /ingest, as the Pyroscope SDKs send them) into a tenant-agnostic
// Request: the application name and labels from the name parameter, the time
// range, the format, and the profile itself, either as raw (decompressed)
// pprof bytes or, for the text formats, already converted into a pprof
// profile. It does no storage and knows nothing of tenants; the HTTP handler
// maps its errors to status codes (see StatusCode).
package ingest

import (
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// LabelPair is one label.
type LabelPair struct {
	Name, Value string
}

// NameError is a malformed name parameter: what and where (1-based byte
// position in the name).
type NameError struct {
	Name string
	Pos  int
	Msg  string
}

func (e *NameError) Error() string {
	return fmt.Sprintf("invalid name %q: %s at position %d", e.Name, e.Msg, e.Pos)
}

// ParseName parses the name parameter of /ingest, e.g.
// "myapp.cpu{env=prod,region=eu}", into the application name as sent
// ("myapp.cpu") and its labels, sorted by name.
//
// The format is the Pyroscope SDKs': the application name, then optionally
// labels in braces, comma-separated k=v pairs. Blanks around names and
// values are trimmed; values run to the next ',' or '}' (there is no
// escaping) and may be empty; an empty item ("{a=b,}") is ignored; a
// label given twice keeps its last value, as the SDKs do. Label names must
// match [a-zA-Z_][a-zA-Z0-9_.]*. Nothing may follow the closing brace.
// The caller decides what to do with reserved names such as __name__ or an
// explicit service_name.
func ParseName(name string) (app string, labels []LabelPair, err error) {
	fail := func(pos int, format string, args ...any) (string, []LabelPair, error) {
		return "", nil, &NameError{Name: name, Pos: pos + 1, Msg: fmt.Sprintf(format, args...)}
	}
	if !utf8.ValidString(name) {
		return fail(0, "not valid UTF-8")
	}
	open := strings.IndexByte(name, '{')
	head := name
	if open >= 0 {
		head = name[:open]
	}
	if i := strings.IndexAny(head, "},="); i >= 0 {
		return fail(i, "unexpected %q in the application name", head[i])
	}
	app = strings.TrimSpace(head)
	if app == "" {
		return fail(0, "empty application name")
	}
	for i, r := range app {
		if unicode.IsControl(r) {
			return fail(strings.Index(name, app)+i, "control character %q in the application name", r)
		}
	}
	if open < 0 {
		return app, nil, nil
	}
	closeRel := strings.IndexByte(name[open+1:], '}')
	if closeRel < 0 {
		return fail(len(name), "missing '}'")
	}
	closeAt := open + 1 + closeRel
	if rest := name[closeAt+1:]; strings.TrimSpace(rest) != "" {
		return fail(closeAt+1, "unexpected text after '}'")
	}
	byName := map[string]int{}
	pos := open + 1
	for _, item := range strings.Split(name[open+1:closeAt], ",") {
		itemPos := pos
		pos += len(item) + 1
		if strings.TrimSpace(item) == "" {
			continue
		}
		if i := strings.IndexByte(item, '{'); i >= 0 {
			return fail(itemPos+i, "unexpected '{' inside the labels")
		}
		eq := strings.IndexByte(item, '=')
		if eq < 0 {
			return fail(itemPos, "label %q has no '=value'", strings.TrimSpace(item))
		}
		k := strings.TrimSpace(item[:eq])
		v := strings.TrimSpace(item[eq+1:])
		if k == "" {
			return fail(itemPos, "empty label name")
		}
		if i := invalidLabelNameAt(k); i >= 0 {
			return fail(itemPos+strings.Index(item, k)+i, "invalid label name %q: want [a-zA-Z_][a-zA-Z0-9_.]*", k)
		}
		for _, r := range v {
			if unicode.IsControl(r) {
				return fail(itemPos+eq+1, "control character %q in the value of label %q", r, k)
			}
		}
		if j, ok := byName[k]; ok {
			labels[j].Value = v
			continue
		}
		byName[k] = len(labels)
		labels = append(labels, LabelPair{Name: k, Value: v})
	}
	sort.Slice(labels, func(i, j int) bool { return labels[i].Name < labels[j].Name })
	return app, labels, nil
}

// ValidLabelName reports whether n matches [a-zA-Z_][a-zA-Z0-9_.]*.
func ValidLabelName(n string) bool { return n != "" && invalidLabelNameAt(n) < 0 }

// invalidLabelNameAt returns the byte index of the first invalid character
// of a non-empty label name, or -1.
func invalidLabelNameAt(n string) int {
	for i := 0; i < len(n); i++ {
		c := n[i]
		ok := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if i > 0 {
			ok = ok || (c >= '0' && c <= '9') || c == '.'
		}
		if !ok {
			return i
		}
	}
	return -1
}
