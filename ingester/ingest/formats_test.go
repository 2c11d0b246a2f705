package ingest

import (
	"bytes"
	"mime/multipart"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/ingester/ingest/trie"
)

const speedscopeTwo = `{"$schema": "https://www.speedscope.app/file-format-schema.json",
  "shared": {"frames": [{"name": "main"}, {"name": "work"}]},
  "profiles": [
    {"type": "sampled", "name": "thread 1", "unit": "seconds", "startValue": 0, "endValue": 3, "samples": [[0, 1], [0]], "weights": [2, 1]},
    {"type": "evented", "name": "thread 2", "unit": "milliseconds", "startValue": 0, "endValue": 5,
     "events": [{"type": "O", "frame": 0, "at": 0}, {"type": "O", "frame": 1, "at": 1}, {"type": "C", "frame": 1, "at": 4}, {"type": "C", "frame": 0, "at": 5}]}]}`

func parse(t *testing.T, target, contentType string, body []byte) (*Request, error) {
	t.Helper()
	req := httptest.NewRequest("POST", target, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return ParseRequest(req, Limits{}, time.Unix(1700000000, 0))
}

func TestSpeedscopeRequest(t *testing.T) {
	mp := &bytes.Buffer{}
	w := multipart.NewWriter(mp)
	fw, _ := w.CreateFormFile("profile", "profile.json")
	_, _ = fw.Write([]byte(speedscopeTwo))
	_ = w.Close()
	for name, c := range map[string]struct {
		ct   string
		body []byte
	}{
		"raw":       {"application/json", []byte(speedscopeTwo)},
		"gzip":      {"", gz([]byte(speedscopeTwo))},
		"multipart": {w.FormDataContentType(), mp.Bytes()},
	} {
		r, err := parse(t, "/ingest?name=shop{env=prod}&format=speedscope&from=1700000000&until=1700000010", c.ct, c.body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Format != FormatSpeedscope || len(r.Profiles) != 2 {
			t.Fatalf("%s: format %q, %d profiles", name, r.Format, len(r.Profiles))
		}
		want := [][]LabelPair{
			{{"__name__", "wall"}, {"profile_name", "thread 1"}},
			{{"__name__", "wall"}, {"profile_name", "thread 2"}},
		}
		wantStacks := []map[string]int64{{"work;main": 2e9, "main": 1e9}, {"work;main": 3e6, "main": 2e6}}
		for i, d := range r.Profiles {
			if !reflect.DeepEqual(d.Labels, want[i]) {
				t.Errorf("%s: profile %d labels %v", name, i, d.Labels)
			}
			if got := stacks(d.Profile); !reflect.DeepEqual(got, wantStacks[i]) {
				t.Errorf("%s: profile %d stacks %v", name, i, got)
			}
			if d.Profile.TimeNanos != 1700000000e9 || d.Profile.DurationNanos != 10e9 {
				t.Errorf("%s: time %d duration %d", name, d.Profile.TimeNanos, d.Profile.DurationNanos)
			}
		}
	}
}

func TestTrieAndTreeRequests(t *testing.T) {
	folded := "main;work 30\nmain;idle 5\ngc 2\n"
	want, err := parse(t, "/ingest?name=shop.cpu&format=folded", "", []byte(folded))
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]uint64{"main;work": 30, "main;idle": 5, "gc": 2}
	for _, c := range []struct {
		name, query, ct string
		body            []byte
		format          Format
	}{
		{"trie", "&format=trie", "", trie.EncodeTrie(in), FormatTrie},
		{"tree", "&format=tree", "", trie.EncodeTree(in), FormatTree},
		{"trie by content type", "", "binary/octet-stream+trie", trie.EncodeTrie(in), FormatTrie},
		{"tree by content type", "", "binary/octet-stream+tree", trie.EncodeTree(in), FormatTree},
		// As in Pyroscope, the trie content type wins over the parameter.
		{"trie content type over format", "&format=tree", "binary/octet-stream+trie", trie.EncodeTrie(in), FormatTrie},
		{"gzipped trie", "&format=trie", "", gz(trie.EncodeTrie(in)), FormatTrie},
	} {
		r, err := parse(t, "/ingest?name=shop.cpu"+c.query, c.ct, c.body)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if r.Format != c.format || len(r.Profiles) != 1 {
			t.Fatalf("%s: format %q, %d profiles", c.name, r.Format, len(r.Profiles))
		}
		// The same stacks give the same profile as folded text.
		got, exp := r.Profiles[0], want.Profiles[0]
		if !reflect.DeepEqual(got.Labels, exp.Labels) || !reflect.DeepEqual(stacks(got.Profile), stacks(exp.Profile)) ||
			!reflect.DeepEqual(got.Profile.SampleType, exp.Profile.SampleType) || got.Profile.Period != exp.Profile.Period {
			t.Fatalf("%s: got %v %v, want %v %v", c.name, got.Labels, stacks(got.Profile), exp.Labels, stacks(exp.Profile))
		}
	}
}

func TestFormatsRefused(t *testing.T) {
	long := trie.AppendNode(nil, "", 0, 1)
	for i := 0; i < 100; i++ { // a chain: each node's key repeats all above it
		long = trie.AppendNode(long, strings.Repeat("x", 40000), 1, 1)
	}
	for _, c := range []struct {
		name, target string
		body         []byte
		msg          string
		status       int
	}{
		{"speedscope not JSON", "/ingest?name=a&format=speedscope", []byte("a;b 1"), "speedscope profile: invalid speedscope JSON", 422},
		{"speedscope schema", "/ingest?name=a&format=speedscope", []byte(`{"profiles": []}`), "unknown $schema", 422},
		{"speedscope bad unit", "/ingest?name=a&format=speedscope", []byte(strings.Replace(speedscopeTwo, `"seconds"`, `"ticks"`, 1)), `unknown unit "ticks"`, 422},
		{"trie truncated", "/ingest?name=a&format=trie", []byte{0, 0, 1, 5, 'a'}, "trie profile: at byte 3", 422},
		{"tree truncated", "/ingest?name=a&format=tree", trie.AppendNode(nil, "", 0, 1), "tree profile: at byte 3: the data ends", 422},
		{"trie too large", "/ingest?name=a&format=trie", long, "add up to more than", 422},
		{"trie huge value", "/ingest?name=a&format=trie", trie.AppendNode(trie.AppendNode(nil, "", 0, 1), "a", 1<<63, 0), "more than 9223372036854775807", 422},
		{"trie sum overflows", "/ingest?name=a.alloc_objects&format=trie", trie.AppendNode(trie.AppendNode(trie.AppendNode(nil, "", 0, 2), "a", 1<<62, 0), "a", 1<<62+1<<61, 0), "add up to more than", 400},
		{"trie invalid UTF-8", "/ingest?name=a&format=trie", trie.AppendNode(trie.AppendNode(nil, "", 0, 1), "a\xff", 1, 0), "not valid UTF-8", 400},
		{"tree empty frame", "/ingest?name=a&format=tree", trie.EncodeTree(map[string]uint64{"a;;b": 1}), "empty frame", 400},
	} {
		_, err := parse(t, c.target, "", c.body)
		if err == nil || !strings.Contains(err.Error(), c.msg) || StatusCode(err) != c.status {
			t.Errorf("%s: got %v (status %d), want %q with %d", c.name, err, StatusCode(err), c.msg, c.status)
		}
	}
}

func TestSpeedscopeWithoutProfiles(t *testing.T) {
	r, err := parse(t, "/ingest?name=a&format=speedscope", "", []byte(`{"$schema": "https://www.speedscope.app/file-format-schema.json"}`))
	if err != nil || r.Profiles == nil || len(r.Profiles) != 0 {
		t.Fatalf("%v %v", err, r)
	}
}

func TestParseFormatNewFormats(t *testing.T) {
	for in, want := range map[string]Format{"speedscope": FormatSpeedscope, "Trie": FormatTrie, " tree ": FormatTree} {
		if f, err := ParseFormat(in); err != nil || f != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, f, err)
		}
	}
	if got := strings.Join(SupportedFormats, ","); !strings.Contains(got, "speedscope,trie,tree") {
		t.Errorf("SupportedFormats %s", got)
	}
}

// benchStacks are n folded stacks of depth 8-20 over 300 frame names.
func benchStacks(n int) map[string]uint64 {
	out := map[string]uint64{}
	for i := 0; i < n; i++ {
		depth := 8 + i%13
		fs := make([]string, depth)
		for d := range fs {
			fs[d] = "pkg/module.function_" + strconv.Itoa((d*37+i*(d+3))%300)
		}
		out[strings.Join(fs, ";")] += uint64(1 + i%17)
	}
	return out
}

// BenchmarkSetTrie and BenchmarkSetTree measure a body's conversion into
// the pprof profile the push path stores (read, fold, build).
func BenchmarkSetTrie(b *testing.B) { benchSet(b, FormatTrie, trie.EncodeTrie(benchStacks(5000))) }
func BenchmarkSetTree(b *testing.B) { benchSet(b, FormatTree, trie.EncodeTree(benchStacks(5000))) }

func benchSet(b *testing.B, f Format, body []byte) {
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r := &Request{AppName: "app.cpu", SampleRate: 100, Format: f}
		if err := r.SetBody(body, nil, 0); err != nil || len(r.Profiles[0].Profile.Sample) == 0 {
			b.Fatal(err)
		}
	}
}
