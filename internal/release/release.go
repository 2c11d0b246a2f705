// Package release builds earlier releases of hearth from this repository's history, so
// that tests can run them beside the current build (test/upgrade runs a ring of one,
// test/e2e rolls pods from one to this build through the operator).
package release

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The previous release, the one docs/upgrading.md names (a pinned commit until there are
// tags). Update both together.
const (
	PreviousCommit = "2ac48db24e3b238c6b36938c60c31310ea5fb80b"
	PreviousName   = "v0.1.0"
)

// Previous builds the previous release (Build of PreviousCommit).
func Previous(root string) (string, error) { return Build(root, PreviousCommit, PreviousName) }

// Build builds `hearth` at commit from the history of the repository at root (a detached
// git worktree in a temporary directory outside the work tree), stamped with name as its
// version, once: the binary is cached as ~/.cache/hearth/releases/<commit>/hearth (no
// -trimpath, so the dependencies both releases share come from the build cache). Builds
// running at once each write their own temporary file and rename it into place.
func Build(root, commit, name string) (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	cache := filepath.Join(home, ".cache", "hearth", "releases", commit)
	bin := filepath.Join(cache, "hearth")
	if fi, err := os.Stat(bin); err == nil && fi.Mode()&0o111 != 0 {
		return bin, nil
	}
	git := func(args ...string) error {
		out, err := exec.Command("git", append([]string{"-C", root}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := git("cat-file", "-e", commit+"^{commit}"); err != nil {
		return "", fmt.Errorf("the release %s (commit %s) is not in this clone's history (%v): "+
			"fetch the full history (git fetch --unshallow) or update internal/release with docs/upgrading.md", name, commit, err)
	}
	tmp, err := os.MkdirTemp("", "hearth-release-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "src")
	if err := git("worktree", "add", "--detach", src, commit); err != nil {
		return "", err
	}
	defer func() { _ = git("worktree", "remove", "--force", src); _ = git("worktree", "prune") }()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	tmpBin := fmt.Sprintf("%s.tmp.%d", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version="+name+" -X main.revision="+commit, "-o", tmpBin, "./cmd/hearth")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmpBin)
		return "", fmt.Errorf("building %s (%s): %v\n%s", name, commit, err, out)
	}
	if err := os.Rename(tmpBin, bin); err != nil {
		return "", err
	}
	return bin, nil
}
