package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"

	"github.com/hearth-dev/hearth/ingester/ingest/trie"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// ingestBody posts one /ingest request and returns the status and answer.
func ingestBody(t *testing.T, url, query, contentType string, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(url+"/ingest?"+query, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// mergedStacks is the merged profile of a type and selector over the last
// hour, folded root first: "a;b;c" -> value.
func mergedStacks(t *testing.T, q querierv1connect.QuerierServiceClient, typeID, selector string) map[string]int64 {
	t.Helper()
	now := time.Now()
	//lint:ignore SA1019 querier.v1 serves it: Grafana and profilecli call it
	resp, err := q.SelectMergeProfile(context.Background(), connect.NewRequest(&querierv1.SelectMergeProfileRequest{
		ProfileTypeID: typeID, LabelSelector: selector,
		Start: now.Add(-time.Hour).UnixMilli(), End: now.Add(time.Minute).UnixMilli(),
	}))
	if err != nil {
		t.Fatalf("%s %s: %v", typeID, selector, err)
	}
	return foldProfile(resp.Msg)
}

func foldProfile(p *googlev1.Profile) map[string]int64 {
	fn := map[uint64]string{}
	for _, f := range p.Function {
		fn[f.Id] = p.StringTable[f.Name]
	}
	loc := map[uint64]string{}
	for _, l := range p.Location {
		var names []string
		for i := len(l.Line) - 1; i >= 0; i-- {
			names = append(names, fn[l.Line[i].FunctionId])
		}
		loc[l.Id] = strings.Join(names, ";")
	}
	out := map[string]int64{}
	for _, s := range p.Sample {
		fs := make([]string, len(s.LocationId))
		for i, id := range s.LocationId {
			fs[len(fs)-1-i] = loc[id]
		}
		if s.Value[0] != 0 {
			out[strings.Join(fs, ";")] += s.Value[0]
		}
	}
	return out
}

const formatsSpeedscope = `{"$schema": "https://www.speedscope.app/file-format-schema.json",
  "shared": {"frames": [{"name": "main"}, {"name": "read"}, {"name": "parse"}]},
  "profiles": [
    {"type": "sampled", "name": "reader", "unit": "milliseconds", "startValue": 0, "endValue": 40,
     "samples": [[0, 1], [0, 1, 2], [0]], "weights": [12.5, 20, 7.25]},
    {"type": "evented", "name": "parser", "unit": "seconds", "startValue": 0, "endValue": 6,
     "events": [{"type": "O", "frame": 0, "at": 0}, {"type": "O", "frame": 2, "at": 1}, {"type": "C", "frame": 2, "at": 4.5}, {"type": "C", "frame": 0, "at": 6}]}]}`

// TestIngestFormats pushes speedscope (several profiles and one), trie and
// tree bodies through /ingest to a real ingester process, then reads the
// merged profiles back: exact totals per stack, refusals with Pyroscope's
// status codes, and nothing stored for a refused body.
func TestIngestFormats(t *testing.T) {
	p := testutil.StartIngester(t, testutil.FreePort(t), "-data-dir="+t.TempDir(), "-log.level=warn")
	q := querierv1connect.NewQuerierServiceClient(http.DefaultClient, p.URL)
	now := time.Now().Unix()
	when := "&from=" + strconv.FormatInt(now-10, 10) + "&until=" + strconv.FormatInt(now, 10)

	// Two speedscope profiles: two series of wall time, by profile_name.
	if code, body := ingestBody(t, p.URL, "name=pyapp{env=test}&format=speedscope"+when, "application/json", []byte(formatsSpeedscope)); code != 200 {
		t.Fatalf("speedscope: %d %s", code, body)
	}
	wall := "wall:wall:nanoseconds:cpu:nanoseconds"
	if got, want := mergedStacks(t, q, wall, `{service_name="pyapp",profile_name="reader"}`), map[string]int64{"main;read": 12500000, "main;read;parse": 20000000, "main": 7250000}; !reflect.DeepEqual(got, want) {
		t.Errorf("speedscope reader: got %v, want %v", got, want)
	}
	if got, want := mergedStacks(t, q, wall, `{service_name="pyapp",profile_name="parser",env="test"}`), map[string]int64{"main": 2500000000, "main;parse": 3500000000}; !reflect.DeepEqual(got, want) {
		t.Errorf("speedscope parser: got %v, want %v", got, want)
	}
	// A file with one profile is CPU time.
	single := `{"$schema": "https://www.speedscope.app/file-format-schema.json", "shared": {"frames": [{"name": "main"}, {"name": "work"}]},
	  "profiles": [{"type": "sampled", "name": "", "unit": "seconds", "startValue": 0, "endValue": 3, "samples": [[0, 1], [0, 1]], "weights": [1, 2]}]}`
	if code, body := ingestBody(t, p.URL, "name=rbapp&format=speedscope"+when, "", []byte(single)); code != 200 {
		t.Fatalf("speedscope single: %d %s", code, body)
	}
	if got, want := mergedStacks(t, q, "process_cpu:cpu:nanoseconds:cpu:nanoseconds", `{service_name="rbapp"}`), map[string]int64{"main;work": 3e9}; !reflect.DeepEqual(got, want) {
		t.Errorf("speedscope single: got %v, want %v", got, want)
	}

	// trie and tree (by parameter and by content type): the same stacks
	// give the same profile as folded text does.
	stacks := map[string]uint64{"main;handle;read": 30, "main;handle": 5, "main;gc": 2}
	// Pyroscope's kinds: CPU samples at the default 100 Hz are 10 ms each,
	// and service_name drops the .cpu suffix.
	foldedType := "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
	want := map[string]int64{"main;handle;read": 30e7, "main;handle": 5e7, "main;gc": 2e7}
	for _, c := range []struct{ app, query, ct string }{
		{"trie-param", "&format=trie", ""},
		{"trie-ct", "", "binary/octet-stream+trie"},
		{"tree-param", "&format=tree", ""},
		{"tree-ct", "", "binary/octet-stream+tree"},
	} {
		body := trie.EncodeTrie(stacks)
		if strings.HasPrefix(c.app, "tree") {
			body = trie.EncodeTree(stacks)
		}
		if code, msg := ingestBody(t, p.URL, "name="+c.app+".cpu"+c.query+when, c.ct, body); code != 200 {
			t.Fatalf("%s: %d %s", c.app, code, msg)
		}
		if got := mergedStacks(t, q, foldedType, `{service_name="`+c.app+`"}`); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, want %v", c.app, got, want)
		}
	}

	// Refused bodies: 422 as Pyroscope answers, and nothing stored.
	for _, c := range []struct {
		name, query, ct string
		body            []byte
	}{
		{"bad-speedscope", "&format=speedscope", "application/json", []byte(`{"$schema": "x"}`)},
		{"bad-speedscope-events", "&format=speedscope", "application/json", []byte(strings.Replace(formatsSpeedscope, `"at": 4.5`, `"at": 0.5`, 1))},
		{"bad-trie", "&format=trie", "", []byte{0, 0, 1, 9, 'a'}},
		{"bad-tree", "", "binary/octet-stream+tree", trie.AppendNode(nil, "", 0, 3)},
	} {
		if code, msg := ingestBody(t, p.URL, "name="+c.name+c.query+when, c.ct, c.body); code != http.StatusUnprocessableEntity {
			t.Errorf("%s: %d %s, want 422", c.name, code, msg)
		}
	}
	for _, typ := range []string{wall, foldedType} {
		for _, app := range []string{"bad-speedscope", "bad-speedscope-events", "bad-trie", "bad-tree"} {
			if got := mergedStacks(t, q, typ, `{service_name="`+app+`"}`); len(got) != 0 {
				t.Errorf("%s stored %v", app, got)
			}
		}
	}
}

// pyroscopeFile reads a file of Pyroscope v1.18.0 from HEARTH_PYROSCOPE_REPO
// (a bare mirror or a checkout).
func pyroscopeFile(t *testing.T, repo, path string) []byte {
	t.Helper()
	if b, err := exec.Command("git", "-C", repo, "show", "v1.18.0:"+path).Output(); err == nil {
		return b
	}
	b, err := os.ReadFile(filepath.Join(repo, path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestIngestPyroscopeSpeedscope runs the speedscope files of Pyroscope's
// repository through a real ingester: the profile types its integration
// test expects, and the stacks its converter test expects (in nanoseconds:
// Pyroscope's values times its period).
func TestIngestPyroscopeSpeedscope(t *testing.T) {
	repo := os.Getenv("HEARTH_PYROSCOPE_REPO")
	if repo == "" {
		t.Skip("Pyroscope's speedscope testdata: HEARTH_PYROSCOPE_REPO unset")
	}
	dir := "pkg/og/convert/speedscope/testdata/"
	p := testutil.StartIngester(t, testutil.FreePort(t), "-data-dir="+t.TempDir(), "-log.level=warn")
	q := querierv1connect.NewQuerierServiceClient(http.DefaultClient, p.URL)
	// Pyroscope's converter test expects a;b 500, a;b;c 500, a;b;d 400 in
	// hundredths of the file's unit; the stored values are that times the
	// period Pyroscope derives (1e5 ns for "none", 1e7 ns for seconds), or
	// whole bytes.
	abcd := func(num, den int64) map[string]int64 {
		return map[string]int64{"a;b": 500 * num / den, "a;b;c": 500 * num / den, "a;b;d": 400 * num / den}
	}
	for i, c := range []struct {
		file, typeID string
		names        []string // profile_name of each series
		want         map[string]int64
	}{
		{"simple.speedscope.json", "process_cpu:cpu:nanoseconds:cpu:nanoseconds", []string{"simple.txt"}, abcd(1e5, 1)},
		{"two-sampled.speedscope.json", "wall:wall:nanoseconds:cpu:nanoseconds", []string{"one", "two"}, abcd(1e7, 1)},
		{"two-sampled-bytes.speedscope.json", "memory:samples:bytes::", []string{"one", "two"}, abcd(1, 100)},
		{"duplicates.speedscope.json", "process_cpu:cpu:nanoseconds:cpu:nanoseconds", []string{"one"}, abcd(3e7, 1)},
	} {
		app := fmt.Sprintf("pyro%d", i)
		if code, body := ingestBody(t, p.URL, "name="+app+"{x=y}&format=speedscope", "", pyroscopeFile(t, repo, dir+c.file)); code != 200 {
			t.Fatalf("%s: %d %s", c.file, code, body)
		}
		for _, name := range c.names {
			sel := `{service_name="` + app + `",profile_name="` + name + `",x="y"}`
			if got := mergedStacks(t, q, c.typeID, sel); !reflect.DeepEqual(got, c.want) {
				t.Errorf("%s %s: got %v, want %v", c.file, name, got, c.want)
			}
		}
	}
}

// TestIngestFormatsRing pushes each format to one ingester of a 3-ingester
// ring and reads it from another, before and after every ingester cuts its
// head into blocks: each profile is counted once although three replicas
// (and then their blocks) hold it.
func TestIngestFormatsRing(t *testing.T) {
	c := startCluster(t, 3)
	now := time.Now().Unix()
	when := "&from=" + strconv.FormatInt(now-10, 10) + "&until=" + strconv.FormatInt(now, 10)
	stacks := map[string]uint64{"main;handle;read": 30, "main;gc": 2}
	pushes := []struct {
		app, query string
		body       []byte
	}{
		{"ring-speedscope", "&format=speedscope", []byte(formatsSpeedscope)},
		{"ring-trie.cpu", "&format=trie", trie.EncodeTrie(stacks)},
		{"ring-tree.cpu", "&format=tree", trie.EncodeTree(stacks)},
	}
	for _, p := range pushes {
		if code, body := ingestBody(t, c.url(0), "name="+p.app+p.query+when, "", p.body); code != 200 {
			t.Fatalf("%s: %d %s", p.app, code, body)
		}
	}
	check := func(stage string) {
		q := querierv1connect.NewQuerierServiceClient(http.DefaultClient, c.url(1))
		folded := map[string]int64{"main;handle;read": 30e7, "main;gc": 2e7}
		for _, app := range []string{"ring-trie", "ring-tree"} {
			if got := mergedStacks(t, q, "process_cpu:cpu:nanoseconds:cpu:nanoseconds", `{service_name="`+app+`"}`); !reflect.DeepEqual(got, folded) {
				t.Errorf("%s %s: got %v, want %v", stage, app, got, folded)
			}
		}
		want := map[string]int64{"main": 2500000000, "main;parse": 3500000000}
		if got := mergedStacks(t, q, "wall:wall:nanoseconds:cpu:nanoseconds", `{service_name="ring-speedscope",profile_name="parser"}`); !reflect.DeepEqual(got, want) {
			t.Errorf("%s speedscope: got %v, want %v", stage, got, want)
		}
	}
	check("in the heads")
	for i := range c.nodes {
		flush(t, c.nodes[i].proc.InternalURL)
	}
	check("after the cut")
}
