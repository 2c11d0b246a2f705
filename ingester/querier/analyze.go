package querier

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"

	"github.com/hearth-dev/hearth/ingester/model"
)

// blockLister is a source of blocks that knows their metas without reading them.
type blockLister interface {
	BlockStats(ctx context.Context, tenant string) ([]model.BlockStats, error)
}

// AnalyzeQuery estimates what a query ("<profile type>{selector}", or just
// "{selector}" for every profile type) over [start, end] would read, from what
// each source knows without reading profiles: for blocks (the bucket, this
// ingester's disk) the blocks whose time range overlaps the query, with their
// whole sizes and counts from meta.json (a block is read per series and row
// group, so these bound it from above); for the heads (this ingester and the
// others of the ring) the matching series and rows exactly, their samples'
// encoded bytes as profile bytes. Series are counted once over every source.
func (s *Service) AnalyzeQuery(ctx context.Context, req *connect.Request[querierv1.AnalyzeQueryRequest]) (*connect.Response[querierv1.AnalyzeQueryResponse], error) {
	t, err := s.tenant(req)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	ptype, sel := "", strings.TrimSpace(m.Query)
	if i := strings.IndexByte(sel, '{'); i > 0 {
		ptype, sel = strings.TrimSpace(sel[:i]), sel[i:]
		if _, err := model.ParseProfileType(ptype); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("query %q: %w", m.Query, err))
		}
	} else if sel != "" && sel[0] != '{' {
		if _, err := model.ParseProfileType(sel); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("query %q: want <profile type>{selector} or {selector}", m.Query))
		}
		ptype, sel = sel, ""
	}
	var match func(model.Labels) bool
	if sel != "" {
		if match, err = matcher(sel); err != nil {
			return nil, err
		}
	}
	start, end, err := timeRange(m.Start, m.End)
	if err != nil {
		return nil, err
	}
	if ptype != "" {
		inner := match
		match = func(ls model.Labels) bool {
			return ls.Get(model.LabelProfileType) == ptype && (inner == nil || inner(ls))
		}
	}
	if sel != "" {
		ctx = WithSelectors(ctx, sel)
	}
	blocks := &querierv1.QueryScope{ComponentType: "long term storage (blocks)"}
	heads := &querierv1.QueryScope{ComponentType: "short term storage (ingester heads)"}
	withData := 0
	for _, src := range s.Sources {
		if bl, ok := src.(blockLister); ok {
			metas, err := bl.BlockStats(ctx, t)
			if err != nil {
				return nil, connect.NewError(connect.CodeUnavailable, err)
			}
			blocks.ComponentCount++
			n := 0
			for _, bm := range metas {
				if bm.MaxTime < start || bm.MinTime > end {
					continue
				}
				n++
				blocks.BlockCount++
				blocks.SeriesCount += uint64(bm.Series)
				blocks.ProfileCount += uint64(bm.Profiles)
				blocks.SampleCount += uint64(bm.Samples)
				blocks.IndexBytes += uint64(bm.IndexBytes)
				blocks.ProfileBytes += uint64(bm.ProfileBytes)
				blocks.SymbolBytes += uint64(bm.SymbolBytes)
			}
			if n > 0 {
				withData++
			}
			continue
		}
		heads.ComponentCount++
		sels, err := src.Select(ctx, t, ptype, match, start, end)
		if err != nil {
			return nil, connect.NewError(connect.CodeUnavailable, err)
		}
		rows := uint64(0)
		for _, sl := range sels {
			for _, sr := range sl.Series {
				heads.SeriesCount++
				for _, p := range sr.Profiles {
					rows++
					heads.ProfileBytes += uint64(len(p.Samples))
					if n, k := binary.Uvarint(p.Samples); k > 0 {
						heads.SampleCount += n
					}
				}
			}
		}
		heads.ProfileCount += rows
		if rows > 0 {
			withData++
		}
	}
	series, err := s.seriesLabels(ctx, t, match, start, end)
	if err != nil {
		return nil, err
	}
	resp := &querierv1.AnalyzeQueryResponse{
		QueryScopes: []*querierv1.QueryScope{heads, blocks},
		QueryImpact: &querierv1.QueryImpact{
			TotalBytesInTimeRange: heads.ProfileBytes + heads.SymbolBytes + heads.IndexBytes + blocks.IndexBytes + blocks.ProfileBytes + blocks.SymbolBytes,
			TotalQueriedSeries:    uint64(len(series)),
			// Replicas (and a head and its own blocks) hold copies of a profile:
			// reading more than one source means counting each profile once.
			DeduplicationNeeded: withData > 1,
		},
	}
	return connect.NewResponse(resp), nil
}
