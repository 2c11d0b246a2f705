package shipper

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestDropTenant: the queued blocks of a deleted tenant are forgotten and
// deleted from disk (their ids returned, the pending bytes back to the other
// tenant's), the other tenant's block is still queued, and nothing of the
// dropped tenant is uploaded afterwards.
func TestDropTenant(t *testing.T) {
	bkt, _ := newFSBucket(t)
	dir := t.TempDir()
	now := time.Now()
	gone1 := makeBlock(t, dir, "gone", now.Add(-2*time.Minute))
	gone2 := makeBlock(t, dir, "gone", now.Add(-time.Minute))
	kept := makeBlock(t, dir, "kept", now)
	s := New(Options{Dir: dir, Bucket: bkt})
	if s.PendingBlocks() != 3 {
		t.Fatalf("%d blocks queued, want 3", s.PendingBlocks())
	}
	ids, err := s.DropTenant("gone")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if want := []string{gone1.id.String(), gone2.id.String()}; !slices.Equal(ids, want) {
		t.Fatalf("dropped %v, want %v", ids, want)
	}
	if s.PendingBlocks() != 1 || s.PendingBytes() != kept.size() {
		t.Fatalf("after the drop: %d blocks, %d bytes pending; want 1, %d", s.PendingBlocks(), s.PendingBytes(), kept.size())
	}
	if _, err := os.Stat(filepath.Join(dir, "gone")); !os.IsNotExist(err) {
		t.Fatalf("the dropped tenant's directory: %v", err)
	}
	stop := runShipper(t, s)
	flush(t, s)
	stop()
	requireInBucket(t, bkt, kept)
	var names []string
	_ = bkt.Iter(t.Context(), "gone/", func(n string) error { names = append(names, n); return nil })
	if len(names) != 0 {
		t.Fatalf("the dropped tenant was uploaded: %v", names)
	}
	if _, err := s.DropTenant("../x"); err == nil {
		t.Fatal("an invalid tenant was accepted")
	}
}
