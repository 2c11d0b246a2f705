package head

import (
	"context"
	"slices"

	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/symdb"
)

// SeriesRows is a series with the rows a query selected from it. The rows
// alias the head's storage: read-only. Aggregates, when any, are merged
// samples of runs of those rows (see Aggregate).
type SeriesRows struct {
	Labels     model.Labels
	Profiles   []Profile
	Aggregates []Aggregate

	// Rows of a SelectLazy or SelectPacked selection may have no samples
	// (nil): they are in packed (the series' row first+i is Profiles[i], or
	// index[i] when the rows in range are not one run of the series').
	packed []packedBlock
	first  int
	index  []int
}

// Unpacked returns Profiles[lo:hi] with every row's samples set (a copy when
// some were packed). Only rows of a SelectLazy or SelectPacked selection can
// lack them; for any other SeriesRows it is Profiles[lo:hi].
func (s *SeriesRows) Unpacked(lo, hi int) []Profile { return s.UnpackedTo(lo, hi, nil) }

// UnpackedTo is Unpacked decompressing the packed rows' samples into *buf
// (appended, growing it) when buf is not nil: a reader that unpacks series
// after series reuses one buffer (*buf = (*buf)[:0] between series, once it
// no longer reads the rows returned before).
func (s *SeriesRows) UnpackedTo(lo, hi int, buf *[]byte) []Profile {
	if s.packed == nil {
		return s.Profiles[lo:hi:hi]
	}
	if buf != nil && hi > lo {
		// Grow once for every compressed block the rows touch (at most).
		first, last := s.first+lo, s.first+hi-1
		if s.index != nil {
			first, last = s.index[lo], s.index[hi-1]
		}
		n := 0
		for b := first / PackRows; b <= last/PackRows && b < len(s.packed); b++ {
			if !s.packed[b].raw {
				n += int(s.packed[b].ends[PackRows-1])
			}
		}
		*buf = slices.Grow(*buf, n)
	}
	if s.index != nil {
		return unpackIndexed(s.Profiles[lo:hi:hi], s.index[lo:hi:hi], s.packed, buf)
	}
	return unpackRows(s.Profiles[lo:hi:hi], s.first+lo, s.packed, nil, buf)
}

type lazyRowsKey struct{}

// WithLazyRows marks a query's context: the head sources may answer it with
// SelectLazy. Only for readers that read rows through SeriesRows.Unpacked
// unless they use the aggregates (the querier).
func WithLazyRows(ctx context.Context) context.Context {
	return context.WithValue(ctx, lazyRowsKey{}, true)
}

type packedRowsKey struct{}

// WithPackedRows marks a query's context: the head sources may answer it
// with SelectPacked. Only for readers that read every row through
// SeriesRows.Unpacked, one series at a time (a peer's select, encoded for
// the wire), so the selection holds no unpacked copy of the head.
func WithPackedRows(ctx context.Context) context.Context {
	return context.WithValue(ctx, packedRowsKey{}, true)
}

// PackedRows reports whether ctx was marked by WithPackedRows.
func PackedRows(ctx context.Context) bool {
	v, _ := ctx.Value(packedRowsKey{}).(bool)
	return v
}

type totalsOnlyKey struct{}

// WithTotalsOnly marks a query that reads the rows' totals, ids and times
// but never their samples (SelectSeries without a call site): a source that
// stores samples apart (a block's parquet column) may leave them, and the
// symbols, unread. Rows then have no samples and the selection no symbols.
func WithTotalsOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, totalsOnlyKey{}, true)
}

// TotalsOnly reports whether ctx was marked by WithTotalsOnly.
func TotalsOnly(ctx context.Context) bool {
	v, _ := ctx.Value(totalsOnlyKey{}).(bool)
	return v
}

// LazyRows reports whether ctx was marked by WithLazyRows.
func LazyRows(ctx context.Context) bool {
	v, _ := ctx.Value(lazyRowsKey{}).(bool)
	return v
}

// Selection is what a query reads from a tenant's head: matching series with
// rows in range, and a symbols snapshot that resolves every stack they use.
type Selection struct {
	Series  []SeriesRows
	Symbols *symdb.Snapshot
}

// Select returns the series of profile type ptype (every type when "") that
// match, with their rows whose time is in [startNanos, endNanos].
func (t *Tenant) Select(ptype string, match func(model.Labels) bool, startNanos, endNanos int64) Selection {
	return t.sel(ptype, match, startNanos, endNanos, selectEager)
}

// selectMode says which packed rows a selection unpacks.
type selectMode int

const (
	selectEager  selectMode = iota // every row (Select)
	selectLazy                     // those no returned aggregate covers (SelectLazy)
	selectPacked                   // none in a run of rows (SelectPacked)
)

// SelectPacked is Select for a reader that reads one series at a time
// through SeriesRows.Unpacked (the block writer): packed rows stay packed
// (nil samples) when a series' rows in range are one run of its rows, so the
// selection holds no more memory than the head.
func (t *Tenant) SelectPacked(ptype string, match func(model.Labels) bool, startNanos, endNanos int64) Selection {
	return t.sel(ptype, match, startNanos, endNanos, selectPacked)
}

// SelectLazy is Select for a reader that merges: the rows a returned
// Aggregate covers keep their samples packed when they are (nil in Profiles:
// the merge reads the aggregate instead, or gets them from
// SeriesRows.Unpacked when it cannot). Every other row has its samples.
func (t *Tenant) SelectLazy(ptype string, match func(model.Labels) bool, startNanos, endNanos int64) Selection {
	return t.sel(ptype, match, startNanos, endNanos, selectLazy)
}

func (t *Tenant) sel(ptype string, match func(model.Labels) bool, startNanos, endNanos int64, mode selectMode) Selection {
	type cand struct {
		sr     SeriesRows
		all    bool // every row is in range
		aggs   []chunkAgg
		packed []packedBlock
	}
	t.mu.RLock()
	cands := t.candidates(ptype)
	var out []cand
	for _, s := range cands {
		if s.maxT < startNanos || s.minT > endNanos || (match != nil && !match(s.labels)) {
			continue
		}
		c := cand{sr: SeriesRows{Labels: s.labels, Profiles: s.profiles}, all: s.minT >= startNanos && s.maxT <= endNanos, packed: s.packed} // the slice headers are the copy
		if len(s.aggs) > 0 {
			c.aggs = append([]chunkAgg(nil), s.aggs...) // installed under the lock: copy
		}
		out = append(out, c)
	}
	t.mu.RUnlock()
	// Take the symbols after the rows: every stack id in them already exists.
	sel := Selection{Symbols: t.syms.Snapshot()}
	for _, c := range out {
		sr := c.sr
		lo, hi := 0, len(sr.Profiles)
		if !c.all {
			// Rows in range: one run of the series' rows (the usual case, rows
			// arrive in time order) is returned as a sub-slice, so the run keeps
			// its aggregates; otherwise a copy without them.
			lo, hi = -1, -1
			contiguous := true
			for i := range sr.Profiles {
				if tn := sr.Profiles[i].TimeNanos; tn >= startNanos && tn <= endNanos {
					if lo < 0 {
						lo = i
					} else if hi != i {
						contiguous = false
						break
					}
					hi = i + 1
				}
			}
			if lo < 0 {
				continue
			}
			if !contiguous && mode == selectPacked && len(c.packed) > 0 {
				// The rows in range, their packed samples left packed.
				var rows []Profile
				var index []int
				for i := lo; i < len(sr.Profiles); i++ {
					if p := sr.Profiles[i]; p.TimeNanos >= startNanos && p.TimeNanos <= endNanos {
						rows, index = append(rows, p), append(index, i)
					}
				}
				sel.Series = append(sel.Series, SeriesRows{Labels: sr.Labels, Profiles: rows, packed: c.packed, index: index})
				continue
			}
			if !contiguous {
				var rows []Profile
				for _, p := range unpackRange(sr.Profiles, c.packed, lo, len(sr.Profiles)) {
					if p.TimeNanos >= startNanos && p.TimeNanos <= endNanos {
						rows = append(rows, p)
					}
				}
				sel.Series = append(sel.Series, SeriesRows{Labels: sr.Labels, Profiles: rows})
				continue
			}
		}
		if hi <= lo {
			continue
		}
		all := sr.Profiles
		sr.Profiles = all[lo:hi:hi]
		var covered []bool // by chunk: an aggregate is returned for it
		for k, a := range c.aggs {
			first := k*AggregateRows - lo
			if a.samples == nil || first < 0 || first+AggregateRows > len(sr.Profiles) {
				continue
			}
			sr.Aggregates = append(sr.Aggregates, Aggregate{First: first, Rows: AggregateRows, Samples: a.samples, digest: a.digest})
			if mode == selectLazy {
				if covered == nil {
					covered = make([]bool, len(c.aggs))
				}
				covered[k] = true
			}
		}
		switch {
		case mode == selectPacked && len(c.packed) > 0:
			sr.packed, sr.first = c.packed, lo
		case covered == nil:
			sr.Profiles = unpackRange(all, c.packed, lo, hi)
		default:
			sr.Profiles = unpackRows(sr.Profiles, lo, c.packed, func(i int) bool { return i/AggregateRows < len(covered) && covered[i/AggregateRows] }, nil)
			sr.packed, sr.first = c.packed, lo
		}
		sel.Series = append(sel.Series, sr)
	}
	return sel
}

func (t *Tenant) candidates(ptype string) []*series {
	if ptype == "" {
		return t.series
	}
	refs := t.byType[ptype]
	out := make([]*series, len(refs))
	for i, r := range refs {
		out[i] = t.series[r]
	}
	return out
}

// SeriesLabels returns the label sets of matching series with data in range.
func (t *Tenant) SeriesLabels(match func(model.Labels) bool, startNanos, endNanos int64) []model.Labels {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []model.Labels
	for _, s := range t.series {
		if s.maxT < startNanos || s.minT > endNanos || (match != nil && !match(s.labels)) {
			continue
		}
		out = append(out, s.labels)
	}
	return out
}
