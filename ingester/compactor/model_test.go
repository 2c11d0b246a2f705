package compactor

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hearth-dev/hearth/ingester/block"
)

// modelBucket is a bucket of blocks reduced to the profile timestamps they hold.
type modelBucket struct {
	metas map[ulid.ULID]*block.Meta
	rows  map[ulid.ULID][]int64
	marks map[ulid.ULID]*block.DeletionMark
	seq   uint64
}

func (b *modelBucket) newID() ulid.ULID {
	b.seq++
	var id ulid.ULID
	id[8], id[9], id[10], id[11], id[12], id[13], id[14], id[15] = byte(b.seq>>56), byte(b.seq>>48), byte(b.seq>>40), byte(b.seq>>32), byte(b.seq>>24), byte(b.seq>>16), byte(b.seq>>8), byte(b.seq)
	return id
}

func (b *modelBucket) add(rows []int64, c *block.Compaction) {
	if len(rows) == 0 && c == nil {
		return
	}
	id := b.newID()
	m := &block.Meta{ULID: id, Tenant: "t", Compaction: c, Stats: block.Stats{Profiles: int64(len(rows))}}
	if len(rows) > 0 {
		m.MinTime, m.MaxTime = slices.Min(rows), slices.Max(rows)
	} else {
		m.MinTime, m.MaxTime = c.RangeStart, c.RangeStart
	}
	b.metas[id] = m
	b.rows[id] = rows
}

func (b *modelBucket) list() []*block.Meta {
	var out []*block.Meta
	for _, m := range b.metas {
		out = append(out, m)
	}
	return out
}

// visible is what a reader sees: every block but superseded ones.
func (b *modelBucket) visible() map[int64]bool {
	out := map[int64]bool{}
	for id := range b.metas {
		if block.Superseded(b.marks[id], b.metas) {
			continue
		}
		for _, r := range b.rows[id] {
			out[r] = true
		}
	}
	return out
}

// run executes a job planned from a possibly stale view: it fails when an input is gone.
func (b *modelBucket) run(j Job) bool {
	var rows []int64
	for _, in := range j.Inputs {
		if _, ok := b.metas[in]; !ok {
			return false
		}
		for _, r := range b.rows[in] {
			if r >= j.Start && r < j.End {
				rows = append(rows, r)
			}
		}
	}
	slices.Sort(rows)
	rows = slices.Compact(rows)
	b.add(rows, &block.Compaction{Level: j.Level, RangeStart: j.Start, RangeEnd: j.End, Sources: j.Sources})
	return true
}

// TestPlannerModel drives the planner over a simulated bucket: three
// replicas cutting blocks at their own times (some late, some missing a
// profile), compactors that plan on stale views and run jobs twice, marks
// and deletions; after every step every profile ever uploaded is visible.
func TestPlannerModel(t *testing.T) {
	for seed := uint64(0); seed < 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		sec := int64(time.Second)
		cfg := PlanConfig{Ranges: []time.Duration{5 * time.Second, 20 * time.Second, 60 * time.Second}, Wait: 4 * time.Second, DeletionDelay: 5 * time.Second}
		b := &modelBucket{metas: map[ulid.ULID]*block.Meta{}, rows: map[ulid.ULID][]int64{}, marks: map[ulid.ULID]*block.DeletionMark{}}
		pending := make([][]int64, 3) // per replica, not yet cut
		lastCut := []int64{0, 0, 0}
		uploaded := map[int64]bool{}
		var late [][]int64
		var stale []*block.Meta
		staleMarks := map[ulid.ULID]*block.DeletionMark{}
		for step := int64(0); step < 400; step++ {
			now := step * sec / 2
			// A profile every step, to two or three replicas.
			ts := now - rng.Int64N(sec)
			skip := -1
			if rng.IntN(4) == 0 {
				skip = rng.IntN(3)
			}
			for r := 0; r < 3; r++ {
				if r != skip {
					pending[r] = append(pending[r], ts)
				}
			}
			for r := 0; r < 3; r++ {
				if now-lastCut[r] >= int64(1+r)*sec+rng.Int64N(sec) {
					for _, x := range pending[r] {
						uploaded[x] = true
					}
					if rng.IntN(10) == 0 {
						late = append(late, pending[r]) // uploaded later (a restarted ingester)
					} else {
						b.add(pending[r], nil)
					}
					pending[r], lastCut[r] = nil, now
				}
			}
			if len(late) > 0 && rng.IntN(8) == 0 {
				b.add(late[0], nil)
				late = late[1:]
			}
			tnow := time.Unix(0, now)
			// One compactor with a fresh view, sometimes another with a stale one.
			views := [][2]any{{b.list(), b.marks}}
			if stale != nil && rng.IntN(3) == 0 {
				views = append(views, [2]any{stale, staleMarks})
			}
			for _, v := range views {
				p := PlanTenant("t", v[0].([]*block.Meta), v[1].(map[ulid.ULID]*block.DeletionMark), tnow, cfg)
				for _, j := range p.Jobs {
					b.run(j)
				}
			}
			stale = b.list()
			staleMarks = map[ulid.ULID]*block.DeletionMark{}
			for k, v := range b.marks {
				staleMarks[k] = v
			}
			p := PlanTenant("t", b.list(), b.marks, tnow, cfg)
			for _, m := range p.Marks {
				if b.marks[m.ID] == nil {
					b.marks[m.ID] = &block.DeletionMark{ID: m.ID, MarkedAt: tnow, Reason: m.Reason, ReplacedBy: m.ReplacedBy}
				}
			}
			// What is about to be deleted must be superseded already.
			vis := b.visible()
			for _, id := range p.Deletes {
				delete(b.metas, id)
				delete(b.rows, id)
				delete(b.marks, id)
			}
			after := b.visible()
			for x := range uploaded {
				if !vis[x] || !after[x] {
					inFlight := false
					for _, l := range late {
						if slices.Contains(l, x) {
							inFlight = true
						}
					}
					if !inFlight {
						t.Fatalf("seed %d step %d: profile at %d not visible (before deletions %v, after %v)", seed, step, x, vis[x], after[x])
					}
				}
			}
		}
		// Converges: with everything uploaded and time passing, one block per range.
		for _, l := range late {
			b.add(l, nil)
		}
		end := time.Unix(0, 400*sec/2+200*sec)
		for i := 0; i < 10; i++ {
			p := PlanTenant("t", b.list(), b.marks, end, cfg)
			for _, j := range p.Jobs {
				b.run(j)
			}
			p = PlanTenant("t", b.list(), b.marks, end, cfg)
			for _, m := range p.Marks {
				b.marks[m.ID] = &block.DeletionMark{ID: m.ID, MarkedAt: end, Reason: m.Reason, ReplacedBy: m.ReplacedBy}
			}
			end = end.Add(10 * time.Second)
			for _, id := range PlanTenant("t", b.list(), b.marks, end, cfg).Deletes {
				delete(b.metas, id)
				delete(b.rows, id)
				delete(b.marks, id)
			}
		}
		var rows int
		for id, m := range b.metas {
			if m.Compaction == nil || b.marks[id] != nil {
				t.Fatalf("seed %d: not converged: block %v level %d marked %v", seed, id, m.Level(), b.marks[id] != nil)
			}
			rows += len(b.rows[id])
		}
		if vis := b.visible(); len(vis) != len(uploaded) || rows != len(uploaded) {
			t.Fatalf("seed %d: converged to %d rows, %d visible, %d uploaded", seed, rows, len(vis), len(uploaded))
		}
	}
}

// TestFirstLevelFanIn (finding 3): 100 ingesters' blocks of one hour made a
// single first-level job reading all 100 (its merge holding every input's
// symbols at once). Every job now reads at most MaxJobInputs blocks, and the
// parts' outputs are merged by later passes into one block per range.
func TestFirstLevelFanIn(t *testing.T) {
	h := time.Hour
	cfg := PlanConfig{Ranges: []time.Duration{h, 4 * h}, Wait: 10 * time.Minute, DeletionDelay: 0}
	b := &modelBucket{metas: map[ulid.ULID]*block.Meta{}, rows: map[ulid.ULID][]int64{}, marks: map[ulid.ULID]*block.DeletionMark{}}
	want := map[int64]bool{}
	for i := 0; i < 100; i++ {
		ts := at(time.Duration(i) * 30 * time.Second)
		b.add([]int64{ts, ts + 1}, nil)
		want[ts], want[ts+1] = true, true
	}
	now := t0.Add(2 * h)
	passes := 0
	for ; passes < 10; passes++ {
		p := PlanTenant("t", b.list(), b.marks, now, cfg)
		if len(p.Jobs) == 0 && len(p.Marks) == 0 && len(p.Deletes) == 0 {
			break
		}
		for _, j := range p.Jobs {
			if len(j.Inputs) > MaxJobInputs {
				t.Fatalf("pass %d: job %s reads %d blocks, more than %d", passes, j.Key(), len(j.Inputs), MaxJobInputs)
			}
			b.run(j)
		}
		for _, m := range PlanTenant("t", b.list(), b.marks, now, cfg).Marks {
			b.marks[m.ID] = &block.DeletionMark{ID: m.ID, MarkedAt: now, Reason: m.Reason, ReplacedBy: m.ReplacedBy}
		}
		if vis := b.visible(); len(vis) != len(want) {
			t.Fatalf("pass %d: %d profiles visible, want %d", passes, len(vis), len(want))
		}
		for _, id := range PlanTenant("t", b.list(), b.marks, now, cfg).Deletes {
			delete(b.metas, id)
			delete(b.rows, id)
			delete(b.marks, id)
		}
	}
	rows := 0
	for _, r := range b.rows {
		rows += len(r)
	}
	if len(b.metas) != 1 || rows != len(want) {
		t.Fatalf("after %d passes: %d blocks, %d rows for %d profiles", passes, len(b.metas), rows, len(want))
	}
	t.Logf("100 blocks of an hour converged to one in %d passes", passes)
}
