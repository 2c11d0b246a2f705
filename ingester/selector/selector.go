// Package selector parses Prometheus-style label selectors as Pyroscope's
// querier accepts them, and profile type ids.
//
// Grammar (a practical subset of PromQL's vector selector):
//
//	selector := ""                      // no selector: nil matchers
//	          | [metric] "{" [matchers] "}"
//	          | metric                   // bare metric name
//	matchers := matcher { "," matcher } [","]
//	matcher  := name op string
//	name     := [a-zA-Z_][a-zA-Z0-9_.]* | string   // quoted names, as in Prometheus 3
//	op       := "=" | "!=" | "=~" | "!~"
//	string   := "..." | '...' | `...`  // Go-style escapes in the first two, raw in backticks
//
// A metric name before the braces becomes an equality matcher on __name__.
// Regular expressions are fully anchored (^(?:re)$), like Prometheus. A label
// a series does not carry matches as the empty string.
//
// Errors name the problem and the 1-based byte position in the input.
package selector

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// MatchType is the operator of a matcher.
type MatchType int

const (
	Equal     MatchType = iota // =
	NotEqual                   // !=
	Regexp                     // =~
	NotRegexp                  // !~
)

func (t MatchType) String() string {
	switch t {
	case Equal:
		return "="
	case NotEqual:
		return "!="
	case Regexp:
		return "=~"
	case NotRegexp:
		return "!~"
	}
	return fmt.Sprintf("MatchType(%d)", int(t))
}

// Matcher matches one label's value.
type Matcher struct {
	Type  MatchType
	Name  string
	Value string
	re    *regexp.Regexp // compiled, anchored; for Regexp and NotRegexp
}

// NewMatcher builds a matcher, compiling the regular expression of Regexp
// and NotRegexp matchers (anchored at both ends).
func NewMatcher(t MatchType, name, value string) (*Matcher, error) {
	m := &Matcher{Type: t, Name: name, Value: value}
	switch t {
	case Equal, NotEqual:
	case Regexp, NotRegexp:
		re, err := regexp.Compile("^(?:" + value + ")$")
		if err != nil {
			return nil, err
		}
		m.re = re
	default:
		return nil, fmt.Errorf("unknown match type %d", int(t))
	}
	return m, nil
}

// MustNewMatcher is NewMatcher that panics on error; for tests and constants.
func MustNewMatcher(t MatchType, name, value string) *Matcher {
	m, err := NewMatcher(t, name, value)
	if err != nil {
		panic(err)
	}
	return m
}

// Matches reports whether value (the label's value, "" when the label is
// missing) satisfies the matcher.
func (m *Matcher) Matches(value string) bool {
	switch m.Type {
	case Equal:
		return value == m.Value
	case NotEqual:
		return value != m.Value
	case Regexp:
		return m.re.MatchString(value)
	case NotRegexp:
		return !m.re.MatchString(value)
	}
	return false
}

// String renders the matcher in selector syntax, e.g. env!="dev".
func (m *Matcher) String() string {
	return fmt.Sprintf("%s%s%q", m.Name, m.Type, m.Value)
}

// Error is a parse error: what went wrong and where.
type Error struct {
	Pos int // 1-based byte position in the input
	Msg string
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid label selector: %s at position %d", e.Msg, e.Pos)
}

// Parse parses a label selector. The empty (or all-blank) string means
// "no selector" and yields nil, nil; "{}" yields an empty, non-nil slice.
func Parse(s string) ([]*Matcher, error) {
	p := &parser{s: s}
	p.skipSpace()
	if p.i == len(s) {
		return nil, nil
	}
	ms := []*Matcher{}
	if isNameStart(p.peek()) {
		start := p.i
		name := p.ident()
		ms = append(ms, &Matcher{Type: Equal, Name: "__name__", Value: name})
		p.skipSpace()
		if p.i == len(s) {
			return ms, nil
		}
		if p.peek() != '{' {
			return nil, p.errAt(p.i, fmt.Sprintf("expected '{' after metric name %q (at %d), found %s", name, start+1, p.found()))
		}
	}
	if p.peek() != '{' {
		return nil, p.errAt(p.i, "expected '{', found "+p.found())
	}
	p.i++
	for {
		p.skipSpace()
		if p.i == len(s) {
			return nil, p.errAt(p.i, "unterminated selector: expected '}' or a label name, found end of input")
		}
		if p.peek() == '}' {
			p.i++
			break
		}
		m, err := p.matcher()
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
		p.skipSpace()
		if p.i == len(s) {
			return nil, p.errAt(p.i, "unterminated selector: expected ',' or '}', found end of input")
		}
		switch p.peek() {
		case ',':
			p.i++
		case '}':
			p.i++
			goto done
		default:
			return nil, p.errAt(p.i, "expected ',' or '}' after matcher, found "+p.found())
		}
	}
done:
	p.skipSpace()
	if p.i != len(s) {
		return nil, p.errAt(p.i, "unexpected "+p.found()+" after '}'")
	}
	return ms, nil
}

type parser struct {
	s string
	i int
}

func (p *parser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *parser) found() string {
	if p.i >= len(p.s) {
		return "end of input"
	}
	r, _ := utf8.DecodeRuneInString(p.s[p.i:])
	return fmt.Sprintf("%q", r)
}

func (p *parser) errAt(i int, msg string) *Error { return &Error{Pos: i + 1, Msg: msg} }

func (p *parser) skipSpace() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r', '\f', '\v':
			p.i++
		default:
			return
		}
	}
}

func isNameStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isNameChar(c byte) bool {
	return isNameStart(c) || (c >= '0' && c <= '9') || c == '.'
}

func (p *parser) ident() string {
	start := p.i
	for p.i < len(p.s) && isNameChar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *parser) matcher() (*Matcher, error) {
	var name string
	switch c := p.peek(); {
	case isNameStart(c):
		name = p.ident()
	case c == '"' || c == '\'' || c == '`':
		start := p.i
		n, err := p.str()
		if err != nil {
			return nil, err
		}
		if n == "" {
			return nil, p.errAt(start, "empty label name")
		}
		name = n
	default:
		return nil, p.errAt(p.i, "expected a label name, found "+p.found())
	}
	p.skipSpace()
	opPos := p.i
	var t MatchType
	switch {
	case strings.HasPrefix(p.s[p.i:], "=~"):
		t, p.i = Regexp, p.i+2
	case strings.HasPrefix(p.s[p.i:], "!~"):
		t, p.i = NotRegexp, p.i+2
	case strings.HasPrefix(p.s[p.i:], "!="):
		t, p.i = NotEqual, p.i+2
	case strings.HasPrefix(p.s[p.i:], "=="):
		return nil, p.errAt(opPos, fmt.Sprintf("unexpected '==' after label %q (use '=')", name))
	case p.peek() == '=':
		t, p.i = Equal, p.i+1
	default:
		return nil, p.errAt(opPos, fmt.Sprintf("expected one of '=', '!=', '=~', '!~' after label %q, found %s", name, p.found()))
	}
	p.skipSpace()
	valPos := p.i
	if c := p.peek(); c != '"' && c != '\'' && c != '`' {
		return nil, p.errAt(p.i, fmt.Sprintf("expected a quoted value for label %q, found %s", name, p.found()))
	}
	v, err := p.str()
	if err != nil {
		return nil, err
	}
	m, err := NewMatcher(t, name, v)
	if err != nil {
		return nil, p.errAt(valPos, fmt.Sprintf("invalid regular expression %q for label %q: %v", v, name, err))
	}
	return m, nil
}

// str reads a quoted string starting at the opening quote.
func (p *parser) str() (string, error) {
	start := p.i
	q := p.s[p.i]
	p.i++
	if q == '`' {
		end := strings.IndexByte(p.s[p.i:], '`')
		if end < 0 {
			p.i = len(p.s)
			return "", p.errAt(start, "unterminated raw string")
		}
		v := p.s[p.i : p.i+end]
		p.i += end + 1
		if !utf8.ValidString(v) {
			return "", p.errAt(start, "invalid UTF-8 in string")
		}
		return v, nil
	}
	var b strings.Builder
	for {
		if p.i >= len(p.s) {
			return "", p.errAt(start, "unterminated quoted string")
		}
		c := p.s[p.i]
		switch {
		case c == q:
			p.i++
			v := b.String()
			if !utf8.ValidString(v) {
				// Only byte escapes (\x, octal) can get here.
				return "", p.errAt(start, "escape sequences make the string invalid UTF-8")
			}
			return v, nil
		case c == '\n':
			return "", p.errAt(p.i, "newline in quoted string")
		case c == '\\':
			if err := p.escape(&b, q); err != nil {
				return "", err
			}
		default:
			r, size := utf8.DecodeRuneInString(p.s[p.i:])
			if r == utf8.RuneError && size == 1 {
				return "", p.errAt(p.i, "invalid UTF-8 in string")
			}
			b.WriteString(p.s[p.i : p.i+size])
			p.i += size
		}
	}
}

// escape decodes one backslash escape (Go / PromQL rules) at p.i.
func (p *parser) escape(b *strings.Builder, q byte) error {
	at := p.i
	p.i++
	if p.i >= len(p.s) {
		return p.errAt(at, "unterminated escape sequence")
	}
	c := p.s[p.i]
	p.i++
	switch c {
	case 'a':
		b.WriteByte('\a')
	case 'b':
		b.WriteByte('\b')
	case 'f':
		b.WriteByte('\f')
	case 'n':
		b.WriteByte('\n')
	case 'r':
		b.WriteByte('\r')
	case 't':
		b.WriteByte('\t')
	case 'v':
		b.WriteByte('\v')
	case '\\':
		b.WriteByte('\\')
	case '"', '\'':
		if c != q {
			return p.errAt(at, fmt.Sprintf("unknown escape sequence \\%c", c))
		}
		b.WriteByte(c)
	case 'x', 'u', 'U':
		n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
		if p.i+n > len(p.s) {
			return p.errAt(at, fmt.Sprintf("escape sequence \\%c needs %d hex digits", c, n))
		}
		var v rune
		for _, d := range []byte(p.s[p.i : p.i+n]) {
			h, ok := hexVal(d)
			if !ok {
				return p.errAt(at, fmt.Sprintf("invalid hex digit %q in escape sequence", d))
			}
			v = v<<4 | rune(h)
		}
		p.i += n
		if c == 'x' {
			// Like Go, \x is a byte; the whole string must be valid UTF-8.
			b.WriteByte(byte(v))
			return nil
		}
		if !utf8.ValidRune(v) {
			return p.errAt(at, fmt.Sprintf("escape sequence is an invalid Unicode code point %#x", v))
		}
		b.WriteRune(v)
	case '0', '1', '2', '3', '4', '5', '6', '7':
		if p.i+2 > len(p.s) {
			return p.errAt(at, "octal escape sequence needs 3 digits")
		}
		v := int(c - '0')
		for _, d := range []byte(p.s[p.i : p.i+2]) {
			if d < '0' || d > '7' {
				return p.errAt(at, fmt.Sprintf("invalid octal digit %q in escape sequence", d))
			}
			v = v<<3 | int(d-'0')
		}
		if v > 255 {
			return p.errAt(at, "octal escape value > 255")
		}
		p.i += 2
		b.WriteByte(byte(v))
		return nil
	default:
		return p.errAt(at, fmt.Sprintf("unknown escape sequence \\%c", c))
	}
	return nil
}

func hexVal(d byte) (byte, bool) {
	switch {
	case d >= '0' && d <= '9':
		return d - '0', true
	case d >= 'a' && d <= 'f':
		return d - 'a' + 10, true
	case d >= 'A' && d <= 'F':
		return d - 'A' + 10, true
	}
	return 0, false
}

// ProfileType is a parsed profile type id:
// <name>:<sample type>:<sample unit>:<period type>:<period unit>.
type ProfileType struct {
	ID         string // the whole id as given
	Name       string // __name__, e.g. process_cpu
	SampleType string
	SampleUnit string
	PeriodType string
	PeriodUnit string
}

// ParseProfileTypeID parses e.g. "process_cpu:cpu:nanoseconds:cpu:nanoseconds".
// It needs exactly five colon-separated parts; the name and the sample type
// must not be empty (the units and the period may be, as Pyroscope forms
// ids for profiles without a period type).
func ParseProfileTypeID(id string) (ProfileType, error) {
	parts := strings.Split(id, ":")
	if len(parts) != 5 {
		return ProfileType{}, fmt.Errorf("invalid profile type id %q: want 5 parts <name>:<sample type>:<sample unit>:<period type>:<period unit>, got %d", id, len(parts))
	}
	if parts[0] == "" {
		return ProfileType{}, fmt.Errorf("invalid profile type id %q: empty name (part 1)", id)
	}
	if parts[1] == "" {
		return ProfileType{}, fmt.Errorf("invalid profile type id %q: empty sample type (part 2)", id)
	}
	return ProfileType{ID: id, Name: parts[0], SampleType: parts[1], SampleUnit: parts[2], PeriodType: parts[3], PeriodUnit: parts[4]}, nil
}
