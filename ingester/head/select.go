package head

import (
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
		sr.Profiles = unpackRange(sr.Profiles, c.packed, lo, hi)
		for k, a := range c.aggs {
			first := k*AggregateRows - lo
			if a.samples == nil || first < 0 || first+AggregateRows > len(sr.Profiles) {
				continue
			}
			sr.Aggregates = append(sr.Aggregates, Aggregate{First: first, Rows: AggregateRows, Samples: a.samples, digest: a.digest})
		}
		sel.Series = append(sel.Series, sr)
	}
	return sel
}

func (t *Tenant) candidates(ptype string) []*series {
	if ptype == "" {
		return t.series
	}
	refs := t.postings[model.LabelProfileType][ptype]
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
