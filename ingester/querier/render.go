package querier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/hearth-dev/hearth/ingester/model"
)

// The HTTP render API of Pyroscope (what its UI and Grafana's flame graph
// export read): GET /pyroscope/render and /pyroscope/render-diff answer a
// flamebearer profile in JSON, or /pyroscope/render a DOT graph with
// format=dot. Like Pyroscope's, render answers JSON for any other format
// (json, collapsed, ...) and render-diff reads no format.

const (
	RenderPath     = "/pyroscope/render"
	RenderDiffPath = "/pyroscope/render-diff"
)

// FlamebearerProfile is the JSON of /pyroscope/render (format "single") and
// /pyroscope/render-diff (format "double": seven numbers a node).
type FlamebearerProfile struct {
	Version     int                  `json:"version"`
	Flamebearer Flamebearer          `json:"flamebearer"`
	Metadata    FlamebearerMetadata  `json:"metadata"`
	Timeline    *FlamebearerTimeline `json:"timeline"`
	// Diffs only.
	LeftTicks     int64                           `json:"leftTicks,omitempty"`
	RightTicks    int64                           `json:"rightTicks,omitempty"`
	LeftTimeline  *FlamebearerTimeline            `json:"leftTimeline,omitempty"`
	RightTimeline *FlamebearerTimeline            `json:"rightTimeline,omitempty"`
	Groups        map[string]*FlamebearerTimeline `json:"groups"`
	Heatmap       any                             `json:"heatmap"`
}

// Flamebearer is the flame graph: names, and a level of nodes per depth.
type Flamebearer struct {
	Names    []string  `json:"names"`
	Levels   [][]int64 `json:"levels"`
	NumTicks int64     `json:"numTicks"`
	MaxSelf  int64     `json:"maxSelf"`
}

// FlamebearerMetadata says how to read the values.
type FlamebearerMetadata struct {
	Format     string `json:"format"` // single or double
	SpyName    string `json:"spyName"`
	SampleRate uint32 `json:"sampleRate"`
	Units      string `json:"units"`
	Name       string `json:"name"`
}

// FlamebearerTimeline is the total per durationDelta seconds from startTime (Unix seconds).
type FlamebearerTimeline struct {
	StartTime     int64   `json:"startTime"`
	Samples       []int64 `json:"samples"`
	DurationDelta int64   `json:"durationDelta"`
	Watermarks    any     `json:"watermarks"`
}

// flamebearerMetadata names units the way Pyroscope's UI expects them.
func flamebearerMetadata(pt model.ProfileType, format string) FlamebearerMetadata {
	md := FlamebearerMetadata{Format: format, Units: pt.SampleUnit, SampleRate: 100, Name: pt.SampleType}
	switch pt.SampleType {
	case "inuse_objects", "alloc_objects", "goroutine", "goroutines", "samples":
		md.Units = "objects"
	case "cpu":
		md.Units = "samples"
		md.SampleRate = 1_000_000_000
	}
	return md
}

func levels(ls []*querierv1.Level) [][]int64 {
	out := make([][]int64, len(ls))
	for i, l := range ls {
		out[i] = l.Values
		if out[i] == nil {
			out[i] = []int64{}
		}
	}
	return out
}

// httpRequest gives an *http.Request the Header() the tenant check reads.
type httpRequest struct{ r *http.Request }

func (h httpRequest) Header() http.Header { return h.r.Header }

// renderQuery is a parsed query= of the render API: <profile type>{selector}.
type renderQuery struct {
	ptype    string
	selector string
}

// parseRenderQuery splits "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="a"}".
func parseRenderQuery(s string) (renderQuery, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return renderQuery{}, errors.New("query is required: <profile type>{label selector}")
	}
	q := renderQuery{ptype: s, selector: "{}"}
	if i := strings.IndexByte(s, '{'); i >= 0 {
		q.ptype, q.selector = strings.TrimSpace(s[:i]), s[i:]
	}
	if _, err := model.ParseProfileType(q.ptype); err != nil {
		return renderQuery{}, fmt.Errorf("query %q: %w", s, err)
	}
	if _, err := Matcher(q.selector); err != nil {
		return renderQuery{}, fmt.Errorf("query %q: %w", s, err)
	}
	return q, nil
}

// ParseTime reads a render API time: "now", "now-1h" (units s, m, h, d, w,
// combinable as Go durations plus d and w), or a Unix timestamp in seconds,
// milliseconds, microseconds or nanoseconds (told apart by magnitude). It
// returns Unix milliseconds.
func ParseTime(s string, now time.Time) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty time")
	}
	if rest, ok := strings.CutPrefix(s, "now"); ok {
		if rest == "" {
			return now.UnixMilli(), nil
		}
		sign := int64(1)
		switch rest[0] {
		case '-':
			sign = -1
		case '+':
		default:
			return 0, fmt.Errorf("time %q: want now, now-<duration> or a Unix timestamp", s)
		}
		d, err := parseDuration(rest[1:])
		if err != nil {
			return 0, fmt.Errorf("time %q: %w", s, err)
		}
		return now.UnixMilli() + sign*d.Milliseconds(), nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("time %q: want now, now-<duration> or a Unix timestamp", s)
	}
	switch {
	case v < 1e11: // seconds (until the year 5138)
		return v * 1000, nil
	case v < 1e14:
		return v, nil
	case v < 1e17:
		return v / 1000, nil
	}
	return v / 1e6, nil
}

// parseDuration is time.ParseDuration plus days (d) and weeks (w), bounded to 100 years.
func parseDuration(s string) (time.Duration, error) {
	var total time.Duration
	const limit = 100 * 365 * 24 * time.Hour
	if s == "" {
		return 0, errors.New("empty duration")
	}
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 || i > 12 {
			return 0, fmt.Errorf("duration %q: want a number then a unit (s, m, h, d, w)", s)
		}
		n, _ := strconv.ParseInt(s[:i], 10, 64)
		j := i
		for j < len(s) && (s[j] < '0' || s[j] > '9') {
			j++
		}
		var unit time.Duration
		switch s[i:j] {
		case "ms":
			unit = time.Millisecond
		case "s":
			unit = time.Second
		case "m":
			unit = time.Minute
		case "h":
			unit = time.Hour
		case "d":
			unit = 24 * time.Hour
		case "w":
			unit = 7 * 24 * time.Hour
		case "y":
			unit = 365 * 24 * time.Hour
		default:
			return 0, fmt.Errorf("duration unit %q: use ms, s, m, h, d, w or y", s[i:j])
		}
		if n > int64(limit/unit) {
			return 0, errors.New("duration longer than 100 years")
		}
		total += time.Duration(n) * unit
		if total > limit {
			return 0, errors.New("duration longer than 100 years")
		}
		s = s[j:]
	}
	return total, nil
}

// renderRange reads from and until (defaults: the last hour).
func renderRange(from, until string, now time.Time) (int64, int64, error) {
	if from == "" {
		from = "now-1h"
	}
	if until == "" {
		until = "now"
	}
	start, err := ParseTime(from, now)
	if err != nil {
		return 0, 0, fmt.Errorf("from: %w", err)
	}
	end, err := ParseTime(until, now)
	if err != nil {
		return 0, 0, fmt.Errorf("until: %w", err)
	}
	if start == 0 || end == 0 {
		return 0, 0, errors.New("from and until must not be 0 (the Unix epoch is an unset time)")
	}
	if start > end {
		return 0, 0, fmt.Errorf("from (%d ms) is after until (%d ms)", start, end)
	}
	if start < 0 {
		start = 0
	}
	return start, end, nil
}

// renderMaxNodes reads maxNodes, else max-nodes (else max_nodes), as
// Pyroscope does: a value that is not a number, or 0, counts as unset.
func renderMaxNodes(qv url.Values) *int64 {
	for _, k := range []string{"maxNodes", "max-nodes", "max_nodes"} {
		if n, err := strconv.ParseInt(strings.TrimSpace(qv.Get(k)), 10, 64); err == nil && n != 0 {
			return &n
		}
	}
	return nil
}

// timeline sums the selected profiles per step from start (ms), a step of
// about a thousandth of the range, at least 10 s.
func (q *query) timeline(startMs, endMs int64) *FlamebearerTimeline {
	step := max(int64(10), (endMs-startMs)/1000/1000)
	tl := &FlamebearerTimeline{StartTime: startMs / 1000, DurationDelta: step}
	n := (endMs/1000-tl.StartTime)/step + 1
	tl.Samples = make([]int64, n)
	f := newRowFilter(nil)
	for _, sel := range q.sels {
		for _, sr := range sel.Series {
			h := sr.Labels.Hash()
			for i := range sr.Profiles {
				p := &sr.Profiles[i]
				if !f.take(h, p) {
					continue
				}
				k := (p.TimeNanos/int64(time.Second) - tl.StartTime) / step
				if k >= 0 && k < n {
					tl.Samples[k] += p.Total
				}
			}
		}
	}
	return tl
}

// httpError writes err with the HTTP status its connect code maps to.
func httpError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	var ce *connect.Error
	if errors.As(err, &ce) {
		switch ce.Code() {
		case connect.CodeInvalidArgument:
			code = http.StatusBadRequest
		case connect.CodeUnauthenticated:
			code = http.StatusUnauthorized
		case connect.CodePermissionDenied:
			code = http.StatusForbidden
		case connect.CodeNotFound:
			code = http.StatusNotFound
		case connect.CodeResourceExhausted:
			code = http.StatusTooManyRequests
		case connect.CodeUnimplemented:
			code = http.StatusNotImplemented
		case connect.CodeUnavailable:
			code = http.StatusServiceUnavailable
		case connect.CodeDeadlineExceeded:
			code = http.StatusGatewayTimeout // as Pyroscope maps it
		}
		http.Error(w, ce.Message(), code)
		return
	}
	http.Error(w, err.Error(), code)
}

func badRequest(w http.ResponseWriter, err error) { http.Error(w, err.Error(), http.StatusBadRequest) }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Render serves GET /pyroscope/render?query=&from=&until=&format=&max-nodes=:
// a DOT graph with format=dot, the flamebearer JSON for any other format.
func (s *Service) Render(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	qv := r.URL.Query()
	rq, err := parseRenderQuery(qv.Get("query"))
	if err != nil {
		badRequest(w, err)
		return
	}
	start, end, err := renderRange(qv.Get("from"), qv.Get("until"), time.Now())
	if err != nil {
		badRequest(w, err)
		return
	}
	maxNodesReq := renderMaxNodes(qv)
	dot := qv.Get("format") == "dot"
	// The query limits see the querier.v1 request this one stands for: a
	// DOT graph is drawn from the merged pprof (SelectMergeProfile, whose
	// max_nodes the flame graph limits leave alone), the JSON from the
	// merged stacks (SelectMergeStacktraces).
	var req interface{ ProtoReflect() protoreflect.Message }
	flame := &querierv1.SelectMergeStacktracesRequest{ProfileTypeID: rq.ptype, LabelSelector: rq.selector, Start: start, End: end, MaxNodes: maxNodesReq}
	pprofReq := &querierv1.SelectMergeProfileRequest{ProfileTypeID: rq.ptype, LabelSelector: rq.selector, Start: start, End: end}
	req = flame
	if dot {
		req = pprofReq
	}
	var body []byte
	err = s.Limiter.Run(r.Context(), r.Header, req.ProtoReflect(), func(ctx context.Context) error {
		if dot {
			start, end = pprofReq.Start, pprofReq.End
		} else {
			start, end, maxNodesReq = flame.Start, flame.End, flame.MaxNodes
		}
		q, err := s.prepare(WithSelectors(ctx, rq.selector), httpRequest{r}, rq.ptype, rq.selector, start, end, nil)
		if err != nil {
			return err
		}
		if dot {
			if maxNodesReq != nil && *maxNodesReq < 0 {
				maxNodesReq = nil // Pyroscope draws its default node count then
			}
			maxNodes, err := maxNodesOf(maxNodesReq, DefaultDotNodes)
			if err != nil {
				return err
			}
			p, err := q.mergeProfile(nil, 0)
			if err != nil {
				return err
			}
			body = []byte(Dot(p, maxNodes))
			return nil
		}
		maxNodes, err := maxNodesOf(maxNodesReq, DefaultMaxNodes)
		if err != nil {
			return err
		}
		t, err := q.nameTree(nil)
		if err != nil {
			return err
		}
		fg := t.flameGraph(maxNodes)
		body, err = json.Marshal(&FlamebearerProfile{
			Version:     1,
			Flamebearer: Flamebearer{Names: fg.Names, Levels: levels(fg.Levels), NumTicks: fg.Total, MaxSelf: fg.MaxSelf},
			Metadata:    flamebearerMetadata(q.ptype, "single"),
			Timeline:    q.timeline(start, end),
		})
		return err
	})
	if err != nil {
		httpError(w, err)
		return
	}
	if dot {
		w.Header().Set("Content-Type", "text/vnd.graphviz")
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	_, _ = w.Write(body)
}

// RenderDiff serves GET /pyroscope/render-diff?leftQuery=&leftFrom=&leftUntil=&rightQuery=&rightFrom=&rightUntil=&max-nodes=.
func (s *Service) RenderDiff(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	qv := r.URL.Query()
	now := time.Now()
	maxNodes := renderMaxNodes(qv)
	side := func(prefix string) (*querierv1.SelectMergeStacktracesRequest, error) {
		rq, err := parseRenderQuery(qv.Get(prefix + "Query"))
		if err != nil {
			return nil, fmt.Errorf("%sQuery: %w", prefix, err)
		}
		start, end, err := renderRange(qv.Get(prefix+"From"), qv.Get(prefix+"Until"), now)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", prefix, err)
		}
		return &querierv1.SelectMergeStacktracesRequest{ProfileTypeID: rq.ptype, LabelSelector: rq.selector, Start: start, End: end, MaxNodes: maxNodes}, nil
	}
	l, err := side("left")
	if err != nil {
		badRequest(w, err)
		return
	}
	rr, err := side("right")
	if err != nil {
		badRequest(w, err)
		return
	}
	// The limits see it as the querier.v1 Diff it stands for (both sides' ranges, max_nodes).
	var out *FlamebearerProfile
	dr := &querierv1.DiffRequest{Left: l, Right: rr}
	err = s.Limiter.Run(r.Context(), r.Header, dr.ProtoReflect(), func(ctx context.Context) error {
		fg, err := s.diff(ctx, httpRequest{r}, l, rr)
		if err != nil {
			return err
		}
		pt, _ := model.ParseProfileType(l.ProfileTypeID)
		tl := func(m *querierv1.SelectMergeStacktracesRequest) (*FlamebearerTimeline, error) {
			q, err := s.prepare(WithSelectors(ctx, m.LabelSelector), httpRequest{r}, m.ProfileTypeID, m.LabelSelector, m.Start, m.End, nil)
			if err != nil {
				return nil, err
			}
			return q.timeline(m.Start, m.End), nil
		}
		ltl, err := tl(l)
		if err != nil {
			return err
		}
		rtl, err := tl(rr)
		if err != nil {
			return err
		}
		out = &FlamebearerProfile{
			Version:       1,
			Flamebearer:   Flamebearer{Names: fg.Names, Levels: levels(fg.Levels), NumTicks: fg.Total, MaxSelf: fg.MaxSelf},
			Metadata:      flamebearerMetadata(pt, "double"),
			LeftTicks:     fg.LeftTicks,
			RightTicks:    fg.RightTicks,
			Timeline:      ltl,
			LeftTimeline:  ltl,
			RightTimeline: rtl,
		}
		return nil
	})
	if err != nil {
		httpError(w, err)
		return
	}
	writeJSON(w, out)
}
