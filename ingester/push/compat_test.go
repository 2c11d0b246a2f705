package push_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/internal/testutil"
)

// server is a real `hearth ingester` configured as Pyroscope's integration
// suite configures Pyroscope (no age limit).
type server struct {
	t    *testing.T
	url  string
	push pushv1connect.PusherServiceClient
	q    querierv1connect.QuerierServiceClient
}

func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	p := testutil.StartIngester(t, testutil.FreePort(t), append([]string{"-data-dir=" + t.TempDir(), "-limits.reject-older-than=0"}, args...)...)
	return &server{t: t, url: p.URL,
		push: pushv1connect.NewPusherServiceClient(http.DefaultClient, p.URL),
		q:    querierv1connect.NewQuerierServiceClient(http.DefaultClient, p.URL)}
}

// profile is a small CPU profile: stacks are leaf first.
type profile struct {
	p    *googlev1.Profile
	strs map[string]int64
}

func newProfile(timeNanos int64, sampleTypes ...string) *profile {
	pr := &profile{p: &googlev1.Profile{StringTable: []string{""}, TimeNanos: timeNanos, Period: 1}, strs: map[string]int64{"": 0}}
	for _, st := range sampleTypes {
		typ, unit, _ := strings.Cut(st, "/")
		pr.p.SampleType = append(pr.p.SampleType, &googlev1.ValueType{Type: pr.str(typ), Unit: pr.str(unit)})
	}
	pr.p.PeriodType = &googlev1.ValueType{Type: pr.str("cpu"), Unit: pr.str("nanoseconds")}
	pr.p.Mapping = []*googlev1.Mapping{{Id: 1, HasFunctions: true}}
	return pr
}

func (pr *profile) str(s string) int64 {
	if i, ok := pr.strs[s]; ok {
		return i
	}
	pr.strs[s] = int64(len(pr.p.StringTable))
	pr.p.StringTable = append(pr.p.StringTable, s)
	return pr.strs[s]
}

func (pr *profile) sample(values []int64, stack ...string) *googlev1.Sample {
	s := &googlev1.Sample{Value: values}
	for _, name := range stack {
		id := uint64(0)
		for _, f := range pr.p.Function {
			if pr.p.StringTable[f.Name] == name {
				id = f.Id
			}
		}
		if id == 0 {
			id = uint64(len(pr.p.Function) + 1)
			pr.p.Function = append(pr.p.Function, &googlev1.Function{Id: id, Name: pr.str(name), Filename: pr.str("main.py")})
			pr.p.Location = append(pr.p.Location, &googlev1.Location{Id: id, MappingId: 1, Line: []*googlev1.Line{{FunctionId: id, Line: 1}}})
		}
		s.LocationId = append(s.LocationId, id)
	}
	pr.p.Sample = append(pr.p.Sample, s)
	return s
}

func (pr *profile) bytes(t *testing.T) []byte {
	b, err := pr.p.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (s *server) pushV1(raw []byte, labels ...string) (int, string) {
	var ls []*typesv1.LabelPair
	for i := 0; i+1 < len(labels); i += 2 {
		ls = append(ls, &typesv1.LabelPair{Name: labels[i], Value: labels[i+1]})
	}
	if !slices.Contains(labels, "service_name") {
		ls = append(ls, &typesv1.LabelPair{Name: "service_name", Value: "compat"})
	}
	_, err := s.push.Push(context.Background(), connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{Labels: ls, Samples: []*pushv1.RawSample{{RawProfile: raw}}}}}))
	if err == nil {
		return 200, ""
	}
	switch connect.CodeOf(err) {
	case connect.CodeInvalidArgument:
		return 400, err.Error()
	case connect.CodeResourceExhausted:
		return 429, err.Error()
	}
	return 500, err.Error()
}

// ingest posts to /ingest; parts, when given, make a multipart body (name,
// content pairs), else body is sent as it is.
func (s *server) ingest(query string, body []byte, parts ...[]byte) (int, string) {
	ct := "application/octet-stream"
	if len(parts) > 0 {
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		for i := 0; i+1 < len(parts); i += 2 {
			fw, _ := w.CreateFormFile(string(parts[i]), "not used")
			_, _ = fw.Write(parts[i+1])
		}
		_ = w.Close()
		body, ct = buf.Bytes(), w.FormDataContentType()
	}
	resp, err := http.Post(s.url+"/ingest?"+query, ct, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// stacks is SelectMergeProfile of ptype as "root;...;leaf value" lines.
func (s *server) stacks(ptype, selector string) []string {
	s.t.Helper()
	now := time.Now()
	//lint:ignore SA1019 querier.v1 serves it: Grafana and profilecli call it
	resp, err := s.q.SelectMergeProfile(context.Background(), connect.NewRequest(&querierv1.SelectMergeProfileRequest{
		ProfileTypeID: ptype, LabelSelector: selector, Start: now.Add(-time.Hour).UnixMilli(), End: now.Add(time.Hour).UnixMilli()}))
	if err != nil {
		s.t.Fatalf("%s %s: %v", ptype, selector, err)
	}
	return collapsed(resp.Msg, 0)
}

func collapsed(p *googlev1.Profile, vi int) []string {
	fns := map[uint64]string{}
	for _, f := range p.Function {
		fns[f.Id] = p.StringTable[f.Name]
	}
	locs := map[uint64][]string{}
	for _, l := range p.Location {
		for j := len(l.Line) - 1; j >= 0; j-- {
			locs[l.Id] = append(locs[l.Id], fns[l.Line[j].FunctionId])
		}
	}
	sums := map[string]int64{}
	for _, s := range p.Sample {
		var frames []string
		for j := len(s.LocationId) - 1; j >= 0; j-- {
			frames = append(frames, locs[s.LocationId[j]]...)
		}
		sums[strings.Join(frames, ";")] += s.Value[vi]
	}
	var out []string
	for k, v := range sums {
		if v != 0 {
			out = append(out, fmt.Sprintf("%s %d", k, v))
		}
	}
	sort.Strings(out)
	return out
}

// seriesLabels is every label set of the series matching selector.
func (s *server) seriesLabels(selector string) []map[string]string {
	s.t.Helper()
	now := time.Now()
	resp, err := s.q.Series(context.Background(), connect.NewRequest(&querierv1.SeriesRequest{
		Matchers: []string{selector}, Start: now.Add(-time.Hour).UnixMilli(), End: now.Add(time.Hour).UnixMilli()}))
	if err != nil {
		s.t.Fatal(err)
	}
	var out []map[string]string
	for _, ls := range resp.Msg.LabelsSet {
		m := map[string]string{}
		for _, l := range ls.Labels {
			m[l.Name] = l.Value
		}
		out = append(out, m)
	}
	return out
}

// TestPyroscopeStatusCodesAndRewrites pushes what Pyroscope v1.18's
// integration suite (ingest_pprof_test.go) pushes, built here, to a real
// ingester over /ingest and push.v1, and checks Pyroscope's status codes,
// stacks and labels.
func TestPyroscopeStatusCodesAndRewrites(t *testing.T) {
	s := startServer(t)
	now := time.Now()
	cpu := func() *profile {
		pr := newProfile(now.Add(-time.Second).UnixNano(), "cpu/nanoseconds")
		pr.sample([]int64{239}, "my", "other")
		return pr
	}
	statusCases := []struct {
		name          string
		corrupt       func(pr *profile)
		ingest, push1 int
		want          string
	}{
		{"valid", func(*profile) {}, 200, 200, ""},
		{"invalid UTF-8", func(pr *profile) { pr.p.StringTable[pr.p.Function[0].Name] = "my\xff" }, 422, 400, "utf8"},
		{"sample label outside the string table", func(pr *profile) { pr.p.Sample[0].Label = []*googlev1.Label{{Key: 100500}} }, 422, 400, "sample label string index out of range"},
		{"sample type outside the string table", func(pr *profile) { pr.p.SampleType[0].Type = 100500 }, 422, 400, ""},
		{"function name outside the string table", func(pr *profile) { pr.p.Function[0].Name = 100500 }, 422, 400, ""},
		{"mapping file outside the string table", func(pr *profile) { pr.p.Mapping[0].Filename = 100500 }, 422, 400, ""},
		{"string 0 not empty", func(pr *profile) { pr.p.StringTable[0] = "hmmm" }, 422, 400, ""},
		{"function id 0", func(pr *profile) { pr.p.Function[0].Id = 0 }, 422, 400, "function id is 0"},
	}
	for _, c := range statusCases {
		t.Run(c.name, func(t *testing.T) {
			pr := cpu()
			c.corrupt(pr)
			raw := pr.bytes(t)
			if code, body := s.ingest("name=status&spyName=gospy", nil, []byte("profile"), raw); code != c.ingest {
				t.Errorf("/ingest: %d %s, Pyroscope: %d", code, body, c.ingest)
			}
			if code, body := s.pushV1(raw, "__name__", "process_cpu"); code != c.push1 || !strings.Contains(body, c.want) {
				t.Errorf("push.v1: %d %s, Pyroscope: %d %s", code, body, c.push1, c.want)
			}
		})
	}
	t.Run("prev_profile and bad bodies", func(t *testing.T) {
		raw := cpu().bytes(t)
		if code, body := s.ingest("name=prev&spyName=gospy", nil, []byte("profile"), raw, []byte("prev_profile"), raw); code != 422 {
			t.Errorf("prev_profile: %d %s, Pyroscope 422", code, body)
		}
		if code, body := s.ingest("name=garbage&format=pprof", []byte("garbage")); code != 422 {
			t.Errorf("garbage pprof: %d %s, Pyroscope 422", code, body)
		}
		if code, body := s.ingest("name=bad{x=1", raw); code != 400 {
			t.Errorf("bad name: %d %s, Pyroscope 400", code, body)
		}
	})
	t.Run(".NET function ids repaired on /ingest only", func(t *testing.T) {
		pr := newProfile(now.UnixNano(), "cpu/nanoseconds", "alloc-samples/count")
		pr.sample([]int64{10, 1}, "Leaf", "Root")
		for _, f := range pr.p.Function {
			f.Id = 0
		}
		pr.p.Location[0].Line[0].FunctionId, pr.p.Location[1].Line[0].FunctionId = 1, 2
		raw := pr.bytes(t)
		if code, body := s.pushV1(raw, "__name__", "process_cpu"); code != 400 || !strings.Contains(body, "function id is 0") {
			t.Fatalf("push.v1: %d %s", code, body)
		}
		if code, body := s.ingest("name=dotnet&spyName=dotnetspy", nil, []byte("profile"), raw); code != 200 {
			t.Fatalf("/ingest: %d %s", code, body)
		}
		if got := s.stacks("process_cpu:alloc_samples:count:cpu:nanoseconds", `{service_name="dotnet"}`); !slices.Equal(got, []string{"Root;Leaf 1"}) {
			t.Fatalf("stacks %v", got)
		}
	})
	t.Run("py-spy function names and millisecond times", func(t *testing.T) {
		pr := newProfile(now.UnixMilli(), "cpu/nanoseconds") // older agents wrote ms
		pr.sample([]int64{10}, "func1", "main")
		pr.sample([]int64{13}, "func2", "main")
		q := url.Values{"name": {"pyapp"}, "spyName": {"pyspy"}, "from": {fmt.Sprint(now.Unix())}}
		if code, body := s.ingest(q.Encode(), pr.bytes(t)); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		want := []string{"main.py main;main.py func1 10", "main.py main;main.py func2 13"}
		if got := s.stacks("process_cpu:cpu:nanoseconds:cpu:nanoseconds", `{service_name="pyapp"}`); !slices.Equal(got, want) {
			t.Fatalf("%v, want %v", got, want)
		}
	})
	t.Run("OpenTelemetry label names and godeltaprof", func(t *testing.T) {
		pr := cpu()
		pr.p.Sample[0].Label = []*googlev1.Label{{Key: pr.str("foo.bar"), Str: pr.str("qwe.asd")}}
		if code, body := s.pushV1(pr.bytes(t), "__name__", "process_cpu", "service.version", "1.0"); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		got := s.seriesLabels(`{service_name="compat", foo_bar="qwe.asd"}`)
		if len(got) != 1 || got[0]["service_version"] != "1.0" || got[0]["__service_name__"] != "compat" {
			t.Fatalf("series %v", got)
		}
		mem := func(ts time.Time, n int64) []byte {
			pr := newProfile(ts.UnixNano(), "alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes")
			pr.p.PeriodType = &googlev1.ValueType{Type: pr.str("space"), Unit: pr.str("bytes")}
			pr.sample([]int64{n, n * 1024, 1000, 1000 * 1024}, "my", "other")
			return pr.bytes(t)
		}
		for _, b := range [][]byte{mem(now.Add(-time.Second), 239), mem(now, 3)} {
			if code, body := s.pushV1(b, "__name__", "godeltaprof_memory", "service_name", "delta"); code != 200 {
				t.Fatalf("%d %s", code, body)
			}
		}
		if got := s.stacks("memory:alloc_objects:count:space:bytes", `{service_name="delta"}`); !slices.Equal(got, []string{"other;my 242"}) {
			t.Fatalf("godeltaprof stacks %v", got)
		}
		ls := s.seriesLabels(`{service_name="delta"}`)
		if len(ls) == 0 || ls[0]["__name_replaced__"] != "godeltaprof_memory" || ls[0]["__name__"] != "memory" {
			t.Fatalf("godeltaprof labels %v", ls)
		}
	})
	t.Run("/ingest labels", func(t *testing.T) {
		q := url.Values{"name": {"web.app{env=prod,process.runtime.name=nodejs}"}, "spyName": {"nodespy"}}
		if code, body := s.ingest(q.Encode(), cpu().bytes(t)); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		ls := s.seriesLabels(`{service_name="web.app"}`)
		want := map[string]string{"env": "prod", "process_runtime_name": "nodejs", "pyroscope_spy": "nodespy", "__service_name__": "web.app", "__name__": "process_cpu"}
		if len(ls) != 1 {
			t.Fatalf("series %v", ls)
		}
		for k, v := range want {
			if ls[0][k] != v {
				t.Errorf("%s=%q, want %q (all: %v)", k, ls[0][k], v, ls[0])
			}
		}
		if code, body := s.ingest(url.Values{"name": {"nospy"}}.Encode(), cpu().bytes(t)); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		if ls := s.seriesLabels(`{service_name="nospy"}`); len(ls) != 1 || ls[0]["pyroscope_spy"] != "unknown" {
			t.Fatalf("no spyName: %v", ls)
		}
	})
}
