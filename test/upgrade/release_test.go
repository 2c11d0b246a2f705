package upgrade

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-dev/hearth/internal/testutil"
)

// previousRelease is v0.1.0, the release docs/upgrading.md names as the
// previous one (a pinned commit until there are tags).
const (
	previousRelease     = "2ac48db24e3b238c6b36938c60c31310ea5fb80b"
	previousReleaseName = "v0.1.0"
)

// releaseBinary builds `hearth` at commit from this repository's history
// (a detached git worktree in a temporary directory outside the work tree)
// once, cached as ~/.cache/hearth/releases/<commit>/hearth (no -trimpath:
// the dependencies both releases share come from the build cache).
func releaseBinary(t *testing.T, commit, name string) string {
	t.Helper()
	root := testutil.RepoRoot()
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(home, ".cache", "hearth", "releases", commit)
	bin := filepath.Join(cache, "hearth")
	if fi, err := os.Stat(bin); err == nil && fi.Mode()&0o111 != 0 {
		return bin
	}
	if out, err := exec.Command("git", "-C", root, "cat-file", "-e", commit+"^{commit}").CombinedOutput(); err != nil {
		t.Fatalf("the previous release %s (commit %s) is not in this clone's history (%v %s): "+
			"fetch the full history (git fetch --unshallow) or update previousRelease in test/upgrade with docs/upgrading.md",
			name, commit, err, strings.TrimSpace(string(out)))
	}
	tmp, err := os.MkdirTemp("", "hearth-release-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "src")
	git := func(args ...string) error {
		out, err := exec.Command("git", append([]string{"-C", root}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := git("worktree", "add", "--detach", src, commit); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = git("worktree", "remove", "--force", src); _ = git("worktree", "prune") }()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	tmpBin := fmt.Sprintf("%s.tmp.%d", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version="+name+" -X main.revision="+commit, "-o", tmpBin, "./cmd/hearth")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s (%s): %v\n%s", name, commit, err, out)
	}
	if err := os.Rename(tmpBin, bin); err != nil {
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
