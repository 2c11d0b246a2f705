package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/pprof/profile"
	"github.com/google/uuid"
	adhocv1 "github.com/grafana/pyroscope/api/gen/proto/go/adhocprofiles/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/adhocprofiles/v1/adhocprofilesv1connect"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	settingsv1 "github.com/grafana/pyroscope/api/gen/proto/go/settings/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/settings/v1/settingsv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/ingester/normalize"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/internal/testutil"
)

const allocObjects = "memory:alloc_objects:count:space:bytes"

var spanIDs = []string{"00000000000000a1", "00000000000000b2", "00000000000000c3"}

// grafanaProfiles profiles this test process (a real heap profile) and
// returns it parsed, with a span_id label on most samples (sample i gets
// spanIDs[i%3], every fourth none), at time ts.
func grafanaProfile(t *testing.T, ts time.Time) *profile.Profile {
	t.Helper()
	raw, err := os.ReadFile(testutil.WriteProfiles(t, t.TempDir())[1])
	if err != nil {
		t.Fatal(err)
	}
	// Pushed as Pyroscope stores a Go profile (type parameters dropped,
	// truncated stacks completed), so that the test's pprof arithmetic on
	// it is what the ingester answers.
	gp, err := pprofdec.DecodePprof(raw, 0)
	if err != nil {
		t.Fatal(err)
	}
	normalize.FixGo(gp, normalize.Default())
	if raw, err = gp.MarshalVT(); err != nil {
		t.Fatal(err)
	}
	p, err := profile.ParseData(raw)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range p.Sample {
		if i%4 != 3 {
			s.Label = map[string][]string{"span_id": {spanIDs[i%3]}}
		}
	}
	p.TimeNanos = ts.UnixNano()
	return p
}

func encode(t *testing.T, p *profile.Profile) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func pushProfile(t *testing.T, url, service string, raw []byte) string {
	t.Helper()
	id := uuid.NewString()
	req := &pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
		Labels:  []*typesv1.LabelPair{{Name: "__name__", Value: "memory"}, {Name: "service_name", Value: service}},
		Samples: []*pushv1.RawSample{{RawProfile: raw, ID: id}},
	}}}
	if _, err := pushv1connect.NewPusherServiceClient(http.DefaultClient, url).Push(context.Background(), connect.NewRequest(req)); err != nil {
		t.Fatalf("push: %v", err)
	}
	return id
}

// frameNames is a sample's stack as a flame graph names it, root first,
// inlined frames expanded.
func frameNames(s *profile.Sample) []string {
	var out []string
	for i := len(s.Location) - 1; i >= 0; i-- {
		l := s.Location[i]
		if len(l.Line) == 0 {
			if l.Mapping != nil && l.Mapping.File != "" {
				out = append(out, fmt.Sprintf("%s 0x%x", l.Mapping.File, l.Address))
			} else {
				out = append(out, fmt.Sprintf("0x%x", l.Address))
			}
			continue
		}
		for j := len(l.Line) - 1; j >= 0; j-- {
			out = append(out, l.Line[j].Function.Name)
		}
	}
	return out
}

// pprofPaths is pprof's arithmetic: value of sample type idx per root-first
// name path, over the samples keep accepts, for each profile.
func pprofPaths(idx int, keep func(*profile.Sample) bool, ps ...*profile.Profile) (map[string]int64, int64) {
	out := map[string]int64{}
	var total int64
	for _, p := range ps {
		for _, s := range p.Sample {
			if keep != nil && !keep(s) {
				continue
			}
			out[strings.Join(frameNames(s), ";")] += s.Value[idx]
			total += s.Value[idx]
		}
	}
	for k, v := range out {
		if v == 0 {
			delete(out, k)
		}
	}
	return out, total
}

func sampleIndex(t *testing.T, p *profile.Profile, typ string) int {
	i := slices.IndexFunc(p.SampleType, func(st *profile.ValueType) bool { return st.Type == typ })
	if i < 0 {
		t.Fatalf("no sample type %s", typ)
	}
	return i
}

// flamePaths decodes flamebearer levels (width numbers a node: x offset, total,
// self per side, name last) into root-first path → self of side.
func flamePaths(t *testing.T, names []string, levels [][]int64, width, side int) (map[string]int64, int64) {
	t.Helper()
	type node struct {
		x, total int64
		path     string
	}
	var prev []node
	out := map[string]int64{}
	var rootTotal int64
	for d, lv := range levels {
		if len(lv)%width != 0 {
			t.Fatalf("level %d has %d numbers", d, len(lv))
		}
		var cur []node
		x := int64(0)
		for i := 0; i < len(lv); i += width {
			x += lv[i+3*side]
			total, self, name := lv[i+3*side+1], lv[i+3*side+2], names[lv[i+width-1]]
			if d > 0 && total == 0 {
				// Only on the other side of a diff: no value here, and a
				// zero-width node's parent is ambiguous (so are its children's).
				continue
			}
			path := ""
			if d == 0 {
				rootTotal = total
			} else {
				parent := -1
				for j, p := range prev {
					if x >= p.x && x+total <= p.x+p.total {
						parent = j
						break
					}
				}
				if parent < 0 {
					t.Fatalf("level %d: node %s at %d+%d has no parent", d, name, x, total)
				}
				path = prev[parent].path
				if path != "" {
					path += ";"
				}
				path += name
			}
			if self != 0 {
				out[path] += self
			}
			cur = append(cur, node{x: x, total: total, path: path})
			x += total
		}
		prev = cur
	}
	return out, rootTotal
}

func fgLevels(ls []*querierv1.Level) [][]int64 {
	out := make([][]int64, len(ls))
	for i, l := range ls {
		out[i] = l.Values
	}
	return out
}

func samePaths(t *testing.T, what string, got, want map[string]int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d paths, pprof has %d", what, len(got), len(want))
	}
	n := 0
	for k, v := range want {
		if got[k] != v {
			if n++; n < 5 {
				t.Errorf("%s: %q = %d, pprof says %d", what, k, got[k], v)
			}
		}
	}
}

func getJSON(t *testing.T, u string, v any) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v\n%s", u, err, b)
		}
	}
	if resp.StatusCode != http.StatusOK {
		t.Logf("%s: %d %s", u, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return resp.StatusCode
}

type flamebearerJSON struct {
	Version     int `json:"version"`
	Flamebearer struct {
		Names    []string  `json:"names"`
		Levels   [][]int64 `json:"levels"`
		NumTicks int64     `json:"numTicks"`
		MaxSelf  int64     `json:"maxSelf"`
	} `json:"flamebearer"`
	Metadata struct {
		Format string `json:"format"`
		Units  string `json:"units"`
	} `json:"metadata"`
	LeftTicks  int64 `json:"leftTicks"`
	RightTicks int64 `json:"rightTicks"`
	Timeline   *struct {
		Samples []int64 `json:"samples"`
	} `json:"timeline"`
}

// decodeTreeBytes reads Pyroscope's tree format (depth first: name length,
// name, self, number of children; a nameless root first) into path → self.
func decodeTreeBytes(t *testing.T, b []byte) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	type frame struct {
		path string
		left uint64
	}
	var stack []frame
	for first := true; len(b) > 0; first = false {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			t.Fatal("bad tree bytes")
		}
		name := string(b[k : k+int(n)])
		b = b[k+int(n):]
		self, k := binary.Uvarint(b)
		b = b[k:]
		kids, k := binary.Uvarint(b)
		b = b[k:]
		path := ""
		if !first {
			for len(stack) > 0 && stack[len(stack)-1].left == 0 {
				stack = stack[:len(stack)-1]
			}
			if len(stack) == 0 {
				t.Fatal("tree node without parent")
			}
			stack[len(stack)-1].left--
			if path = stack[len(stack)-1].path; path != "" {
				path += ";"
			}
			path += name
		}
		if self != 0 {
			out[path] += int64(self)
		}
		stack = append(stack, frame{path: path, left: kids})
	}
	return out
}

// TestGrafanaCalls runs a 3-ingester ring and answers every call Grafana's
// Pyroscope data source and the Profiles Drilldown app make, comparing with
// pprof's arithmetic on real profiles pushed through another ingester.
func TestGrafanaCalls(t *testing.T) {
	c := startCluster(t, 3)
	ctx := context.Background()
	now := time.Now()
	t0 := now.Add(-5 * time.Minute).Truncate(10 * time.Second)
	left := grafanaProfile(t, t0)
	right := grafanaProfile(t, t0.Add(15*time.Second))
	idx := sampleIndex(t, left, "alloc_objects")
	idA := pushProfile(t, c.url(1), "left", encode(t, left))
	idB := pushProfile(t, c.url(2), "right", encode(t, right))
	q := querierv1connect.NewQuerierServiceClient(http.DefaultClient, c.url(0))
	start, end := t0.Add(-time.Minute).UnixMilli(), now.Add(time.Minute).UnixMilli()
	big := int64(1 << 20)
	leftSel, rightSel := `{service_name="left"}`, `{service_name="right"}`
	wantL, totalL := pprofPaths(idx, nil, left)
	wantR, totalR := pprofPaths(idx, nil, right)

	t.Run("SelectMergeStacktraces", func(t *testing.T) {
		resp, err := q.SelectMergeStacktraces(ctx, connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{
			ProfileTypeID: allocObjects, LabelSelector: leftSel, Start: start, End: end, MaxNodes: &big}))
		if err != nil {
			t.Fatal(err)
		}
		got, total := flamePaths(t, resp.Msg.Flamegraph.Names, fgLevels(resp.Msg.Flamegraph.Levels), 4, 0)
		if total != totalL || resp.Msg.Flamegraph.Total != totalL {
			t.Fatalf("total %d/%d, pprof %d", total, resp.Msg.Flamegraph.Total, totalL)
		}
		samePaths(t, "flame graph", got, wantL)

		tr, err := q.SelectMergeStacktraces(ctx, connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{
			ProfileTypeID: allocObjects, LabelSelector: leftSel, Start: start, End: end, MaxNodes: &big, Format: querierv1.ProfileFormat_PROFILE_FORMAT_TREE}))
		if err != nil {
			t.Fatal(err)
		}
		samePaths(t, "tree", decodeTreeBytes(t, tr.Msg.Tree), wantL)

		// Cut to 10 nodes: same total, only the names it uses.
		ten := int64(10)
		cut, err := q.SelectMergeStacktraces(ctx, connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{
			ProfileTypeID: allocObjects, LabelSelector: leftSel, Start: start, End: end, MaxNodes: &ten}))
		if err != nil {
			t.Fatal(err)
		}
		fg := cut.Msg.Flamegraph
		used := map[int64]bool{}
		nodes := 0
		for _, lv := range fg.Levels {
			for i := 3; i < len(lv.Values); i += 4 {
				used[lv.Values[i]] = true
				nodes++
			}
		}
		if fg.Total != totalL || len(used) != len(fg.Names) || nodes > 2*10 {
			t.Fatalf("cut graph: total %d (pprof %d), %d names, %d used, %d nodes", fg.Total, totalL, len(fg.Names), len(used), nodes)
		}

		dot, err := q.SelectMergeStacktraces(ctx, connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{
			ProfileTypeID: allocObjects, LabelSelector: leftSel, Start: start, End: end, Format: querierv1.ProfileFormat_PROFILE_FORMAT_DOT}))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(dot.Msg.Dot, "digraph") || !strings.Contains(dot.Msg.Dot, fmt.Sprintf("of %d total", totalL)) {
			t.Fatalf("dot:\n%.500s", dot.Msg.Dot)
		}
	})

	t.Run("SelectMergeSpanProfile", func(t *testing.T) {
		sel := spanIDs[:2]
		want, wantTotal := pprofPaths(idx, func(s *profile.Sample) bool {
			return len(s.Label["span_id"]) == 1 && slices.Contains(sel, s.Label["span_id"][0])
		}, left, right)
		if wantTotal == 0 {
			t.Fatal("the heap profile has no allocations on the selected spans")
		}
		//lint:ignore SA1019 the deprecated call is what clients still send
		resp, err := q.SelectMergeSpanProfile(ctx, connect.NewRequest(&querierv1.SelectMergeSpanProfileRequest{
			ProfileTypeID: allocObjects, LabelSelector: "{}", SpanSelector: sel, Start: start, End: end, MaxNodes: &big}))
		if err != nil {
			t.Fatal(err)
		}
		got, total := flamePaths(t, resp.Msg.Flamegraph.Names, fgLevels(resp.Msg.Flamegraph.Levels), 4, 0)
		if total != wantTotal {
			t.Fatalf("span total %d, pprof %d", total, wantTotal)
		}
		samePaths(t, "span profile", got, want)
		// The span filter of SelectMergeStacktraces is the same merge.
		st, err := q.SelectMergeStacktraces(ctx, connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{
			ProfileTypeID: allocObjects, LabelSelector: "{}", SpanSelector: sel, Start: start, End: end, MaxNodes: &big}))
		if err != nil || st.Msg.Flamegraph.Total != wantTotal {
			t.Fatalf("span-filtered merge: %v %v, want %d", err, st.Msg.GetFlamegraph().GetTotal(), wantTotal)
		}
		//lint:ignore SA1019 the deprecated call is what clients still send
		_, err = q.SelectMergeSpanProfile(ctx, connect.NewRequest(&querierv1.SelectMergeSpanProfileRequest{
			ProfileTypeID: allocObjects, LabelSelector: "{}", SpanSelector: []string{"zz"}, Start: start, End: end}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("bad span id: %v", err)
		}
	})

	t.Run("Diff", func(t *testing.T) {
		resp, err := q.Diff(ctx, connect.NewRequest(&querierv1.DiffRequest{
			Left:  &querierv1.SelectMergeStacktracesRequest{ProfileTypeID: allocObjects, LabelSelector: leftSel, Start: start, End: end, MaxNodes: &big},
			Right: &querierv1.SelectMergeStacktracesRequest{ProfileTypeID: allocObjects, LabelSelector: rightSel, Start: start, End: end, MaxNodes: &big},
		}))
		if err != nil {
			t.Fatal(err)
		}
		fg := resp.Msg.Flamegraph
		if fg.LeftTicks != totalL || fg.RightTicks != totalR || fg.Total != totalL+totalR {
			t.Fatalf("ticks %d/%d/%d, pprof %d/%d", fg.LeftTicks, fg.RightTicks, fg.Total, totalL, totalR)
		}
		gl, _ := flamePaths(t, fg.Names, fgLevels(fg.Levels), 7, 0)
		gr, _ := flamePaths(t, fg.Names, fgLevels(fg.Levels), 7, 1)
		samePaths(t, "diff left", gl, wantL)
		samePaths(t, "diff right", gr, wantR)
	})

	t.Run("render", func(t *testing.T) {
		var fb flamebearerJSON
		u := fmt.Sprintf("%s/pyroscope/render?query=%s&from=%d&until=%d&format=json&max-nodes=%d", c.url(0),
			url.QueryEscape(allocObjects+leftSel), start, end, big)
		if code := getJSON(t, u, &fb); code != http.StatusOK {
			t.Fatalf("render: %d", code)
		}
		got, total := flamePaths(t, fb.Flamebearer.Names, fb.Flamebearer.Levels, 4, 0)
		if fb.Version != 1 || fb.Metadata.Format != "single" || fb.Flamebearer.NumTicks != totalL || total != totalL {
			t.Fatalf("render: version %d format %q numTicks %d total %d, pprof %d", fb.Version, fb.Metadata.Format, fb.Flamebearer.NumTicks, total, totalL)
		}
		samePaths(t, "render", got, wantL)
		var tl int64
		for _, v := range fb.Timeline.Samples {
			tl += v
		}
		if tl != totalL {
			t.Fatalf("timeline sums to %d, pprof %d", tl, totalL)
		}
		resp, err := http.Get(strings.Replace(u, "format=json", "format=dot", 1))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), "digraph") {
			t.Fatalf("dot: %d %.300s", resp.StatusCode, b)
		}
		var diff flamebearerJSON
		du := fmt.Sprintf("%s/pyroscope/render-diff?leftQuery=%s&leftFrom=%d&leftUntil=%d&rightQuery=%s&rightFrom=%d&rightUntil=%d", c.url(0),
			url.QueryEscape(allocObjects+leftSel), start, end, url.QueryEscape(allocObjects+rightSel), start, end)
		if code := getJSON(t, du, &diff); code != http.StatusOK {
			t.Fatalf("render-diff: %d", code)
		}
		if diff.Metadata.Format != "double" || diff.LeftTicks != totalL || diff.RightTicks != totalR || diff.Flamebearer.NumTicks != totalL+totalR {
			t.Fatalf("render-diff: format %q ticks %d/%d/%d, pprof %d/%d", diff.Metadata.Format, diff.LeftTicks, diff.RightTicks, diff.Flamebearer.NumTicks, totalL, totalR)
		}
		for _, bad := range []string{"query=nonsense", "query=" + url.QueryEscape(allocObjects+"{a=}"), "query=" + url.QueryEscape(allocObjects) + "&from=yesterday"} {
			if code := getJSON(t, c.url(0)+"/pyroscope/render?"+bad, nil); code != http.StatusBadRequest {
				t.Errorf("render?%s: %d, want 400", bad, code)
			}
		}
		if code := getJSON(t, c.url(0)+"/pyroscope/render-diff?leftQuery=x", nil); code != http.StatusBadRequest {
			t.Errorf("render-diff without right: %d, want 400", code)
		}
	})

	t.Run("SelectMergeProfile", func(t *testing.T) {
		//lint:ignore SA1019 the deprecated call is what clients still send
		full, err := q.SelectMergeProfile(ctx, connect.NewRequest(&querierv1.SelectMergeProfileRequest{
			ProfileTypeID: allocObjects, LabelSelector: leftSel, Start: start, End: end}))
		if err != nil {
			t.Fatal(err)
		}
		gp := parseMerged(t, full.Msg)
		got, total := pprofPaths(0, nil, gp)
		if total != totalL {
			t.Fatalf("total %d, pprof %d", total, totalL)
		}
		samePaths(t, "merge", got, wantL)

		// max_nodes: the call tree has at most that many nodes (plus "other" leaves), same total.
		n := int64(8)
		//lint:ignore SA1019 the deprecated call is what clients still send
		cut, err := q.SelectMergeProfile(ctx, connect.NewRequest(&querierv1.SelectMergeProfileRequest{
			ProfileTypeID: allocObjects, LabelSelector: leftSel, Start: start, End: end, MaxNodes: &n}))
		if err != nil {
			t.Fatal(err)
		}
		cp := parseMerged(t, cut.Msg)
		nodes := map[string]bool{}
		var ctotal int64
		for _, s := range cp.Sample {
			ctotal += s.Value[0]
			var path []string
			for i := len(s.Location) - 1; i >= 0; i-- {
				path = append(path, fmt.Sprint(s.Location[i].ID))
				if s.Location[i].Line[0].Function.Name != "other" {
					nodes[strings.Join(path, ";")] = true
				}
			}
		}
		if ctotal != totalL || len(nodes) > int(n) {
			t.Fatalf("max_nodes %d: total %d (pprof %d), %d nodes", n, ctotal, totalL, len(nodes))
		}

		// go_pgo keep_locations=2: the two leaf locations of every stack, as pprof cuts them.
		//lint:ignore SA1019 the deprecated call is what clients still send
		pgo, err := q.SelectMergeProfile(ctx, connect.NewRequest(&querierv1.SelectMergeProfileRequest{
			ProfileTypeID: allocObjects, LabelSelector: leftSel, Start: start, End: end,
			StackTraceSelector: &typesv1.StackTraceSelector{GoPgo: &typesv1.GoPGO{KeepLocations: 2}}}))
		if err != nil {
			t.Fatal(err)
		}
		pp := parseMerged(t, pgo.Msg)
		want := map[string]int64{}
		for _, s := range left.Sample {
			want[leafKey(s.Location, 2, false)] += s.Value[idx]
		}
		got = map[string]int64{}
		for _, s := range pp.Sample {
			if len(s.Location) > 2 {
				t.Fatalf("a go_pgo stack of %d locations", len(s.Location))
			}
			got[leafKey(s.Location, 2, false)] += s.Value[0]
		}
		dropZero(want)
		samePaths(t, "go_pgo keep_locations=2", got, want)

		// aggregate_callees: the leaf's line number is dropped, callers keep theirs.
		//lint:ignore SA1019 the deprecated call is what clients still send
		agg, err := q.SelectMergeProfile(ctx, connect.NewRequest(&querierv1.SelectMergeProfileRequest{
			ProfileTypeID: allocObjects, LabelSelector: leftSel, Start: start, End: end,
			StackTraceSelector: &typesv1.StackTraceSelector{GoPgo: &typesv1.GoPGO{KeepLocations: 3, AggregateCallees: true}}}))
		if err != nil {
			t.Fatal(err)
		}
		ap := parseMerged(t, agg.Msg)
		want = map[string]int64{}
		for _, s := range left.Sample {
			want[leafKey(s.Location, 3, true)] += s.Value[idx]
		}
		got = map[string]int64{}
		for _, s := range ap.Sample {
			if s.Location[0].Line[0].Line != 0 {
				t.Fatalf("aggregate_callees: leaf line %d", s.Location[0].Line[0].Line)
			}
			got[leafKey(s.Location, 3, true)] += s.Value[0]
		}
		dropZero(want)
		samePaths(t, "go_pgo aggregate_callees", got, want)
	})

	t.Run("SelectSeries", func(t *testing.T) {
		step := 10.0
		resp, err := q.SelectSeries(ctx, connect.NewRequest(&querierv1.SelectSeriesRequest{
			ProfileTypeID: allocObjects, LabelSelector: "{}", Start: t0.UnixMilli(), End: t0.Add(time.Minute).UnixMilli(),
			Step: step, GroupBy: []string{"service_name"}, ExemplarType: typesv1.ExemplarType_EXEMPLAR_TYPE_INDIVIDUAL}))
		if err != nil {
			t.Fatal(err)
		}
		// left at t0 sits on the point at start, right at t0+15s on t0+20s: the end of its step.
		want := map[string][3]int64{"left": {t0.UnixMilli(), totalL}, "right": {t0.Add(20 * time.Second).UnixMilli(), totalR}}
		ids := map[string]string{"left": idA, "right": idB}
		if len(resp.Msg.Series) != 2 {
			t.Fatalf("%d series", len(resp.Msg.Series))
		}
		for _, s := range resp.Msg.Series {
			svc := s.Labels[0].Value
			if len(s.Points) != 1 {
				t.Fatalf("%s: %d points", svc, len(s.Points))
			}
			p := s.Points[0]
			if p.Timestamp != want[svc][0] || int64(p.Value) != want[svc][1] {
				t.Fatalf("%s: point at %d = %v, want at %d = %d", svc, p.Timestamp, p.Value, want[svc][0], want[svc][1])
			}
			if len(p.Exemplars) != 1 || p.Exemplars[0].ProfileId != ids[svc] || p.Exemplars[0].Value != want[svc][1] {
				t.Fatalf("%s: exemplars %v, want profile %s", svc, p.Exemplars, ids[svc])
			}
		}
	})

	t.Run("SelectSeries call site", func(t *testing.T) {
		// The call site of the heaviest stack's two root frames.
		var site []string
		var best int64
		for _, s := range left.Sample {
			if fr := frameNames(s); len(fr) >= 2 && s.Value[idx] > best {
				best, site = s.Value[idx], fr[:2]
			}
		}
		var want int64
		for _, s := range left.Sample {
			if fr := frameNames(s); len(fr) >= 2 && fr[0] == site[0] && fr[1] == site[1] {
				want += s.Value[idx]
			}
		}
		resp, err := q.SelectSeries(ctx, connect.NewRequest(&querierv1.SelectSeriesRequest{
			ProfileTypeID: allocObjects, LabelSelector: leftSel, Start: t0.UnixMilli(), End: t0.Add(time.Minute).UnixMilli(), Step: 60,
			StackTraceSelector: &typesv1.StackTraceSelector{CallSite: []*typesv1.Location{{Name: site[0]}, {Name: site[1]}}}}))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Msg.Series) != 1 || len(resp.Msg.Series[0].Points) != 1 || int64(resp.Msg.Series[0].Points[0].Value) != want {
			t.Fatalf("call site %v: %v, pprof %d", site, resp.Msg.Series, want)
		}
	})

	t.Run("SelectHeatmap", func(t *testing.T) {
		resp, err := q.SelectHeatmap(ctx, connect.NewRequest(&querierv1.SelectHeatmapRequest{
			ProfileTypeID: allocObjects, LabelSelector: "{}", Start: t0.UnixMilli(), End: t0.Add(time.Minute).UnixMilli(), Step: 10,
			QueryType: querierv1.HeatmapQueryType_HEATMAP_QUERY_TYPE_SPAN, ExemplarType: typesv1.ExemplarType_EXEMPLAR_TYPE_SPAN}))
		if err != nil {
			t.Fatal(err)
		}
		// Each profile has three spans with allocations (or fewer when a span has none).
		want := 0
		for _, p := range []*profile.Profile{left, right} {
			seen := map[string]bool{}
			for _, s := range p.Sample {
				if len(s.Label["span_id"]) == 1 && s.Value[idx] != 0 {
					seen[s.Label["span_id"][0]] = true
				}
			}
			want += len(seen)
		}
		n := 0
		for _, s := range resp.Msg.Series {
			for _, sl := range s.Slots {
				for i, c := range sl.Counts {
					n += int(c)
					if sl.Exemplars[i].SpanId == "" || sl.Exemplars[i].ProfileId == "" {
						t.Fatalf("exemplar %v", sl.Exemplars[i])
					}
				}
			}
		}
		if n != want {
			t.Fatalf("heatmap counts %d spans, want %d", n, want)
		}
	})

	t.Run("AnalyzeQuery", func(t *testing.T) {
		resp, err := q.AnalyzeQuery(ctx, connect.NewRequest(&querierv1.AnalyzeQueryRequest{Start: start, End: end, Query: allocObjects + leftSel}))
		if err != nil {
			t.Fatal(err)
		}
		var heads *querierv1.QueryScope
		for _, s := range resp.Msg.QueryScopes {
			if strings.Contains(s.ComponentType, "heads") {
				heads = s
			}
		}
		// RF 3 on 3 ingesters: this one and the two others each hold the one row.
		if heads == nil || heads.ProfileCount != 3 || heads.SeriesCount != 3 || heads.ProfileBytes == 0 ||
			resp.Msg.QueryImpact.TotalQueriedSeries != 1 || !resp.Msg.QueryImpact.DeduplicationNeeded {
			t.Fatalf("analysis %v", resp.Msg)
		}
		if _, err := q.AnalyzeQuery(ctx, connect.NewRequest(&querierv1.AnalyzeQueryRequest{Query: "{a=~\"(\"}"})); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("bad query: %v", err)
		}
	})

	t.Run("adhocprofiles", func(t *testing.T) {
		up := adhocprofilesv1connect.NewAdHocProfileServiceClient(http.DefaultClient, c.url(0))
		resp, err := up.Upload(ctx, connect.NewRequest(&adhocv1.AdHocProfilesUploadRequest{Name: "heap.pb.gz", Profile: base64.StdEncoding.EncodeToString(encode(t, left))}))
		if err != nil {
			t.Fatal(err)
		}
		other := adhocprofilesv1connect.NewAdHocProfileServiceClient(http.DefaultClient, c.url(2))
		list, err := other.List(ctx, connect.NewRequest(&adhocv1.AdHocProfilesListRequest{}))
		if err != nil || len(list.Msg.Profiles) != 1 || list.Msg.Profiles[0].Id != resp.Msg.Id {
			t.Fatalf("list on another ingester: %v %v", list, err)
		}
		pt := "alloc_objects"
		got, err := other.Get(ctx, connect.NewRequest(&adhocv1.AdHocProfilesGetRequest{Id: resp.Msg.Id, ProfileType: &pt, MaxNodes: &big}))
		if err != nil {
			t.Fatal(err)
		}
		var fb flamebearerJSON
		if err := json.Unmarshal([]byte(got.Msg.FlamebearerProfile), &fb); err != nil {
			t.Fatal(err)
		}
		paths, total := flamePaths(t, fb.Flamebearer.Names, fb.Flamebearer.Levels, 4, 0)
		if total != totalL || !slices.Contains(got.Msg.ProfileTypes, "inuse_space") {
			t.Fatalf("ad hoc total %d (pprof %d), types %v", total, totalL, got.Msg.ProfileTypes)
		}
		samePaths(t, "ad hoc", paths, wantL)
		if _, err := up.Upload(ctx, connect.NewRequest(&adhocv1.AdHocProfilesUploadRequest{Name: "x", Profile: "%%%"})); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("bad base64: %v", err)
		}
		if _, err := up.Get(ctx, connect.NewRequest(&adhocv1.AdHocProfilesGetRequest{Id: uuid.NewString()})); connect.CodeOf(err) != connect.CodeNotFound {
			t.Fatalf("unknown id: %v", err)
		}
	})

	t.Run("RecordingRules", func(t *testing.T) {
		rr := settingsv1connect.NewRecordingRulesServiceClient(http.DefaultClient, c.url(0))
		if _, err := rr.ListRecordingRules(ctx, connect.NewRequest(&settingsv1.ListRecordingRulesRequest{})); connect.CodeOf(err) != connect.CodeUnimplemented {
			t.Fatalf("list recording rules: %v", err)
		}
	})

	// Last: it restarts an ingester.
	t.Run("settings", func(t *testing.T) {
		s0 := settingsv1connect.NewSettingsServiceClient(http.DefaultClient, c.url(0))
		set, err := s0.Set(ctx, connect.NewRequest(&settingsv1.SetSettingsRequest{Setting: &settingsv1.Setting{Name: "pluginSettings", Value: `{"collapsedFlamegraphs":true}`}}))
		if err != nil || set.Msg.Setting.ModifiedAt == 0 {
			t.Fatalf("set: %v %v", set, err)
		}
		if _, err := s0.Set(ctx, connect.NewRequest(&settingsv1.SetSettingsRequest{Setting: &settingsv1.Setting{Name: "pluginSettings", Value: "old", ModifiedAt: 1}})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
			t.Fatalf("an older update: %v", err)
		}
		check := func(u string) {
			t.Helper()
			got, err := settingsv1connect.NewSettingsServiceClient(http.DefaultClient, u).Get(ctx, connect.NewRequest(&settingsv1.GetSettingsRequest{}))
			if err != nil || len(got.Msg.Settings) != 1 || got.Msg.Settings[0].Value != `{"collapsedFlamegraphs":true}` {
				t.Fatalf("get on %s: %v %v", u, got, err)
			}
		}
		check(c.url(1))
		if err := c.nodes[0].proc.Stop(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		c.restart(0)
		check(c.url(0))
		if _, err := s0.Set(ctx, connect.NewRequest(&settingsv1.SetSettingsRequest{})); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("empty set: %v", err)
		}
	})

	// The span samples survive blocks: flush every ingester, then ask a new
	// ingester that reads only the bucket (three copies of each profile).
	t.Run("blocks", func(t *testing.T) {
		for i := range c.nodes {
			flush(t, c.nodes[i].proc.InternalURL)
		}
		fresh := testutil.StartIngester(t, testutil.FreePort(t), "-data-dir="+t.TempDir(), "-log.level=warn", "-storage.filesystem.dir="+c.bucket)
		fq := querierv1connect.NewQuerierServiceClient(http.DefaultClient, fresh.URL)
		sel := spanIDs[1:]
		want, wantTotal := pprofPaths(idx, func(s *profile.Sample) bool {
			return len(s.Label["span_id"]) == 1 && slices.Contains(sel, s.Label["span_id"][0])
		}, left, right)
		//lint:ignore SA1019 the deprecated call is what clients still send
		resp, err := fq.SelectMergeSpanProfile(ctx, connect.NewRequest(&querierv1.SelectMergeSpanProfileRequest{
			ProfileTypeID: allocObjects, LabelSelector: "{}", SpanSelector: sel, Start: start, End: end, MaxNodes: &big}))
		if err != nil {
			t.Fatal(err)
		}
		got, total := flamePaths(t, resp.Msg.Flamegraph.Names, fgLevels(resp.Msg.Flamegraph.Levels), 4, 0)
		if total != wantTotal {
			t.Fatalf("span total from blocks %d, pprof %d", total, wantTotal)
		}
		samePaths(t, "span profile from blocks", got, want)
		d, err := fq.Diff(ctx, connect.NewRequest(&querierv1.DiffRequest{
			Left:  &querierv1.SelectMergeStacktracesRequest{ProfileTypeID: allocObjects, LabelSelector: leftSel, Start: start, End: end},
			Right: &querierv1.SelectMergeStacktracesRequest{ProfileTypeID: allocObjects, LabelSelector: rightSel, Start: start, End: end},
		}))
		if err != nil || d.Msg.Flamegraph.LeftTicks != totalL || d.Msg.Flamegraph.RightTicks != totalR {
			t.Fatalf("diff from blocks: %v %v, pprof %d/%d", d, err, totalL, totalR)
		}
		an, err := fq.AnalyzeQuery(ctx, connect.NewRequest(&querierv1.AnalyzeQueryRequest{Start: start, End: end, Query: allocObjects + "{}"}))
		if err != nil {
			t.Fatal(err)
		}
		var blocks *querierv1.QueryScope
		for _, s := range an.Msg.QueryScopes {
			if strings.Contains(s.ComponentType, "blocks") {
				blocks = s
			}
		}
		// Each of the three ingesters uploaded one block holding both profiles.
		if blocks == nil || blocks.BlockCount != 3 || blocks.ProfileBytes == 0 || an.Msg.QueryImpact.TotalQueriedSeries != 2 {
			t.Fatalf("analysis from blocks %v", an.Msg)
		}
	})
}

// parseMerged turns a merged profile into pprof's own type (which validates it).
func parseMerged(t *testing.T, p *googlev1.Profile) *profile.Profile {
	t.Helper()
	b, err := p.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	pp, err := profile.ParseData(b)
	if err != nil {
		t.Fatalf("the merged profile does not parse: %v", err)
	}
	return pp
}

// leafKey names the n leaf locations of a stack by function and line (line
// 0 for the leaf when noLeafLine).
func leafKey(locs []*profile.Location, n int, noLeafLine bool) string {
	var b strings.Builder
	for i, l := range locs {
		if i == n {
			break
		}
		for _, ln := range l.Line {
			line := ln.Line
			if i == 0 && noLeafLine {
				line = 0
			}
			fmt.Fprintf(&b, "%s:%d,", ln.Function.Name, line)
		}
		b.WriteByte(';')
	}
	return b.String()
}

func dropZero(m map[string]int64) {
	for k, v := range m {
		if v == 0 {
			delete(m, k)
		}
	}
}

// startClusterArgs is startCluster (no zones) with extra flags on every node.
func startClusterArgs(t *testing.T, n int, extra ...string) *cluster {
	return startClusterOpts(t, n, clusterOptions{extra: extra})
}

// TestGrafanaCallsFanOut: with one owner per series, most series live on
// other ingesters than the one asked; span profiles, diffs, series with
// exemplars and heatmaps come back whole over the fan-out.
func TestGrafanaCallsFanOut(t *testing.T) {
	c := startClusterArgs(t, 3, "-ingester.ring.replication-factor=1")
	ctx := context.Background()
	now := time.Now()
	t0 := now.Add(-5 * time.Minute).Truncate(10 * time.Second)
	p := grafanaProfile(t, t0)
	idx := sampleIndex(t, p, "alloc_objects")
	raw := encode(t, p)
	const services = 6
	ids := map[string]string{}
	for i := 0; i < services; i++ {
		svc := fmt.Sprintf("svc-%d", i)
		ids[svc] = pushProfile(t, c.url(1), svc, raw)
	}
	q := querierv1connect.NewQuerierServiceClient(http.DefaultClient, c.url(0))
	start, end := t0.Add(-time.Minute).UnixMilli(), now.Add(time.Minute).UnixMilli()
	big := int64(1 << 20)

	sel := spanIDs[:2]
	want, wantTotal := pprofPaths(idx, func(s *profile.Sample) bool {
		return len(s.Label["span_id"]) == 1 && slices.Contains(sel, s.Label["span_id"][0])
	}, p)
	for k := range want {
		want[k] *= services
	}
	resp, err := q.SelectMergeStacktraces(ctx, connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{
		ProfileTypeID: allocObjects, LabelSelector: "{}", SpanSelector: sel, Start: start, End: end, MaxNodes: &big}))
	if err != nil {
		t.Fatal(err)
	}
	got, total := flamePaths(t, resp.Msg.Flamegraph.Names, fgLevels(resp.Msg.Flamegraph.Levels), 4, 0)
	if total != services*wantTotal {
		t.Fatalf("span total %d, pprof %d × %d", total, wantTotal, services)
	}
	samePaths(t, "span profile over the fan-out", got, want)

	_, one := pprofPaths(idx, nil, p)
	d, err := q.Diff(ctx, connect.NewRequest(&querierv1.DiffRequest{
		Left:  &querierv1.SelectMergeStacktracesRequest{ProfileTypeID: allocObjects, LabelSelector: `{service_name=~"svc-[0-1]"}`, Start: start, End: end},
		Right: &querierv1.SelectMergeStacktracesRequest{ProfileTypeID: allocObjects, LabelSelector: `{service_name=~"svc-[2-5]"}`, Start: start, End: end},
	}))
	if err != nil || d.Msg.Flamegraph.LeftTicks != 2*one || d.Msg.Flamegraph.RightTicks != 4*one {
		t.Fatalf("diff: %v %v, want %d/%d", d.Msg.GetFlamegraph().GetLeftTicks(), err, 2*one, 4*one)
	}

	ss, err := q.SelectSeries(ctx, connect.NewRequest(&querierv1.SelectSeriesRequest{
		ProfileTypeID: allocObjects, LabelSelector: "{}", Start: t0.UnixMilli(), End: t0.Add(time.Minute).UnixMilli(), Step: 10,
		GroupBy: []string{"service_name"}, ExemplarType: typesv1.ExemplarType_EXEMPLAR_TYPE_INDIVIDUAL}))
	if err != nil || len(ss.Msg.Series) != services {
		t.Fatalf("series: %v %v", ss, err)
	}
	for _, s := range ss.Msg.Series {
		svc := s.Labels[0].Value
		if len(s.Points) != 1 || s.Points[0].Timestamp != t0.UnixMilli() || int64(s.Points[0].Value) != one ||
			len(s.Points[0].Exemplars) != 1 || s.Points[0].Exemplars[0].ProfileId != ids[svc] {
			t.Fatalf("%s: %v, want one point of %d at %d with exemplar %s", svc, s.Points, one, t0.UnixMilli(), ids[svc])
		}
	}

	hm, err := q.SelectHeatmap(ctx, connect.NewRequest(&querierv1.SelectHeatmapRequest{
		ProfileTypeID: allocObjects, LabelSelector: "{}", Start: t0.UnixMilli(), End: t0.Add(time.Minute).UnixMilli(), Step: 10,
		ExemplarType: typesv1.ExemplarType_EXEMPLAR_TYPE_INDIVIDUAL}))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range hm.Msg.Series {
		for _, sl := range s.Slots {
			for _, c := range sl.Counts {
				n += int(c)
			}
		}
	}
	if n != services {
		t.Fatalf("heatmap counts %d profiles, want %d", n, services)
	}
	an, err := q.AnalyzeQuery(ctx, connect.NewRequest(&querierv1.AnalyzeQueryRequest{Start: start, End: end, Query: allocObjects + "{}"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range an.Msg.QueryScopes {
		if strings.Contains(s.ComponentType, "heads") && (s.ProfileCount != services || s.SeriesCount != services) {
			t.Fatalf("heads: %v (one copy of each of %d rows)", s, services)
		}
	}
	if an.Msg.QueryImpact.TotalQueriedSeries != services {
		t.Fatalf("analysis %v", an.Msg)
	}
}
