package platform

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPodLogNewestLast: the incarnations of a pod name come oldest first whatever their
// UIDs, so that the last matching line is the newest incarnation's.
func TestPodLogNewestLast(t *testing.T) {
	a := &Agent{}
	a.cfg.Dir = t.TempDir()
	base := time.Now().Add(-time.Hour)
	for i, uid := range []string{"ffff", "0000", "8888"} { // written in this order
		dir := filepath.Join(a.cfg.Dir, "logs", "ns_pod-0_"+uid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, "ingester.log")
		if err := os.WriteFile(f, []byte("run "+uid+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		at := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(f, at, at); err != nil {
			t.Fatal(err)
		}
	}
	log := a.PodLog("ns", "pod-0", "ingester")
	if i, j, k := strings.Index(log, "run ffff"), strings.Index(log, "run 0000"), strings.Index(log, "run 8888"); i < 0 || !(i < j && j < k) {
		t.Fatalf("incarnations out of order:\n%s", log)
	}
	if a.PodLog("ns", "pod-1", "ingester") != "" {
		t.Fatal("another pod's log")
	}
}
