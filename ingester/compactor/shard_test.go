package compactor

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/ring"
)

// writeTenantBlocks writes n one-profile blocks of tenant, a minute apart from start.
func writeTenantBlocks(tb testing.TB, dir, tenant string, n int, start time.Time) {
	tb.Helper()
	for i := 0; i < n; i++ {
		h := head.New(head.Options{})
		var id head.ProfileID
		copy(id[:], fmt.Sprint(tenant, i))
		ls := model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: "svc"}}.Sort()
		ts := start.Add(time.Duration(i) * time.Minute).UnixNano()
		if _, err := h.Append(tenant, id, ls, profile(rand.New(rand.NewPCG(uint64(i), 3))), ts); err != nil {
			tb.Fatal(err)
		}
		if _, err := block.Write(filepath.Join(dir, tenant), h.Tenant(tenant).Select("", nil, -1<<63, 1<<63-1), block.WriteOptions{Tenant: tenant}); err != nil {
			tb.Fatal(err)
		}
	}
}

// touches records which tenants' objects a bucket's user read or listed.
type touches struct {
	objstore.Bucket
	mu      sync.Mutex
	tenants map[string]int
}

func (b *touches) note(name string) {
	t, _, _ := strings.Cut(name, "/")
	b.mu.Lock()
	if b.tenants == nil {
		b.tenants = map[string]int{}
	}
	b.tenants[t]++
	b.mu.Unlock()
}

func (b *touches) Iter(ctx context.Context, dir string, f func(string) error, opts ...objstore.IterOption) error {
	b.note(dir)
	return b.Bucket.Iter(ctx, dir, f, opts...)
}

func (b *touches) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	b.note(name)
	return b.Bucket.Get(ctx, name)
}

func (b *touches) Exists(ctx context.Context, name string) (bool, error) {
	b.note(name)
	return b.Bucket.Exists(ctx, name)
}

// TestPassReadsOnlyItsShard (issue 21 finding 4): every ingester listed every
// tenant and read its bucket index (or its blocks and marks) on every pass,
// whether it owned any of its work or not. With a tenant shard, an ingester
// reads nothing of a tenant outside its shard: 12 members, shard size 3, 8
// tenants; each member touches only its shards' tenants, and every tenant
// still gets its index from its owner.
func TestPassReadsOnlyItsShard(t *testing.T) {
	const members, size, tenants = 12, 3, 8
	dir := t.TempDir()
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	var names []string
	for i := 0; i < tenants; i++ {
		names = append(names, fmt.Sprintf("tenant-%d", i))
		writeTenantBlocks(t, dir, names[i], 2, start)
	}
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	rr := fleetRing(t, members)
	now := start.Add(30 * time.Minute) // no range complete: no job, upkeep only
	inAny := 0
	for m := 0; m < members; m++ {
		id := fmt.Sprintf("ing-%d", m)
		owns, inShard := member(rr, id, size)
		tb := &touches{Bucket: bkt}
		reg := prometheus.NewRegistry()
		c, err := New(Options{Config: faultCfg, Bucket: tb, Dir: t.TempDir(), Instance: id, Registerer: reg,
			Now: func() time.Time { return now }, Owns: owns, InShard: inShard})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		mine := 0
		for _, tn := range names {
			in := ring.ShardOf(rr, tn, size).HasInstance(id)
			if in {
				mine++
			}
			if n := tb.tenants[tn]; !in && n > 0 {
				t.Errorf("%s, outside %s's shard, made %d requests for it", id, tn, n)
			}
		}
		if mine == 0 {
			inAny++
			if it, gets := testutil.ToFloat64(c.m.bucketOps.WithLabelValues(opIter)), testutil.ToFloat64(c.m.bucketOps.WithLabelValues(opGet)); it != 1 || gets != 0 {
				t.Errorf("%s is in no shard: %v listings, %v reads, want 1 (the tenants) and 0", id, it, gets)
			}
		}
	}
	if inAny == 0 {
		t.Log("every member is in some shard") // the per-tenant check above still holds
	}
	for _, tn := range names {
		if _, err := readIndex(context.Background(), bkt, tn); err != nil {
			t.Errorf("%s: no bucket index from its owner: %v", tn, err)
		}
	}
}

// TestOwnerListsOncePerPass (issue 21 finding 4): the tenant's owner listed
// its blocks and marks twice per pass (again only to write the index); a
// pass with no job lists the tenants, the blocks and the marks once each,
// reads nothing it read before but the tenant deletion mark (one get: a
// deletion requested since must be seen by the next pass), and writes the index.
func TestOwnerListsOncePerPass(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	writeTenantBlocks(t, dir, "t", 3, start)
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := start.Add(30 * time.Minute)
	c, err := New(Options{Config: faultCfg, Bucket: bkt, Dir: t.TempDir(), Registerer: prometheus.NewRegistry(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ops := func() map[string]float64 {
		out := map[string]float64{}
		for _, op := range bucketOps {
			out[op] = testutil.ToFloat64(c.m.bucketOps.WithLabelValues(op))
		}
		return out
	}
	if err := c.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := ops()
	if first[opGet] < 3 {
		t.Fatalf("first pass read %v objects, want the 3 meta.json at least", first[opGet])
	}
	if err := c.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	second := ops()
	for op, want := range map[string]float64{opIter: 3, opGet: 1, opUpload: 1, opDelete: 0, opExists: 0, opAttributes: 0, opGetRange: 0} {
		if got := second[op] - first[op]; got != want {
			t.Errorf("second pass: %v %s, want %v", got, op, want)
		}
	}
	ix, err := readIndex(context.Background(), bkt, "t")
	if err != nil || len(ix.Blocks) != 3 {
		t.Fatalf("index from the pass's listing: %v, %v", ix, err)
	}
}

func readIndex(ctx context.Context, bkt objstore.Bucket, tenant string) (*block.Index, error) {
	rc, err := bkt.Get(ctx, block.IndexPath(tenant))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	return block.ParseIndex(b)
}
