package compat

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/internal/formatver"
)

// TestFutureBlockMetaVersion: a block whose meta.json says version 2 is
// refused by the reader and by ReadMeta (the compactor's and the bucket
// source's way in), not read as empty, and its files stay.
func TestFutureBlockMetaVersion(t *testing.T) {
	dir := copyFixture(t, release, bucketDir)
	ents, err := os.ReadDir(filepath.Join(dir, "team-a"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("fixture: %v", err)
	}
	id := ulid.MustParse(ents[0].Name())
	metaPath := filepath.Join(dir, "team-a", id.String(), block.MetaFile)
	var m map[string]any
	b, err := os.ReadFile(metaPath)
	if err != nil || json.Unmarshal(b, &m) != nil || m["version"] != float64(1) {
		t.Fatalf("fixture meta.json: %s %v", b, err)
	}
	m["version"] = 2
	b, _ = json.Marshal(m)
	if err := os.WriteFile(metaPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	count := formatver.Refused(formatver.BlockMeta)
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = block.Open(context.Background(), bkt, "team-a/"+id.String(), block.ReaderOptions{})
	if !errors.Is(err, formatver.ErrUnsupported) || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("open: %v", err)
	}
	_, err = block.ReadMeta(context.Background(), bkt, "team-a", id)
	if !errors.Is(err, formatver.ErrUnsupported) || !strings.Contains(err.Error(), "team-a/"+id.String()) {
		t.Fatalf("ReadMeta: %v", err)
	}
	if got := formatver.Refused(formatver.BlockMeta) - count; got != 2 {
		t.Fatalf("refusals counted %v, want 2", got)
	}
	after := snapshot(t, dir)
	for p, b := range before {
		if after[p] != b {
			t.Fatalf("%s changed or is gone", p)
		}
	}
}

// TestFutureMarkAndIndexVersions: a deletion mark and a bucket index of
// version 2 are refused as unsupported (counted); version 1 parses.
func TestFutureMarkAndIndexVersions(t *testing.T) {
	id := ulid.MustParse("01M8XZ29BVGYV514125EJ6V50F")
	mark := func(v int) []byte {
		b, _ := json.Marshal(map[string]any{"version": v, "id": id.String(), "marked_at": time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), "reason": "retention"})
		return b
	}
	if _, err := block.ParseDeletionMark(mark(1)); err != nil {
		t.Fatalf("version 1 mark: %v", err)
	}
	count := formatver.Refused(formatver.DeletionMark)
	if _, err := block.ParseDeletionMark(mark(2)); !errors.Is(err, formatver.ErrUnsupported) {
		t.Fatalf("version 2 mark: %v", err)
	}
	if formatver.Refused(formatver.DeletionMark)-count != 1 {
		t.Fatal("the refused mark is not counted")
	}
	index := func(v int) []byte {
		b, _ := json.Marshal(map[string]any{"version": v, "tenant": "team-a", "updated_at": time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), "blocks": []any{}, "deletion_marks": []any{}})
		return b
	}
	if _, err := block.ParseIndex(index(1)); err != nil {
		t.Fatalf("version 1 index: %v", err)
	}
	count = formatver.Refused(formatver.BucketIndex)
	if _, err := block.ParseIndex(index(2)); !errors.Is(err, formatver.ErrUnsupported) {
		t.Fatalf("version 2 index: %v", err)
	}
	if formatver.Refused(formatver.BucketIndex)-count != 1 {
		t.Fatal("the refused index is not counted")
	}
}
