package ingest

import (
	"bytes"
	"compress/gzip"
	"errors"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

func TestParseName(t *testing.T) {
	for _, tc := range []struct {
		in     string
		app    string
		labels []LabelPair
	}{
		{"myapp", "myapp", nil},
		{"myapp.cpu{env=prod,region=eu}", "myapp.cpu", []LabelPair{{"env", "prod"}, {"region", "eu"}}},
		{" my-app/x.cpu { region = eu , env=prod, } ", "my-app/x.cpu", []LabelPair{{"env", "prod"}, {"region", "eu"}}},
		{"app{}", "app", nil},
		{"app{a=}", "app", []LabelPair{{"a", ""}}},
		{"app{a=1,a=2}", "app", []LabelPair{{"a", "2"}}},
		{"app{a=x=y}", "app", []LabelPair{{"a", "x=y"}}},
		{"app{__session_id__=abc,service.name=s,_x1=v}", "app", []LabelPair{{"__session_id__", "abc"}, {"_x1", "v"}, {"service.name", "s"}}},
		{"app{k=日本}", "app", []LabelPair{{"k", "日本"}}},
	} {
		app, labels, err := ParseName(tc.in)
		if err != nil {
			t.Errorf("ParseName(%q): %v", tc.in, err)
			continue
		}
		if app != tc.app || !reflect.DeepEqual(labels, tc.labels) {
			t.Errorf("ParseName(%q) = %q %v, want %q %v", tc.in, app, labels, tc.app, tc.labels)
		}
	}
}

func TestParseNameErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty application name at position 1"},
		{"{a=b}", "empty application name"},
		{"app{a=b", "missing '}' at position 8"},
		{"app}", "unexpected '}' in the application name at position 4"},
		{"app{a=b}x", "unexpected text after '}' at position 9"},
		{"app{a}", `label "a" has no '=value' at position 5`},
		{"app{=b}", "empty label name at position 5"},
		{"app{1a=b}", `invalid label name "1a": want [a-zA-Z_][a-zA-Z0-9_.]* at position 5`},
		{"app{a-b=c}", `invalid label name "a-b"`},
		{"app{x=1, a b=c}", `invalid label name "a b"`},
		{"app{a={b}", "unexpected '{' inside the labels at position 7"},
		{"app{a=b}}", "unexpected text after '}'"},
		{"ap\x01p", "control character"},
		{"app{a=\xff}", "not valid UTF-8"},
	} {
		_, _, err := ParseName(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseName(%q) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestParseTime(t *testing.T) {
	now := time.Unix(1700000000, 0)
	want := time.Unix(1700000000, 0)
	for _, s := range []string{"1700000000", "1700000000000", "1700000000000000", "1700000000000000000", "now", "2023-11-14T22:13:20Z"} {
		got, err := ParseTime(s, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	if got, _ := ParseTime("now-1h", now); !got.Equal(now.Add(-time.Hour)) {
		t.Errorf("now-1h = %v", got)
	}
	if got, err := ParseTime("", now); err != nil || !got.IsZero() {
		t.Errorf("empty = %v %v", got, err)
	}
	for _, s := range []string{"-5", "yesterday", "now-x", "now--1h"} {
		if _, err := ParseTime(s, now); err == nil || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("ParseTime(%q) err = %v", s, err)
		}
	}
}

func TestParseParams(t *testing.T) {
	now := time.Unix(1700000000, 0)
	q := url.Values{"name": {"app.cpu{env=prod}"}, "from": {"1699999990"}, "until": {"1700000000"}, "sampleRate": {"250"}, "spyName": {"gospy"}, "units": {"samples"}, "aggregationType": {"sum"}, "format": {"groups"}}
	r, err := ParseParams(q, now)
	if err != nil {
		t.Fatal(err)
	}
	if r.AppName != "app.cpu" || r.SampleRate != 250 || r.Format != FormatFolded || r.SpyName != "gospy" || r.Units != "samples" || r.AggregationType != "sum" || r.From.Unix() != 1699999990 || r.Until.Unix() != 1700000000 {
		t.Fatalf("%+v", r)
	}
	for _, tc := range []struct {
		q      url.Values
		want   string
		status int
	}{
		{url.Values{}, "missing name parameter", 400},
		{url.Values{"name": {"a{"}}, "missing '}'", 400},
		{url.Values{"name": {"a"}, "from": {"x"}}, "from: invalid time", 400},
		{url.Values{"name": {"a"}, "from": {"20"}, "until": {"10"}}, "is before from", 400},
		{url.Values{"name": {"a"}, "sampleRate": {"0"}}, `invalid sampleRate "0"`, 400},
		{url.Values{"name": {"a"}, "format": {"bogus"}}, `unsupported format "bogus": supported formats are pprof, folded, groups, lines`, 415},
	} {
		_, err := ParseParams(tc.q, now)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseParams(%v) = %v, want %q", tc.q, err, tc.want)
		}
		if StatusCode(err) != tc.status {
			t.Errorf("StatusCode(%v) = %d, want %d", err, StatusCode(err), tc.status)
		}
	}
}

func testPprof(t testing.TB) []byte {
	p := &googlev1.Profile{StringTable: []string{"", "samples", "count"}, SampleType: []*googlev1.ValueType{{Type: 1, Unit: 2}}, TimeNanos: 42}
	b, err := p.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

func multipartBody(t *testing.T, profile []byte, cfg string) (*bytes.Buffer, string) {
	body := &bytes.Buffer{}
	w := multipart.NewWriter(body)
	fw, _ := w.CreateFormFile("profile", "profile.pprof")
	_, _ = fw.Write(profile)
	if cfg != "" {
		fw, _ = w.CreateFormFile("sample_type_config", "sample_type_config.json")
		_, _ = fw.Write([]byte(cfg))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return body, w.FormDataContentType()
}

func TestParseRequest(t *testing.T) {
	now := time.Unix(1700000000, 0)
	raw := testPprof(t)
	target := "/ingest?name=app%7Benv%3Dprod%7D&from=1699999990000000000&until=1700000000000000000&spyName=gospy"

	t.Run("raw pprof", func(t *testing.T) {
		req := httptest.NewRequest("POST", target, bytes.NewReader(raw))
		r, err := ParseRequest(req, Limits{}, now)
		if err != nil {
			t.Fatal(err)
		}
		if r.Format != FormatPprof || !bytes.Equal(r.Profile, raw) || r.AppName != "app" || r.Labels[0] != (LabelPair{"env", "prod"}) || r.From.Unix() != 1699999990 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("gzip pprof, misleading content type", func(t *testing.T) {
		req := httptest.NewRequest("POST", target+"&format=pprof", bytes.NewReader(gz(raw)))
		req.Header.Set("Content-Type", "text/plain")
		r, err := ParseRequest(req, Limits{MaxDecompressedBytes: len(raw)}, now)
		if err != nil || !bytes.Equal(r.Profile, raw) {
			t.Fatalf("%v %+v", err, r)
		}
	})
	t.Run("multipart like the Go SDK", func(t *testing.T) {
		body, ct := multipartBody(t, gz(raw), `{"alloc_objects":{"units":"objects"},"contentions":{"display-name":"mutex_count","units":"lock_samples"}}`)
		req := httptest.NewRequest("POST", target, body)
		req.Header.Set("Content-Type", ct)
		r, err := ParseRequest(req, Limits{}, now)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.Profile, raw) || r.SampleTypeConfig["contentions"].DisplayName != "mutex_count" || r.SampleTypeConfig["alloc_objects"].Units != "objects" {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("prev_profile refused", func(t *testing.T) {
		body := &bytes.Buffer{}
		w := multipart.NewWriter(body)
		for _, part := range []string{"profile", "prev_profile"} {
			fw, _ := w.CreateFormFile(part, "profile.pprof")
			_, _ = fw.Write(gz(raw))
		}
		_ = w.Close()
		req := httptest.NewRequest("POST", target, body)
		req.Header.Set("Content-Type", w.FormDataContentType())
		if _, err := ParseRequest(req, Limits{}, now); err == nil || !strings.Contains(err.Error(), "prev_profile") {
			t.Fatalf("want prev_profile refused, got %v", err)
		}
	})
	t.Run("folded", func(t *testing.T) {
		req := httptest.NewRequest("POST", "/ingest?name=app.cpu&from=1700000000&until=1700000010&sampleRate=100", strings.NewReader("main;foo;bar 3\nmain;foo 2\nmain;foo;bar 1\n"))
		r, err := ParseRequest(req, Limits{}, now)
		if err != nil {
			t.Fatal(err)
		}
		if r.Format != FormatFolded || len(r.Profiles) != 1 || r.Profile != nil || !reflect.DeepEqual(r.Profiles[0].Labels, []LabelPair{{"__name__", "process_cpu"}}) {
			t.Fatalf("%+v", r)
		}
		folded := r.Profiles[0].Profile
		// 100 Hz: a sample is 10 ms of CPU.
		if got := stacks(folded); !reflect.DeepEqual(got, map[string]int64{"bar;foo;main": 4e7, "foo;main": 2e7}) {
			t.Fatalf("stacks = %v", got)
		}
		if folded.TimeNanos != 1700000000e9 || folded.DurationNanos != 10e9 || folded.Period != 1e7 {
			t.Fatalf("times: %d %d %d", folded.TimeNanos, folded.DurationNanos, folded.Period)
		}
	})
	for _, tc := range []struct {
		name, target, ct string
		body             []byte
		lim              Limits
		want             string
		status           int
	}{
		{"body over limit", target, "", raw, Limits{MaxBodyBytes: 3}, "request body exceeds the limit of 3 bytes", 400},
		{"decompressed over limit", target, "", gz(raw), Limits{MaxDecompressedBytes: 3}, "exceeds the limit of 3 bytes", 400},
		{"empty body", target, "", nil, Limits{}, "empty profile", 400},
		{"bad folded", "/ingest?name=a&format=folded", "", []byte("a;b 1\na;b\n"), Limits{}, "folded profile: line 2: no value", 400},
		{"unsupported", "/ingest?name=a&format=bogus", "", raw, Limits{}, "unsupported format", 415},
		{"multipart without boundary", target, "multipart/form-data", raw, Limits{}, "without a boundary", 400},
		{"multipart garbage", target, "multipart/form-data; boundary=xyz", raw, Limits{}, "invalid multipart body", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", tc.target, bytes.NewReader(tc.body))
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			_, err := ParseRequest(req, tc.lim, now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if StatusCode(err) != tc.status {
				t.Fatalf("status %d, want %d", StatusCode(err), tc.status)
			}
		})
	}
	t.Run("multipart without profile", func(t *testing.T) {
		body := &bytes.Buffer{}
		w := multipart.NewWriter(body)
		fw, _ := w.CreateFormFile("other", "x")
		_, _ = fw.Write([]byte("x"))
		_ = w.Close()
		req := httptest.NewRequest("POST", target, body)
		req.Header.Set("Content-Type", w.FormDataContentType())
		_, err := ParseRequest(req, Limits{}, now)
		var bad *BadRequestError
		if !errors.As(err, &bad) || !strings.Contains(err.Error(), "no (or an empty) profile part") {
			t.Fatalf("err = %v", err)
		}
	})
	_ = http.StatusOK
}

// stacks renders a one-sample-type profile as "leaf;...;root" -> value.
func stacks(p *googlev1.Profile) map[string]int64 {
	names := map[uint64]string{}
	for _, l := range p.Location {
		for _, f := range p.Function {
			if f.Id == l.Line[0].FunctionId {
				names[l.Id] = p.StringTable[f.Name]
			}
		}
	}
	out := map[string]int64{}
	for _, s := range p.Sample {
		var fr []string
		for _, id := range s.LocationId {
			fr = append(fr, names[id])
		}
		out[strings.Join(fr, ";")] += s.Value[0]
	}
	return out
}

// TestSampleKindFor: the kinds Pyroscope v1.18 gives text-format profiles by
// the application name's suffix (its ingest adapter's table).
func TestSampleKindFor(t *testing.T) {
	for _, tc := range []struct {
		app      string
		rate     uint32
		want     string
		period   int64
		refusing bool
	}{
		{"app.cpu", 100, "process_cpu:cpu:nanoseconds:cpu:nanoseconds", 1e7, false},
		{"app", 100, "process_cpu:cpu:nanoseconds:cpu:nanoseconds", 1e7, false},
		{"app", 0, "process_cpu:samples:count::", 0, false},
		{"app.cpu", 250, "process_cpu:cpu:nanoseconds:cpu:nanoseconds", 4e6, false},
		{"app.itimer", 100, "process_cpu:cpu:nanoseconds:cpu:nanoseconds", 1e7, false},
		{"my.app.alloc_objects", 100, "memory:alloc_objects:count::", 0, false},
		{"app.inuse_space", 100, "memory:inuse_space:bytes::", 0, false},
		{"app.bytes", 100, "memory:samples:bytes::", 0, false},
		{"app.mutex_duration", 100, "mutex:delay:nanoseconds::", 0, false},
		{"app.lock_count", 100, "block:contentions:count::", 0, false},
		{"app.goroutines", 100, "goroutine:goroutines:count::", 0, false},
		{"app.wall", 100, "wall:wall:nanoseconds:cpu:nanoseconds", 1e7, false},
		{"app.seconds", 100, "wall:wall:nanoseconds:cpu:nanoseconds", 1e7, false},
		{"app.alloc_in_new_tlab_bytes", 100, "memory:alloc_in_new_tlab_bytes:bytes::", 0, false},
		{"app.exceptions", 100, "exceptions:samples:count::", 0, false},
		{"com.example", 100, "", 0, true},
	} {
		k, err := SampleKindFor(tc.app, tc.rate)
		if tc.refusing {
			if err == nil {
				t.Errorf("SampleKindFor(%q) = %+v, want an error", tc.app, k)
			}
			continue
		}
		id := strings.Join([]string{k.ProfileName, k.SampleType, k.SampleUnit, k.PeriodType, k.PeriodUnit}, ":")
		if err != nil || id != tc.want || k.Period != tc.period {
			t.Errorf("SampleKindFor(%q, %d) = %s period %d (%v), want %s period %d", tc.app, tc.rate, id, k.Period, err, tc.want, tc.period)
		}
	}
}

func TestParseFoldedErrors(t *testing.T) {
	k, _ := SampleKindFor("a.cpu", 0)
	for _, tc := range []struct{ in, want string }{
		{"a;b", `line 1: no value: want "frame;frame;... <integer>", got "a;b"`},
		{"a;b 1\n\na;b x", `line 3: value "x" is not an integer`},
		{"a;b -1", "line 1: negative value -1"},
		{"a;b 1.5", `value "1.5" is not an integer`},
		{" 5", "line 1: empty stack"},
		{"a;;b 1", `line 1: empty frame 2 in stack "a;;b"`},
		{"a\xff 1", "line 1: not valid UTF-8"},
		{"a 99999999999999999999", "is not an integer"},
	} {
		_, err := ParseFolded([]byte(tc.in), k, false, 0, 0)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseFolded(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
	p, err := ParseFolded([]byte("a;b\r\na;b\nc\n"), k, true, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := stacks(p); !reflect.DeepEqual(got, map[string]int64{"b;a": 2, "c": 1}) {
		t.Fatalf("lines: %v", got)
	}
}

func TestProfileName(t *testing.T) {
	for _, tc := range []struct {
		types  []string
		period string
		want   string
	}{
		{[]string{"samples", "cpu"}, "cpu", "process_cpu"},
		{[]string{"samples"}, "cpu", "process_cpu"},
		{[]string{"samples", "wall"}, "wall", "wall"},
		{[]string{"alloc_objects", "alloc_space", "inuse_objects", "inuse_space"}, "space", "memory"},
		{[]string{"mutex_count"}, "", "mutex"},
		{[]string{"block_duration"}, "", "block"},
		{[]string{"goroutines"}, "", "goroutines"},
		{[]string{"whatever"}, "", "unknown"},
	} {
		if got := NameFromSampleTypes(tc.types, tc.period); got != tc.want {
			t.Errorf("NameFromSampleTypes(%v, %q) = %q, want %q", tc.types, tc.period, got, tc.want)
		}
	}
}

func FuzzParseName(f *testing.F) {
	for _, s := range []string{"myapp.cpu{env=prod,region=eu}", "app", "app{}", "app{a=b,}", "{", "a{b}", "a{=}", "a{x=y=z}}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		app, labels, err := ParseName(s)
		if err != nil {
			var ne *NameError
			if !errors.As(err, &ne) || ne.Pos < 1 || ne.Pos > len(s)+1 {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		if app == "" || strings.ContainsAny(app, "{},=") {
			t.Fatalf("app %q", app)
		}
		for i, l := range labels {
			if !ValidLabelName(l.Name) || strings.ContainsAny(l.Value, ",}") {
				t.Fatalf("label %+v", l)
			}
			if i > 0 && labels[i-1].Name >= l.Name {
				t.Fatalf("labels not sorted and unique: %v", labels)
			}
		}
		// Rendering it back parses to the same.
		var b strings.Builder
		b.WriteString(app)
		b.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(l.Name + "=" + l.Value)
		}
		b.WriteByte('}')
		app2, labels2, err := ParseName(b.String())
		if err != nil || app2 != app || len(labels2) != len(labels) {
			t.Fatalf("round trip of %q: %q %v %v", b.String(), app2, labels2, err)
		}
	})
}

func FuzzParseFolded(f *testing.F) {
	for _, s := range []string{"main;foo;bar 3\nmain;foo 2\n", "a 1\r\n", "a;b", " 5", "a;;b 1", "x 9223372036854775807\nx 1"} {
		f.Add([]byte(s), false)
	}
	f.Add([]byte("a;b\nc\n"), true)
	k, _ := SampleKindFor("a.cpu", 100) // values scaled by the period
	f.Fuzz(func(t *testing.T, b []byte, lines bool) {
		p, err := ParseFolded(b, k, lines, 0, 0)
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || le.Line < 1 {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		// Every sample points at existing locations, and the result marshals
		// and unmarshals.
		ids := map[uint64]bool{}
		for _, l := range p.Location {
			ids[l.Id] = true
		}
		for _, s := range p.Sample {
			if len(s.LocationId) == 0 || len(s.Value) != 1 {
				t.Fatalf("bad sample %v", s)
			}
			for _, id := range s.LocationId {
				if !ids[id] {
					t.Fatalf("dangling location %d", id)
				}
			}
		}
		out, err := p.MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		var q googlev1.Profile
		if err := q.UnmarshalVT(out); err != nil {
			t.Fatal(err)
		}
	})
}
