package compactor

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
)

func profile(rng *rand.Rand) *googlev1.Profile {
	p := &googlev1.Profile{StringTable: []string{"", "cpu", "nanoseconds", "/bin/app"}}
	p.SampleType = []*googlev1.ValueType{{Type: 1, Unit: 2}}
	p.PeriodType = &googlev1.ValueType{Type: 1, Unit: 2}
	p.Mapping = []*googlev1.Mapping{{Id: 1, Filename: 3, MemoryLimit: 1 << 30, HasFunctions: true}}
	for f := 1; f <= 8; f++ {
		p.Function = append(p.Function, &googlev1.Function{Id: uint64(f), Name: int64(len(p.StringTable))})
		p.StringTable = append(p.StringTable, fmt.Sprintf("fn%d", f))
		p.Location = append(p.Location, &googlev1.Location{Id: uint64(f), MappingId: 1, Address: uint64(f * 16), Line: []*googlev1.Line{{FunctionId: uint64(f)}}})
	}
	for s := 0; s < 5; s++ {
		sm := &googlev1.Sample{Value: []int64{1 + rng.Int64N(100)}}
		for d := 0; d < 1+rng.IntN(4); d++ {
			sm.LocationId = append(sm.LocationId, uint64(1+rng.IntN(8)))
		}
		p.Sample = append(p.Sample, sm)
	}
	return p
}

type pushed struct {
	id head.ProfileID
	ls model.Labels
	ts int64
}

// writeReplicas writes each replica's blocks of the pushes, cut every cut
// (replica r's cuts shifted by r*shift), into the bucket directory.
func writeReplicas(t *testing.T, dir string, ps []pushed, replicas int, start int64, cut, shift time.Duration) int {
	t.Helper()
	n := 0
	for r := 0; r < replicas; r++ {
		heads := map[int64]*head.Head{}
		for _, p := range ps {
			k := (p.ts - start + int64(r)*int64(shift)) / int64(cut)
			h := heads[k]
			if h == nil {
				h = head.New(head.Options{})
				heads[k] = h
			}
			if _, err := h.Append("t", p.id, p.ls, profile(rand.New(rand.NewPCG(uint64(p.ts), 1))), p.ts); err != nil {
				t.Fatal(err)
			}
		}
		for _, h := range heads {
			sel := h.Tenant("t").Select("", nil, -1<<63, 1<<63-1)
			if _, err := block.Write(filepath.Join(dir, "t"), sel, block.WriteOptions{Tenant: "t", Source: fmt.Sprint("replica-", r)}); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	return n
}

// countRows reads every visible block of the bucket and counts rows, and
// distinct (series, id) pairs.
func countRows(t *testing.T, bkt objstore.Bucket) (rows, distinct int) {
	t.Helper()
	src := &block.BucketSource{Bucket: bkt, SyncInterval: -1}
	sels, err := src.Select(context.Background(), "t", "", nil, -1<<63, 1<<63-1)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, sel := range sels {
		for _, s := range sel.Series {
			for _, p := range s.Profiles {
				rows++
				seen[s.Labels.String()+string(p.ID[:])] = true
			}
		}
	}
	return rows, len(seen)
}

func TestCompactorConverges(t *testing.T) {
	dir := t.TempDir()
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	var ps []pushed
	for i := 0; i < 600; i++ {
		var id head.ProfileID
		for j := range id {
			id[j] = byte(rng.IntN(256))
		}
		ls := model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: "svc"}, {Name: "pod", Value: fmt.Sprint(i % 5)}}.Sort()
		ps = append(ps, pushed{id: id, ls: ls, ts: start.Add(time.Duration(i) * 20 * time.Second).UnixNano()}) // 200 minutes
	}
	nraw := writeReplicas(t, dir, ps, 3, start.UnixNano(), 17*time.Minute, 5*time.Minute)
	rows0, distinct0 := countRows(t, bkt)
	if distinct0 != len(ps) || rows0 != 3*len(ps) {
		t.Fatalf("before: %d rows, %d distinct; want %d and %d", rows0, distinct0, 3*len(ps), len(ps))
	}

	now := start.Add(5 * time.Hour)
	cfg := Config{BlockRanges: DurationList{time.Hour, 4 * time.Hour}, CompactionInterval: time.Minute, FirstLevelWait: 10 * time.Minute, DeletionDelay: time.Hour}
	c, err := New(Options{Config: cfg, Bucket: bkt, Dir: t.TempDir(), Instance: "test", Registerer: prometheus.NewRegistry(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.starting(context.Background()); err != nil {
		t.Fatal(err)
	}
	for pass := 0; pass < 3; pass++ {
		if err := c.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		rows, distinct := countRows(t, bkt)
		if distinct != len(ps) {
			t.Fatalf("pass %d: %d distinct profiles visible, want %d", pass, distinct, len(ps))
		}
		t.Logf("pass %d: %d rows visible for %d profiles", pass, rows, distinct)
	}
	// Everything in [0h, 4h) is one level-2 block; the sources are marked, then deleted.
	now = now.Add(2 * time.Hour)
	if err := c.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, err := c.list(context.Background(), "t")
	if err != nil {
		t.Fatal(err)
	}
	var stored int64
	for _, m := range st.metas {
		stored += m.Stats.Profiles
		if m.Compaction == nil || m.Compaction.Level != 2 {
			t.Errorf("block %s left at level %d", m.ULID, m.Level())
		}
	}
	if len(st.metas) != 1 || len(st.marks) != 0 || stored != int64(len(ps)) {
		t.Fatalf("after deletion: %d blocks (from %d), %d marks, %d rows for %d profiles", len(st.metas), nraw, len(st.marks), stored, len(ps))
	}
	if rows, distinct := countRows(t, bkt); rows != len(ps) || distinct != len(ps) {
		t.Fatalf("after: %d rows, %d distinct, want %d", rows, distinct, len(ps))
	}
	ix, err := bkt.Get(context.Background(), block.IndexPath("t"))
	if err != nil {
		t.Fatalf("no bucket index: %v", err)
	}
	ix.Close()
	if s := c.Status(); len(s.Jobs) == 0 || s.Jobs[0].Result != "success" {
		t.Fatalf("status: %+v", s)
	}
	// Retention removes the range; readers see nothing.
	c.cfg.RetentionPeriod = time.Hour
	if err := c.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rows, _ := countRows(t, bkt); rows != 0 {
		t.Fatalf("after retention: %d rows visible", rows)
	}
	now = now.Add(2 * time.Hour)
	if err := c.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	left, _ := os.ReadDir(filepath.Join(dir, "t"))
	for _, e := range left {
		if e.IsDir() && e.Name() != block.MarkersDir {
			t.Errorf("after retention and the delay, %s is still in the bucket", e.Name())
		}
	}
}

// TestLeftoversCleaned: a crashed job's partial upload (the compactor's
// marker, some files, no meta.json) is invisible to readers and deleted after
// PartialGrace; an ingester's incomplete upload is left to its shipper; a
// deletion a crash interrupted (mark, no meta.json) is finished; a torn
// meta.json (a filesystem bucket writes in place) is invisible to readers
// but kept and reported: nothing is deleted because it could not be read.
func TestLeftoversCleaned(t *testing.T) {
	dir := t.TempDir()
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	old := ulid.MustNew(ulid.Timestamp(now.Add(-2*time.Hour)), ulid.DefaultEntropy())
	torn := ulid.MustNew(ulid.Timestamp(now.Add(-2*time.Hour)), ulid.DefaultEntropy())
	ingesters := ulid.MustNew(ulid.Timestamp(now.Add(-2*time.Hour)), ulid.DefaultEntropy())
	interrupted := ulid.MustNew(ulid.Timestamp(now.Add(-3*time.Hour)), ulid.DefaultEntropy())
	put := func(name, body string) {
		if err := bkt.Upload(ctx, name, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	put("t/"+old.String()+"/"+OwnerMarker, "x")
	put("t/"+old.String()+"/index.bin", "partial")
	put("t/"+torn.String()+"/"+OwnerMarker, "x")
	put("t/"+torn.String()+"/index.bin", "partial")
	put("t/"+torn.String()+"/meta.json", `{"version":1,"ul`)
	put("t/"+ingesters.String()+"/index.bin", "partial")
	put("t/"+interrupted.String()+"/profiles.parquet", "left")
	mark, _ := block.MarshalDeletionMark(&block.DeletionMark{Version: 1, ID: interrupted, Tenant: "t", MarkedAt: now.Add(-3 * time.Hour), Reason: block.ReasonRetention})
	put(block.DeletionMarkPath("t", interrupted), string(mark))

	src := &block.BucketSource{Bucket: bkt, SyncInterval: -1}
	if ms, err := src.Blocks(ctx, "t"); err != nil || len(ms) != 0 {
		t.Fatalf("readers: %d blocks, %v; the partial and torn uploads must be invisible and no error", len(ms), err)
	}
	reg := prometheus.NewRegistry()
	c, err := New(Options{Config: Config{BlockRanges: DefaultBlockRanges, CompactionInterval: time.Minute, FirstLevelWait: time.Hour, DeletionDelay: time.Hour, JobTimeout: 30 * time.Minute},
		Bucket: bkt, Dir: t.TempDir(), Now: func() time.Time { return now }, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	err = c.RunOnce(ctx)
	if err == nil || !strings.Contains(err.Error(), torn.String()) || !strings.Contains(err.Error(), "meta.json") {
		t.Fatalf("pass error %v: want the torn block's path", err)
	}
	if got := gauge(t, reg, "hearth_compactor_unreadable_blocks"); got != 1 {
		t.Fatalf("hearth_compactor_unreadable_blocks = %v, want 1", got)
	}
	exists := func(name string) bool {
		ok, err := bkt.Exists(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if exists("t/"+old.String()+"/index.bin") || exists("t/"+old.String()+"/"+OwnerMarker) {
		t.Error("the crashed job's partial upload is still there")
	}
	if !exists("t/"+torn.String()+"/index.bin") || !exists("t/"+torn.String()+"/meta.json") {
		t.Error("a block with a torn meta.json was deleted")
	}
	if !exists("t/" + ingesters.String() + "/index.bin") {
		t.Error("an ingester's incomplete upload was deleted")
	}
	if exists("t/"+interrupted.String()+"/profiles.parquet") || exists(block.DeletionMarkPath("t", interrupted)) {
		t.Error("the interrupted deletion was not finished")
	}
}

// gauge reads one unlabelled metric of reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) > 0 {
			if g := mf.Metric[0].GetGauge(); g != nil {
				return g.GetValue()
			}
			return mf.Metric[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
