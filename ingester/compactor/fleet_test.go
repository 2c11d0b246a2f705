package compactor

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/hearth-dev/hearth/ingester/block"
)

// The fleet simulation (issue 21): a fleet of 100 ingesters and 50 tenants,
// without 100 processes. Plans are made over generated meta.json contents
// (what the planner reads) at full scale: a month of hourly blocks from every
// ingester for a tenant, one day of it cut every 5 minutes; passes run over
// a real bucket of small blocks with a real ring of 100 members.
const (
	fleetIngesters = 100
	fleetTenants   = 50
	fleetDays      = 30
)

var fleetStart = time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)

// fleetMetas is one tenant's month: every ingester's hourly block of every
// hour, except day cutDay (0-based) whose blocks are 5-minute cuts. Each
// block's meta.json is realistic: its time span, a few rows, its files,
// its writer; ULIDs carry the upload time (the block's end).
func fleetMetas(tenant string, ingesters, days, cutDay int) []*block.Meta {
	entropy := ulid.Monotonic(rand.NewChaCha8([32]byte{byte(len(tenant)), byte(days)}), 0)
	var out []*block.Meta
	add := func(k int, from, to time.Time) {
		id := ulid.MustNew(ulid.Timestamp(to.Add(time.Duration(k)*time.Millisecond)), entropy)
		out = append(out, &block.Meta{Version: 1, ULID: id, Tenant: tenant, MinTime: from.UnixNano(), MaxTime: to.UnixNano() - 1,
			Stats:  block.Stats{Series: 2, Profiles: 4, Samples: 40},
			Files:  []block.File{{Name: "index.bin", Size: 120}, {Name: "profiles.parquet", Size: 2400}, {Name: "symbols.bin", Size: 900}},
			Source: fmt.Sprint("ingester-", k)})
	}
	for d := 0; d < days; d++ {
		cut := time.Hour
		if d == cutDay {
			cut = 5 * time.Minute
		}
		day := fleetStart.Add(time.Duration(d) * 24 * time.Hour)
		for t := day; t.Before(day.Add(24 * time.Hour)); t = t.Add(cut) {
			for k := 0; k < ingesters; k++ {
				add(k, t, t.Add(cut))
			}
		}
	}
	return out
}

var fleetPlanCfg = PlanConfig{Ranges: DefaultBlockRanges, Wait: 70 * time.Minute, DeletionDelay: 0}

// compactModel runs the plans of a tenant's blocks to the end without
// merging anything: each job's output is the meta.json a merge would write.
// It returns the passes taken, the largest job and the largest meta.json.
func compactModel(tb testing.TB, metas []*block.Meta, now time.Time, maxPasses int) (passes, maxInputs, maxMetaBytes int, final []*block.Meta) {
	tb.Helper()
	live := map[ulid.ULID]*block.Meta{}
	for _, m := range metas {
		live[m.ULID] = m
	}
	marks := map[ulid.ULID]*block.DeletionMark{}
	entropy := ulid.Monotonic(rand.NewChaCha8([32]byte{1, 2}), 0)
	for passes = 0; passes < maxPasses; passes++ {
		list := make([]*block.Meta, 0, len(live))
		for _, m := range live {
			list = append(list, m)
		}
		p := PlanTenant("t", list, marks, now, fleetPlanCfg)
		for _, mk := range p.Marks {
			marks[mk.ID] = &block.DeletionMark{ID: mk.ID, MarkedAt: now.Add(-time.Second), Reason: mk.Reason, ReplacedBy: mk.ReplacedBy}
		}
		for _, id := range p.Deletes {
			delete(live, id)
			delete(marks, id)
		}
		if len(p.Jobs) == 0 && len(p.Marks) == 0 && len(p.Deletes) == 0 {
			break
		}
		for _, j := range p.Jobs {
			maxInputs = max(maxInputs, len(j.Inputs))
			out := &block.Meta{Version: 1, ULID: ulid.MustNew(ulid.Timestamp(now), entropy), Tenant: "t",
				MinTime: math.MaxInt64, MaxTime: math.MinInt64, Source: "compactor/sim",
				Files:      []block.File{{Name: "index.bin", Size: 1}, {Name: "profiles.parquet", Size: 1}, {Name: "symbols.bin", Size: 1}},
				Compaction: &block.Compaction{Level: j.Level, RangeStart: j.Start, RangeEnd: j.End, Sources: j.Sources}}
			for _, in := range j.Inputs {
				m := live[in]
				out.MinTime, out.MaxTime = min(out.MinTime, max(m.MinTime, j.Start)), max(out.MaxTime, min(m.MaxTime, j.End-1))
			}
			b, err := json.Marshal(out)
			if err != nil {
				tb.Fatal(err)
			}
			maxMetaBytes = max(maxMetaBytes, len(b))
			live[out.ULID] = out
		}
	}
	for _, m := range live {
		final = append(final, m)
	}
	return passes, maxInputs, maxMetaBytes, final
}

// TestFleetPlanBoundsFanIn: a tenant's month from 100 ingesters (72,000
// hourly blocks, 28,800 5-minute cuts on one day) is planned and compacted
// (in the model) in jobs of at most MaxJobInputs inputs, in a bounded
// number of passes, into one block a day, every source kept once; the
// largest meta.json (the 5-minute day's, 28,800 sources) stays under 1 MiB
// (readers accept 64 MiB; the bucket index repeats every meta.json).
func TestFleetPlanBoundsFanIn(t *testing.T) {
	if testing.Short() {
		t.Skip("a month of 100 ingesters' blocks")
	}
	metas := fleetMetas("t", fleetIngesters, fleetDays, fleetDays-2)
	now := fleetStart.Add(fleetDays*24*time.Hour + 2*time.Hour)
	// A day's range: 2,400 blocks (28,800 cut every 5 minutes) merged in
	// parts of 32, their outputs in parts of 32, ...: log32 levels deep;
	// the last level's inputs are marked one pass later, deleted the next,
	// and a pass finds nothing left to do.
	bound := 3 + int(math.Ceil(math.Log(28800)/math.Log(MaxJobInputs)))
	passes, maxInputs, maxMeta, final := compactModel(t, metas, now, 3*bound)
	if maxInputs > MaxJobInputs {
		t.Fatalf("a job of %d inputs (cap %d)", maxInputs, MaxJobInputs)
	}
	if passes > bound {
		t.Fatalf("%d passes, want at most %d", passes, bound)
	}
	var sources int
	for _, m := range final {
		if m.Level() != len(DefaultBlockRanges) || m.Compaction.RangeEnd-m.Compaction.RangeStart != int64(24*time.Hour) {
			t.Fatalf("left over: %s level %d [%s, %s)", m.ULID, m.Level(), time.Unix(0, m.MinTime).UTC(), time.Unix(0, m.MaxTime).UTC())
		}
		sources += len(m.Compaction.Sources)
	}
	if len(final) != fleetDays || sources != len(metas) {
		t.Fatalf("%d blocks holding %d sources, want %d days holding %d", len(final), sources, fleetDays, len(metas))
	}
	if maxMeta > 1<<20 {
		t.Fatalf("a meta.json of %d bytes", maxMeta)
	}
	t.Logf("%d blocks: %d passes, largest job %d inputs, largest meta.json %d bytes", len(metas), passes, maxInputs, maxMeta)
}

// BenchmarkFleetPlan: the planner's peak heap and time for one tenant's
// month of 100 ingesters' blocks (the compactor plans a tenant at a time).
func BenchmarkFleetPlan(b *testing.B) {
	metas := fleetMetas("t", fleetIngesters, fleetDays, fleetDays-2)
	now := fleetStart.Add(fleetDays*24*time.Hour + 2*time.Hour)
	runtime.GC()
	base := heapNow()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		peak, stop := samplePeakHeap()
		p := PlanTenant("t", metas, nil, now, fleetPlanCfg)
		stop()
		b.ReportMetric(float64(*peak-min(*peak, base))/(1<<20), "peakHeapMiB")
		b.ReportMetric(float64(len(p.Jobs)), "jobs")
	}
	b.ReportMetric(float64(len(metas)), "blocks")
}

// BenchmarkFleetPassOps: bucket requests of one compaction pass per
// ingester, for 100 ingesters (a real ring of 100 members) and 50 tenants,
// in the steady state (second pass: indexes written, meta.json cached), with
// every ingester in every tenant's shard (tenant-shard-size 0, the former
// behaviour but for the index's second listing) and with shards of 3.
func BenchmarkFleetPassOps(b *testing.B) {
	dir := b.TempDir()
	for i := 0; i < fleetTenants; i++ {
		writeTenantBlocks(b, dir, fmt.Sprintf("tenant-%02d", i), 2, fleetStart)
	}
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		b.Fatal(err)
	}
	rr := fleetRing(b, fleetIngesters)
	now := fleetStart.Add(30 * time.Minute) // no range complete: upkeep only
	for _, size := range []int{0, 3} {
		b.Run(fmt.Sprint("shard=", size), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				var cs []*Compactor
				for m := 0; m < fleetIngesters; m++ {
					id := fmt.Sprintf("ing-%d", m)
					owns, inShard := member(rr, id, size)
					c, err := New(Options{Config: faultCfg, Bucket: bkt, Dir: b.TempDir(), Instance: id, Registerer: prometheus.NewRegistry(),
						Now: func() time.Time { return now }, Owns: owns, InShard: inShard})
					if err != nil {
						b.Fatal(err)
					}
					cs = append(cs, c)
				}
				ops := func() (iters, gets []float64) {
					for _, c := range cs {
						iters = append(iters, testutil.ToFloat64(c.m.bucketOps.WithLabelValues(opIter)))
						gets = append(gets, testutil.ToFloat64(c.m.bucketOps.WithLabelValues(opGet)))
					}
					return
				}
				for _, c := range cs { // the first pass: indexes, meta caches
					if err := c.RunOnce(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
				i0, g0 := ops()
				for _, c := range cs {
					if err := c.RunOnce(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
				i1, g1 := ops()
				var it, gt []float64
				for k := range cs {
					it, gt = append(it, i1[k]-i0[k]), append(gt, g1[k]-g0[k])
				}
				sum := func(v []float64) (s float64) {
					for _, x := range v {
						s += x
					}
					return
				}
				b.ReportMetric(sum(it)/float64(len(cs)), "lists/pass/ingester")
				b.ReportMetric(slices.Max(it), "maxLists/pass")
				b.ReportMetric(sum(gt)/float64(len(cs)), "gets/pass/ingester")
				b.ReportMetric(slices.Max(gt), "maxGets/pass")
				b.ReportMetric(sum(it)+sum(gt), "requests/pass/fleet")
			}
		})
	}
}
