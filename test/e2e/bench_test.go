package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/internal/load"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// BenchmarkFullHeads measures, on the e2e platform with the operator, the wall time of a
// 3-pod rollout (image change, RF 3) and of a 5→2 scale-down (RF 2), each with every pod's
// head filled to 256 MiB first (HEARTH_BENCH_HEAD_MIB overrides), under a light load whose
// acknowledged profiles are all checked afterwards. Run it once:
//
//	go test -run '^$' -bench FullHeads -benchtime 1x -timeout 90m -v ./test/e2e/
//
// (-bench FullHeads/Rollout or FullHeads/ScaleDown for one part).
// The numbers go to docs/benchmarks.md.
func BenchmarkFullHeads(b *testing.B) {
	target := int64(256)
	if v := os.Getenv("HEARTH_BENCH_HEAD_MIB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("HEARTH_BENCH_HEAD_MIB: %v", err)
		}
		target = n
	}
	target <<= 20
	e := newScenarioEnv(b)
	fillCorpus := fillCorpus(b)
	// Heads are cut only by the benchmark's size, not by age or the default 1 GiB.
	big := map[string]any{"blocks": map[string]any{"maxHeadBytes": "4GiB", "maxBlockDuration": "3h"}}

	// A 3-pod rollout with full heads: each pod stops (writing its head into local blocks
	// when its WAL is large) and its replacement starts and joins before the next.
	b.Run("Rollout", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			ns := fmt.Sprintf("roll-%d", i)
			e.apply(b, ns, "hearth", 3, 3, big)
			e.fill(b, ns, fillCorpus, podNames("hearth", 3), target)
			took := e.measure(b, ns, "3-pod rollout", target, func() {
				e.setImage(b, ns, "hearth", "hearth:dev-2")
				e.waitSettled(b, ns, "hearth", 3, 30*time.Minute)
			})
			b.ReportMetric(took.Seconds(), "rollout-s")
			// The Ingester stays (idle): deleting it would flush its pods while the
			// next part is measured.
		}
	})
	// A 5→2 scale-down with full heads: the three leaving pods flush and upload first.
	b.Run("ScaleDown", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			ns := fmt.Sprintf("scale-%d", i)
			e.apply(b, ns, "hearth", 5, 2, big)
			e.fill(b, ns, fillCorpus, podNames("hearth", 5), target)
			took := e.measure(b, ns, "5→2 scale-down", target, func() {
				e.kubectl(b, "-n", ns, "scale", "ingester/hearth", "--replicas=2")
				e.waitSettled(b, ns, "hearth", 2, 30*time.Minute)
			})
			b.ReportMetric(took.Seconds(), "scaledown-s")
		}
	})
}

// measure times action under a light load (20 pushes/s, as between bursts in production)
// whose acknowledged profiles are all checked afterwards.
func (e *scenarioEnv) measure(b testing.TB, ns, what string, head int64, action func()) time.Duration {
	bg := e.startLoadAt(b, ns, 20)
	time.Sleep(2 * time.Second)
	start := time.Now()
	action()
	took := time.Since(start)
	time.Sleep(time.Second)
	bg.end(b, what)
	e.checkAll(b, what, "http://"+podIP(b, e.p, ns, "hearth-0")+":4040", bg)
	b.Logf("%s with %d MiB of head per pod: %s; load failed %d of %d pushes %v",
		what, head>>20, took.Round(time.Millisecond), bg.errors.Load(), bg.pushes.Load(), bg.codes)
	return took
}

// fillCorpus copies the shared corpus (the biggest real profiles; the one the ingester
// rejects left out) under names that keep its service names apart from the checked load's
// "heap".
func fillCorpus(b testing.TB) string {
	files := testutil.Corpus(b)
	if len(files) == 0 {
		b.Fatal("the benchmark fills the heads with ../shared/testdata/pprof, which is not beside the project")
	}
	dir := b.TempDir()
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), "dotnet-pprof-3") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "fill-"+filepath.Base(f)), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// fill pushes corpus through the pods until every one's head holds at least target bytes
// (hearth_head_bytes), at most 30 minutes.
func (e *scenarioEnv) fill(b testing.TB, ns, corpus string, pods []string, target int64) {
	b.Helper()
	start := time.Now()
	deadline := start.Add(30 * time.Minute)
	var ips []string
	for _, pod := range pods {
		ips = append(ips, podIP(b, e.p, ns, pod))
	}
	for round := 0; ; round++ {
		least, sizes := int64(-1), make([]string, 0, len(ips))
		for i, ip := range ips {
			n, err := headBytes(ip)
			if err != nil {
				b.Fatalf("%s: %v", pods[i], err)
			}
			sizes = append(sizes, fmt.Sprintf("%s %d MiB", pods[i], n>>20))
			if least < 0 || n < least {
				least = n
			}
		}
		if least >= target {
			b.Logf("%s: heads filled in %s: %s", ns, time.Since(start).Round(time.Second), strings.Join(sizes, ", "))
			return
		}
		if round%6 == 0 {
			b.Logf("%s: filling the heads to %d MiB: %s", ns, target>>20, strings.Join(sizes, ", "))
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: heads not filled in 30 minutes: %s", ns, strings.Join(sizes, ", "))
		}
		if _, err := load.Run(context.Background(), load.Config{URL: "http://" + ips[round%len(ips)] + ":4040", Dir: corpus,
			Workers: 4, Series: 200, Duration: 10 * time.Second}); err != nil {
			b.Fatal(err)
		}
	}
}

// headBytes sums hearth_head_bytes over the tenants of the ingester at ip.
func headBytes(ip string) (int64, error) {
	resp, err := http.Get("http://" + ip + ":4040/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "hearth_head_bytes{") && !strings.HasPrefix(line, "hearth_head_bytes ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metrics line %q: %v", line, err)
		}
		sum += v
	}
	return int64(sum), sc.Err()
}
