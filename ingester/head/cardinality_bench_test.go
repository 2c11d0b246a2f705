package head

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/model"
)

// fleet generates the pushes of a fleet of small Go services: every label set
// is one pod (service_name, namespace, region, cluster, pod, container, the
// pod name unique), every push a small CPU profile with two sample types
// (samples count and cpu nanoseconds, as Go's): two head series per label set.
// A service's pods share its stacks; each push has about half of them, with
// random values, as consecutive CPU profiles of one process do.
type fleet struct {
	services int
	strings  []string
	funcs    int
	stacks   [][][]uint64 // per service: its stacks (location ids)
	funcsOf  [][]*googlev1.Function
	locsOf   [][]*googlev1.Location // per service: the locations its stacks use
}

const (
	fleetServices     = 200
	fleetStacksPerSvc = 48
	fleetFuncs        = 400
)

func newFleet() *fleet {
	f := &fleet{services: fleetServices, funcs: fleetFuncs}
	f.strings = []string{"", "samples", "count", "cpu", "nanoseconds"}
	for i := 0; i < fleetFuncs; i++ {
		f.strings = append(f.strings, fmt.Sprintf("github.com/example/pkg%d.(*T).Method%d", i%37, i))
	}
	r := rand.New(rand.NewPCG(1, 2))
	f.stacks = make([][][]uint64, fleetServices)
	for s := range f.stacks {
		for range fleetStacksPerSvc {
			depth := 4 + r.IntN(12)
			locs := make([]uint64, depth)
			for d := range locs {
				locs[d] = 1 + r.Uint64N(fleetFuncs)
			}
			f.stacks[s] = append(f.stacks[s], locs)
		}
	}
	// Profiles only read these: every push of a service shares them.
	f.funcsOf = make([][]*googlev1.Function, fleetServices)
	f.locsOf = make([][]*googlev1.Location, fleetServices)
	for s := range f.stacks {
		seen := map[uint64]bool{}
		for _, st := range f.stacks[s] {
			for _, id := range st {
				if !seen[id] {
					seen[id] = true
					f.funcsOf[s] = append(f.funcsOf[s], &googlev1.Function{Id: id, Name: int64(4 + id)})
					f.locsOf[s] = append(f.locsOf[s], &googlev1.Location{Id: id, Line: []*googlev1.Line{{FunctionId: id, Line: int64(id)}}})
				}
			}
		}
	}
	return f
}

// labels is label set i: pod i of service i mod services.
func (f *fleet) labels(i int) model.Labels {
	svc := i % f.services
	return model.Labels{
		{Name: "__name__", Value: "process_cpu"},
		{Name: "cluster", Value: fmt.Sprintf("cluster-%d", i%2)},
		{Name: "container", Value: "app"},
		{Name: "namespace", Value: fmt.Sprintf("team-%d", svc%20)},
		{Name: "pod", Value: fmt.Sprintf("svc-%d-%08x-%05d", svc, uint32(i)*2654435761, i)},
		{Name: "region", Value: fmt.Sprintf("region-%d", i%4)},
		{Name: "service_name", Value: fmt.Sprintf("svc-%d", svc)},
	}
}

// profile is a push of label set i's pod.
func (f *fleet) profile(i int, r *rand.Rand) *googlev1.Profile {
	p := &googlev1.Profile{
		StringTable: f.strings,
		SampleType:  []*googlev1.ValueType{{Type: 1, Unit: 2}, {Type: 3, Unit: 4}},
		PeriodType:  &googlev1.ValueType{Type: 3, Unit: 4},
		Period:      10_000_000,
	}
	p.Function, p.Location = f.funcsOf[i%f.services], f.locsOf[i%f.services]
	for _, st := range f.stacks[i%f.services] {
		if r.IntN(2) == 0 {
			continue
		}
		n := 1 + r.Int64N(20)
		p.Sample = append(p.Sample, &googlev1.Sample{LocationId: st, Value: []int64{n, n * 10_000_000}})
	}
	return p
}

func writeHeapProfile(b *testing.B, path string) {
	out, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
		b.Fatal(err)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkCardinality measures the head's memory per active series with
// small profiles: pods label sets, rows pushes each (15 s apart), live heap
// after GC before and after. It reports the heap per head series and per row
// (the rows' share: the heap beyond one row per series, divided by the rows
// beyond the first), and the head's own estimate (Bytes) per series.
//
//	go test -run '^$' -bench Cardinality -benchtime 1x ./ingester/head/
//
// HEARTH_HEAD_HEAP_PROFILE=<file> with -memprofilerate 512 writes a heap
// profile while the head is alive: where its bytes are.
func BenchmarkCardinality(b *testing.B) {
	cases := []struct{ pods, rows int }{
		{5_000, 1}, {50_000, 1}, {500_000, 1},
		{500, 240}, // an hour at 15 s: the default -ingester.max-block-duration
	}
	f := newFleet()
	for _, c := range cases {
		b.Run(fmt.Sprintf("pods=%d/rows=%d", c.pods, c.rows), func(b *testing.B) {
			var perSeries, perRow, estimate float64
			for b.Loop() {
				start := time.Now()
				before := heapInUse()
				h := New(Options{})
				r := rand.New(rand.NewPCG(5, 6))
				labels := make([]model.Labels, c.pods)
				for i := range labels {
					labels[i] = f.labels(i)
				}
				var oneRow uint64
				t0 := int64(1_700_000_000) * 1e9
				for row := range c.rows {
					for i := range c.pods {
						id := ProfileID{byte(i), byte(i >> 8), byte(i >> 16), byte(i >> 24), byte(row), byte(row >> 8), 1}
						if _, err := h.Append("t", id, labels[i], f.profile(i, r), t0+int64(row)*15e9+int64(i)); err != nil {
							b.Fatal(err)
						}
					}
					if row == 0 {
						oneRow = heapInUse() - before
					}
				}
				labels = nil // the head keeps its own references
				all := heapInUse() - before
				st := h.Tenant("t").Stats()
				perSeries = float64(all) / float64(st.Series)
				if c.rows > 1 {
					perRow = float64(all-oneRow) / float64(st.Profiles-st.Series)
				}
				estimate = float64(h.Bytes()) / float64(st.Series)
				b.Logf("%d series, %d rows: heap %d MiB (one row per series: %d MiB), head estimate %d MiB, %v",
					st.Series, st.Profiles, all>>20, oneRow>>20, h.Bytes()>>20, time.Since(start).Round(time.Millisecond))
				if path := os.Getenv("HEARTH_HEAD_HEAP_PROFILE"); path != "" {
					writeHeapProfile(b, path) // what the head holds, with -memprofilerate 1
				}
				runtime.KeepAlive(h)
			}
			b.ReportMetric(perSeries, "heapB/series")
			b.ReportMetric(estimate, "estB/series")
			if c.rows > 1 {
				b.ReportMetric(perRow, "heapB/row")
			}
		})
	}
}
