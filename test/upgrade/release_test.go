package upgrade

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/hearth-dev/hearth/internal/release"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// previousRelease is v0.1.0, the release docs/upgrading.md names as the
// previous one (internal/release pins it).
const (
	previousRelease     = release.PreviousCommit
	previousReleaseName = release.PreviousName
)

// releaseBinary builds `hearth` at commit from this repository's history once
// (internal/release, cached under ~/.cache/hearth/releases/<commit>).
func releaseBinary(t *testing.T, commit, name string) string {
	t.Helper()
	bin, err := release.Build(testutil.RepoRoot(), commit, name)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestReleaseBinary: the previous release builds from history and says
// which it is; this tree's binary says it is this release.
func TestReleaseBinary(t *testing.T) {
	out, err := exec.Command(releaseBinary(t, previousRelease, previousReleaseName), "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), previousReleaseName) {
		t.Fatalf("previous release: %q %v", out, err)
	}
	out, err = exec.Command(testutil.Hearth(t), "version").CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) || err != nil || !strings.Contains(string(out), "v0.2.0") || !strings.Contains(string(out), "revision") {
		t.Fatalf("this release: %q %v", out, err)
	}
}
