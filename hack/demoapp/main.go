// Command demoapp is the demo's real workload: a small Go program that does
// CPU and allocation work (hashing, sorting, JSON) and profiles itself with
// the Pyroscope Go SDK, pushing to an ingester through /ingest as any
// instrumented application would.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"time"

	"github.com/grafana/pyroscope-go"
)

func hashing(n int) {
	buf := make([]byte, 4096)
	for i := 0; i < n; i++ {
		h := sha256.Sum256(buf)
		copy(buf, h[:])
	}
}

func sorting(n int) {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = rand.Float64()
	}
	sort.Float64s(xs)
	runtime.KeepAlive(xs)
}

type order struct {
	ID    int               `json:"id"`
	Items []string          `json:"items"`
	Attrs map[string]string `json:"attrs"`
}

func encoding(n int) {
	for i := 0; i < n; i++ {
		b, _ := json.Marshal(order{ID: i, Items: []string{"a", "b", "c"}, Attrs: map[string]string{"k": "v"}})
		var o order
		_ = json.Unmarshal(b, &o)
		runtime.KeepAlive(o)
	}
}

func main() {
	url := flag.String("url", "http://127.0.0.1:4040", "ingester URL")
	dur := flag.Duration("duration", 25*time.Second, "how long to run")
	upload := flag.Duration("upload-rate", 5*time.Second, "how often the SDK pushes")
	name := flag.String("name", "hearth-demo", "application name (service_name)")
	flag.Parse()

	p, err := pyroscope.Start(pyroscope.Config{
		ApplicationName: *name,
		ServerAddress:   *url,
		UploadRate:      *upload,
		Tags:            map[string]string{"env": "demo"},
		ProfileTypes: []pyroscope.ProfileType{
			pyroscope.ProfileCPU, pyroscope.ProfileAllocObjects, pyroscope.ProfileAllocSpace,
			pyroscope.ProfileInuseObjects, pyroscope.ProfileInuseSpace, pyroscope.ProfileGoroutines,
		},
	})
	if err != nil {
		log.Fatalf("starting the profiler: %v", err)
	}
	fmt.Fprintf(os.Stderr, "demoapp: working and profiling itself for %s, pushing to %s every %s\n", *dur, *url, *upload)
	ctx := context.Background()
	deadline := time.Now().Add(*dur)
	for time.Now().Before(deadline) {
		// pprof labels become series labels: query {handler="checkout"}.
		pyroscope.TagWrapper(ctx, pyroscope.Labels("handler", "checkout"), func(context.Context) {
			hashing(2000)
			sorting(20000)
		})
		pyroscope.TagWrapper(ctx, pyroscope.Labels("handler", "search"), func(context.Context) { encoding(500) })
	}
	// Stop flushes the last profiles.
	if err := p.Stop(); err != nil {
		log.Printf("stopping the profiler: %v", err)
	}
}
