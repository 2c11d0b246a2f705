// Package querier answers querier.v1 over every place profiles live (the
// head, and later blocks and other ingesters), counting each profile once.
package querier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/querylimit"
	"github.com/hearth-dev/hearth/ingester/selector"
	"github.com/hearth-dev/hearth/ingester/tenant"
)

// Source is one place profiles can be read from.
type Source interface {
	// Select returns the rows of profile type ptype ("" for all) matching in [start, end] ns.
	Select(ctx context.Context, tenant, ptype string, match func(model.Labels) bool, start, end int64) ([]head.Selection, error)
	// SeriesLabels returns the label sets of matching series with data in range.
	SeriesLabels(ctx context.Context, tenant string, match func(model.Labels) bool, start, end int64) ([]model.Labels, error)
}

// TimeSpanner is a Source that knows a tenant's oldest and newest profile
// time (ns) without reading rows (ok false: no profile); GetProfileStats uses it.
type TimeSpanner interface {
	TimeSpan(ctx context.Context, tenant string) (oldest, newest int64, ok bool, err error)
}

// HeadSource reads the in-memory head.
type HeadSource struct{ Head *head.Head }

// Select implements Source.
func (s HeadSource) Select(ctx context.Context, t, ptype string, match func(model.Labels) bool, start, end int64) ([]head.Selection, error) {
	th := s.Head.Tenant(t)
	if th == nil {
		return nil, nil
	}
	if head.LazyRows(ctx) {
		return []head.Selection{th.SelectLazy(ptype, match, start, end)}, nil
	}
	return []head.Selection{th.Select(ptype, match, start, end)}, nil
}

// SeriesLabels implements Source.
func (s HeadSource) SeriesLabels(_ context.Context, t string, match func(model.Labels) bool, start, end int64) ([]model.Labels, error) {
	th := s.Head.Tenant(t)
	if th == nil {
		return nil, nil
	}
	return th.SeriesLabels(match, start, end), nil
}

// Service implements querier.v1.QuerierService.
type Service struct {
	querierv1connect.UnimplementedQuerierServiceHandler
	Sources      []Source
	Multitenancy bool
	// Limiter is the query limits the plain-HTTP endpoints (render) apply
	// themselves; querier.v1 applies them with Limiter.Interceptor (nil: none).
	Limiter *Limiter
}

var _ querierv1connect.QuerierServiceHandler = (*Service)(nil)

func (s *Service) tenant(h interface{ Header() httpHeader }) (string, error) {
	t, err := tenant.FromHeader(h.Header(), s.Multitenancy)
	if err != nil {
		if tenant.IsInvalid(err) {
			return "", connect.NewError(connect.CodeInvalidArgument, err)
		}
		return "", connect.NewError(connect.CodeUnauthenticated, err)
	}
	return t, nil
}

// timeRange converts a request's milliseconds into nanoseconds; end 0 means now.
func timeRange(startMs, endMs int64) (int64, int64, error) {
	if endMs <= 0 {
		endMs = time.Now().UnixMilli()
	}
	// start = end+1 is the empty range ApplyQueryLimits makes of a query
	// entirely before max_query_lookback: it answers nothing.
	empty := startMs == endMs+1
	if startMs > endMs && !empty {
		return 0, 0, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("start %d is after end %d", startMs, endMs))
	}
	const maxMs = math.MaxInt64 / int64(time.Millisecond)
	clamp := func(ms int64) int64 {
		switch {
		case ms > maxMs:
			return math.MaxInt64
		case ms < -maxMs:
			return math.MinInt64
		}
		return ms * int64(time.Millisecond)
	}
	end := clamp(endMs)
	if empty {
		return clamp(startMs), clamp(startMs) - 1, nil
	}
	if end <= math.MaxInt64-int64(time.Millisecond) {
		end += int64(time.Millisecond) - 1 // the whole last millisecond
	}
	return clamp(startMs), end, nil
}

// Matcher builds the series matcher of selectors: all matchers of one selector
// must match, and a series matches when one selector does (Series and
// LabelNames take a list of selectors). No selectors: nil (everything).
func Matcher(selectors ...string) (func(model.Labels) bool, error) {
	if len(selectors) == 0 {
		return nil, nil
	}
	sets := make([][]*selector.Matcher, 0, len(selectors))
	for _, sel := range selectors {
		ms, err := selector.Parse(sel)
		if err != nil {
			return nil, fmt.Errorf("label selector %q: %w", sel, err)
		}
		sets = append(sets, ms)
	}
	return func(ls model.Labels) bool {
		for _, ms := range sets {
			ok := true
			for _, m := range ms {
				if !m.Matches(ls.Get(m.Name)) {
					ok = false
					break
				}
			}
			if ok {
				return true
			}
		}
		return false
	}, nil
}

// matcher is Matcher with a parse error as InvalidArgument.
func matcher(selectors ...string) (func(model.Labels) bool, error) {
	m, err := Matcher(selectors...)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	return m, nil
}

func (s *Service) selectAll(ctx context.Context, t, ptype string, match func(model.Labels) bool, start, end int64) ([]head.Selection, error) {
	var out []head.Selection
	budget := querylimit.From(ctx)
	for _, src := range s.Sources {
		sel, err := src.Select(ctx, t, ptype, match, start, end)
		if err != nil {
			return nil, sourceError(err)
		}
		out = append(out, sel...)
		if budget != nil {
			for _, sl := range sel {
				for i := range sl.Series {
					if err := budget.AddSeries(sl.Series[i].Labels.Hash()); err != nil {
						return nil, sourceError(err)
					}
				}
			}
			if err := budget.Check(); err != nil {
				return nil, sourceError(err)
			}
		}
	}
	return out, nil
}

// sourceError: a query over its budget is refused like Pyroscope refuses a
// query over its limits (InvalidArgument, 400); any other failure to read a
// source is Unavailable.
func sourceError(err error) error {
	if querylimit.IsExceeded(err) {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	return connect.NewError(connect.CodeUnavailable, err)
}

func (s *Service) seriesLabels(ctx context.Context, t string, match func(model.Labels) bool, start, end int64) ([]model.Labels, error) {
	var out []model.Labels
	seen := map[uint64]struct{}{}
	budget := querylimit.From(ctx)
	for _, src := range s.Sources {
		ls, err := src.SeriesLabels(ctx, t, match, start, end)
		if err != nil {
			return nil, sourceError(err)
		}
		for _, l := range ls {
			h := l.Hash()
			if _, dup := seen[h]; dup {
				continue
			}
			seen[h] = struct{}{}
			out = append(out, l)
			if budget != nil {
				if err := budget.AddSeries(h); err != nil {
					return nil, sourceError(err)
				}
			}
		}
	}
	return out, nil
}

// matchingSeries resolves a request's tenant, time range (ms) and selectors
// and returns the label sets of the matching series.
func (s *Service) matchingSeries(ctx context.Context, h interface{ Header() httpHeader }, startMs, endMs int64, selectors []string) ([]model.Labels, error) {
	t, err := s.tenant(h)
	if err != nil {
		return nil, err
	}
	start, end, err := timeRange(startMs, endMs)
	if err != nil {
		return nil, err
	}
	match, err := matcher(selectors...)
	if err != nil {
		return nil, err
	}
	return s.seriesLabels(ctx, t, match, start, end)
}

// ProfileTypes lists the profile type ids with data in range.
func (s *Service) ProfileTypes(ctx context.Context, req *connect.Request[querierv1.ProfileTypesRequest]) (*connect.Response[querierv1.ProfileTypesResponse], error) {
	t, err := s.tenant(req)
	if err != nil {
		return nil, err
	}
	start, end, err := timeRange(req.Msg.Start, req.Msg.End)
	if req.Msg.Start == 0 && req.Msg.End == 0 {
		start, end, err = math.MinInt64, math.MaxInt64, nil
	}
	if err != nil {
		return nil, err
	}
	all, err := s.seriesLabels(ctx, t, nil, start, end)
	if err != nil {
		return nil, err
	}
	types := map[string]*typesv1.ProfileType{}
	for _, ls := range all {
		id := ls.Get(model.LabelProfileType)
		if _, ok := types[id]; ok || id == "" {
			continue
		}
		pt, err := model.ParseProfileType(id)
		if err != nil {
			continue
		}
		types[id] = pt.Proto()
	}
	resp := &querierv1.ProfileTypesResponse{}
	for _, pt := range types {
		resp.ProfileTypes = append(resp.ProfileTypes, pt)
	}
	sort.Slice(resp.ProfileTypes, func(i, j int) bool { return resp.ProfileTypes[i].ID < resp.ProfileTypes[j].ID })
	return connect.NewResponse(resp), nil
}

// LabelNames lists label names of matching series.
func (s *Service) LabelNames(ctx context.Context, req *connect.Request[typesv1.LabelNamesRequest]) (*connect.Response[typesv1.LabelNamesResponse], error) {
	all, err := s.matchingSeries(ctx, req, req.Msg.Start, req.Msg.End, req.Msg.Matchers)
	if err != nil {
		return nil, err
	}
	set := map[string]struct{}{}
	for _, ls := range all {
		for _, l := range ls {
			set[l.Name] = struct{}{}
		}
	}
	return connect.NewResponse(&typesv1.LabelNamesResponse{Names: sortedKeys(set)}), nil
}

// LabelValues lists the values of one label among matching series.
func (s *Service) LabelValues(ctx context.Context, req *connect.Request[typesv1.LabelValuesRequest]) (*connect.Response[typesv1.LabelValuesResponse], error) {
	if req.Msg.Name == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("label name is required"))
	}
	all, err := s.matchingSeries(ctx, req, req.Msg.Start, req.Msg.End, req.Msg.Matchers)
	if err != nil {
		return nil, err
	}
	set := map[string]struct{}{}
	for _, ls := range all {
		if ls.Has(req.Msg.Name) {
			set[ls.Get(req.Msg.Name)] = struct{}{}
		}
	}
	return connect.NewResponse(&typesv1.LabelValuesResponse{Names: sortedKeys(set)}), nil
}

// Series lists matching label sets, trimmed to label_names when given.
func (s *Service) Series(ctx context.Context, req *connect.Request[querierv1.SeriesRequest]) (*connect.Response[querierv1.SeriesResponse], error) {
	all, err := s.matchingSeries(ctx, req, req.Msg.Start, req.Msg.End, req.Msg.Matchers)
	if err != nil {
		return nil, err
	}
	resp := &querierv1.SeriesResponse{}
	seen := map[uint64]struct{}{}
	for _, ls := range all {
		if len(req.Msg.LabelNames) > 0 {
			ls = seriesKey(ls, req.Msg.LabelNames)
		}
		h := ls.Hash()
		if _, dup := seen[h]; dup {
			continue
		}
		seen[h] = struct{}{}
		resp.LabelsSet = append(resp.LabelsSet, &typesv1.Labels{Labels: ls.Proto()})
	}
	sort.Slice(resp.LabelsSet, func(i, j int) bool {
		return model.FromProto(resp.LabelsSet[i].Labels).String() < model.FromProto(resp.LabelsSet[j].Labels).String()
	})
	return connect.NewResponse(resp), nil
}

// query is the common part of the Select* requests.
type query struct {
	tenant     string
	ptype      model.ProfileType
	start, end int64
	sels       []head.Selection
	filter     *rowFilter
	spans      map[uint64]struct{} // span_selector; nil: every sample
}

// checkMerge refuses what Pyroscope refuses before it reads anything for
// the merges, SelectSeries and Diff: both ends of the time range are
// required (0 is unset; LabelNames, Series and the like take none) and so is
// a label selector ("{}" selects everything).
func checkMerge(sel string, startMs, endMs int64) error {
	if startMs == 0 || endMs == 0 {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("start and end are required (milliseconds since the epoch), got %d and %d", startMs, endMs))
	}
	if strings.TrimSpace(sel) == "" {
		return connect.NewError(connect.CodeInvalidArgument, errors.New(`label_selector is required: "{}" selects every series`))
	}
	return nil
}

// prepareMerge is prepare for the calls checkMerge guards.
func (s *Service) prepareMerge(ctx context.Context, h interface{ Header() httpHeader }, ptypeID, sel string, startMs, endMs int64, ids []string) (*query, error) {
	if _, err := s.tenant(h); err != nil {
		return nil, err
	}
	if err := checkMerge(sel, startMs, endMs); err != nil {
		return nil, err
	}
	return s.prepare(ctx, h, ptypeID, sel, startMs, endMs, ids)
}

func (s *Service) prepare(ctx context.Context, h interface{ Header() httpHeader }, ptypeID, sel string, startMs, endMs int64, ids []string) (*query, error) {
	t, err := s.tenant(h)
	if err != nil {
		return nil, err
	}
	pt, err := model.ParseProfileType(ptypeID)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	start, end, err := timeRange(startMs, endMs)
	if err != nil {
		return nil, err
	}
	match, err := matcher(sel)
	if err != nil {
		return nil, err
	}
	var pids []head.ProfileID
	for _, id := range ids {
		u, err := uuid.Parse(id)
		if err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("profile id %q: %w", id, err))
		}
		pids = append(pids, head.ProfileID(u))
	}
	// Lazy head rows: the merges read a chunk's aggregate without unpacking
	// its rows; every other reader of q.sels reads samples through
	// SeriesRows.Unpacked.
	sels, err := s.selectAll(head.WithLazyRows(ctx), t, pt.ID(), match, start, end)
	if err != nil {
		return nil, err
	}
	return &query{tenant: t, ptype: pt, start: start, end: end, sels: sels, filter: newRowFilterSized(pids, selectedRows(sels))}, nil
}

func callSite(sel *typesv1.StackTraceSelector) []string {
	if sel == nil {
		return nil
	}
	out := make([]string, len(sel.CallSite))
	for i, l := range sel.CallSite {
		out[i] = l.Name
	}
	return out
}

// SelectMergeStacktraces merges matching profiles into a flame graph, a
// tree, a DOT graph or a pprof.
func (s *Service) SelectMergeStacktraces(ctx context.Context, req *connect.Request[querierv1.SelectMergeStacktracesRequest]) (*connect.Response[querierv1.SelectMergeStacktracesResponse], error) {
	m := req.Msg
	if len(m.TraceIdSelector) > 0 {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("trace id selectors are not supported: Hearth keeps span ids, not trace ids (use span_selector)"))
	}
	q, err := s.prepareMerge(ctx, req, m.ProfileTypeID, m.LabelSelector, m.Start, m.End, m.ProfileIdSelector)
	if err != nil {
		return nil, err
	}
	if err := q.selectSpans(m.SpanSelector); err != nil {
		return nil, err
	}
	resp, err := q.stacktraces(m.Format, m.StackTraceSelector, m.MaxNodes)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

// stacktraces answers a merge in the format asked for.
func (q *query) stacktraces(format querierv1.ProfileFormat, sts *typesv1.StackTraceSelector, maxNodesReq *int64) (*querierv1.SelectMergeStacktracesResponse, error) {
	maxNodes, err := maxNodesOf(maxNodesReq, DefaultMaxNodes)
	if err != nil {
		return nil, err
	}
	switch format {
	case querierv1.ProfileFormat_PROFILE_FORMAT_PPROF:
		pprofMax, _ := maxNodesOf(maxNodesReq, 0)
		p, err := q.mergeProfile(sts, pprofMax)
		if err != nil {
			return nil, err
		}
		return &querierv1.SelectMergeStacktracesResponse{Pprof: &querierv1.PprofProfile{Profile: p}}, nil
	case querierv1.ProfileFormat_PROFILE_FORMAT_UNSPECIFIED, querierv1.ProfileFormat_PROFILE_FORMAT_FLAMEGRAPH:
		t, err := q.nameTree(callSite(sts))
		if err != nil {
			return nil, err
		}
		return &querierv1.SelectMergeStacktracesResponse{Flamegraph: t.flameGraph(maxNodes)}, nil
	case querierv1.ProfileFormat_PROFILE_FORMAT_TREE:
		t, err := q.nameTree(callSite(sts))
		if err != nil {
			return nil, err
		}
		return &querierv1.SelectMergeStacktracesResponse{Tree: t.treeBytes(maxNodes)}, nil
	case querierv1.ProfileFormat_PROFILE_FORMAT_DOT:
		dotMax, _ := maxNodesOf(maxNodesReq, DefaultDotNodes)
		p, err := q.mergeProfile(sts, 0)
		if err != nil {
			return nil, err
		}
		return &querierv1.SelectMergeStacktracesResponse{Dot: Dot(p, dotMax)}, nil
	}
	return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("format %s is not supported: use PROFILE_FORMAT_FLAMEGRAPH, TREE, DOT or PPROF", format))
}

// maxNodesOf reads a request's max_nodes: absent or 0 is def, negative is refused.
func maxNodesOf(v *int64, def int) (int, error) {
	if v == nil || *v == 0 {
		return def, nil
	}
	if *v < 0 {
		return 0, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("max_nodes must not be negative, got %d", *v))
	}
	return int(min(*v, math.MaxInt32)), nil
}

// nameTree merges the selected stacks into a tree of function names.
func (q *query) nameTree(site []string) (*nameTree, error) {
	merged, err := q.merge()
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	keep := callSiteMatcher(site)
	tree := newNameTree()
	var locs []uint32
	var fr []string
	for _, sv := range merged {
		if keep == nil {
			sn := newStackNodes(tree, sv.syms)
			for i, st := range sv.stacks {
				sn.add(st, sv.values[i])
			}
			continue
		}
		for i, st := range sv.stacks {
			v := sv.values[i]
			locs = sv.syms.Stack(locs[:0], st)
			fr = frames(fr[:0], sv.syms, locs)
			if keep != nil && !keep(fr) {
				continue
			}
			tree.add(fr, v)
		}
	}
	return tree, nil
}

// mergeProfile merges the selected stacks into one pprof profile, trimmed as
// the stack trace selector asks (go_pgo wins over call_site, as documented)
// and cut to maxNodes (0: not cut).
func (q *query) mergeProfile(sts *typesv1.StackTraceSelector, maxNodes int) (*googlev1.Profile, error) {
	merged, err := q.merge()
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	var pgo *typesv1.GoPGO
	var keep func([]string) bool
	if sts != nil && sts.GoPgo != nil {
		pgo = sts.GoPgo
	} else {
		keep = callSiteMatcher(callSite(sts))
	}
	b := newPprofBuilder(q.ptype, q.start, q.end)
	var locs []uint32
	var fr []string
	for _, sv := range merged {
		src := b.source(sv.syms)
		// Deterministic order: by stack id within a source.
		for i, st := range sv.stacks {
			locs = sv.syms.Stack(locs[:0], st)
			if keep != nil {
				fr = frames(fr[:0], sv.syms, locs)
				if !keep(fr) {
					continue
				}
			}
			if pgo != nil {
				src.addPGO(locs, sv.values[i], pgo)
				continue
			}
			src.add(locs, sv.values[i])
		}
	}
	p := b.profile()
	if maxNodes > 0 {
		p = truncateProfile(p, maxNodes)
	}
	return p, nil
}

// SelectMergeProfile merges matching profiles into one pprof profile.
func (s *Service) SelectMergeProfile(ctx context.Context, req *connect.Request[querierv1.SelectMergeProfileRequest]) (*connect.Response[googlev1.Profile], error) {
	m := req.Msg
	if len(m.TraceIdSelector) > 0 {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("trace id selectors are not supported: Hearth keeps span ids, not trace ids"))
	}
	maxNodes, err := maxNodesOf(m.MaxNodes, 0)
	if err != nil {
		return nil, err
	}
	q, err := s.prepareMerge(ctx, req, m.ProfileTypeID, m.LabelSelector, m.Start, m.End, m.ProfileIdSelector)
	if err != nil {
		return nil, err
	}
	p, err := q.mergeProfile(m.StackTraceSelector, maxNodes)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(p), nil
}

// SelectSeries returns, per group_by label set, the profiles' totals per
// step. As in Pyroscope, a point stands for the step that ends at its
// timestamp: points are at start, start+step, ...; the point at T sums the
// profiles in (T-step, T] (a profile at start lands on start itself). With an
// exemplar type, each point carries the id of its heaviest profile.
func (s *Service) SelectSeries(ctx context.Context, req *connect.Request[querierv1.SelectSeriesRequest]) (*connect.Response[querierv1.SelectSeriesResponse], error) {
	m := req.Msg
	if m.Step <= 0 || m.Step > maxStepSeconds || math.IsNaN(m.Step) {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("step must be positive seconds, at most %d, got %v", int64(maxStepSeconds), m.Step))
	}
	if m.StackTraceSelector != nil && m.StackTraceSelector.GoPgo != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("go_pgo selects stacks for a pprof merge, not for SelectSeries"))
	}
	keep := callSiteMatcher(callSite(m.StackTraceSelector))
	exemplars := false
	switch m.ExemplarType {
	case typesv1.ExemplarType_EXEMPLAR_TYPE_UNSPECIFIED, typesv1.ExemplarType_EXEMPLAR_TYPE_NONE:
	case typesv1.ExemplarType_EXEMPLAR_TYPE_INDIVIDUAL:
		exemplars = true
	default:
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("exemplar_type %s is not supported by SelectSeries: use EXEMPLAR_TYPE_INDIVIDUAL (span exemplars come from SelectHeatmap)", m.ExemplarType))
	}
	if m.Start < 0 || m.End < 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("start and end are milliseconds since the epoch, got %d and %d", m.Start, m.End))
	}
	stepMs := int64(m.Step * 1000)
	if stepMs <= 0 {
		stepMs = 1
	}
	if span := (m.End - m.Start) / stepMs; span > 1_000_000 {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("range/step gives %d points, more than 1000000: use a larger step", span))
	}
	steps := int((m.End-m.Start)/stepMs) + 1
	sctx := ctx
	if keep == nil {
		sctx = head.WithTotalsOnly(ctx) // totals only: blocks skip the samples column and the symbols
	}
	q, err := s.prepareMerge(sctx, req, m.ProfileTypeID, m.LabelSelector, m.Start, m.End, nil)
	if err != nil {
		return nil, err
	}
	avg := m.Aggregation != nil && *m.Aggregation == typesv1.TimeSeriesAggregationType_TIME_SERIES_AGGREGATION_TYPE_AVERAGE
	type candidate struct {
		id     head.ProfileID
		time   int64 // ms
		value  int64
		labels model.Labels
	}
	type bucket struct {
		sum   float64
		count int
		ex    map[head.ProfileID]*candidate // a profile split over several series of the group counts once
	}
	groups := map[uint64]model.Labels{}
	points := map[uint64]map[int64]*bucket{}
	for _, sel := range q.sels {
		var under map[uint32]bool // with a call site: whether a stack is under it
		if keep != nil {
			under = map[uint32]bool{}
		}
		for _, sr := range sel.Series {
			h := sr.Labels.Hash()
			key := seriesKey(sr.Labels, m.GroupBy)
			gk := key.Hash()
			groups[gk] = key
			rows := sr.Profiles
			if points[gk] == nil {
				// A group has at most one point per step and, grouped by
				// a series' own labels, at most one per row.
				points[gk] = make(map[int64]*bucket, min(len(rows), steps))
			}
			if keep != nil {
				rows = sr.Unpacked(0, len(sr.Profiles)) // callSiteTotal reads the samples
			}
			for i := range rows {
				p := &rows[i]
				if !q.filter.take(h, p) {
					continue
				}
				total := p.Total
				if keep != nil {
					var err error
					if total, err = callSiteTotal(sel, p, keep, under); err != nil {
						return nil, connect.NewError(connect.CodeInternal, err)
					}
				}
				ms := p.TimeNanos / int64(time.Millisecond)
				ts := stepEnd(ms, m.Start, stepMs)
				b := points[gk][ts]
				if b == nil {
					b = &bucket{}
					points[gk][ts] = b
				}
				b.sum += float64(total)
				b.count++
				if exemplars {
					if b.ex == nil {
						b.ex = map[head.ProfileID]*candidate{}
					}
					if c := b.ex[p.ID]; c != nil {
						c.value += total
					} else {
						b.ex[p.ID] = &candidate{id: p.ID, time: ms, value: total, labels: sr.Labels}
					}
				}
			}
		}
	}
	resp := &querierv1.SelectSeriesResponse{}
	for gk, ps := range points {
		if len(ps) == 0 {
			continue
		}
		series := &typesv1.Series{Labels: groups[gk].Proto()}
		for ts, b := range ps {
			v := b.sum
			if avg {
				v = b.sum / float64(b.count)
			}
			pt := &typesv1.Point{Timestamp: ts, Value: v}
			var best *candidate
			for _, c := range b.ex {
				if best == nil || c.value > best.value || (c.value == best.value && bytes.Compare(c.id[:], best.id[:]) < 0) {
					best = c
				}
			}
			if best != nil {
				pt.Exemplars = []*typesv1.Exemplar{{
					Timestamp: best.time, ProfileId: uuid.UUID(best.id).String(), Value: best.value,
					Labels: exemplarLabels(best.labels, m.GroupBy),
				}}
			}
			series.Points = append(series.Points, pt)
		}
		sort.Slice(series.Points, func(i, j int) bool { return series.Points[i].Timestamp < series.Points[j].Timestamp })
		resp.Series = append(resp.Series, series)
	}
	sort.Slice(resp.Series, func(i, j int) bool {
		return model.FromProto(resp.Series[i].Labels).String() < model.FromProto(resp.Series[j].Labels).String()
	})
	if m.Limit != nil && *m.Limit > 0 && int64(len(resp.Series)) > *m.Limit {
		sort.SliceStable(resp.Series, func(i, j int) bool { return seriesSum(resp.Series[i]) > seriesSum(resp.Series[j]) })
		resp.Series = resp.Series[:*m.Limit]
	}
	return connect.NewResponse(resp), nil
}

// callSiteTotal sums a row's samples whose stack is under the call site;
// under caches the answer per stack of the selection.
func callSiteTotal(sel head.Selection, p *head.Profile, keep func([]string) bool, under map[uint32]bool) (int64, error) {
	var total int64
	var locs []uint32
	var fr []string
	nodes := uint32(len(sel.Symbols.Nodes))
	err := head.DecodeSamples(p.Samples, func(st uint32, v int64) {
		ok, seen := under[st]
		if !seen {
			if st < nodes {
				locs = sel.Symbols.Stack(locs[:0], st)
				fr = frames(fr[:0], sel.Symbols, locs)
				ok = keep(fr)
			}
			under[st] = ok
		}
		if ok {
			total += v
		}
	})
	return total, err
}

// stepEnd is the timestamp of the point a profile at ms belongs to: the end
// of its step, start + k*step with (start+(k-1)*step, start+k*step] holding ms;
// a profile at or before start belongs to start.
func stepEnd(ms, start, step int64) int64 {
	if ms <= start {
		return start
	}
	k := (ms - start + step - 1) / step
	return start + k*step
}

// exemplarLabels are a profile's series labels that its series' labels (the
// group_by ones) do not already say, without the internal ones.
func exemplarLabels(ls model.Labels, groupBy []string) []*typesv1.LabelPair {
	var out []*typesv1.LabelPair
	for _, l := range ls {
		if slices.Contains(groupBy, l.Name) || strings.HasPrefix(l.Name, "__") {
			continue
		}
		out = append(out, &typesv1.LabelPair{Name: l.Name, Value: l.Value})
	}
	return out
}

func seriesSum(s *typesv1.Series) float64 {
	var t float64
	for _, p := range s.Points {
		t += p.Value
	}
	return t
}

// GetProfileStats says whether the tenant has data and its time span.
func (s *Service) GetProfileStats(ctx context.Context, req *connect.Request[typesv1.GetProfileStatsRequest]) (*connect.Response[typesv1.GetProfileStatsResponse], error) {
	t, err := s.tenant(req)
	if err != nil {
		return nil, err
	}
	resp := &typesv1.GetProfileStatsResponse{OldestProfileTime: math.MaxInt64, NewestProfileTime: math.MinInt64}
	var sels []head.Selection
	for _, src := range s.Sources {
		// Blocks answer from meta.json; the others' rows are read.
		if ts, ok := src.(TimeSpanner); ok {
			oldest, newest, any, err := ts.TimeSpan(ctx, t)
			if err != nil {
				return nil, connect.NewError(connect.CodeUnavailable, err)
			}
			if any {
				resp.DataIngested = true
				resp.OldestProfileTime = min(resp.OldestProfileTime, oldest/int64(time.Millisecond))
				resp.NewestProfileTime = max(resp.NewestProfileTime, newest/int64(time.Millisecond))
			}
			continue
		}
		sel, err := src.Select(ctx, t, "", nil, math.MinInt64, math.MaxInt64)
		if err != nil {
			return nil, connect.NewError(connect.CodeUnavailable, err)
		}
		sels = append(sels, sel...)
	}
	for _, sel := range sels {
		for _, sr := range sel.Series {
			for _, p := range sr.Profiles {
				resp.DataIngested = true
				ms := p.TimeNanos / int64(time.Millisecond)
				resp.OldestProfileTime = min(resp.OldestProfileTime, ms)
				resp.NewestProfileTime = max(resp.NewestProfileTime, ms)
			}
		}
	}
	if !resp.DataIngested {
		resp.OldestProfileTime, resp.NewestProfileTime = 0, 0
	}
	return connect.NewResponse(resp), nil
}

func sortedKeys(set map[string]struct{}) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
