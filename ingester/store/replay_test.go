package store

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/symdb"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/wal"
)

// TestParallelReplayMatchesSequential replays one WAL (two tenants, many
// series, profile ids pushed twice with other contents) sequentially and with
// the decoding pipeline, and requires the same heads, and the same as the
// head the pushes built: series in the same order with the same rows (ids,
// times, totals, encoded stack ids), the same symbol tables id for id, the
// same counts and the same merge totals.
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
	pushed := s.Head()
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
	heads := map[string]*head.Head{"pushed": pushed}
	for _, workers := range []int{2, 4} {
		heads[fmt.Sprint("workers ", workers)] = replay(workers)
	}
	for what, got := range heads {
		workers := what
		if !slices.Equal(got.Tenants(), want.Tenants()) {
			t.Fatalf("%s: tenants %v, sequential %v", workers, got.Tenants(), want.Tenants())
		}
		if len(want.Tenants()) == 0 {
			t.Fatal("nothing replayed")
		}
		for _, name := range want.Tenants() {
			wt, gt := want.Tenant(name), got.Tenant(name)
			if ws, gs := wt.Stats(), gt.Stats(); ws != gs {
				t.Errorf("%s tenant %s: stats %+v, sequential %+v", workers, name, gs, ws)
			}
			wsel := wt.Select("", nil, math.MinInt64, math.MaxInt64)
			gsel := gt.Select("", nil, math.MinInt64, math.MaxInt64)
			// The same symbol tables, id for id.
			wsy, gsy := wsel.Symbols, gsel.Symbols
			if !slices.Equal(wsy.Strings, gsy.Strings) || !slices.Equal(wsy.Mappings, gsy.Mappings) || !slices.Equal(wsy.Functions, gsy.Functions) ||
				!slices.Equal(wsy.Nodes, gsy.Nodes) || !slices.EqualFunc(wsy.Locations, gsy.Locations, func(a, b symdb.Location) bool {
				return a.Mapping == b.Mapping && a.Address == b.Address && a.IsFolded == b.IsFolded && slices.Equal(a.Lines, b.Lines)
			}) {
				t.Fatalf("%s tenant %s: the symbol tables differ from the sequential replay's", workers, name)
			}
			if len(gsel.Series) != len(wsel.Series) {
				t.Fatalf("%s tenant %s: %v series, sequential %v", workers, name, len(gsel.Series), len(wsel.Series))
			}
			var wtotal, gtotal int64
			for i := range wsel.Series {
				ws, gs := wsel.Series[i], gsel.Series[i]
				if !ws.Labels.Equal(gs.Labels) || len(ws.Profiles) != len(gs.Profiles) {
					t.Fatalf("%s tenant %s series %v: %v with %v rows, sequential %v with %v", workers, name, i, gs.Labels, len(gs.Profiles), ws.Labels, len(ws.Profiles))
				}
				for j := range ws.Profiles {
					wp, gp := ws.Profiles[j], gs.Profiles[j]
					if wp.ID != gp.ID || wp.TimeNanos != gp.TimeNanos || wp.Total != gp.Total || !bytes.Equal(wp.Samples, gp.Samples) {
						t.Fatalf("%s tenant %s series %v row %v differs", workers, name, ws.Labels, j)
					}
					wtotal += wp.Total
					gtotal += gp.Total
				}
			}
			if wtotal != gtotal || wtotal == 0 {
				t.Errorf("%s tenant %s: merge total %v, sequential %v", workers, name, gtotal, wtotal)
			}
		}
	}
}

// TestReplayLeavesCheckpointedSegmentsUnread: segments before the checkpoint
// (kept while their blocks wait for upload) are in blocks, so a restart does
// not read them: damaged ones are neither read nor reported, and the head is
// the WAL after the checkpoint, with one replay worker and with several.
func TestReplayLeavesCheckpointedSegmentsUnread(t *testing.T) {
	dir := t.TempDir()
	opts := snapOpts(dir)
	opts.WriteBlock = func(d, tn string, sel head.Selection) (string, error) {
		id := uuid.NewString()
		return id, os.MkdirAll(filepath.Join(d, id), 0o755)
	}
	s, err := Open(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := newSnapPusher(t, s)
	n := 0
	pushN := func(k int) {
		for range k {
			p.push(t, n, false)
			n++
		}
	}
	ctx := context.Background()
	pushN(6)
	if _, err := s.wal.Rotate(ctx); err != nil { // two segments before the checkpoint
		t.Fatal(err)
	}
	pushN(6)
	if err := s.Cut(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	pushN(5)
	img := crashImage(t, dir)
	checkpoint, err := wal.ReadCheckpoint(filepath.Join(img, "wal", "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	damaged := 0
	for seg := range checkpoint {
		path := filepath.Join(img, "wal", fmt.Sprintf("%08d.wal", seg))
		fi, err := os.Stat(path)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, bytes.Repeat([]byte{0xa5}, int(fi.Size())), 0o644); err != nil {
			t.Fatal(err)
		}
		damaged++
	}
	if damaged < 2 {
		t.Fatalf("%d segments before the checkpoint %d, want 2", damaged, checkpoint)
	}
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprint("workers=", workers), func(t *testing.T) {
			o := opts
			o.DataDir = crashImage(t, img)
			o.ReplayWorkers = workers
			reg := prometheus.NewRegistry()
			o.Registerer = reg
			r, err := Open(o, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for name, want := range map[string]float64{"hearth_wal_corrupt_records_total": 0, "hearth_wal_replay_records_total": 5} {
				got, err := gathered(reg, name)
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
			requireSameContents(t, r.Head(), s.Head())
		})
	}
}

// gathered is the value of the unlabelled counter or gauge name in reg.
func gathered(reg *prometheus.Registry, name string) (float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue(), nil
		}
		return m.GetGauge().GetValue(), nil
	}
	return 0, fmt.Errorf("%s not gathered", name)
}
