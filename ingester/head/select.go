package head

import (
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/symdb"
)

// SeriesRows is a series with the rows a query selected from it. The rows
// alias the head's storage: read-only.
type SeriesRows struct {
	Labels   model.Labels
	Profiles []Profile
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
	t.mu.RLock()
	cands := t.candidates(ptype)
	var out []SeriesRows
	for _, s := range cands {
		if s.maxT < startNanos || s.minT > endNanos || (match != nil && !match(s.labels)) {
			continue
		}
		out = append(out, SeriesRows{Labels: s.labels, Profiles: s.profiles}) // the slice header is the copy
	}
	t.mu.RUnlock()
	// Take the symbols after the rows: every stack id in them already exists.
	sel := Selection{Symbols: t.syms.Snapshot()}
	for _, sr := range out {
		var rows []Profile
		for _, p := range sr.Profiles {
			if p.TimeNanos >= startNanos && p.TimeNanos <= endNanos {
				rows = append(rows, p)
			}
		}
		if len(rows) > 0 {
			sel.Series = append(sel.Series, SeriesRows{Labels: sr.Labels, Profiles: rows})
		}
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
