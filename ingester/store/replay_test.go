package store

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/wal"
)

// TestParallelReplayMatchesSequential replays one WAL (two tenants, many
// series, profile ids pushed twice with other contents) sequentially and with
// the decoding pipeline, and requires the same heads: series in the same
// order with the same rows (ids, times, totals, encoded stack ids, so the
// same symbol ids), the same counts and the same merge totals.
func TestParallelReplayMatchesSequential(t *testing.T) {
	files := benchFiles(t)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	if len(names) > 12 {
		names = names[:12]
	}
	dir := t.TempDir()
	logger := slog.New(slog.DiscardHandler)
	s, err := Open(Options{DataDir: dir, WALPolicy: wal.PolicyOff, Logger: logger}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := push.NewHandler(benchLimits(), s, true, logger, nil)
	var ids []string
	for round := 0; round < 4; round++ {
		for i, name := range names {
			for inst := 0; inst < 3; inst++ {
				id := uuid.NewString()
				if round > 0 && i%3 == 0 && len(ids) > 0 {
					// The same id again with another file: replay keeps the
					// first copy of each (id, series), as the head did.
					id = ids[(i+inst)%len(ids)]
				}
				ids = append(ids, id)
				req := connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
					Labels:  []*typesv1.LabelPair{{Name: "service_name", Value: "svc"}, {Name: "instance", Value: fmt.Sprint(inst)}},
					Samples: []*pushv1.RawSample{{RawProfile: files[name], ID: id}},
				}}})
				req.Header().Set(tenant.Header, fmt.Sprint("t", (i+round)%2))
				if _, err := h.Push(context.Background(), req); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	replay := func(workers int) *head.Head {
		s, err := Open(Options{DataDir: dir, WALPolicy: wal.PolicyOff, Logger: logger, ReplayWorkers: workers}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s.Head()
	}
	want := replay(1)
	for _, workers := range []int{2, 4} {
		got := replay(workers)
		if !slices.Equal(got.Tenants(), want.Tenants()) {
			t.Fatalf("workers %d: tenants %v, sequential %v", workers, got.Tenants(), want.Tenants())
		}
		if len(want.Tenants()) == 0 {
			t.Fatal("nothing replayed")
		}
		for _, name := range want.Tenants() {
			wt, gt := want.Tenant(name), got.Tenant(name)
			if ws, gs := wt.Stats(), gt.Stats(); ws != gs {
				t.Errorf("workers %d tenant %s: stats %+v, sequential %+v", workers, name, gs, ws)
			}
			wsel := wt.Select("", nil, math.MinInt64, math.MaxInt64)
			gsel := gt.Select("", nil, math.MinInt64, math.MaxInt64)
			if len(gsel.Series) != len(wsel.Series) {
				t.Fatalf("workers %d tenant %s: %d series, sequential %d", workers, name, len(gsel.Series), len(wsel.Series))
			}
			var wtotal, gtotal int64
			for i := range wsel.Series {
				ws, gs := wsel.Series[i], gsel.Series[i]
				if !ws.Labels.Equal(gs.Labels) || len(ws.Profiles) != len(gs.Profiles) {
					t.Fatalf("workers %d tenant %s series %d: %v with %d rows, sequential %v with %d", workers, name, i, gs.Labels, len(gs.Profiles), ws.Labels, len(ws.Profiles))
				}
				for j := range ws.Profiles {
					wp, gp := ws.Profiles[j], gs.Profiles[j]
					if wp.ID != gp.ID || wp.TimeNanos != gp.TimeNanos || wp.Total != gp.Total || !bytes.Equal(wp.Samples, gp.Samples) {
						t.Fatalf("workers %d tenant %s series %v row %d differs", workers, name, ws.Labels, j)
					}
					wtotal += wp.Total
					gtotal += gp.Total
				}
			}
			if wtotal != gtotal || wtotal == 0 {
				t.Errorf("workers %d tenant %s: merge total %d, sequential %d", workers, name, gtotal, wtotal)
			}
		}
	}
}
