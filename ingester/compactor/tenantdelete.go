package compactor

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore"

	"github.com/hearth-dev/hearth/ingester/block"
)

// Tenant deletion (POST /compactor/delete_tenant writes the mark): the
// tenant's owner deletes every object of the tenant but its mark, one pass
// after another until none is left, then, -compactor.tenant-cleanup-delay
// after the request, gives the mark its finished time. Each step is an
// idempotent delete of what the listing shows, so a compactor killed midway
// is finished by the next pass (its own after a restart, or the next owner's).

// Object kinds of a tenant's prefix, as the deletion status counts them.
const (
	KindBlock       = "block"         // <tenant>/<ULID>/...
	KindSettings    = "settings"      // <tenant>/settings/...
	KindAdhoc       = "adhoc_profile" // <tenant>/adhoc/<id>/...
	KindMarker      = "marker"        // <tenant>/markers/<ULID>-deletion-mark.json
	KindBucketIndex = "bucket_index"  // <tenant>/bucket-index.json
	KindTenantMark  = "tenant_mark"   // <tenant>/markers/tenant-deletion-mark.json
	KindOther       = "other"
	settingsPrefix  = "settings"
	adhocPrefix     = "adhoc"
)

// ObjectKind classifies an object name of tenant's prefix (a pure function).
func ObjectKind(tenant, name string) string {
	rel := strings.TrimPrefix(name, tenant+"/")
	first, _, _ := strings.Cut(rel, "/")
	switch {
	case rel == block.IndexObject:
		return KindBucketIndex
	case rel == path.Join(block.MarkersDir, block.TenantDeletionMarkObject):
		return KindTenantMark
	case first == block.MarkersDir:
		return KindMarker
	case first == settingsPrefix:
		return KindSettings
	case first == adhocPrefix:
		return KindAdhoc
	}
	if _, err := ulid.ParseStrict(first); err == nil && first != rel {
		return KindBlock
	}
	return KindOther
}

// DeletionOrder returns the objects to delete of a tenant being deleted, in
// the order to delete them (a pure function): every block's meta.json first
// (the block turns invisible to every reader at once, even one that does not
// know the mark), then the blocks' other objects, settings, ad hoc profiles,
// block marks and anything else, and the bucket index last. The tenant
// deletion mark is never in it.
func DeletionOrder(tenant string, names []string) []string {
	rank := func(n string) int {
		switch k := ObjectKind(tenant, n); {
		case k == KindBlock && path.Base(n) == block.MetaFile:
			return 0
		case k == KindBlock:
			return 1
		case k == KindSettings:
			return 2
		case k == KindAdhoc:
			return 3
		case k == KindMarker, k == KindOther:
			return 4
		case k == KindBucketIndex:
			return 5
		}
		return -1 // the tenant mark: kept
	}
	var out []string
	for _, n := range names {
		if rank(n) >= 0 {
			out = append(out, n)
		}
	}
	slices.SortStableFunc(out, func(a, b string) int {
		if d := rank(a) - rank(b); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	return out
}

// DeletionLeft counts what is left of a tenant: blocks, settings, ad hoc
// profiles, other objects (block marks, the bucket index, ...).
type DeletionLeft struct {
	Blocks        int  `json:"blocks"`
	Settings      int  `json:"settings"`
	AdhocProfiles int  `json:"adhoc_profiles"`
	OtherObjects  int  `json:"other_objects"`
	BucketIndex   bool `json:"bucket_index"`
}

// Empty says whether nothing is left.
func (l DeletionLeft) Empty() bool {
	return l.Blocks == 0 && l.Settings == 0 && l.AdhocProfiles == 0 && l.OtherObjects == 0 && !l.BucketIndex
}

// CountLeft counts a tenant's objects by kind (a pure function): a block or
// an ad hoc profile counts once however many objects it has.
func CountLeft(tenant string, names []string) DeletionLeft {
	var l DeletionLeft
	blocks, adhoc := map[string]bool{}, map[string]bool{}
	for _, n := range names {
		rel := strings.TrimPrefix(n, tenant+"/")
		parts := strings.SplitN(rel, "/", 3)
		switch ObjectKind(tenant, n) {
		case KindBlock:
			blocks[parts[0]] = true
		case KindAdhoc:
			if len(parts) > 1 {
				adhoc[parts[1]] = true
			}
		case KindSettings:
			l.Settings++
		case KindBucketIndex:
			l.BucketIndex = true
		case KindMarker, KindOther:
			l.OtherObjects++
		}
	}
	l.Blocks, l.AdhocProfiles = len(blocks), len(adhoc)
	return l
}

// ListTenant lists every object of a tenant's prefix.
func ListTenant(ctx context.Context, bkt objstore.BucketReader, tenant string) ([]string, error) {
	var names []string
	err := bkt.Iter(ctx, tenant+"/", func(name string) error {
		if !strings.HasSuffix(name, "/") {
			names = append(names, name)
		}
		return nil
	}, objstore.WithRecursiveIter())
	if err != nil {
		return nil, fmt.Errorf("listing tenant %q: %w", tenant, err)
	}
	return names, nil
}

// deleteTenant is one pass of a tenant's deletion (this instance owns it).
func (c *Compactor) deleteTenant(ctx context.Context, tenant string, mark *block.TenantDeletionMark) (finished bool, err error) {
	c.stage(tenant, "tenant deletion")
	defer c.stage("", "")
	names, err := ListTenant(ctx, c.opts.Bucket, tenant)
	if err != nil {
		c.m.failures.WithLabelValues("tenant_deletion").Inc()
		return false, err
	}
	c.forgetTenant(tenant)
	todo := DeletionOrder(tenant, names)
	for _, n := range todo {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if err := c.opts.Bucket.Delete(ctx, n); err != nil && !c.opts.Bucket.IsObjNotFoundErr(err) {
			c.m.failures.WithLabelValues("tenant_deletion").Inc()
			return false, fmt.Errorf("deleting %s of a deleted tenant: %w", n, err)
		}
		c.m.tenantObjects.Inc()
	}
	if len(todo) > 0 {
		left := CountLeft(tenant, names)
		c.log.Info("tenant deletion: objects deleted", "tenant", tenant, "objects", len(todo), "blocks", left.Blocks,
			"settings", left.Settings, "adhoc_profiles", left.AdhocProfiles, "requested_at", mark.RequestedAt)
		return false, nil // finished by a later pass, once a listing shows nothing left
	}
	now := c.now().UTC()
	if now.Sub(mark.RequestedAt) < c.cfg.TenantCleanupDelay {
		return false, nil
	}
	done := *mark
	done.FinishedAt = &now
	if err := block.WriteTenantDeletionMark(ctx, c.opts.Bucket, &done); err != nil {
		c.m.failures.WithLabelValues("tenant_deletion").Inc()
		return false, fmt.Errorf("finishing the deletion of tenant %q: %w", tenant, err)
	}
	c.m.tenantsDeleted.Inc()
	c.log.Info("tenant deletion finished: nothing of the tenant is left but its mark", "tenant", tenant, "requested_at", mark.RequestedAt)
	return true, nil
}

// forgetTenant drops the caches of a tenant being deleted.
func (c *Compactor) forgetTenant(tenant string) {
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	delete(c.marks, tenant)
	for id, m := range c.metas {
		if m.Tenant == tenant {
			delete(c.metas, id)
		}
	}
}
