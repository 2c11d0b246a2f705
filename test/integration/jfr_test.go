package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/cespare/xxhash/v2"
	jfrpprof "github.com/grafana/jfr-parser/pprof"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/internal/testutil"
)

// jfrStacks are per-stack totals by profile type id, the stack root first.
type jfrStacks map[string]map[string]int64

// collapseJFR adds a profile's per-stack totals for each sample type, keeping
// only the samples keep accepts (nil: all).
func collapseJFR(name string, p *googlev1.Profile, keep func(*googlev1.Sample) bool, into jfrStacks) {
	str := func(i int64) string { return p.StringTable[i] }
	var pt, pu string
	if p.PeriodType != nil {
		pt, pu = str(p.PeriodType.Type), str(p.PeriodType.Unit)
	}
	locs := map[uint64]*googlev1.Location{}
	for _, l := range p.Location {
		locs[l.Id] = l
	}
	funcs := map[uint64]string{}
	for _, f := range p.Function {
		funcs[f.Id] = str(f.Name)
	}
	for _, s := range p.Sample {
		if keep != nil && !keep(s) {
			continue
		}
		var frames []string
		for i := len(s.LocationId) - 1; i >= 0; i-- {
			l := locs[s.LocationId[i]]
			for j := len(l.Line) - 1; j >= 0; j-- {
				frames = append(frames, funcs[l.Line[j].FunctionId])
			}
		}
		stack := strings.Join(frames, ";")
		for i, st := range p.SampleType {
			if s.Value[i] == 0 {
				continue
			}
			id := strings.Join([]string{name, str(st.Type), str(st.Unit), pt, pu}, ":")
			if into[id] == nil {
				into[id] = map[string]int64{}
			}
			into[id][stack] += s.Value[i]
		}
	}
}

// jfrParserStacks is jfr-parser's own conversion of a recording (what
// Pyroscope stores), per profile type; keep filters samples.
func jfrParserStacks(t *testing.T, recording, labels []byte, keep func(p *googlev1.Profile, s *googlev1.Sample) bool) jfrStacks {
	t.Helper()
	snap := new(jfrpprof.LabelsSnapshot)
	if len(labels) > 0 {
		if err := snap.UnmarshalVT(labels); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	res, err := jfrpprof.ParseJFR(recording, &jfrpprof.ParseInput{StartTime: now, EndTime: now, SampleRate: 100}, snap)
	if err != nil {
		t.Fatal(err)
	}
	out := jfrStacks{}
	for _, p := range res.Profiles {
		var k func(*googlev1.Sample) bool
		if keep != nil {
			k = func(s *googlev1.Sample) bool { return keep(p.Profile, s) }
		}
		collapseJFR(p.Metric, p.Profile, k, out)
	}
	return out
}

// mergedStacks asks the ingester's querier for the merged profile of a type.
func mergedJFRStacks(t *testing.T, q querierv1connect.QuerierServiceClient, typeID, selector string) map[string]int64 {
	t.Helper()
	now := time.Now()
	//lint:ignore SA1019 querier.v1 serves it: Grafana and profilecli call it
	resp, err := q.SelectMergeProfile(context.Background(), connect.NewRequest(&querierv1.SelectMergeProfileRequest{
		ProfileTypeID: typeID, LabelSelector: selector,
		Start: now.Add(-23 * time.Hour).UnixMilli(), End: now.Add(time.Hour).UnixMilli(),
	}))
	if err != nil {
		t.Fatalf("SelectMergeProfile %s %s: %v", typeID, selector, err)
	}
	if n := len(resp.Msg.SampleType); n != 1 {
		t.Fatalf("merged profile of %s has %d sample types, want 1", typeID, n)
	}
	got := jfrStacks{}
	name := strings.SplitN(typeID, ":", 2)[0]
	collapseJFR(name, resp.Msg, nil, got)
	for _, m := range got { // one type: whatever id its period gives
		return m
	}
	return map[string]int64{}
}

func sameStacks(t *testing.T, what string, got, want map[string]int64) {
	t.Helper()
	if len(want) == 0 {
		t.Errorf("%s: the reference has no stack", what)
		return
	}
	var diffs []string
	for st, w := range want {
		if g := got[st]; g != w {
			diffs = append(diffs, fmt.Sprintf("got %d, want %d: ...%s", g, w, tail(st)))
		}
	}
	for st, g := range got {
		if _, ok := want[st]; !ok {
			diffs = append(diffs, fmt.Sprintf("got %d, want none: ...%s", g, tail(st)))
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		t.Errorf("%s: %d of %d stacks differ, e.g.\n%s", what, len(diffs), len(want), strings.Join(diffs[:min(5, len(diffs))], "\n"))
	}
}

func tail(s string) string { return s[max(0, len(s)-120):] }

// postJFR sends a recording as the Pyroscope Java agent does: multipart with
// the parts jfr and (when given) labels.
func postJFR(t *testing.T, base, query string, recording, labels []byte) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	fw, _ := w.CreateFormFile("jfr", "jfr")
	_, _ = fw.Write(recording)
	if labels != nil {
		lw, _ := w.CreateFormFile("labels", "labels")
		_, _ = lw.Write(labels)
	}
	_ = w.Close()
	resp, err := http.Post(base+"/ingest?"+query, w.FormDataContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func gunzipFile(t *testing.T, file string) []byte {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte{0x1f, 0x8b}) {
		return raw
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

// recordWorkload records ingest/jfr's Workload.java on this machine's JVM
// with the profile settings and allocation events.
func recordWorkload(t *testing.T) []byte {
	t.Helper()
	java, err := exec.LookPath("java")
	if err != nil {
		t.Skip("java not found: no JVM to record")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "workload.jfr")
	src := filepath.Join(testutil.RepoRoot(), "ingester", "ingest", "jfr", "testdata", "Workload.java")
	cmd := exec.Command(java, "-XX:StartFlightRecording=filename="+file+",settings=profile,gc=high", src, "2")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("java: %v\n%s", err, out)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func startJFRIngester(t *testing.T) (*testutil.Process, querierv1connect.QuerierServiceClient) {
	t.Helper()
	p := testutil.StartIngester(t, testutil.FreePort(t), "-data-dir="+t.TempDir(), "-limits.reject-older-than=0")
	return p, querierv1connect.NewQuerierServiceClient(http.DefaultClient, p.URL)
}

// TestJFRIngestMatchesJFRParser pushes recordings from a real JVM through
// /ingest?format=jfr to a real ingester and checks that every profile type
// merged back from it equals jfr-parser's own conversion of the file, stack
// for stack; that the series carry Pyroscope's labels; and that a corrupt
// recording is refused with 422 and stores nothing.
func TestJFRIngestMatchesJFRParser(t *testing.T) {
	committed := gunzipFile(t, filepath.Join(testutil.RepoRoot(), "ingester", "ingest", "jfr", "testdata", "workload.jfr.gz"))
	proc, q := startJFRIngester(t)
	for _, tc := range []struct {
		name      string
		recording func(t *testing.T) []byte
	}{
		{"committed", func(*testing.T) []byte { return committed }},
		{"fresh", recordWorkload},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := tc.recording(t)
			app := "jfr-" + tc.name
			now := time.Now().Unix()
			query := "name=" + url.QueryEscape(app+"{env=test}") + "&format=jfr&spyName=javaspy&sampleRate=100" +
				"&from=" + strconv.FormatInt(now-10, 10) + "&until=" + strconv.FormatInt(now, 10)
			if code, body := postJFR(t, proc.URL, query, gzipped(rec), nil); code != http.StatusOK {
				t.Fatalf("POST /ingest: %d %s", code, body)
			}
			want := jfrParserStacks(t, rec, nil, nil)
			if len(want) < 11 {
				t.Fatalf("jfr-parser gives %d profile types, want the 11 of a HotSpot recording", len(want))
			}
			for id, w := range want {
				sameStacks(t, id, mergedJFRStacks(t, q, id, fmt.Sprintf(`{service_name=%q, env="test"}`, app)), w)
			}
			checkJFRLabels(t, q, app, len(want))
		})
	}

	// A corrupt recording: 422 as Pyroscope, and nothing stored.
	corrupt := bytes.Clone(committed)
	corrupt[0] = 0
	if code, body := postJFR(t, proc.URL, "name=jfr-corrupt&format=jfr", corrupt, nil); code != http.StatusUnprocessableEntity {
		t.Fatalf("corrupt recording: %d %s, want 422", code, body)
	}
	if got := seriesOf(t, q, `{service_name="jfr-corrupt"}`); len(got) != 0 {
		t.Fatalf("a refused recording stored series %v", got)
	}
}

func seriesOf(t *testing.T, q querierv1connect.QuerierServiceClient, selector string) []*typesv1.Labels {
	t.Helper()
	now := time.Now()
	resp, err := q.Series(context.Background(), connect.NewRequest(&querierv1.SeriesRequest{
		Matchers: []string{selector}, Start: now.Add(-23 * time.Hour).UnixMilli(), End: now.Add(time.Hour).UnixMilli(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg.LabelsSet
}

// checkJFRLabels: each series of a JFR push carries the labels Pyroscope
// gives it.
func checkJFRLabels(t *testing.T, q querierv1connect.QuerierServiceClient, app string, types int) {
	t.Helper()
	series := seriesOf(t, q, fmt.Sprintf(`{service_name=%q}`, app))
	if len(series) != types {
		t.Errorf("%d series, want one per profile type (%d)", len(series), types)
	}
	for _, s := range series {
		m := map[string]string{}
		for _, l := range s.Labels {
			m[l.Name] = l.Value
		}
		if m["pyroscope_spy"] != "javaspy" || m["env"] != "test" || m["__name__"] == "" {
			t.Errorf("series labels %v: want pyroscope_spy=javaspy, env=test, __name__", m)
		}
		if _, ok := m["__delta__"]; ok {
			t.Errorf("series labels %v carry __delta__", m)
		}
	}
}

// TestJFRIngestLabelsSnapshot pushes a recording of the Pyroscope Java agent
// with its labels snapshot (jfr-parser's testdata) and checks each thread's
// series against jfr-parser's conversion of that thread's samples.
func TestJFRIngestLabelsSnapshot(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/grafana/jfr-parser").Output()
	dir := filepath.Join(strings.TrimSpace(string(out)), "parser", "testdata")
	if _, serr := os.Stat(filepath.Join(dir, "dump1.jfr.gz")); err != nil || serr != nil {
		t.Skip("github.com/grafana/jfr-parser's testdata not in the module cache")
	}
	recGz, err := os.ReadFile(filepath.Join(dir, "dump1.jfr.gz"))
	if err != nil {
		t.Fatal(err)
	}
	labelsGz, err := os.ReadFile(filepath.Join(dir, "dump1.labels.pb.gz"))
	if err != nil {
		t.Fatal(err)
	}
	proc, q := startJFRIngester(t)
	if code, body := postJFR(t, proc.URL, "name=jfr-labels&format=jfr&spyName=javaspy", recGz, labelsGz); code != http.StatusOK {
		t.Fatalf("POST /ingest: %d %s", code, body)
	}
	rec, labels := gunzipFile(t, filepath.Join(dir, "dump1.jfr.gz")), gunzipFile(t, filepath.Join(dir, "dump1.labels.pb.gz"))
	const cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
	sameStacks(t, "all threads", mergedJFRStacks(t, q, cpu, `{service_name="jfr-labels"}`), jfrParserStacks(t, rec, labels, nil)[cpu])
	for _, thread := range []string{"pool-2-thread-1", "pool-2-thread-3", "pool-2-thread-5", "pool-2-thread-7"} {
		want := jfrParserStacks(t, rec, labels, func(p *googlev1.Profile, s *googlev1.Sample) bool {
			for _, l := range s.Label {
				if p.StringTable[l.Key] == "thread_name" {
					return p.StringTable[l.Str] == thread
				}
			}
			return false
		})[cpu]
		if len(want) == 0 {
			t.Fatalf("jfr-parser labels no sample thread_name=%s", thread)
		}
		sameStacks(t, thread, mergedJFRStacks(t, q, cpu, fmt.Sprintf(`{service_name="jfr-labels", thread_name=%q}`, thread)), want)
	}
}

// pyroscopeJFRGoldens is Pyroscope v1.18's JFR ingestion table
// (pkg/test/integration/ingest_jfr_test.go): recordings in
// pkg/og/convert/jfr/testdata, the profile types and label selections it
// queries, each with a golden merged profile.
var pyroscopeJFRGoldens = []struct {
	jfr, labels string
	types       []string
	threads     []string // thread_name selections besides the whole service
}{
	{jfr: "cortex-dev-01__kafka-0__cpu__0", types: []string{"process_cpu:cpu:nanoseconds:cpu:nanoseconds"}},
	{jfr: "cortex-dev-01__kafka-0__cpu__1", types: []string{"process_cpu:cpu:nanoseconds:cpu:nanoseconds"}},
	{jfr: "cortex-dev-01__kafka-0__cpu__2", types: []string{"process_cpu:cpu:nanoseconds:cpu:nanoseconds"}},
	{jfr: "cortex-dev-01__kafka-0__cpu__3", types: []string{"process_cpu:cpu:nanoseconds:cpu:nanoseconds"}},
	{jfr: "cortex-dev-01__kafka-0__cpu_lock_alloc__0", types: jfrCPUAlloc},
	{jfr: "cortex-dev-01__kafka-0__cpu_lock_alloc__1", types: jfrCPUAlloc},
	{jfr: "cortex-dev-01__kafka-0__cpu_lock_alloc__2", types: jfrCPUAlloc},
	{jfr: "cortex-dev-01__kafka-0__cpu_lock_alloc__3", types: jfrCPUAlloc},
	{jfr: "cortex-dev-01__kafka-0__cpu_lock0_alloc0__0", types: append(slices.Clone(jfrCPUAlloc),
		"memory:alloc_outside_tlab_objects:count:space:bytes", "memory:alloc_outside_tlab_bytes:bytes:space:bytes",
		"mutex:contentions:count:mutex:count", "mutex:delay:nanoseconds:mutex:count",
		"block:contentions:count:block:count", "block:delay:nanoseconds:block:count")},
	{jfr: "dump1", labels: "dump1.labels.pb.gz", types: []string{"process_cpu:cpu:nanoseconds:cpu:nanoseconds"},
		threads: []string{"pool-2-thread-7", "pool-2-thread-3", "pool-2-thread-5", "pool-2-thread-1"}},
	{jfr: "dump2", labels: "dump2.labels.pb.gz", types: []string{"wall:wall:nanoseconds:wall:nanoseconds", "process_cpu:cpu:nanoseconds:cpu:nanoseconds"},
		threads: []string{"pool-2-thread-1", "pool-2-thread-2", "pool-2-thread-3", "pool-2-thread-4", "pool-2-thread-5", "pool-2-thread-6", "pool-2-thread-7", "pool-2-thread-8"}},
	{jfr: "dump2", labels: "dump2.labels.pb.gz", types: []string{"memory:alloc_in_new_tlab_objects:count:space:bytes", "memory:alloc_in_new_tlab_bytes:bytes:space:bytes", "memory:live:count:objects:count"}},
}

var jfrCPUAlloc = []string{"process_cpu:cpu:nanoseconds:cpu:nanoseconds",
	"memory:alloc_in_new_tlab_objects:count:space:bytes", "memory:alloc_in_new_tlab_bytes:bytes:space:bytes"}

// pyroscopeLabelsHash is Pyroscope's series hash of a label set (sorted), as
// its golden file names carry it: xxhash of name, 0xff, value, 0xff, ...
func pyroscopeLabelsHash(pairs ...string) uint64 {
	var b []byte
	for i := 0; i+1 < len(pairs); i += 2 {
		b = append(append(append(append(b, pairs[i]...), 0xff), pairs[i+1]...), 0xff)
	}
	return xxhash.Sum64(b)
}

// TestJFRPyroscopeGoldens pushes Pyroscope v1.18's JFR test recordings as
// its integration suite does (multipart, the files as they are) and compares
// each merged profile with Pyroscope's golden one, stack for stack. It reads
// them from the Pyroscope repository named by HEARTH_PYROSCOPE_REPO (a git
// directory; the files are not ours to commit). A corrupt recording must
// get 422.
func TestJFRPyroscopeGoldens(t *testing.T) {
	repo := os.Getenv("HEARTH_PYROSCOPE_REPO")
	if repo == "" {
		t.Skip("HEARTH_PYROSCOPE_REPO unset")
	}
	dir := t.TempDir()
	show := func(name string) string {
		t.Helper()
		out, err := exec.Command("git", "-C", repo, "show", "v1.18.0:pkg/og/convert/jfr/testdata/"+name).Output()
		if err != nil {
			t.Fatalf("git show %s: %v", name, err)
		}
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	proc, q := startJFRIngester(t)
	for i, g := range pyroscopeJFRGoldens {
		t.Run(g.jfr+"/"+strconv.Itoa(i), func(t *testing.T) {
			rec, err := os.ReadFile(show(g.jfr + ".jfr.gz"))
			if err != nil {
				t.Fatal(err)
			}
			var labels []byte
			if g.labels != "" {
				if labels, err = os.ReadFile(show(g.labels)); err != nil {
					t.Fatal(err)
				}
			}
			app := fmt.Sprintf("pyroscope-golden-%d", i)
			if code, body := postJFR(t, proc.URL, "name="+app+"&format=jfr&spyName=javaspy", rec, labels); code != http.StatusOK {
				t.Fatalf("POST /ingest: %d %s", code, body)
			}
			selections := append([]string{""}, g.threads...)
			for _, typ := range g.types {
				for _, thread := range selections {
					sel, hash := fmt.Sprintf(`{service_name=%q}`, app), pyroscopeLabelsHash()
					if thread != "" {
						sel, hash = fmt.Sprintf(`{service_name=%q, thread_name=%q}`, app, thread), pyroscopeLabelsHash("thread_name", thread)
					}
					golden := show(fmt.Sprintf("%s.jfr.gz.%s.%d.pb.gz", g.jfr, strings.ReplaceAll(typ, ":", "_"), hash))
					gp := new(googlev1.Profile)
					if err := gp.UnmarshalVT(gunzipFile(t, golden)); err != nil {
						t.Fatal(err)
					}
					sameStacks(t, typ+" "+sel, mergedJFRStacks(t, q, typ, sel), firstTypeStacks(gp))
				}
			}
		})
	}
	t.Run("corrupt", func(t *testing.T) {
		rec := gunzipFile(t, show("cortex-dev-01__kafka-0__cpu__0.jfr.gz"))
		rec[0] = 0
		if code, body := postJFR(t, proc.URL, "name=pyroscope-corrupt&format=jfr", rec, nil); code != http.StatusUnprocessableEntity {
			t.Fatalf("corrupt recording: %d %s, want 422", code, body)
		}
	})
}

// firstTypeStacks are a profile's per-stack totals of its first sample type
// (Pyroscope's goldens are merged profiles of one type).
func firstTypeStacks(p *googlev1.Profile) map[string]int64 {
	one := &googlev1.Profile{StringTable: p.StringTable, SampleType: p.SampleType[:1], Location: p.Location, Function: p.Function}
	for _, s := range p.Sample {
		one.Sample = append(one.Sample, &googlev1.Sample{LocationId: s.LocationId, Value: s.Value[:1]})
	}
	got := jfrStacks{}
	collapseJFR("x", one, nil, got)
	for _, m := range got {
		return m
	}
	return map[string]int64{}
}
