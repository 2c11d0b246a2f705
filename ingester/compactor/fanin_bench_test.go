package compactor

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
)

// fleetProfile is a profile of ingester k's pods: its own 400 functions
// (a fleet's services differ), 50 samples.
func fleetProfile(rng *rand.Rand, k int) *googlev1.Profile {
	p := &googlev1.Profile{StringTable: []string{"", "cpu", "nanoseconds", "/bin/app"}}
	p.SampleType = []*googlev1.ValueType{{Type: 1, Unit: 2}}
	p.PeriodType = &googlev1.ValueType{Type: 1, Unit: 2}
	p.Mapping = []*googlev1.Mapping{{Id: 1, Filename: 3, MemoryLimit: 1 << 30, HasFunctions: true}}
	const fns = 400
	for f := 1; f <= fns; f++ {
		p.Function = append(p.Function, &googlev1.Function{Id: uint64(f), Name: int64(len(p.StringTable))})
		p.StringTable = append(p.StringTable, fmt.Sprintf("svc%d.pkg.(*Type).method%d", k, f))
		p.Location = append(p.Location, &googlev1.Location{Id: uint64(f), MappingId: 1, Address: uint64(f * 16), Line: []*googlev1.Line{{FunctionId: uint64(f)}}})
	}
	for s := 0; s < 50; s++ {
		sm := &googlev1.Sample{Value: []int64{1 + rng.Int64N(100)}}
		for d := 0; d < 4+rng.IntN(12); d++ {
			sm.LocationId = append(sm.LocationId, uint64(1+rng.IntN(fns)))
		}
		p.Sample = append(p.Sample, sm)
	}
	return p
}

// BenchmarkFirstLevelFanIn: one hour of 100 ingesters' blocks (distinct
// services' symbols), compacted by one pass of the compactor. Before issue 21
// the pass merged all 100 in one job; now in parts of MaxJobInputs = 32.
// Reports the pass's peak live heap above the baseline; sub-benchmark
// "one-job" merges all 100 at once (the former plan) for comparison.
func BenchmarkFirstLevelFanIn(b *testing.B) {
	const ingesters = 100
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	setup := func(b *testing.B) string {
		dir := b.TempDir()
		for k := 0; k < ingesters; k++ {
			h := head.New(head.Options{})
			rng := rand.New(rand.NewPCG(uint64(k), 5))
			for i := 0; i < 60; i++ {
				var id head.ProfileID
				id[0], id[1], id[2] = byte(k), byte(i), 7
				ls := model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: fmt.Sprint("svc", k)}}.Sort()
				if _, err := h.Append("t", id, ls, fleetProfile(rng, k), start.Add(time.Duration(i)*time.Minute).UnixNano()); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := block.Write(filepath.Join(dir, "t"), h.Tenant("t").Select("", nil, -1<<63, 1<<63-1), block.WriteOptions{Tenant: "t"}); err != nil {
				b.Fatal(err)
			}
		}
		return dir
	}
	run := func(b *testing.B, oneJob bool) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			dir := setup(b)
			bkt, err := filesystem.NewBucket(dir)
			if err != nil {
				b.Fatal(err)
			}
			now := start.Add(3 * time.Hour)
			c, err := New(Options{Config: faultCfg, Bucket: bkt, Dir: b.TempDir(), Registerer: prometheus.NewRegistry(), Now: func() time.Time { return now }})
			if err != nil {
				b.Fatal(err)
			}
			st, err := c.list(context.Background(), "t")
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			base := heapNow()
			peak, stop := samplePeakHeap()
			b.StartTimer()
			jobs := 0
			if oneJob {
				j := Job{Tenant: "t", Level: 1, Start: start.UnixNano(), End: start.Add(time.Hour).UnixNano()}
				for _, m := range st.metas {
					j.Inputs = append(j.Inputs, m.ULID)
					j.Sources = append(j.Sources, m.ULID)
				}
				if err := c.runJob(context.Background(), j, st); err != nil {
					b.Fatal(err)
				}
				jobs = 1
			} else {
				for _, j := range PlanTenant("t", st.metas, st.marks, now, c.planConfig("t")).Jobs {
					if len(j.Inputs) > MaxJobInputs {
						b.Fatalf("job of %d inputs", len(j.Inputs))
					}
					if err := c.runJob(context.Background(), j, st); err != nil {
						b.Fatal(err)
					}
					jobs++
				}
			}
			b.StopTimer()
			stop()
			b.ReportMetric(float64(*peak-min(*peak, base))/(1<<20), "peakHeapMiB")
			b.ReportMetric(float64(jobs), "jobs")
		}
	}
	b.Run("parts-of-32", func(b *testing.B) { run(b, false) })
	b.Run("one-job", func(b *testing.B) { run(b, true) })
}
