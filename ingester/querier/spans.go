package querier

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"

	"github.com/hearth-dev/hearth/ingester/head"
)

// parseSpanIDs parses a span_selector: span ids of up to 16 hexadecimal
// digits, not all zero. bad lists the entries that are not span ids; spans
// is nil only when ids is empty (no span selector: every sample).
func parseSpanIDs(ids []string) (spans map[uint64]struct{}, bad []string) {
	if len(ids) == 0 {
		return nil, nil
	}
	spans = make(map[uint64]struct{}, len(ids))
	for _, s := range ids {
		id, ok := head.ParseSpanID(s)
		if !ok {
			bad = append(bad, s)
			continue
		}
		spans[id] = struct{}{}
	}
	return spans, bad
}

// selectSpans restricts the query to the samples of the given span ids
// (none: every sample). An entry that is not a span id is refused when
// there are profiles to filter; over an empty selection the answer is the
// empty merge, as Pyroscope's, whose ingesters read the span selector only
// for a tenant that has data.
func (q *query) selectSpans(ids []string) error {
	spans, bad := parseSpanIDs(ids)
	if len(bad) > 0 && q.hasRows() {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("span id %q: want 16 hexadecimal digits, not all zero", bad[0]))
	}
	q.spans = spans
	return nil
}

// hasRows says whether the selection holds any profile.
func (q *query) hasRows() bool {
	for _, sel := range q.sels {
		for _, sr := range sel.Series {
			if len(sr.Profiles) > 0 {
				return true
			}
		}
	}
	return false
}

// merge sums the selected rows by stack trace, only the samples of the
// selected spans when a span selector is set.
func (q *query) merge() ([]stackValues, error) {
	if q.spans == nil {
		return mergeStacks(q.sels, q.filter)
	}
	return mergeSpanStacks(q.sels, q.filter, q.spans)
}

// mergeSpanStacks is mergeStacks over the span samples of the given spans.
func mergeSpanStacks(sels []head.Selection, f *rowFilter, spans map[uint64]struct{}) ([]stackValues, error) {
	out := make([]stackValues, 0, len(sels))
	for _, sel := range sels {
		sums := map[uint32]int64{}
		nodes := uint32(len(sel.Symbols.Nodes))
		var bad bool
		for _, s := range sel.Series {
			h := s.Labels.Hash()
			rows := s.Unpacked(0, len(s.Profiles))
			for i := range rows {
				p := &rows[i]
				if !f.take(h, p) {
					continue
				}
				err := head.DecodeSpans(p.Samples, func(span uint64, st uint32, v int64) {
					if _, ok := spans[span]; !ok {
						return
					}
					if st >= nodes {
						bad = true
						return
					}
					sums[st] += v
				})
				if err != nil {
					return nil, err
				}
				if bad {
					return nil, fmt.Errorf("a span sample refers to stack trace beyond the %d in its symbols", nodes)
				}
			}
		}
		sv := stackValues{syms: sel.Symbols}
		sv.stacks, sv.values = sortedSums(sums)
		out = append(out, sv)
	}
	return out, nil
}

// SelectMergeSpanProfile merges the samples of the given spans of matching
// profiles (those pushed with a span_id pprof label) into a flame graph or a tree.
func (s *Service) SelectMergeSpanProfile(ctx context.Context, req *connect.Request[querierv1.SelectMergeSpanProfileRequest]) (*connect.Response[querierv1.SelectMergeSpanProfileResponse], error) {
	m := req.Msg
	switch m.Format {
	case querierv1.ProfileFormat_PROFILE_FORMAT_UNSPECIFIED, querierv1.ProfileFormat_PROFILE_FORMAT_FLAMEGRAPH, querierv1.ProfileFormat_PROFILE_FORMAT_TREE:
	default:
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("format %s is not supported for span profiles: use PROFILE_FORMAT_FLAMEGRAPH or PROFILE_FORMAT_TREE", m.Format))
	}
	maxNodes, err := maxNodesOf(m.MaxNodes, DefaultMaxNodes)
	if err != nil {
		return nil, err
	}
	q, err := s.prepareMerge(ctx, req, m.ProfileTypeID, m.LabelSelector, m.Start, m.End, nil)
	if err != nil {
		return nil, err
	}
	if err := q.selectSpans(m.SpanSelector); err != nil {
		return nil, err
	}
	if q.spans == nil {
		q.spans = map[uint64]struct{}{} // no span ids select nothing
	}
	t, err := q.nameTree(nil)
	if err != nil {
		return nil, err
	}
	resp := &querierv1.SelectMergeSpanProfileResponse{}
	if m.Format == querierv1.ProfileFormat_PROFILE_FORMAT_TREE {
		resp.Tree = t.treeBytes(maxNodes)
	} else {
		resp.Flamegraph = t.flameGraph(maxNodes)
	}
	return connect.NewResponse(resp), nil
}
