package block

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hearth-dev/hearth/internal/formatver"
)

// Bucket objects beside the blocks of a tenant:
//
//	<tenant>/markers/<ULID>-deletion-mark.json  a block that is going away (DeletionMark)
//	<tenant>/bucket-index.json                  the tenant's blocks and marks (Index)
const (
	MarkersDir        = "markers"
	deletionMarkSufix = "-deletion-mark.json"
	IndexObject       = "bucket-index.json"
)

// CompactorMarker is the object the compactor uploads first into a block it
// writes: a block directory holding it and no (or a torn) meta.json is an
// upload a crash interrupted, which readers ignore and the compactor deletes.
const CompactorMarker = ".compactor"

// Reasons a block is marked for deletion.
const (
	// ReasonCompacted: its rows are in the blocks ReplacedBy.
	ReasonCompacted = "compacted"
	// ReasonRetention: older than the tenant's retention period; nothing replaces it.
	ReasonRetention = "retention"
)

// DeletionMark says that a block is going away: readers skip it once every
// block of ReplacedBy is visible to them (at once when nothing replaces it),
// and the compactor deletes it after -compactor.deletion-delay.
type DeletionMark struct {
	Version    int         `json:"version"`
	ID         ulid.ULID   `json:"id"`
	Tenant     string      `json:"tenant"`
	MarkedAt   time.Time   `json:"marked_at"`
	Reason     string      `json:"reason"`
	ReplacedBy []ulid.ULID `json:"replaced_by,omitempty"`
}

// DeletionMarkPath is where the mark of block id of tenant lives.
func DeletionMarkPath(tenant string, id ulid.ULID) string {
	return path.Join(tenant, MarkersDir, id.String()+deletionMarkSufix)
}

// ParseDeletionMarkName returns the block a marker object names ("<tenant>/markers/<ULID>-deletion-mark.json").
func ParseDeletionMarkName(name string) (ulid.ULID, bool) {
	base := path.Base(name)
	if !strings.HasSuffix(base, deletionMarkSufix) {
		return ulid.ULID{}, false
	}
	id, err := ulid.ParseStrict(strings.TrimSuffix(base, deletionMarkSufix))
	return id, err == nil
}

// IndexPath is where the tenant's bucket index lives.
func IndexPath(tenant string) string { return path.Join(tenant, IndexObject) }

// MarshalDeletionMark renders a mark.
func MarshalDeletionMark(m *DeletionMark) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// maxMarkSize bounds what ParseDeletionMark accepts.
const maxMarkSize = 1 << 20

// ParseDeletionMark parses and validates a deletion mark.
func ParseDeletionMark(b []byte) (*DeletionMark, error) {
	if len(b) > maxMarkSize {
		return nil, fmt.Errorf("deletion mark: %d bytes, more than the %d allowed", len(b), maxMarkSize)
	}
	var m DeletionMark
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("deletion mark: %w", err)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("deletion mark: %w", err)
	}
	return &m, nil
}

func (m *DeletionMark) validate() error {
	if err := formatver.DeletionMark.Check("deletion mark "+m.ID.String(), m.Version); err != nil {
		return err
	}
	if m.ID == (ulid.ULID{}) {
		return fmt.Errorf("no block id")
	}
	if m.MarkedAt.IsZero() {
		return fmt.Errorf("no marked_at")
	}
	switch m.Reason {
	case ReasonCompacted:
		if len(m.ReplacedBy) == 0 {
			return fmt.Errorf("reason %q without replaced_by", m.Reason)
		}
	case ReasonRetention:
	default:
		return fmt.Errorf("unknown reason %q", m.Reason)
	}
	if slices.Contains(m.ReplacedBy, m.ID) {
		return fmt.Errorf("block %s replaced by itself", m.ID)
	}
	return nil
}

// Index is a tenant's bucket index: every complete block and every deletion
// mark as of UpdatedAt, written by the compactor so that readers need not
// read every meta.json and mark.
type Index struct {
	Version       int             `json:"version"`
	Tenant        string          `json:"tenant"`
	UpdatedAt     time.Time       `json:"updated_at"`
	Blocks        []*Meta         `json:"blocks"`
	DeletionMarks []*DeletionMark `json:"deletion_marks"`
}

// MarshalIndex renders an index.
func MarshalIndex(ix *Index) ([]byte, error) {
	b, err := json.Marshal(ix)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// maxIndexSize bounds what ParseIndex accepts (a block takes about 1 KiB).
const maxIndexSize = 256 << 20

// ParseIndex parses and validates a bucket index: every meta and mark in it is
// valid and names the index's tenant, and no block appears twice.
func ParseIndex(b []byte) (*Index, error) {
	if len(b) > maxIndexSize {
		return nil, fmt.Errorf("bucket index: %d bytes, more than the %d allowed", len(b), maxIndexSize)
	}
	var ix Index
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("bucket index: %w", err)
	}
	if err := formatver.BucketIndex.Check("bucket index of "+ix.Tenant, ix.Version); err != nil {
		return nil, err
	}
	if ix.Tenant == "" || ix.UpdatedAt.IsZero() {
		return nil, fmt.Errorf("bucket index: no tenant or updated_at")
	}
	seen := map[ulid.ULID]bool{}
	for _, m := range ix.Blocks {
		if m == nil {
			return nil, fmt.Errorf("bucket index: null block")
		}
		if err := m.validate(); err != nil {
			return nil, fmt.Errorf("bucket index: block %s: %w", m.ULID, err)
		}
		if m.Tenant != ix.Tenant {
			return nil, fmt.Errorf("bucket index of %q lists block %s of tenant %q", ix.Tenant, m.ULID, m.Tenant)
		}
		if seen[m.ULID] {
			return nil, fmt.Errorf("bucket index: block %s twice", m.ULID)
		}
		seen[m.ULID] = true
	}
	marked := map[ulid.ULID]bool{}
	for _, d := range ix.DeletionMarks {
		if d == nil {
			return nil, fmt.Errorf("bucket index: null deletion mark")
		}
		if err := d.validate(); err != nil {
			return nil, fmt.Errorf("bucket index: %w", err)
		}
		if marked[d.ID] {
			return nil, fmt.Errorf("bucket index: block %s marked twice", d.ID)
		}
		marked[d.ID] = true
	}
	return &ix, nil
}
