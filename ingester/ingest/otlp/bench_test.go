package otlp

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	collectorv1 "go.opentelemetry.io/proto/otlp/collector/profiles/v1development"
	"google.golang.org/protobuf/proto"

	"github.com/hearth-dev/hearth/internal/testutil"
)

// BenchmarkConvert: decoding and converting the committed request (three
// OTLP profiles, four once split by service) in this process.
func BenchmarkConvert(b *testing.B) {
	body, err := proto.Marshal(loadTestdata(b))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	profiles := 0
	for b.Loop() {
		req, err := DecodeProto(body)
		if err != nil {
			b.Fatal(err)
		}
		out, err := Convert(req, now)
		if err != nil {
			b.Fatal(err)
		}
		profiles += len(out)
	}
	b.ReportMetric(float64(profiles)/b.Elapsed().Seconds(), "profiles/s")
}

// processCPU is a process's process_cpu_seconds_total from its /metrics.
func processCPU(b *testing.B, p *testutil.Process) float64 {
	resp, err := http.Get(p.URL + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_cpu_seconds_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			return f
		}
	}
	b.Fatal("no process_cpu_seconds_total in /metrics")
	return 0
}

// BenchmarkIngestGRPC exports a request over gRPC to a real ingester, one
// export at a time, and reports the OTLP profiles (and the pprof profiles
// they become) ingested per CPU-second of the server: the committed request
// (small Go CPU profiles), and with HEARTH_PYROSCOPE_REPO Pyroscope's eBPF
// profiler request (five profiles, cpu and off-CPU, about 300 samples).
func BenchmarkIngestGRPC(b *testing.B) {
	b.Run("committed", func(b *testing.B) { benchIngest(b, loadTestdata(b)) })
	b.Run("pyroscope-ebpf", func(b *testing.B) {
		req, err := DecodeProto(pyroscopeFile(b, "pkg/test/integration/testdata/otel-ebpf-profile.pb.bin"))
		if err != nil {
			b.Fatal(err)
		}
		benchIngest(b, req)
	})
}

func benchIngest(b *testing.B, req *collectorv1.ExportProfilesServiceRequest) {
	p := testutil.StartIngester(b, testutil.FreePort(b), "-data-dir="+b.TempDir(), "-log.level=warn", "-limits.reject-older-than=0")
	otlpProfiles := 0
	for _, rp := range req.ResourceProfiles {
		for _, sp := range rp.ScopeProfiles {
			otlpProfiles += len(sp.Profiles)
		}
	}
	stamp(req, time.Now())
	converted, err := Convert(req, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	client := grpcClient(b, p)
	// No deadline: the loop can take minutes. The first export warms up.
	ctx := context.Background()
	if _, err := client.Export(ctx, req); err != nil {
		b.Fatal(err)
	}
	cpu0 := processCPU(b, p)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		stamp(req, time.Now())
		if _, err := client.Export(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cpu := processCPU(b, p) - cpu0
	if cpu <= 0 {
		b.Logf("the server used no measurable CPU over %d exports", b.N)
		return
	}
	b.ReportMetric(float64(b.N*otlpProfiles)/cpu, "otlp-profiles/server-cpu-s")
	b.ReportMetric(float64(b.N*len(converted))/cpu, "stored-profiles/server-cpu-s")
	b.ReportMetric(float64(b.N)/cpu, "exports/server-cpu-s")
	b.Logf("%d exports of %d OTLP profiles (%d samples, %d bytes): %.2f server CPU-s", b.N, otlpProfiles, sampleCount(req), proto.Size(req), cpu)
}
