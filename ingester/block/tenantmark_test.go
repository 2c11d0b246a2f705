package block

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/hearth-dev/hearth/internal/formatver"
)

// TestTenantDeletionMarkVersions: a mark round-trips through the bucket; none
// reads as nil; a version 2 mark is refused with the format error (and left
// as it is), as are an unknown field and a finished time before the request.
func TestTenantDeletionMarkVersions(t *testing.T) {
	ctx := context.Background()
	bkt := objstore.NewInMemBucket()
	if m, err := ReadTenantDeletionMark(ctx, bkt, "t"); m != nil || err != nil || m.Deleting() {
		t.Fatalf("no mark: %+v, %v", m, err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	if err := WriteTenantDeletionMark(ctx, bkt, &TenantDeletionMark{Version: 1, Tenant: "t", RequestedAt: now}); err != nil {
		t.Fatal(err)
	}
	m, err := ReadTenantDeletionMark(ctx, bkt, "t")
	if err != nil || !m.Deleting() || !m.RequestedAt.Equal(now) {
		t.Fatalf("read back %+v, %v", m, err)
	}
	if _, ok := ParseDeletionMarkName(TenantDeletionMarkPath("t")); ok {
		t.Fatal("the tenant mark parses as a block's mark: the block mark readers would read it")
	}
	before := formatver.Refused(formatver.TenantDeletionMark)
	newer := `{"version":2,"tenant":"t","requested_at":"2026-01-01T00:00:00Z"}`
	if err := bkt.Upload(ctx, TenantDeletionMarkPath("t"), strings.NewReader(newer)); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTenantDeletionMark(ctx, bkt, "t"); !errors.Is(err, formatver.ErrUnsupported) || !strings.Contains(err.Error(), "tenant_deletion_mark format version 2") {
		t.Fatalf("version 2: %v", err)
	}
	if got := formatver.Refused(formatver.TenantDeletionMark) - before; got != 1 {
		t.Fatalf("refusals counted %v, want 1", got)
	}
	if ok, _ := bkt.Exists(ctx, TenantDeletionMarkPath("t")); !ok {
		t.Fatal("the refused mark was deleted")
	}
	for _, bad := range []string{
		`{"version":1,"tenant":"t","requested_at":"2026-01-01T00:00:00Z","extra":1}`,
		`{"version":1,"tenant":"t","requested_at":"2026-01-02T00:00:00Z","finished_at":"2026-01-01T00:00:00Z"}`,
		`{"version":1,"tenant":"","requested_at":"2026-01-01T00:00:00Z"}`,
	} {
		if _, err := ParseTenantDeletionMark([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
	other := `{"version":1,"tenant":"u","requested_at":"2026-01-01T00:00:00Z"}`
	_ = bkt.Upload(ctx, TenantDeletionMarkPath("t"), strings.NewReader(other))
	if _, err := ReadTenantDeletionMark(ctx, bkt, "t"); err == nil {
		t.Fatal("a mark naming another tenant was accepted")
	}
}
