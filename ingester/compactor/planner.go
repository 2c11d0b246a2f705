package compactor

import (
	"fmt"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/oklog/ulid/v2"

	"github.com/hearth-dev/hearth/ingester/block"
)

// PlanConfig is what the planner needs of the configuration.
type PlanConfig struct {
	// Ranges are the levels' range sizes, ascending, each a multiple of the
	// one before: level k merges into aligned ranges of Ranges[k-1].
	Ranges []time.Duration
	// Wait: a range is compacted only once its end is this far in the past,
	// so that every replica's block of it has arrived.
	Wait time.Duration
	// DeletionDelay: a marked block is deleted this long after its mark.
	DeletionDelay time.Duration
	// Retention: blocks whose newest profile is older than this are marked
	// for deletion (0: keep forever).
	Retention time.Duration
}

// Job merges every block of a tenant within [Start, End) into one block of Level.
type Job struct {
	Tenant     string
	Level      int
	Start, End int64       // ns, end exclusive
	Inputs     []ulid.ULID // blocks read, ascending
	Sources    []ulid.ULID // ingesters' blocks whose rows the output holds, ascending
	// Part numbers the jobs of a range whose inputs exceed MaxJobInputs
	// (1, 2, ...; 0: the range's only job). Their outputs are merged by a
	// later job of the range.
	Part int
}

// Key names the job: one owner at a time runs it.
func (j Job) Key() string {
	k := fmt.Sprintf("%s/L%d/%s", j.Tenant, j.Level, time.Unix(0, j.Start).UTC().Format("2006-01-02T15:04:05Z"))
	if j.Part > 0 {
		k += fmt.Sprintf("/part%d", j.Part)
	}
	return k
}

// Token is the ring key of the job.
func (j Job) Token() uint32 { return token("job/" + j.Key()) }

// TenantToken is the ring key of a tenant's upkeep (marks, deletions, retention, index).
func TenantToken(tenant string) uint32 { return token("tenant/" + tenant) }

func token(s string) uint32 {
	h := xxhash.Sum64String(s)
	return uint32(h>>32) ^ uint32(h)
}

// Mark is a deletion mark to write.
type Mark struct {
	ID         ulid.ULID
	Reason     string
	ReplacedBy []ulid.ULID
}

// Plan is what to do for one tenant.
type Plan struct {
	Jobs    []Job
	Marks   []Mark
	Deletes []ulid.ULID // marked blocks past the deletion delay
}

// MaxJobInputs bounds the blocks one job merges, at every level: a merge
// holds every input's symbols and a reader at once, so its memory is bounded
// by MaxJobInputs times the largest input's symbols, not by how many blocks a
// range holds. A range with more inputs (e.g. 100 ingesters' blocks of an
// hour) is split into parts of at most MaxJobInputs blocks, whose outputs a
// later pass merges: a tree of merges, ceil(log32(n)) passes deep.
const MaxJobInputs = 32

// maxRangesPerBlock bounds the ranges one block is split into (a block whose
// profiles span years would otherwise make a plan of millions of ranges).
const maxRangesPerBlock = 100000

type rng struct{ start, end int64 }

func align(t int64, size int64) rng {
	s := t - ((t%size)+size)%size
	return rng{s, s + size}
}

func (r rng) contains(o rng) bool { return r.start <= o.start && o.end <= r.end }

// PlanTenant decides, from a tenant's complete blocks and deletion marks at
// time now, which ranges to compact, which blocks to mark and which to delete.
// It is pure: the same inputs give the same plan.
//
//   - A block is live when it has no deletion mark. Only live blocks are read.
//   - An ingester's block (level 0) is covered for a first-level range r when
//     a live compacted block whose range contains r lists it among its
//     sources; it is marked (replaced by those blocks) once it is covered for
//     every first-level range its time span overlaps.
//   - A compacted block is marked when another live compacted block's range
//     contains its range and its sources include all of its sources (ties
//     broken by level, then by the larger ULID, so two owners that ran the same
//     job agree on which copy stays).
//   - A range is compacted once its end is Wait in the past, at the largest
//     level whose range is complete: a job takes the uncovered ingesters'
//     blocks overlapping it (their rows in the range) and the live compacted
//     blocks inside it, when that is an ingester's block or at least two
//     compacted ones.
//   - Blocks older than Retention are marked; marked blocks are deleted after
//     DeletionDelay.
func PlanTenant(tenant string, metas []*block.Meta, marks map[ulid.ULID]*block.DeletionMark, now time.Time, cfg PlanConfig) Plan {
	var p Plan
	nowNs := now.UnixNano()
	if len(cfg.Ranges) == 0 {
		return p
	}
	sizes := make([]int64, len(cfg.Ranges))
	for i, d := range cfg.Ranges {
		sizes[i] = int64(d)
	}
	var live, raw, compacted []*block.Meta
	for _, m := range metas {
		if marks[m.ULID] == nil {
			live = append(live, m)
			if m.Compaction == nil {
				raw = append(raw, m)
			} else {
				compacted = append(compacted, m)
			}
		}
	}
	slices.SortFunc(live, func(a, b *block.Meta) int { return a.ULID.Compare(b.ULID) })
	byID := map[ulid.ULID]*block.Meta{}
	for _, m := range metas {
		byID[m.ULID] = m
	}

	// Deletions: past the delay, and for a compacted mark only while what
	// replaces it is in this listing (a replacement that cannot be read, or
	// went away, keeps the block).
	for id, d := range marks {
		if m, ok := byID[id]; ok && !d.MarkedAt.After(now.Add(-cfg.DeletionDelay)) && replacementPresent(m, d, byID, metas, sizes[0]) {
			p.Deletes = append(p.Deletes, id)
		}
	}
	slices.SortFunc(p.Deletes, func(a, b ulid.ULID) int { return a.Compare(b) })

	// Retention.
	cutoff := int64(-1 << 63)
	retained := map[ulid.ULID]bool{}
	if cfg.Retention > 0 {
		cutoff = now.Add(-cfg.Retention).UnixNano()
		for _, m := range live {
			if m.MaxTime < cutoff {
				p.Marks = append(p.Marks, Mark{ID: m.ULID, Reason: block.ReasonRetention})
				retained[m.ULID] = true
			}
		}
	}

	crange := func(m *block.Meta) rng { return rng{m.Compaction.RangeStart, m.Compaction.RangeEnd} }
	// Indexes over the live compacted blocks, so that a plan costs the
	// blocks plus their sources, not their product (a month of 100
	// ingesters' hourly blocks is 72,000 blocks; issue 21's simulation):
	// the blocks listing each source, the blocks of each range, in order.
	holders := map[ulid.ULID][]*block.Meta{}
	byRange := map[rng][]int{} // range → positions in compacted
	var ranges []rng
	for i, c := range compacted {
		for _, src := range c.Compaction.Sources {
			holders[src] = append(holders[src], c)
		}
		if byRange[crange(c)] == nil {
			ranges = append(ranges, crange(c))
		}
		byRange[crange(c)] = append(byRange[crange(c)], i)
	}
	// coveredBy returns the live compacted blocks covering raw block b in
	// first-level range r, or nil.
	coveredBy := func(b *block.Meta, r rng) *block.Meta {
		var best *block.Meta
		for _, c := range holders[b.ULID] {
			if crange(c).contains(r) {
				if best == nil || c.ULID.Compare(best.ULID) > 0 {
					best = c
				}
			}
		}
		return best
	}
	// firstLevel lists the first-level ranges a block's time span overlaps.
	firstLevel := func(b *block.Meta) []rng {
		var out []rng
		for r := align(b.MinTime, sizes[0]); r.start <= b.MaxTime && len(out) < maxRangesPerBlock; r = (rng{r.end, r.end + sizes[0]}) {
			out = append(out, r)
		}
		return out
	}

	// Marks of replaced blocks.
	uncovered := map[ulid.ULID][]rng{} // raw block → first-level ranges not yet covered
	for _, b := range raw {
		if retained[b.ULID] {
			continue
		}
		var by []ulid.ULID
		for _, r := range firstLevel(b) {
			if c := coveredBy(b, r); c != nil {
				if !slices.Contains(by, c.ULID) {
					by = append(by, c.ULID)
				}
				continue
			}
			uncovered[b.ULID] = append(uncovered[b.ULID], r)
		}
		if len(uncovered[b.ULID]) == 0 {
			slices.SortFunc(by, func(a, b ulid.ULID) int { return a.Compare(b) })
			p.Marks = append(p.Marks, Mark{ID: b.ULID, Reason: block.ReasonCompacted, ReplacedBy: by})
		}
	}
	replaced := map[ulid.ULID]bool{}
	for _, b := range compacted {
		if retained[b.ULID] {
			continue
		}
		// Candidates: the blocks whose range contains b's, in compacted's order.
		var within []int
		for _, r := range ranges {
			if r.contains(crange(b)) {
				within = append(within, byRange[r]...)
			}
		}
		slices.Sort(within)
		var by *block.Meta
		for _, i := range within {
			c := compacted[i]
			if c == b || retained[c.ULID] || !replaces(c, b) {
				continue
			}
			// The largest replacement: the one no other candidate replaces.
			if by == nil || replaces(c, by) {
				by = c
			}
		}
		if by != nil {
			replaced[b.ULID] = true
			p.Marks = append(p.Marks, Mark{ID: b.ULID, Reason: block.ReasonCompacted, ReplacedBy: []ulid.ULID{by.ULID}})
		}
	}

	// Jobs. complete(level, r): r's end is Wait in the past.
	complete := func(r rng) bool { return r.end+int64(cfg.Wait) <= nowNs }
	// inputs counts the blocks a job for range r would read.
	// Ranges are only ever asked aligned to a level's size (and sizes are
	// multiples of each other), so a block belongs to the range aligned at
	// its uncovered first-level ranges (raw; ascending, so one check
	// dedupes) or at its range (compacted), per level: listed once here,
	// in raw's and compacted's order.
	rawIn := map[rng][]*block.Meta{}
	compIn := map[rng][]*block.Meta{}
	for _, b := range raw {
		if retained[b.ULID] {
			continue
		}
		for _, size := range sizes {
			var last rng
			for i, u := range uncovered[b.ULID] {
				if R := align(u.start, size); i == 0 || R != last {
					rawIn[R] = append(rawIn[R], b)
					last = R
				}
			}
		}
	}
	for _, c := range compacted {
		if replaced[c.ULID] || retained[c.ULID] {
			continue
		}
		for _, size := range sizes {
			if R := align(c.Compaction.RangeStart, size); R.contains(crange(c)) {
				compIn[R] = append(compIn[R], c)
			}
		}
	}
	inputs := func(r rng) int { return len(rawIn[r]) + len(compIn[r]) }
	// target returns the largest level whose range containing t is complete
	// and would be merged from at most MaxJobInputs blocks (0: none): after an
	// outage a day of ingesters' blocks goes straight into its day block,
	// unless that means opening too many at once.
	target := func(t int64) (int, rng) {
		for k := len(sizes); k >= 1; k-- {
			if r := align(t, sizes[k-1]); complete(r) && (k == 1 || inputs(r) <= MaxJobInputs) {
				return k, r
			}
		}
		return 0, rng{}
	}
	type cand struct {
		level int
		r     rng
	}
	cands := map[cand]bool{}
	for _, b := range raw {
		for _, r := range uncovered[b.ULID] {
			if k, R := target(r.start); k > 0 && R.end > cutoff {
				cands[cand{k, R}] = true
			}
		}
	}
	for _, c := range compacted {
		if replaced[c.ULID] || retained[c.ULID] {
			continue
		}
		if k, R := target(c.Compaction.RangeStart); k >= c.Compaction.Level && R.contains(crange(c)) && R.end > cutoff {
			cands[cand{k, R}] = true
		}
	}
	for cd := range cands {
		j := Job{Tenant: tenant, Level: cd.level, Start: cd.r.start, End: cd.r.end}
		var nraw, ncomp int
		for _, b := range rawIn[cd.r] {
			j.Inputs = append(j.Inputs, b.ULID)
			j.Sources = append(j.Sources, b.ULID)
			nraw++
		}
		for _, c := range compIn[cd.r] {
			if c.Compaction.Level > cd.level {
				continue
			}
			j.Inputs = append(j.Inputs, c.ULID)
			j.Sources = append(j.Sources, c.Compaction.Sources...)
			ncomp++
		}
		if nraw == 0 && ncomp < 2 {
			continue
		}
		p.Jobs = append(p.Jobs, splitJob(j, byID)...)
	}
	slices.SortFunc(p.Jobs, func(a, b Job) int {
		if a.Start != b.Start {
			if a.Start < b.Start {
				return -1
			}
			return 1
		}
		if a.Level != b.Level {
			return a.Level - b.Level
		}
		return a.Part - b.Part
	})
	slices.SortFunc(p.Marks, func(a, b Mark) int { return a.ID.Compare(b.ID) })
	return p
}

// replaces reports whether compacted block c holds every row of compacted
// block b and is preferred to it: its range contains b's, its sources include
// b's, and it is larger (more sources or a larger range) or, the same, has the
// larger ULID. Two owners that ran the same job agree on the copy that stays.
func replaces(c, b *block.Meta) bool {
	cr := rng{c.Compaction.RangeStart, c.Compaction.RangeEnd}
	br := rng{b.Compaction.RangeStart, b.Compaction.RangeEnd}
	if c.ULID == b.ULID || !cr.contains(br) || !subset(b.Compaction.Sources, c.Compaction) {
		return false
	}
	return len(c.Compaction.Sources) > len(b.Compaction.Sources) || cr != br || c.ULID.Compare(b.ULID) > 0
}

// subset reports whether every id of ids is a source of c.
func subset(ids []ulid.ULID, c *block.Compaction) bool {
	if len(ids) > len(c.Sources) {
		return false
	}
	set := make(map[ulid.ULID]struct{}, len(c.Sources))
	for _, s := range c.Sources {
		set[s] = struct{}{}
	}
	for _, id := range ids {
		if _, ok := set[id]; !ok {
			return false
		}
	}
	return true
}

// replacementPresent reports whether marked block m may go: a retention mark
// at once; a compacted one when every block of its mark's ReplacedBy is in
// metas, or (a replacement itself replaced and deleted since) when blocks in
// metas still hold its rows: for an ingester's block, a compacted block
// listing it as a source for each first-level range it overlaps; for a
// compacted block, one that replaces it.
func replacementPresent(m *block.Meta, d *block.DeletionMark, present map[ulid.ULID]*block.Meta, metas []*block.Meta, first int64) bool {
	if d.Reason == block.ReasonRetention {
		return true
	}
	all := len(d.ReplacedBy) > 0
	for _, id := range d.ReplacedBy {
		all = all && present[id] != nil
	}
	if all {
		return true
	}
	if m.Compaction != nil {
		for _, c := range metas {
			if c.Compaction != nil && replaces(c, m) {
				return true
			}
		}
		return false
	}
	n := 0
	for r := align(m.MinTime, first); r.start <= m.MaxTime; r = (rng{r.end, r.end + first}) {
		if n++; n > maxRangesPerBlock {
			return false
		}
		held := false
		for _, c := range metas {
			if c.Compaction != nil && c.ULID != m.ULID && (rng{c.Compaction.RangeStart, c.Compaction.RangeEnd}).contains(r) && c.Compaction.HasSource(m.ULID) {
				held = true
				break
			}
		}
		if !held {
			return false
		}
	}
	return true
}

// splitJob sorts a job's inputs and, when they are more than MaxJobInputs,
// splits it into parts of at most MaxJobInputs consecutive inputs (by ULID:
// two owners planning the same listing split alike). A part that would only
// copy one compacted block is dropped.
func splitJob(j Job, byID map[ulid.ULID]*block.Meta) []Job {
	slices.SortFunc(j.Inputs, func(a, b ulid.ULID) int { return a.Compare(b) })
	if len(j.Inputs) <= MaxJobInputs {
		slices.SortFunc(j.Sources, func(a, b ulid.ULID) int { return a.Compare(b) })
		j.Sources = slices.Compact(j.Sources)
		return []Job{j}
	}
	var out []Job
	for i := 0; i < len(j.Inputs); i += MaxJobInputs {
		part := Job{Tenant: j.Tenant, Level: j.Level, Start: j.Start, End: j.End, Part: i/MaxJobInputs + 1}
		part.Inputs = slices.Clone(j.Inputs[i:min(i+MaxJobInputs, len(j.Inputs))])
		raw := 0
		for _, id := range part.Inputs {
			if m := byID[id]; m != nil && m.Compaction != nil {
				part.Sources = append(part.Sources, m.Compaction.Sources...)
			} else {
				part.Sources = append(part.Sources, id)
				raw++
			}
		}
		if raw == 0 && len(part.Inputs) < 2 {
			continue
		}
		slices.SortFunc(part.Sources, func(a, b ulid.ULID) int { return a.Compare(b) })
		part.Sources = slices.Compact(part.Sources)
		out = append(out, part)
	}
	return out
}
