package block

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/hearth-dev/hearth/internal/formatver"
)

// TenantDeletionMarkObject is the object that says a tenant is being (or was)
// deleted, Mimir's name and place: <tenant>/markers/tenant-deletion-mark.json.
// Its name does not parse as a block's mark (ParseDeletionMarkName), so older
// readers listing the markers ignore it.
const TenantDeletionMarkObject = "tenant-deletion-mark.json"

// TenantDeletionMark is written by POST /compactor/delete_tenant. While
// FinishedAt is nil the tenant is being deleted: queries answer nothing for it,
// its pushes are refused, every ingester drops what it holds of it and the
// tenant's compactor deletes its objects. The compactor sets FinishedAt once
// nothing but the mark is left and -compactor.tenant-cleanup-delay has passed
// since RequestedAt; the mark is then kept as the record of the deletion (as
// Mimir keeps it), and the tenant may push again (a new life: nothing of the
// old one is left).
type TenantDeletionMark struct {
	Version     int        `json:"version"`
	Tenant      string     `json:"tenant"`
	RequestedAt time.Time  `json:"requested_at"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
}

// Deleting says whether the deletion is still in progress.
func (m *TenantDeletionMark) Deleting() bool { return m != nil && m.FinishedAt == nil }

// TenantDeletionMarkPath is where tenant's mark lives.
func TenantDeletionMarkPath(tenant string) string {
	return path.Join(tenant, MarkersDir, TenantDeletionMarkObject)
}

// MarshalTenantDeletionMark renders a mark.
func MarshalTenantDeletionMark(m *TenantDeletionMark) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseTenantDeletionMark parses and validates a tenant deletion mark.
func ParseTenantDeletionMark(b []byte) (*TenantDeletionMark, error) {
	if len(b) > maxMarkSize {
		return nil, fmt.Errorf("tenant deletion mark: %d bytes, more than the %d allowed", len(b), maxMarkSize)
	}
	var m TenantDeletionMark
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("tenant deletion mark: %w", err)
	}
	if err := formatver.TenantDeletionMark.Check("tenant deletion mark of "+m.Tenant, m.Version); err != nil {
		return nil, err
	}
	if m.Tenant == "" || m.RequestedAt.IsZero() {
		return nil, fmt.Errorf("tenant deletion mark: no tenant or requested_at")
	}
	if m.FinishedAt != nil && m.FinishedAt.Before(m.RequestedAt) {
		return nil, fmt.Errorf("tenant deletion mark: finished_at %s before requested_at %s", m.FinishedAt, m.RequestedAt)
	}
	return &m, nil
}

// ReadTenantDeletionMark reads tenant's mark: nil, nil when there is none.
func ReadTenantDeletionMark(ctx context.Context, bkt objstore.BucketReader, tenant string) (*TenantDeletionMark, error) {
	rc, err := bkt.Get(ctx, TenantDeletionMarkPath(tenant))
	if err != nil {
		if bkt.IsObjNotFoundErr(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading the tenant deletion mark of %q: %w", tenant, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxMarkSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading the tenant deletion mark of %q: %w", tenant, err)
	}
	m, err := ParseTenantDeletionMark(b)
	if err != nil {
		return nil, err
	}
	if m.Tenant != tenant {
		return nil, fmt.Errorf("the tenant deletion mark of %q names tenant %q", tenant, m.Tenant)
	}
	return m, nil
}

// WriteTenantDeletionMark uploads m (one object: a reader sees the old or the new mark).
func WriteTenantDeletionMark(ctx context.Context, bkt objstore.Bucket, m *TenantDeletionMark) error {
	b, err := MarshalTenantDeletionMark(m)
	if err != nil {
		return err
	}
	return bkt.Upload(ctx, TenantDeletionMarkPath(m.Tenant), bytes.NewReader(b))
}
