package compactor

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	rtmetrics "runtime/metrics"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/ingest"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// week is a simulated week of one tenant in a bucket: 3 ingesters (RF 3),
// each cutting a block every hour at its own offset, every 5 minutes a CPU
// and a heap profile of this process from each of 5 pods.
type week struct {
	raw, compacted string // bucket directories
	pushes         int    // pushed profiles (each stored by 3 replicas)
	start          time.Time
	rawBytes       int64
	rawBlocks      int
	rawRows        int64
	compactBytes   int64
	compactBlocks  int
	inputMBs       float64 // compaction throughput over the input bytes
	peakHeapMiB    float64
	seconds        float64
}

const benchTenant = tenant.Anonymous

var (
	weekOnce sync.Once
	weekData *week
	weekErr  error
)

func realProfiles(tb testing.TB) []*googlev1.Profile {
	var out []*googlev1.Profile
	for _, f := range testutil.WriteProfiles(tb, tb.TempDir()) {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		p, err := pprofdec.DecodePprof(b, 0)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func buildWeek(b *testing.B) *week {
	weekOnce.Do(func() { weekData, weekErr = makeWeek(b) })
	if weekErr != nil {
		b.Fatal(weekErr)
	}
	return weekData
}

func makeWeek(b *testing.B) (*week, error) {
	w := &week{start: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)}
	dir, err := os.MkdirTemp("", "hearth-week-")
	if err != nil {
		return nil, err
	}
	w.raw, w.compacted = filepath.Join(dir, "raw"), filepath.Join(dir, "compacted")
	profiles := realProfiles(b)
	rng := rand.New(rand.NewPCG(1, 1))
	const hours, every, pods = 168, 5 * time.Minute, 5
	type push struct {
		id head.ProfileID
		ls model.Labels
		p  *googlev1.Profile
		ts int64
	}
	var ps []push
	for t := time.Duration(0); t < hours*time.Hour; t += every {
		for pod := 0; pod < pods; pod++ {
			for _, p := range profiles {
				var id head.ProfileID
				for j := range id {
					id[j] = byte(rng.IntN(256))
				}
				ls := model.Labels{{Name: model.LabelProfileName, Value: ingest.ProfileName(p)}, {Name: model.LabelServiceName, Value: "app"},
					{Name: "pod", Value: fmt.Sprint("pod-", pod)}}.Sort()
				ps = append(ps, push{id, ls, p, w.start.Add(t + time.Duration(rng.IntN(int(every)))).UnixNano()})
			}
		}
	}
	w.pushes = len(ps)
	for r := 0; r < 3; r++ {
		offset := time.Duration(r) * 17 * time.Minute
		heads := map[int64]*head.Head{}
		for _, p := range ps {
			k := (p.ts - w.start.UnixNano() + int64(offset)) / int64(time.Hour)
			h := heads[k]
			if h == nil {
				h = head.New(head.Options{})
				heads[k] = h
			}
			if _, err := h.Append(benchTenant, p.id, p.ls, p.p, p.ts); err != nil {
				return nil, err
			}
		}
		for _, h := range heads {
			sel := h.Tenant(benchTenant).Select("", nil, -1<<63, 1<<63-1)
			m, err := block.Write(filepath.Join(w.raw, benchTenant), sel, block.WriteOptions{Tenant: benchTenant, Source: fmt.Sprint("ingester-", r)})
			if err != nil {
				return nil, err
			}
			w.rawBytes += m.Bytes()
			w.rawRows += m.Stats.Profiles
			w.rawBlocks++
		}
	}
	if err := os.CopyFS(w.compacted, os.DirFS(w.raw)); err != nil {
		return nil, err
	}
	bkt, err := filesystem.NewBucket(w.compacted)
	if err != nil {
		return nil, err
	}
	now := w.start.Add(hours*time.Hour + 3*time.Hour)
	cfg := Config{BlockRanges: append(DurationList(nil), DefaultBlockRanges...), CompactionInterval: time.Minute, FirstLevelWait: 70 * time.Minute, DeletionDelay: time.Hour}
	c, err := New(Options{Config: cfg, Bucket: bkt, Dir: filepath.Join(dir, "work"), Instance: "bench", Registerer: prometheus.NewRegistry(), Now: func() time.Time { return now }})
	if err != nil {
		return nil, err
	}
	if err := c.starting(context.Background()); err != nil {
		return nil, err
	}
	runtime.GC()
	base := heapNow()
	peak, stop := samplePeakHeap()
	t0 := time.Now()
	// Passes until no job is left (a day of 72+ blocks is more than one job
	// merges at once: 4h blocks first, then the day).
	for pass, jobs := 0, -1; pass < 5 && jobs != len(c.Status().Jobs); pass++ {
		jobs = len(c.Status().Jobs)
		if err := c.RunOnce(context.Background()); err != nil {
			return nil, err
		}
	}
	w.seconds = time.Since(t0).Seconds()
	stop()
	w.peakHeapMiB = float64(*peak-min(*peak, base)) / (1 << 20)
	w.inputMBs = float64(w.rawBytes) / 1e6 / w.seconds
	for i := 0; i < 2; i++ { // past the deletion delay: marks, then deletions
		now = now.Add(2 * time.Hour)
		if err := c.RunOnce(context.Background()); err != nil {
			return nil, err
		}
	}
	st, err := c.list(context.Background(), benchTenant)
	if err != nil {
		return nil, err
	}
	for _, m := range st.metas {
		w.compactBytes += m.Bytes()
		w.compactBlocks++
	}
	return w, nil
}

func heapNow() uint64 {
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}

// samplePeakHeap samples the live heap every 2 ms until stop.
func samplePeakHeap() (*uint64, func()) {
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			rtmetrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return &peak, func() { close(done); wg.Wait() }
}

// BenchmarkCompactionWeek reports, for a simulated week (168 hourly ranges ×
// 3 replicas), bucket bytes per pushed profile before and after compaction,
// the compaction's input throughput and peak heap, and the latency of a merge
// query over the whole week before and after (a reader with a warm cache, and
// a fresh reader that lists the bucket and opens every block).
func BenchmarkCompactionWeek(b *testing.B) {
	w := buildWeek(b)
	b.Run("compaction", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_ = i
		}
		b.ReportMetric(float64(w.rawBytes)/float64(w.pushes), "beforeB/profile")
		b.ReportMetric(float64(w.compactBytes)/float64(w.pushes), "afterB/profile")
		b.ReportMetric(float64(w.compactBytes)/float64(w.rawBytes), "after/before")
		b.ReportMetric(float64(w.rawBlocks), "blocksBefore")
		b.ReportMetric(float64(w.compactBlocks), "blocksAfter")
		b.ReportMetric(w.inputMBs, "inputMB/s")
		b.ReportMetric(float64(w.rawRows)/w.seconds, "inputRows/s")
		b.ReportMetric(w.peakHeapMiB, "peakHeapMiB(above-baseline)")
		b.ReportMetric(float64(w.rawBytes)/1e6, "inputMB")
	})
	req := &querierv1.SelectMergeStacktracesRequest{
		ProfileTypeID: "process_cpu:cpu:nanoseconds:cpu:nanoseconds", LabelSelector: `{service_name="app"}`,
		Start: w.start.UnixMilli(), End: w.start.Add(168 * time.Hour).UnixMilli(),
	}
	for _, c := range []struct{ name, dir string }{{"query/before", w.raw}, {"query/after", w.compacted}} {
		bkt, err := filesystem.NewBucket(c.dir)
		if err != nil {
			b.Fatal(err)
		}
		for _, cold := range []bool{false, true} {
			name := c.name + "/warm"
			if cold {
				name = c.name + "/cold"
			}
			b.Run(name, func(b *testing.B) {
				var total int64
				src := &block.BucketSource{Bucket: objstore.Bucket(bkt), SyncInterval: time.Hour}
				for i := 0; i < b.N; i++ {
					if cold {
						src = &block.BucketSource{Bucket: bkt, SyncInterval: time.Hour}
					}
					q := newQuerier(src)
					resp, err := q.SelectMergeStacktraces(context.Background(), connect.NewRequest(req))
					if err != nil {
						b.Fatal(err)
					}
					total = resp.Msg.Flamegraph.Total
				}
				if total == 0 {
					b.Fatal("empty flame graph")
				}
			})
		}
	}
}
