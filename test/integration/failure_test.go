package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/internal/testutil"
)

// TestComponentFailureStopsTheProcess takes the WAL directory away from a
// running ingester: its store's cut loop fails (what it acknowledges from then
// on would not survive a restart), and the process must not run on half
// alive: it logs which component failed and why, stops, and exits non-zero.
func TestComponentFailureStopsTheProcess(t *testing.T) {
	data := t.TempDir()
	proc := testutil.StartIngester(t, testutil.FreePort(t), "-data-dir="+data, "-ingester.max-block-duration=1s")
	if err := os.RemoveAll(filepath.Join(data, "wal")); err != nil {
		t.Fatal(err)
	}
	exited, err := proc.Wait(30 * time.Second)
	if !exited {
		t.Fatalf("the ingester runs on 30s after its WAL directory was removed\nlog:\n%s", proc.Log())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("exit: %v, want a non-zero exit status\nlog:\n%s", err, proc.Log())
	}
	log := proc.Log()
	for _, want := range []string{
		`msg="a component failed: stopping the ingester" module=store`,
		"write-ahead log directory",
		`msg="ingester stopped"`,
		"hearth ingester: store: ",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}
