package querier

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
)

// HeatmapBuckets is how many value buckets (the y axis) a heatmap has: equal
// widths between the smallest and the largest value of the query.
const HeatmapBuckets = 20

// maxStepSeconds bounds a SelectSeries or SelectHeatmap step (about 31 years).
const maxStepSeconds = 1e9

// SelectHeatmap counts, per group and per step (a slot ends at its
// timestamp, as a SelectSeries point does), how many profiles (or spans,
// with HEATMAP_QUERY_TYPE_SPAN) had a total in each value bucket. With an
// exemplar type, each non-empty cell carries its heaviest profile (or span).
func (s *Service) SelectHeatmap(ctx context.Context, req *connect.Request[querierv1.SelectHeatmapRequest]) (*connect.Response[querierv1.SelectHeatmapResponse], error) {
	m := req.Msg
	if m.Step <= 0 || m.Step > maxStepSeconds || math.IsNaN(m.Step) {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("step must be positive seconds, at most %d, got %v", int64(maxStepSeconds), m.Step))
	}
	if m.Start < 0 || m.End < 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("start and end are milliseconds since the epoch, got %d and %d", m.Start, m.End))
	}
	spans := false
	switch m.QueryType {
	case querierv1.HeatmapQueryType_HEATMAP_QUERY_TYPE_UNSPECIFIED, querierv1.HeatmapQueryType_HEATMAP_QUERY_TYPE_INDIVIDUAL:
	case querierv1.HeatmapQueryType_HEATMAP_QUERY_TYPE_SPAN:
		spans = true
	default:
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("query_type %s is not supported", m.QueryType))
	}
	exemplars := false
	switch m.ExemplarType {
	case typesv1.ExemplarType_EXEMPLAR_TYPE_UNSPECIFIED, typesv1.ExemplarType_EXEMPLAR_TYPE_NONE:
	case typesv1.ExemplarType_EXEMPLAR_TYPE_INDIVIDUAL:
		if spans {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("exemplar_type %s does not match query_type %s", m.ExemplarType, m.QueryType))
		}
		exemplars = true
	case typesv1.ExemplarType_EXEMPLAR_TYPE_SPAN:
		if !spans {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("exemplar_type %s does not match query_type %s", m.ExemplarType, m.QueryType))
		}
		exemplars = true
	default:
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("exemplar_type %s is not supported", m.ExemplarType))
	}
	stepMs := max(int64(m.Step*1000), 1)
	if n := (m.End - m.Start) / stepMs; n > 100_000 {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("range/step gives %d slots, more than 100000: use a larger step", n))
	}
	q, err := s.prepare(ctx, req, m.ProfileTypeID, m.LabelSelector, m.Start, m.End, nil)
	if err != nil {
		return nil, err
	}
	// One item per (group, profile) or (group, profile, span).
	type itemKey struct {
		group uint64
		id    head.ProfileID
		span  uint64
	}
	type item struct {
		ts     int64 // slot
		time   int64 // ms
		value  int64
		labels model.Labels
	}
	groups := map[uint64]model.Labels{}
	items := map[itemKey]*item{}
	add := func(k itemKey, ts, ms, v int64, ls model.Labels) {
		if it := items[k]; it != nil {
			it.value += v
			return
		}
		items[k] = &item{ts: ts, time: ms, value: v, labels: ls}
	}
	for _, sel := range q.sels {
		for _, sr := range sel.Series {
			h := sr.Labels.Hash()
			key := seriesKey(sr.Labels, m.GroupBy)
			gk := key.Hash()
			groups[gk] = key
			rows := sr.Profiles
			if spans {
				rows = sr.Unpacked(0, len(sr.Profiles)) // DecodeSpans reads the samples
			}
			for i := range rows {
				p := &rows[i]
				if !q.filter.take(h, p) {
					continue
				}
				ms := p.TimeNanos / int64(time.Millisecond)
				ts := stepEnd(ms, m.Start, stepMs)
				if !spans {
					add(itemKey{group: gk, id: p.ID}, ts, ms, p.Total, sr.Labels)
					continue
				}
				if err := head.DecodeSpans(p.Samples, func(span uint64, _ uint32, v int64) {
					add(itemKey{group: gk, id: p.ID, span: span}, ts, ms, v, sr.Labels)
				}); err != nil {
					return nil, connect.NewError(connect.CodeInternal, err)
				}
			}
		}
	}
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, it := range items {
		lo, hi = min(lo, it.value), max(hi, it.value)
	}
	width := float64(1)
	if len(items) > 0 && hi > lo {
		width = (float64(hi) - float64(lo)) / HeatmapBuckets
	}
	bucketOf := func(v int64) int {
		return min(int((float64(v)-float64(lo))/width), HeatmapBuckets-1)
	}
	type cellKey struct {
		group uint64
		ts    int64
		b     int
	}
	type cell struct {
		count int32
		best  *item
		key   itemKey
	}
	cells := map[cellKey]*cell{}
	for k, it := range items {
		ck := cellKey{group: k.group, ts: it.ts, b: bucketOf(it.value)}
		c := cells[ck]
		if c == nil {
			c = &cell{}
			cells[ck] = c
		}
		c.count++
		if c.best == nil || it.value > c.best.value || (it.value == c.best.value && (bytes.Compare(k.id[:], c.key.id[:]) < 0 || (k.id == c.key.id && k.span < c.key.span))) {
			c.best, c.key = it, k
		}
	}
	type slotKey struct {
		group uint64
		ts    int64
	}
	slots := map[slotKey]*typesv1.HeatmapSlot{}
	totals := map[uint64]float64{}
	keys := make([]cellKey, 0, len(cells))
	for ck := range cells {
		keys = append(keys, ck)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].b < keys[j].b })
	for _, ck := range keys {
		c := cells[ck]
		sk := slotKey{group: ck.group, ts: ck.ts}
		sl := slots[sk]
		if sl == nil {
			sl = &typesv1.HeatmapSlot{Timestamp: ck.ts}
			slots[sk] = sl
		}
		sl.YMin = append(sl.YMin, float64(lo)+float64(ck.b)*width)
		sl.Counts = append(sl.Counts, c.count)
		totals[ck.group] += float64(c.count)
		if exemplars {
			ex := &typesv1.Exemplar{Timestamp: c.best.time, ProfileId: uuid.UUID(c.key.id).String(), Value: c.best.value, Labels: exemplarLabels(c.best.labels, m.GroupBy)}
			if spans {
				ex.SpanId = fmt.Sprintf("%016x", c.key.span)
			}
			sl.Exemplars = append(sl.Exemplars, ex)
		}
	}
	bySeries := map[uint64]*typesv1.HeatmapSeries{}
	for sk, sl := range slots {
		hs := bySeries[sk.group]
		if hs == nil {
			hs = &typesv1.HeatmapSeries{Labels: groups[sk.group].Proto()}
			bySeries[sk.group] = hs
		}
		hs.Slots = append(hs.Slots, sl)
	}
	resp := &querierv1.SelectHeatmapResponse{}
	order := map[*typesv1.HeatmapSeries]uint64{}
	for gk, hs := range bySeries {
		sort.Slice(hs.Slots, func(i, j int) bool { return hs.Slots[i].Timestamp < hs.Slots[j].Timestamp })
		resp.Series = append(resp.Series, hs)
		order[hs] = gk
	}
	sort.Slice(resp.Series, func(i, j int) bool {
		return model.FromProto(resp.Series[i].Labels).String() < model.FromProto(resp.Series[j].Labels).String()
	})
	if m.Limit != nil && *m.Limit > 0 && int64(len(resp.Series)) > *m.Limit {
		sort.SliceStable(resp.Series, func(i, j int) bool { return totals[order[resp.Series[i]]] > totals[order[resp.Series[j]]] })
		resp.Series = resp.Series[:*m.Limit]
	}
	return connect.NewResponse(resp), nil
}
