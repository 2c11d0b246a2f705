package compactor

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/internal/faultbucket"
)

func TestDeletionOrderAndCount(t *testing.T) {
	id := ulid.MustNew(1, nil).String()
	names := []string{
		"t/bucket-index.json",
		"t/" + id + "/index.bin",
		"t/" + id + "/meta.json",
		"t/adhoc/a1/meta.json", "t/adhoc/a1/profile", "t/adhoc/a2/meta.json",
		"t/settings/x.json",
		"t/markers/" + id + "-deletion-mark.json",
		"t/markers/tenant-deletion-mark.json",
		"t/stray.txt",
	}
	got := DeletionOrder("t", names)
	want := []string{
		"t/" + id + "/meta.json", "t/" + id + "/index.bin",
		"t/settings/x.json",
		"t/adhoc/a1/meta.json", "t/adhoc/a1/profile", "t/adhoc/a2/meta.json",
		"t/markers/" + id + "-deletion-mark.json", "t/stray.txt",
		"t/bucket-index.json",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("order\n got %q\nwant %q", got, want)
	}
	l := CountLeft("t", names)
	if l != (DeletionLeft{Blocks: 1, Settings: 1, AdhocProfiles: 2, OtherObjects: 2, BucketIndex: true}) || l.Empty() {
		t.Fatalf("left %+v", l)
	}
	if l := CountLeft("t", []string{"t/markers/tenant-deletion-mark.json"}); !l.Empty() {
		t.Fatalf("only the mark left: %+v, want empty", l)
	}
}

// TestTenantDeletion: a marked tenant's blocks, settings, ad hoc profiles,
// marks and index go, pass after pass through a bucket failing every fourth
// delete (a pass that stops midway, as a kill would), while the other tenant
// is compacted as before; the mark gets its finished time only after the
// cleanup delay, and then the tenant is an ordinary one again.
func TestTenantDeletion(t *testing.T) {
	dir := t.TempDir()
	fs, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	for _, tn := range []string{"gone", "kept"} {
		for i := range 3 {
			h := head.New(head.Options{})
			ls := model.Labels{{Name: "__name__", Value: "process_cpu"}, {Name: "service_name", Value: "svc"}}
			for j := range 5 {
				var id head.ProfileID
				id[0], id[1], id[2] = byte(i), byte(j), tn[0]
				if _, err := h.Append(tn, id, ls, profile(rand.New(rand.NewPCG(uint64(j), 1))), now.Add(-3*time.Hour).UnixNano()+int64(j)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := block.Write(dir+"/"+tn, h.Tenant(tn).Select("", nil, -1<<63, 1<<63-1), block.WriteOptions{Tenant: tn, Source: "x"}); err != nil {
				t.Fatal(err)
			}
		}
		for _, o := range []string{tn + "/settings/a.json", tn + "/adhoc/p1/meta.json", tn + "/adhoc/p1/profile"} {
			if err := fs.Upload(ctx, o, strings.NewReader("{}")); err != nil {
				t.Fatal(err)
			}
		}
	}
	bkt := faultbucket.Wrap(fs, faultbucket.Config{})
	var deletes int
	bkt.SetHook(func(op faultbucket.Op, name string) faultbucket.Fault {
		if op == faultbucket.OpDelete && strings.HasPrefix(name, "gone/") {
			deletes++
			if deletes%4 == 0 {
				return faultbucket.Error
			}
		}
		return faultbucket.None
	})
	clock := now
	reg := prometheus.NewRegistry()
	c, err := New(Options{Config: Config{BlockRanges: DefaultBlockRanges, CompactionInterval: time.Minute, FirstLevelWait: time.Hour,
		DeletionDelay: time.Hour, JobTimeout: time.Minute, TenantCleanupDelay: time.Hour},
		Bucket: bkt, Dir: t.TempDir(), Now: func() time.Time { return clock }, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RunOnce(ctx); err != nil { // compacts both, writes their indexes
		t.Fatal(err)
	}
	mark := &block.TenantDeletionMark{Version: 1, Tenant: "gone", RequestedAt: now.UTC()}
	if err := block.WriteTenantDeletionMark(ctx, bkt, mark); err != nil {
		t.Fatal(err)
	}
	keptBefore, _ := ListTenant(ctx, fs, "kept")
	var passes int
	for passes = 1; passes <= 20; passes++ {
		_ = c.RunOnce(ctx) // some passes fail midway
		names, err := ListTenant(ctx, fs, "gone")
		if err != nil {
			t.Fatal(err)
		}
		if CountLeft("gone", names).Empty() {
			break
		}
	}
	if passes > 20 {
		t.Fatal("the deletion did not converge in 20 passes")
	}
	if passes < 2 {
		t.Fatalf("converged in %d pass: the injected failures did not interrupt it", passes)
	}
	names, _ := ListTenant(ctx, fs, "gone")
	if len(names) != 1 || names[0] != block.TenantDeletionMarkPath("gone") {
		t.Fatalf("left of the deleted tenant: %q, want only its mark", names)
	}
	if g := gauge(t, reg, "hearth_compactor_tenant_deletion_in_progress"); g != 1 {
		t.Fatalf("in progress %v, want 1", g)
	}
	if g := gauge(t, reg, "hearth_compactor_tenant_deletion_oldest_request_timestamp_seconds"); g != float64(now.Unix()) {
		t.Fatalf("oldest deletion request %v, want %d", g, now.Unix())
	}
	keptAfter, _ := ListTenant(ctx, fs, "kept")
	if len(keptAfter) == 0 || CountLeft("kept", keptAfter).Blocks == 0 || CountLeft("kept", keptAfter).Settings != 1 || CountLeft("kept", keptAfter).AdhocProfiles != 1 {
		t.Fatalf("the other tenant changed: before %q, after %q", keptBefore, keptAfter)
	}
	// Not finished before the cleanup delay.
	bkt.SetHook(nil)
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if m, _ := block.ReadTenantDeletionMark(ctx, fs, "gone"); !m.Deleting() {
		t.Fatal("finished before the cleanup delay")
	}
	clock = now.Add(61 * time.Minute)
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := block.ReadTenantDeletionMark(ctx, fs, "gone")
	if err != nil || m.Deleting() || m.FinishedAt == nil || !m.RequestedAt.Equal(mark.RequestedAt) {
		t.Fatalf("mark after the delay: %+v, %v", m, err)
	}
	if g := gauge(t, reg, "hearth_compactor_tenants_deleted_total"); g != 1 {
		t.Fatalf("tenants deleted %v, want 1", g)
	}
	if g := gauge(t, reg, "hearth_compactor_tenant_deletion_in_progress"); g != 0 {
		t.Fatalf("in progress %v, want 0", g)
	}
	if g := gauge(t, reg, "hearth_compactor_tenant_deletion_oldest_request_timestamp_seconds"); g != 0 {
		t.Fatalf("oldest deletion request %v once finished, want 0", g)
	}
	// A new life: a new block of the tenant is kept and indexed.
	h := head.New(head.Options{})
	if _, err := h.Append("gone", head.ProfileID{9}, model.Labels{{Name: "__name__", Value: "process_cpu"}, {Name: "service_name", Value: "svc"}}, profile(rand.New(rand.NewPCG(9, 1))), clock.UnixNano()); err != nil {
		t.Fatal(err)
	}
	if _, err := block.Write(dir+"/gone", h.Tenant("gone").Select("", nil, -1<<63, 1<<63-1), block.WriteOptions{Tenant: "gone", Source: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	names, _ = ListTenant(ctx, fs, "gone")
	if l := CountLeft("gone", names); l.Blocks != 1 || !l.BucketIndex {
		t.Fatalf("after the deletion finished, a new block: %+v", l)
	}
}
