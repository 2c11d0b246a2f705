package platform

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeAtomic lays a volume out as the kubelet does and swaps its content in one rename:
// the visible names are symlinks through ..data, an update replaces the content seen
// through the same path, and a key gone from the source disappears with the old copy.
func TestWriteAtomic(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	if err := writeAtomic(dir, map[string]volumeFile{"a.yaml": {[]byte("v1"), 0o444}, "b": {[]byte("b1"), 0o444}}); err != nil {
		t.Fatal(err)
	}
	first, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "a.yaml")); err != nil || target != filepath.Join("..data", "a.yaml") {
		t.Fatalf("a.yaml links to %q (%v), want ..data/a.yaml", target, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "a.yaml")); err != nil || string(b) != "v1" {
		t.Fatalf("a.yaml = %q, %v", b, err)
	}
	if err := writeAtomic(dir, map[string]volumeFile{"a.yaml": {[]byte("v2"), 0o444}}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "a.yaml")); err != nil || string(b) != "v2" {
		t.Fatalf("a.yaml after the update = %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "b")); !os.IsNotExist(err) {
		t.Errorf("b, gone from the source, is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, first)); !os.IsNotExist(err) {
		t.Errorf("the old content %s is still there: %v", first, err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 3 || !strings.HasPrefix(strings.Join(names, " "), "..") {
		t.Errorf("volume holds %v, want ..<time>, ..data and a.yaml", names)
	}
}
