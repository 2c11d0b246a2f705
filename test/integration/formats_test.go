package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	"github.com/thanos-io/objstore/providers/filesystem"
	"google.golang.org/protobuf/proto"

	"github.com/hearth-dev/hearth/ingester/ingest"
	"github.com/hearth-dev/hearth/ingester/ingest/otlp"
	"github.com/hearth-dev/hearth/ingester/ingest/trie"
	"github.com/hearth-dev/hearth/ingester/normalize"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// stackTotals is a merge's content: per profile type id, per stack (root
// first, function names joined by ";"), the summed value.
type stackTotals map[string]map[string]int64

func (s stackTotals) add(typeID, stack string, v int64) {
	if s[typeID] == nil {
		s[typeID] = map[string]int64{}
	}
	s[typeID][stack] += v
}

// addProfile adds every sample type of p under the series name name.
func (s stackTotals) addProfile(t *testing.T, name string, p *googlev1.Profile) {
	t.Helper()
	str := func(i int64) string { return p.StringTable[i] }
	fns := map[uint64]string{}
	for _, f := range p.Function {
		fns[f.Id] = str(f.Name)
	}
	locs := map[uint64][]string{}
	for _, l := range p.Location {
		var names []string
		for i := len(l.Line) - 1; i >= 0; i-- { // callers of inlined frames first
			names = append(names, fns[l.Line[i].FunctionId])
		}
		locs[l.Id] = names
	}
	var period [2]string
	if p.PeriodType != nil {
		period = [2]string{str(p.PeriodType.Type), str(p.PeriodType.Unit)}
	}
	for i, st := range p.SampleType {
		id := strings.Join([]string{name, str(st.Type), str(st.Unit), period[0], period[1]}, ":")
		for _, smp := range p.Sample {
			if smp.Value[i] == 0 {
				continue
			}
			var stack []string
			for j := len(smp.LocationId) - 1; j >= 0; j-- {
				stack = append(stack, locs[smp.LocationId[j]]...)
			}
			s.add(id, strings.Join(stack, ";"), smp.Value[i])
		}
	}
}

// formatCase is one push in one wire format: the request as an agent sends
// it, and what the format's converter makes of it (what the ring must hold,
// once).
type formatCase struct {
	name    string // the application name sent
	service string // the service_name stored for it
	req     func(url string) *http.Request
	otlp    []byte // an OTLP export request (req posts it), converted by the otlp package
}

func ingestCase(name, query, contentType string, body []byte) formatCase {
	return formatCase{name: name, service: name, req: func(url string) *http.Request {
		r, err := http.NewRequest(http.MethodPost, url+"/ingest?name="+name+"&"+query, bytes.NewReader(body))
		if err != nil {
			panic(err)
		}
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		return r
	}}
}

func storedAs(service string, fc formatCase) formatCase {
	fc.service = service
	return fc
}

func otlpCase(t *testing.T, body []byte) formatCase {
	req, err := otlp.DecodeProto(body)
	if err != nil {
		t.Fatal(err)
	}
	// Recent, so the age limit takes it.
	for _, rp := range req.GetResourceProfiles() {
		for _, sp := range rp.GetScopeProfiles() {
			for _, p := range sp.GetProfiles() {
				p.TimeUnixNano = uint64(time.Now().Add(-5 * time.Second).UnixNano())
			}
		}
	}
	if body, err = proto.Marshal(req); err != nil {
		t.Fatal(err)
	}
	decoded, err := otlp.Convert(req, time.Now())
	if err != nil || len(decoded) == 0 {
		t.Fatalf("otlp: %d profiles, %v", len(decoded), err)
	}
	service := ""
	for _, l := range decoded[0].Labels {
		if l.Name == "service_name" {
			service = l.Value
		}
	}
	return formatCase{name: "otlp", service: service, otlp: body, req: func(url string) *http.Request {
		r, err := http.NewRequest(http.MethodPost, url+"/v1development/profiles", bytes.NewReader(body))
		if err != nil {
			panic(err)
		}
		r.Header.Set("Content-Type", "application/x-protobuf")
		return r
	}}
}

// want converts the case's request in this process, as the ingester's
// front door does, and sums what it gives.
func (fc formatCase) want(t *testing.T) stackTotals {
	t.Helper()
	if fc.otlp != nil {
		req, err := otlp.DecodeProto(fc.otlp)
		if err != nil {
			t.Fatal(err)
		}
		decoded, err := otlp.Convert(req, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		out := stackTotals{} // the profiles of the service the case reads
		for _, d := range decoded {
			name, service := "", ""
			for _, l := range d.Labels {
				switch l.Name {
				case "__name__":
					name = l.Value
				case "service_name":
					service = l.Value
				}
			}
			if service == fc.service {
				out.addProfile(t, name, goRepaired("", d.Profile))
			}
		}
		return out
	}
	r := fc.req("http://127.0.0.1")
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	hr := httptest.NewRequest(r.Method, r.URL.String(), bytes.NewReader(body))
	hr.Header = r.Header
	parsed, err := ingest.ParseRequest(hr, ingest.Limits{}, time.Now())
	if err != nil {
		t.Fatalf("%s: %v", fc.name, err)
	}
	out := stackTotals{}
	if parsed.Profile != nil {
		p, err := pprofdec.DecodePprof(parsed.Profile, 0)
		if err != nil {
			t.Fatal(err)
		}
		out.addProfile(t, ingest.ProfileName(p), goRepaired(parsed.SpyName, p))
	}
	for _, d := range parsed.Profiles {
		name := ""
		for _, l := range d.Labels {
			if l.Name == "__name__" {
				name = l.Value
			}
		}
		out.addProfile(t, name, goRepaired(parsed.SpyName, d.Profile))
	}
	return out
}

// goRepaired is p with the Go repairs every push of a Go profile gets (type
// parameters dropped, truncated stacks completed), as Pyroscope applies them.
func goRepaired(spy string, p *googlev1.Profile) *googlev1.Profile {
	if normalize.Language(spy, p) == "go" {
		normalize.FixGo(p, normalize.Default())
	}
	return p
}

// merged asks url for every profile type of service and returns the merges.
func merged(t *testing.T, url, service string, types []string) stackTotals {
	t.Helper()
	c := querierv1connect.NewQuerierServiceClient(http.DefaultClient, url)
	now := time.Now()
	out := stackTotals{}
	for _, id := range types {
		//lint:ignore SA1019 querier.v1 serves it: Grafana and profilecli call it
		resp, err := c.SelectMergeProfile(context.Background(), connect.NewRequest(&querierv1.SelectMergeProfileRequest{
			ProfileTypeID: id, LabelSelector: fmt.Sprintf("{service_name=%q}", service),
			Start: now.Add(-time.Hour).UnixMilli(), End: now.Add(time.Hour).UnixMilli(),
		}))
		if err != nil {
			t.Fatalf("%s %s: %v", service, id, err)
		}
		var one stackTotals = stackTotals{}
		one.addProfile(t, strings.Split(id, ":")[0], resp.Msg)
		for k, v := range one[id] {
			out.add(id, k, v)
		}
	}
	return out
}

func sameTotals(a, b stackTotals) string {
	var diffs []string
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	for id := range keys {
		for s, v := range a[id] {
			if b[id][s] != v {
				diffs = append(diffs, fmt.Sprintf("%s %q: got %d, want %d", id, s, v, b[id][s]))
			}
		}
		for s, v := range b[id] {
			if _, ok := a[id][s]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s %q: missing, want %d", id, s, v))
			}
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("... %d more", len(diffs)-5))
	}
	return strings.Join(diffs, "\n")
}

// formatCases are one request of every wire format Hearth takes, each with
// its own service_name.
func formatCases(t *testing.T) []formatCase {
	dir := t.TempDir()
	files := testutil.WriteProfiles(t, dir)
	cpu, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	heap, err := os.ReadFile(filepath.Join(dir, "heap.pprof"))
	if err != nil {
		t.Fatal(err)
	}
	jfrRecording, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "ingester/ingest/jfr/testdata/tiny.jfr.gz"))
	if err != nil {
		t.Fatal(err)
	}
	otlpRequest, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "ingester/ingest/otlp/testdata/go-cpu.otlp.pb"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	tr := fmt.Sprintf("from=%d&until=%d", now-10, now)
	return []formatCase{
		ingestCase("fmt-pprof-cpu", tr+"&format=pprof", "", cpu),
		ingestCase("fmt-pprof-heap", tr, "", heap),
		ingestCase("fmt-folded", tr+"&format=folded&sampleRate=100", "", []byte("main;work;spin 7\nmain;idle 3\nmain;work 2\n")),
		ingestCase("fmt-lines", tr+"&format=lines", "", []byte("main;a;b\nmain;a;b\nmain;c\n")),
		// The older agents' formats: service_name drops the kind suffix.
		storedAs("fmt-trie", ingestCase("fmt-trie.alloc_space", tr+"&format=trie", "", trie.EncodeTrie(map[string]uint64{"main;alloc;grow": 4096, "main;alloc": 512}))),
		storedAs("fmt-tree", ingestCase("fmt-tree.cpu", tr, "binary/octet-stream+tree", trie.EncodeTree(map[string]uint64{"main;handle;read": 30, "main;gc": 2}))),
		ingestCase("fmt-speedscope", tr+"&format=speedscope", "application/json", []byte(formatsSpeedscope)),
		ingestCase("fmt-jfr", tr+"&format=jfr&spyName=javaspy", "", jfrRecording),
		otlpCase(t, otlpRequest),
	}
}

// TestEveryFormatThroughTheRing pushes one request of every wire format to a
// 3-ingester ring (RF 3) and checks that each profile type holds exactly what
// the format's converter made of it, stack for stack, counted once: from the
// heads after replication, after a cut, after compaction, and from the
// bucket alone.
func TestEveryFormatThroughTheRing(t *testing.T) {
	dir := t.TempDir()
	c := startBucketCluster(t, 3, []string{"-storage.filesystem.dir=" + dir}, compactionArgs...)
	cases := formatCases(t)
	wants := map[string]stackTotals{}
	for i, fc := range cases {
		wants[fc.name] = fc.want(t)
		if len(wants[fc.name]) == 0 {
			t.Fatalf("%s: the converter made nothing of it", fc.name)
		}
		resp, err := http.DefaultClient.Do(fc.req(c.url(i % len(c.nodes))))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", fc.name, resp.StatusCode, b)
		}
	}
	check := func(stage, url string) {
		t.Helper()
		for _, fc := range cases {
			want := wants[fc.name]
			var types []string
			for id := range want {
				types = append(types, id)
			}
			if d := sameTotals(merged(t, url, fc.service, types), want); d != "" {
				t.Fatalf("%s, %s: the merge differs from the converter's profiles:\n%s", stage, fc.name, d)
			}
		}
	}
	check("heads", c.url(1))
	for _, u := range c.internalURLs() {
		flush(t, u)
	}
	check("after the cut", c.url(2))
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	var v bucketView
	for i := 0; i < 300; i++ { // at most 60 s
		if v = viewBucket(t, bkt, "anonymous"); v.raw == 0 && v.marked == 0 && v.live > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if v.raw != 0 || v.live == 0 {
		t.Fatalf("the bucket did not compact: %+v", v)
	}
	check("after compaction", c.url(0))
	fresh := testutil.StartIngester(t, testutil.FreePort(t), append([]string{"-data-dir=" + t.TempDir(), "-log.level=warn", "-compactor.enabled=false"}, c.nodes[0].bucketArgs()...)...)
	check("from the bucket alone", fresh.URL)
}
