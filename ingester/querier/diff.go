package querier

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
)

// Diff merges the left and the right request (each its own selector, range
// and stack trace selector; their formats are ignored) into one diff flame
// graph: every node carries both sides' values.
func (s *Service) Diff(ctx context.Context, req *connect.Request[querierv1.DiffRequest]) (*connect.Response[querierv1.DiffResponse], error) {
	l, r := req.Msg.Left, req.Msg.Right
	if l == nil || r == nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("a diff needs both left and right"))
	}
	fg, err := s.diff(ctx, req, l, r)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&querierv1.DiffResponse{Flamegraph: fg}), nil
}

func (s *Service) diff(ctx context.Context, h interface{ Header() httpHeader }, l, r *querierv1.SelectMergeStacktracesRequest) (*querierv1.FlameGraphDiff, error) {
	if l.ProfileTypeID != r.ProfileTypeID {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("left and right must be of the same profile type: "+l.ProfileTypeID+" vs "+r.ProfileTypeID))
	}
	maxNodes, err := maxNodesOf(l.MaxNodes, DefaultMaxNodes)
	if err != nil {
		return nil, err
	}
	if r.MaxNodes != nil && *r.MaxNodes != 0 {
		rm, err := maxNodesOf(r.MaxNodes, DefaultMaxNodes)
		if err != nil {
			return nil, err
		}
		maxNodes = max(maxNodes, rm)
	}
	side := func(m *querierv1.SelectMergeStacktracesRequest) (*nameTree, error) {
		if len(m.TraceIdSelector) > 0 {
			return nil, connect.NewError(connect.CodeUnimplemented, errors.New("trace id selectors are not supported: Hearth keeps span ids, not trace ids"))
		}
		q, err := s.prepareMerge(WithSelectors(ctx, m.LabelSelector), h, m.ProfileTypeID, m.LabelSelector, m.Start, m.End, m.ProfileIdSelector)
		if err != nil {
			return nil, err
		}
		if err := q.selectSpans(m.SpanSelector); err != nil {
			return nil, err
		}
		return q.nameTree(callSite(m.StackTraceSelector))
	}
	left, err := side(l)
	if err != nil {
		return nil, err
	}
	right, err := side(r)
	if err != nil {
		return nil, err
	}
	return mergeDiff(left, right).diffFlameGraph(maxNodes), nil
}

// mergeDiff adds right's values to left as its right side.
func mergeDiff(left, right *nameTree) *nameTree {
	var walk func(rn, ln int32)
	walk = func(rn, ln int32) {
		nd := &right.nodes[rn]
		left.nodes[ln].rtotal += nd.total
		left.nodes[ln].rself += nd.self
		for _, c := range nd.children {
			walk(c, left.child(ln, right.names[right.nodes[c].name]))
		}
	}
	walk(0, 0)
	return left
}
