package remote

import (
	"context"
	"fmt"
	"math"
	"testing"

	"connectrpc.com/connect"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/store"
	"github.com/hearth-dev/hearth/ingester/wal"
)

// BenchmarkSelectionCodec encodes (with symbol pruning) and decodes a
// selection of the corpus pushed 10 times: every series, and one service.
func BenchmarkSelectionCodec(b *testing.B) {
	var reqs []*pushv1.PushRequest
	profiles := testProfiles(b)
	for r := range 10 {
		reqs = append(reqs, pushRequests(profiles, r)...)
	}
	h, _ := reference(b, reqs)
	th := h.Tenant("anonymous")
	for name, match := range map[string]func(model.Labels) bool{
		"all":         nil,
		"one_service": func(ls model.Labels) bool { return ls.Get("service_name") == "svc-1" },
	} {
		sel := th.Select("", match, math.MinInt64, math.MaxInt64)
		var nrows int
		for _, s := range sel.Series {
			nrows += len(s.Profiles)
		}
		enc, err := EncodeSelections([]head.Selection{sel})
		if err != nil {
			b.Fatal(err)
		}
		b.Run("encode/"+name, func(b *testing.B) {
			for b.Loop() {
				if _, err := EncodeSelections([]head.Selection{sel}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(enc)), "wireB")
			b.ReportMetric(float64(len(enc))/float64(nrows), "wireB/row")
			b.ReportMetric(float64(nrows), "rows")
		})
		b.Run("decode/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(enc)))
			for b.Loop() {
				if _, err := DecodeSelections(enc, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDistributorOverhead compares a push straight into a store with
// the same push through the distributor to 3 instances (RF 3: one
// in-process, two over loopback HTTP). WAL fsync off: the disk is not measured.
func BenchmarkDistributorOverhead(b *testing.B) {
	profiles := testProfiles(b)
	run := func(b *testing.B, app push.Appender) {
		h := push.NewHandler(limits(), app, false, discard, nil)
		var bytes int
		for _, p := range profiles {
			bytes += len(p)
		}
		i := 0
		for b.Loop() {
			reqs := pushRequests(profiles, i)
			i++
			for _, r := range reqs {
				if _, err := h.Push(context.Background(), connect.NewRequest(r)); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(profiles)), "µs/push")
	}
	b.Run("direct", func(b *testing.B) {
		st, err := store.Open(store.Options{DataDir: b.TempDir(), WALPolicy: wal.PolicyOff, Logger: discard}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		run(b, st)
	})
	b.Run("rf3", func(b *testing.B) {
		nodes := startNodes(b, 3, 0)
		d := newDistributor(nodes, 0, 3, nil)
		run(b, d)
		d.Drain()
	})
	_ = fmt.Sprint
}
