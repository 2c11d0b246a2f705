package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/cespare/xxhash/v2"
	"github.com/google/uuid"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/wal"
)

// snapPusher pushes corpus files into a store, one profile per push, into
// two tenants and a few series each.
type snapPusher struct {
	h     *push.Handler
	files [][]byte
	mu    sync.Mutex
	ids   []string
}

func newSnapPusher(t *testing.T, s *Store) *snapPusher {
	files := benchFiles(t)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	if len(names) > 8 {
		names = names[:8]
	}
	p := &snapPusher{h: push.NewHandler(benchLimits(), s, true, slog.New(slog.DiscardHandler), nil)}
	for _, n := range names {
		p.files = append(p.files, files[n])
	}
	return p
}

// push pushes profile i; retry pushes an earlier id again with the same
// contents (a client's retry).
func (p *snapPusher) push(t *testing.T, i int, retry bool) {
	id := uuid.NewString()
	p.mu.Lock()
	if retry && len(p.ids) > 0 {
		id = p.ids[i%len(p.ids)]
		i = slices.Index(p.ids, id)
	} else {
		p.ids = append(p.ids, id)
		i = len(p.ids) - 1
	}
	p.mu.Unlock()
	req := connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
		Labels:  []*typesv1.LabelPair{{Name: "service_name", Value: "svc"}, {Name: "instance", Value: fmt.Sprint(i % 3)}},
		Samples: []*pushv1.RawSample{{RawProfile: p.files[i%len(p.files)], ID: id}},
	}}})
	req.Header().Set(tenant.Header, fmt.Sprint("t", i%2))
	if _, err := p.h.Push(context.Background(), req); err != nil {
		t.Error(err)
	}
}

// crashImage copies a running store's data directory: what kill -9 leaves
// (every acknowledged write is in the files).
func crashImage(t *testing.T, dir string) string {
	dst := t.TempDir()
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(filepath.Join(dst, rel))
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// headRows is each series' rows: profile id → a digest of the row's time,
// total and samples with every stack resolved to its frames' strings (so
// that heads whose symbol ids differ compare equal), and how many rows had
// that id (1 unless duplicated).
func headRows(t *testing.T, h *head.Head) map[string]map[head.ProfileID][2]uint64 {
	t.Helper()
	out := map[string]map[head.ProfileID][2]uint64{}
	for _, tn := range h.Tenants() {
		sel := h.Tenant(tn).Select("", nil, math.MinInt64, math.MaxInt64)
		sy := sel.Symbols
		stacks := map[uint32]uint64{}
		var stack []uint32
		stackHash := func(st uint32) uint64 {
			if v, ok := stacks[st]; ok {
				return v
			}
			d := xxhash.New()
			for _, loc := range sy.Stack(stack[:0], st) {
				l := sy.Locations[loc]
				m := sy.Mappings[l.Mapping]
				fmt.Fprintf(d, "[%s %s %x %x %v", sy.Strings[m.Filename], sy.Strings[m.BuildID], l.Address, m.MemoryStart, l.IsFolded)
				for _, ln := range l.Lines {
					f := sy.Functions[ln.Function]
					fmt.Fprintf(d, " %s|%s|%s:%d@%d", sy.Strings[f.Name], sy.Strings[f.SystemName], sy.Strings[f.Filename], f.StartLine, ln.Line)
				}
			}
			stacks[st] = d.Sum64()
			return stacks[st]
		}
		for _, s := range sel.Series {
			k := tn + " " + s.Labels.String()
			rows := map[head.ProfileID][2]uint64{}
			for _, p := range s.Profiles {
				sum := uint64(p.TimeNanos)*31 + uint64(p.Total)
				err := head.DecodeSamples(p.Samples, func(st uint32, v int64) {
					sum += stackHash(st) * (uint64(v)*2 + 1) // order-independent
				})
				if err != nil {
					t.Fatal(err)
				}
				r := rows[p.ID]
				rows[p.ID] = [2]uint64{sum, r[1] + 1}
			}
			out[k] = rows
		}
	}
	return out
}

// requireSameContents fails unless got holds exactly want's rows: each
// series the same profile ids once each, every row the same (samples
// resolved to strings).
func requireSameContents(t *testing.T, got, want *head.Head) {
	t.Helper()
	gr, wr := headRows(t, got), headRows(t, want)
	if len(wr) == 0 {
		t.Fatal("nothing to compare")
	}
	for k, rows := range wr {
		if len(gr[k]) != len(rows) {
			t.Fatalf("series %s: %d profile ids, want %d", k, len(gr[k]), len(rows))
		}
		for id, w := range rows {
			g := gr[k][id]
			if w[1] != 1 {
				t.Fatalf("series %s: the live head holds profile %x %d times", k, id, w[1])
			}
			if g != w {
				t.Fatalf("series %s profile %x: %d rows with digest %x, want 1 with %x", k, id, g[1], g[0], w[0])
			}
		}
	}
	if len(gr) != len(wr) {
		t.Fatalf("%d series, want %d", len(gr), len(wr))
	}
}

func snapOpts(dir string) Options {
	return Options{DataDir: dir, WALPolicy: wal.PolicyOff, Logger: slog.New(slog.DiscardHandler)}
}

func loads(s *Store, result string) float64 {
	return promtest.ToFloat64(s.snapMetrics.loads.WithLabelValues(result))
}

// TestSnapshotCrashRestart: a store killed after a snapshot and more pushes
// (some pushed between the snapshot's WAL rotation and its write, so both
// in the snapshot and in the WAL after it; some retries) restarts with
// exactly the acknowledged profiles once each, replaying only the records
// after the snapshot's position; a damaged snapshot, one of another
// version, and no snapshot all give the same head by a full replay.
func TestSnapshotCrashRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(snapOpts(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := newSnapPusher(t, s)
	n := 0
	pushN := func(k int) {
		for range k {
			p.push(t, n, n%5 == 4)
			n++
		}
	}
	pushN(40)
	after := 0 // pushes whose records follow the snapshot's WAL position
	s.testAfterRotate = func() {
		pushN(10) // in the head being written and after the position
		after += 10
	}
	if err := s.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.testAfterRotate = nil
	pushN(15)
	after += 15
	// Segment N is not the last one (which replay always reads).
	if _, err := s.wal.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	pushN(5)
	after += 5
	if _, err := os.Stat(filepath.Join(dir, "wal", "head.snapshot")); err != nil {
		t.Fatal(err)
	}
	image := crashImage(t, dir)

	restart := func(t *testing.T, dir string) *Store {
		t.Helper()
		r, err := Open(snapOpts(dir), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	t.Run("snapshot", func(t *testing.T) {
		r := restart(t, crashImage(t, image))
		requireSameContents(t, r.Head(), s.Head())
		if loads(r, "loaded") != 1 {
			t.Fatal("the snapshot was not loaded")
		}
		if got := promtest.ToFloat64(r.replayed); got != float64(after) {
			t.Fatalf("%v profiles replayed from the wal, want the %d after the snapshot", got, after)
		}
	})
	t.Run("damaged", func(t *testing.T) {
		img := crashImage(t, image)
		path := filepath.Join(img, "wal", "head.snapshot")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x10
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		r := restart(t, img)
		if loads(r, "corrupt") != 1 || loads(r, "loaded") != 0 {
			t.Fatal("the damaged snapshot was not refused")
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatal("the damaged snapshot is still there")
		}
		requireSameContents(t, r.Head(), s.Head())
	})
	t.Run("truncated", func(t *testing.T) {
		img := crashImage(t, image)
		path := filepath.Join(img, "wal", "head.snapshot")
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, fi.Size()-10); err != nil {
			t.Fatal(err)
		}
		r := restart(t, img)
		if loads(r, "corrupt") != 1 {
			t.Fatal("the truncated snapshot was not refused")
		}
		requireSameContents(t, r.Head(), s.Head())
	})
	t.Run("other version", func(t *testing.T) {
		img := crashImage(t, image)
		path := filepath.Join(img, "wal", "head.snapshot")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		binary.LittleEndian.PutUint32(b[8:], head.SnapshotVersion+1)
		binary.LittleEndian.PutUint32(b[12:], crc32.Checksum(b[:12], crc32.MakeTable(crc32.Castagnoli)))
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		r := restart(t, img)
		if loads(r, "unsupported") != 1 {
			t.Fatal("a snapshot of another version was not ignored")
		}
		if _, err := os.Stat(path); err != nil {
			t.Fatal("a snapshot of another version was deleted: ", err)
		}
		requireSameContents(t, r.Head(), s.Head())
	})
	t.Run("none", func(t *testing.T) {
		img := crashImage(t, image)
		if err := os.Remove(filepath.Join(img, "wal", "head.snapshot")); err != nil {
			t.Fatal(err)
		}
		r := restart(t, img)
		requireSameContents(t, r.Head(), s.Head())
		if got := promtest.ToFloat64(r.replayed); got != float64(n) {
			t.Fatalf("%v profiles replayed, want all %d", got, n)
		}
	})
}

func written(s *Store, result string) float64 {
	return promtest.ToFloat64(s.snapMetrics.written.WithLabelValues(result))
}

// TestSnapshotStaleAfterCut: a snapshot of a head cut into blocks since (a
// cut, a tenant deletion) is ignored and deleted, and a restart replays
// only the WAL after the checkpoint: a deleted tenant stays deleted.
func TestSnapshotStaleAfterCut(t *testing.T) {
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
	restart := func(image string) *Store {
		t.Helper()
		o := opts
		o.DataDir = image
		r, err := Open(o, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	ctx := context.Background()

	pushN(10)
	if err := s.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Cut(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	pushN(6)
	img := crashImage(t, dir)
	r := restart(img)
	if loads(r, "stale") != 1 || loads(r, "loaded") != 0 {
		t.Fatal("the snapshot of the cut head was not refused as stale")
	}
	if _, err := os.Stat(filepath.Join(img, "wal", "head.snapshot")); !os.IsNotExist(err) {
		t.Fatal("the stale snapshot is still there")
	}
	requireSameContents(t, r.Head(), s.Head())

	// A tenant deleted after a snapshot that holds it.
	pushN(10)
	if err := s.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Head().Tenant("t1") == nil {
		t.Fatal("tenant t1 has no rows to drop")
	}
	if err := s.DropTenant(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	for range 6 { // t0's only: tenant t<index of the id % 2>
		if len(p.ids)%2 == 1 {
			p.ids = append(p.ids, "unused")
		}
		p.push(t, n, false)
	}
	r = restart(crashImage(t, dir))
	if loads(r, "stale") != 1 || r.Head().Tenant("t1") != nil {
		t.Fatal("the restart brought back the deleted tenant from the snapshot")
	}
	requireSameContents(t, r.Head(), s.Head())
}

// TestSnapshotConcurrentPushes (run with -race): snapshots written while
// pushes go on, by Run's trigger and by direct calls; a crash image taken
// after restarts with exactly the acknowledged profiles.
func TestSnapshotConcurrentPushes(t *testing.T) {
	dir := t.TempDir()
	opts := snapOpts(dir)
	opts.HeadSnapshotWALBytes = 64 << 10
	s, err := Open(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- s.Run(ctx) }()
	p := newSnapPusher(t, s)
	var wg sync.WaitGroup
	var next sync.Mutex
	n := 0
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				next.Lock()
				i := n
				n++
				next.Unlock()
				p.push(t, i, i%6 == 5)
			}
		}()
	}
	pushed := make(chan struct{})
	go func() {
		wg.Wait()
		close(pushed)
	}()
	for i := 0; i < 50; i++ { // bounded: until the pushes end
		if err := s.Snapshot(context.Background()); err != nil {
			t.Fatal(err)
		}
		select {
		case <-pushed:
			i = 50
		default:
		}
	}
	<-pushed
	cancel()
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
	if written(s, "success") == 0 {
		t.Fatal("no snapshot written")
	}
	r, err := Open(snapOpts(crashImage(t, dir)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if loads(r, "loaded") != 1 {
		t.Fatal("the snapshot was not loaded")
	}
	requireSameContents(t, r.Head(), s.Head())
}
