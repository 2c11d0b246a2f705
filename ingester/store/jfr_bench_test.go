package store

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/wal"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// BenchmarkIngestJFR posts a JFR recording from OpenJDK 17 (gzipped, as the
// Java agent sends it) to /ingest?format=jfr: gunzip, the safety walk,
// jfr-parser's conversion, validation, WAL record (fsync off) and head append
// of its 11 profile types. recordings/s on one core is recordings per CPU-s.
func BenchmarkIngestJFR(b *testing.B) {
	for _, name := range []string{"tiny", "workload"} {
		body, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "ingester", "ingest", "jfr", "testdata", name+".jfr.gz"))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			s := openBenchStore(b, wal.PolicyOff)
			h := push.NewHandler(benchLimits(), s, false, slog.New(slog.DiscardHandler), nil)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				now := time.Now().Unix()
				req := httptest.NewRequest(http.MethodPost, "/ingest?format=jfr&spyName=javaspy&name=jfr{instance="+strconv.Itoa(i%50)+"}&from="+strconv.FormatInt(now-10, 10)+"&until="+strconv.FormatInt(now, 10), bytes.NewReader(body))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body.String())
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "recordings/s")
		})
	}
}
