package selector

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	type m struct {
		t    MatchType
		n, v string
	}
	for _, tc := range []struct {
		in   string
		want []m
		nil_ bool
	}{
		{in: "", nil_: true},
		{in: "  \t", nil_: true},
		{in: "{}", want: []m{}},
		{in: " { } ", want: []m{}},
		{in: `{service_name="app"}`, want: []m{{Equal, "service_name", "app"}}},
		{in: `{service_name="app", env!="dev", pod=~"a.*", x!~"b|c"}`, want: []m{
			{Equal, "service_name", "app"}, {NotEqual, "env", "dev"}, {Regexp, "pod", "a.*"}, {NotRegexp, "x", "b|c"}}},
		{in: "{\n  a = \"1\" ,\n b=~ '2' ,}", want: []m{{Equal, "a", "1"}, {Regexp, "b", "2"}}},
		{in: `{a="say \"hi\""}`, want: []m{{Equal, "a", `say "hi"`}}},
		{in: `{a='it\'s'}`, want: []m{{Equal, "a", "it's"}}},
		{in: `{a='say "hi"'}`, want: []m{{Equal, "a", `say "hi"`}}},
		{in: "{a=`raw\\d+`}", want: []m{{Equal, "a", `raw\d+`}}},
		{in: `{a="tab\there\\ \u00e9\x41\101"}`, want: []m{{Equal, "a", "tab\there\\ éAA"}}},
		{in: `{a="日本"}`, want: []m{{Equal, "a", "日本"}}},
		{in: `{service.name="x"}`, want: []m{{Equal, "service.name", "x"}}},
		{in: `{"service name"="x"}`, want: []m{{Equal, "service name", "x"}}},
		{in: `process_cpu{a="b"}`, want: []m{{Equal, "__name__", "process_cpu"}, {Equal, "a", "b"}}},
		{in: `process_cpu`, want: []m{{Equal, "__name__", "process_cpu"}}},
		{in: `{a=""}`, want: []m{{Equal, "a", ""}}},
	} {
		got, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if tc.nil_ {
			if got != nil {
				t.Errorf("Parse(%q) = %v, want nil", tc.in, got)
			}
			continue
		}
		if got == nil || len(got) != len(tc.want) {
			t.Errorf("Parse(%q) = %v, want %v", tc.in, got, tc.want)
			continue
		}
		for i, w := range tc.want {
			if got[i].Type != w.t || got[i].Name != w.n || got[i].Value != w.v {
				t.Errorf("Parse(%q)[%d] = %v, want %s%s%q", tc.in, i, got[i], w.n, w.t, w.v)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{`, "expected '}' or a label name, found end of input at position 2"},
		{`}`, "expected '{', found '}' at position 1"},
		{`{a="b"`, "expected ',' or '}', found end of input at position 7"},
		{`{a="b}`, "unterminated quoted string at position 4"},
		{`{a=b}`, `expected a quoted value for label "a", found 'b' at position 4`},
		{`{a}`, `expected one of '=', '!=', '=~', '!~' after label "a", found '}' at position 3`},
		{`{a=="b"}`, `unexpected '==' after label "a" (use '=') at position 3`},
		{`{a="b" c="d"}`, "expected ',' or '}' after matcher, found 'c' at position 8"},
		{`{a="b"} x`, "unexpected 'x' after '}' at position 9"},
		{`{1a="b"}`, "expected a label name, found '1' at position 2"},
		{`{a=~"("}`, `invalid regular expression "(" for label "a"`},
		{`{a="\q"}`, `unknown escape sequence \q at position 5`},
		{`{a='\"'}`, `unknown escape sequence \" at position 5`},
		{`{a="\x4"}`, `invalid hex digit '"' in escape sequence at position 5`},
		{`{a="\xff"}`, "invalid UTF-8 at position 4"},
		{"{a=`x}", "unterminated raw string at position 4"},
		{"{a=\"x\ny\"}", "newline in quoted string at position 6"},
		{`{""="x"}`, "empty label name at position 2"},
		{`{,}`, "expected a label name, found ',' at position 2"},
		{`app x`, `expected '{' after metric name "app" (at 1), found 'x' at position 5`},
	} {
		_, err := Parse(tc.in)
		if err == nil {
			t.Errorf("Parse(%q): no error, want %q", tc.in, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) error = %q, want containing %q", tc.in, err, tc.want)
		}
		if !strings.HasPrefix(err.Error(), "invalid label selector: ") {
			t.Errorf("Parse(%q) error %q lacks prefix", tc.in, err)
		}
	}
}

func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		sel   string
		value string
		want  bool
	}{
		{`{a="x"}`, "x", true},
		{`{a="x"}`, "", false},
		{`{a=""}`, "", true}, // missing label matches ""
		{`{a!="x"}`, "", true},
		{`{a!="x"}`, "x", false},
		{`{a=~"a.*"}`, "abc", true},
		{`{a=~"a.*"}`, "bab", false}, // anchored at the start
		{`{a=~"b"}`, "bb", false},    // anchored at the end
		{`{a=~"b|c"}`, "c", true},    // alternation inside the group
		{`{a=~"b|c"}`, "bc", false},
		{`{a!~"b|c"}`, "b", false},
		{`{a!~"b|c"}`, "d", true},
		{`{a!~"b|c"}`, "", true},
		{`{a=~".*"}`, "", true},
		{`{a=~".+"}`, "", false},
	} {
		ms, err := Parse(tc.sel)
		if err != nil {
			t.Fatal(err)
		}
		if got := ms[0].Matches(tc.value); got != tc.want {
			t.Errorf("%s.Matches(%q) = %v, want %v", tc.sel, tc.value, got, tc.want)
		}
	}
}

func TestParseProfileTypeID(t *testing.T) {
	got, err := ParseProfileTypeID("process_cpu:cpu:nanoseconds:cpu:nanoseconds")
	if err != nil {
		t.Fatal(err)
	}
	want := ProfileType{ID: "process_cpu:cpu:nanoseconds:cpu:nanoseconds", Name: "process_cpu", SampleType: "cpu", SampleUnit: "nanoseconds", PeriodType: "cpu", PeriodUnit: "nanoseconds"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if got, err := ParseProfileTypeID("memory:inuse_space:bytes::"); err != nil || got.PeriodType != "" || got.SampleUnit != "bytes" {
		t.Fatalf("empty period: %+v %v", got, err)
	}
	for _, tc := range []struct{ in, want string }{
		{"", "want 5 parts"},
		{"a:b:c:d", "got 4"},
		{"a:b:c:d:e:f", "got 6"},
		{":cpu:nanoseconds:cpu:nanoseconds", "empty name (part 1)"},
		{"process_cpu::nanoseconds:cpu:nanoseconds", "empty sample type (part 2)"},
	} {
		_, err := ParseProfileTypeID(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseProfileTypeID(%q) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "{}", `{service_name="app", env!="dev", pod=~"a.*", x!~"b|c"}`,
		`{a='it\'s'}`, "{a=`x`}", `process_cpu{a="\u00e9\x41"}`, `{"q n"=~"(a|b)+"}`, `{a="\xff"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := Parse(s)
		if err != nil {
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("error of type %T", err)
			}
			if e.Pos < 1 || e.Pos > len(s)+1 {
				t.Fatalf("position %d outside 1..%d", e.Pos, len(s)+1)
			}
			return
		}
		// A parsed selector prints back to one that parses to the same matchers.
		if len(ms) == 0 {
			return
		}
		parts := make([]string, len(ms))
		for i, m := range ms {
			parts[i] = quoteName(m.Name) + m.Type.String() + quoteGo(m.Value)
			_ = m.Matches("")
			_ = m.Matches(m.Value)
		}
		again, err := Parse("{" + strings.Join(parts, ",") + "}")
		if err != nil {
			t.Fatalf("reparse of %q: %v", parts, err)
		}
		if len(again) != len(ms) {
			t.Fatalf("reparse gave %d matchers, want %d", len(again), len(ms))
		}
		for i := range ms {
			if again[i].Name != ms[i].Name || again[i].Value != ms[i].Value || again[i].Type != ms[i].Type {
				t.Fatalf("reparse %v != %v", again[i], ms[i])
			}
		}
	})
}

func quoteName(n string) string {
	for i := 0; i < len(n); i++ {
		if !isNameChar(n[i]) || (i == 0 && !isNameStart(n[i])) {
			return quoteGo(n)
		}
	}
	return n
}

// quoteGo quotes with escapes this parser understands (\uXXXX, not \a-style
// shortcuts it would also accept).
func quoteGo(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&15])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
