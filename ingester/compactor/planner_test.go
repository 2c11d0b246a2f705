package compactor

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hearth-dev/hearth/ingester/block"
)

var t0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC) // a day boundary

func id(n byte) ulid.ULID { return ulid.ULID{15: n} }

func at(d time.Duration) int64 { return t0.Add(d).UnixNano() }

func raw(n byte, from, to time.Duration) *block.Meta {
	return &block.Meta{ULID: id(n), Tenant: "t", MinTime: at(from), MaxTime: at(to), Stats: block.Stats{Profiles: 1}}
}

func comp(n byte, level int, from, to time.Duration, sources ...byte) *block.Meta {
	m := &block.Meta{ULID: id(n), Tenant: "t", MinTime: at(from), MaxTime: at(to) - 1, Stats: block.Stats{Profiles: 1},
		Compaction: &block.Compaction{Level: level, RangeStart: at(from), RangeEnd: at(to)}}
	for _, s := range sources {
		m.Compaction.Sources = append(m.Compaction.Sources, id(s))
	}
	return m
}

func ids(ns ...byte) []ulid.ULID {
	var out []ulid.ULID
	for _, n := range ns {
		out = append(out, id(n))
	}
	return out
}

func job(level int, from, to time.Duration, inputs, sources []ulid.ULID) Job {
	return Job{Tenant: "t", Level: level, Start: at(from), End: at(to), Inputs: inputs, Sources: sources}
}

func compacted(n byte, by ...byte) Mark {
	return Mark{ID: id(n), Reason: block.ReasonCompacted, ReplacedBy: ids(by...)}
}

func TestPlanTenant(t *testing.T) {
	h := time.Hour
	cfg := PlanConfig{Ranges: []time.Duration{h, 4 * h, 24 * h}, Wait: 10 * time.Minute, DeletionDelay: time.Hour}
	for _, tc := range []struct {
		name  string
		now   time.Duration
		metas []*block.Meta
		marks map[ulid.ULID]*block.DeletionMark
		cfg   *PlanConfig
		want  Plan
	}{
		{
			name:  "three replicas of an hour, complete: one first-level job",
			now:   h + 15*time.Minute,
			metas: []*block.Meta{raw(1, 0, 50*time.Minute), raw(2, time.Minute, 59*time.Minute), raw(3, 0, 30*time.Minute)},
			want:  Plan{Jobs: []Job{job(1, 0, h, ids(1, 2, 3), ids(1, 2, 3))}},
		},
		{
			name:  "the range is not complete yet: nothing",
			now:   h + 5*time.Minute,
			metas: []*block.Meta{raw(1, 0, 50*time.Minute), raw(2, time.Minute, 59*time.Minute)},
		},
		{
			name:  "a block straddling into an incomplete hour is compacted for its first hour only",
			now:   h + 15*time.Minute,
			metas: []*block.Meta{raw(1, 30*time.Minute, 90*time.Minute)},
			want:  Plan{Jobs: []Job{job(1, 0, h, ids(1), ids(1))}},
		},
		{
			name:  "sources covered by the compacted block are marked",
			now:   h + 20*time.Minute,
			metas: []*block.Meta{raw(1, 0, 50*time.Minute), raw(2, time.Minute, 59*time.Minute), comp(9, 1, 0, h, 1, 2)},
			want:  Plan{Marks: []Mark{compacted(1, 9), compacted(2, 9)}},
		},
		{
			name:  "a straddling block stays until its second hour is compacted",
			now:   h + 20*time.Minute,
			metas: []*block.Meta{raw(1, 30*time.Minute, 90*time.Minute), comp(9, 1, 0, h, 1)},
		},
		{
			name:  "a straddling block covered by two blocks is marked replaced by both",
			now:   2*h + 20*time.Minute,
			metas: []*block.Meta{raw(1, 30*time.Minute, 90*time.Minute), comp(8, 1, 0, h, 1), comp(9, 1, h, 2*h, 1)},
			want:  Plan{Marks: []Mark{compacted(1, 8, 9)}},
		},
		{
			name:  "two owners ran the same job: the smaller ULID goes",
			now:   h + 20*time.Minute,
			metas: []*block.Meta{comp(8, 1, 0, h, 1, 2), comp(9, 1, 0, h, 1, 2)},
			want:  Plan{Marks: []Mark{compacted(8, 9)}},
		},
		{
			name:  "a late block joins the compacted block of its range",
			now:   3 * h,
			metas: []*block.Meta{comp(8, 1, 0, h, 1, 2), raw(3, 10*time.Minute, 20*time.Minute)},
			want:  Plan{Jobs: []Job{job(1, 0, h, ids(3, 8), ids(1, 2, 3))}},
		},
		{
			name:  "a compacted block replaced by a larger one",
			now:   3 * h,
			metas: []*block.Meta{comp(8, 1, 0, h, 1, 2), comp(9, 1, 0, h, 1, 2, 3)},
			want:  Plan{Marks: []Mark{compacted(8, 9)}},
		},
		{
			name:  "a complete second-level range merges its first-level blocks",
			now:   4*h + 15*time.Minute,
			metas: []*block.Meta{comp(5, 1, 0, h, 1), comp(6, 1, h, 2*h, 2), comp(7, 1, 3*h, 4*h, 3, 4)},
			want:  Plan{Jobs: []Job{job(2, 0, 4*h, ids(5, 6, 7), ids(1, 2, 3, 4))}},
		},
		{
			name:  "a lone first-level block in a complete range is left alone",
			now:   4*h + 15*time.Minute,
			metas: []*block.Meta{comp(5, 1, 0, h, 1)},
		},
		{
			name:  "after an outage the ingesters' blocks go straight to the largest complete level",
			now:   25 * h,
			metas: []*block.Meta{raw(1, 0, 50*time.Minute), raw(2, 5*h, 6*h), raw(3, 23*h, 24*h+30*time.Minute)},
			want:  Plan{Jobs: []Job{job(3, 0, 24*h, ids(1, 2, 3), ids(1, 2, 3))}},
		},
		{
			name:  "a second-level block is replaced by the day",
			now:   25 * h,
			metas: []*block.Meta{comp(5, 2, 0, 4*h, 1, 2), comp(6, 3, 0, 24*h, 1, 2, 3)},
			want:  Plan{Marks: []Mark{compacted(5, 6)}},
		},
		{
			name:  "retention marks old blocks and compacts nothing past it",
			now:   50 * h,
			cfg:   &PlanConfig{Ranges: cfg.Ranges, Wait: cfg.Wait, DeletionDelay: cfg.DeletionDelay, Retention: 25 * h},
			metas: []*block.Meta{comp(5, 3, 0, 24*h, 1, 2), raw(3, 2*h, 3*h), raw(4, 30*h, 31*h)},
			want:  Plan{Marks: []Mark{{ID: id(3), Reason: block.ReasonRetention}, {ID: id(5), Reason: block.ReasonRetention}}, Jobs: []Job{job(3, 24*h, 48*h, ids(4), ids(4))}},
		},
		{
			name:  "marked blocks are deleted after the delay and never read",
			now:   10 * h,
			metas: []*block.Meta{raw(1, 0, h/2), raw(2, 0, h/2), comp(9, 1, 0, h, 1, 2)},
			marks: map[ulid.ULID]*block.DeletionMark{
				id(1): {ID: id(1), MarkedAt: t0.Add(8 * h), Reason: block.ReasonCompacted, ReplacedBy: ids(9)},
				id(2): {ID: id(2), MarkedAt: t0.Add(9*h + 30*time.Minute), Reason: block.ReasonCompacted, ReplacedBy: ids(9)},
			},
			want: Plan{Deletes: ids(1)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			if tc.cfg != nil {
				c = *tc.cfg
			}
			got := PlanTenant("t", tc.metas, tc.marks, t0.Add(tc.now), c)
			if !reflect.DeepEqual(norm(got), norm(tc.want)) {
				t.Errorf("plan:\n got  %s\n want %s", fmtPlan(got), fmtPlan(tc.want))
			}
		})
	}
}

func norm(p Plan) Plan {
	if len(p.Jobs) == 0 {
		p.Jobs = nil
	}
	if len(p.Marks) == 0 {
		p.Marks = nil
	}
	if len(p.Deletes) == 0 {
		p.Deletes = nil
	}
	return p
}

func fmtPlan(p Plan) string {
	s := ""
	for _, j := range p.Jobs {
		s += fmt.Sprintf("job L%d [%s,%s) in=%v src=%v; ", j.Level, time.Unix(0, j.Start).Sub(t0), time.Unix(0, j.End).Sub(t0), short(j.Inputs), short(j.Sources))
	}
	for _, m := range p.Marks {
		s += fmt.Sprintf("mark %v %s by %v; ", short([]ulid.ULID{m.ID}), m.Reason, short(m.ReplacedBy))
	}
	if len(p.Deletes) > 0 {
		s += fmt.Sprintf("delete %v", short(p.Deletes))
	}
	return s
}

func short(us []ulid.ULID) []int {
	var out []int
	for _, u := range us {
		out = append(out, int(u[15]))
	}
	return out
}

func TestJobOwnershipIsStable(t *testing.T) {
	a := job(1, 0, time.Hour, ids(1), ids(1))
	b := job(1, 0, time.Hour, ids(1, 2), ids(1, 2)) // more inputs: still the same job
	if a.Token() != b.Token() || a.Key() != b.Key() {
		t.Fatalf("the same (tenant, level, range) must hash alike: %s %d vs %s %d", a.Key(), a.Token(), b.Key(), b.Token())
	}
	c := job(1, time.Hour, 2*time.Hour, ids(1), ids(1))
	if a.Key() == c.Key() {
		t.Fatalf("different ranges share a key %s", a.Key())
	}
}

func TestPlanBoundsFanIn(t *testing.T) {
	h := time.Hour
	cfg := PlanConfig{Ranges: []time.Duration{h, 4 * h, 24 * h}, Wait: 10 * time.Minute, DeletionDelay: time.Hour}
	var metas []*block.Meta
	for i := 0; i < 48; i++ { // a day of 30-minute blocks: more than MaxJobInputs
		metas = append(metas, raw(byte(i+1), time.Duration(i)*30*time.Minute, time.Duration(i)*30*time.Minute+29*time.Minute))
	}
	p := PlanTenant("t", metas, nil, t0.Add(25*h), cfg)
	if len(p.Jobs) != 6 {
		t.Fatalf("%d jobs, want the day merged per 4h range: %s", len(p.Jobs), fmtPlan(p))
	}
	for _, j := range p.Jobs {
		if j.Level != 2 || len(j.Inputs) != 8 || len(j.Inputs) > MaxJobInputs {
			t.Fatalf("job %s: level %d, %d inputs", j.Key(), j.Level, len(j.Inputs))
		}
	}
}
