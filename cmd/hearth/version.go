package main

import (
	"context"
	"fmt"
	"runtime/debug"
)

// release is this source tree's release (CHANGELOG.md, docs/upgrading.md).
const release = "v0.2.0"

// version and revision are set at build time with
// -ldflags "-X main.version=... -X main.revision=..." (`make build` and
// `make image` do). Unset or "dev": release-dev and the commit Go recorded
// in the binary (go build in a git checkout).
var (
	version  = "dev"
	revision = ""
)

func init() {
	register("version", "print the version and the commit", func(context.Context, []string) error {
		fmt.Println(versionLine(version, revision, vcsRevision()))
		return nil
	})
}

// versionLine is `hearth version`'s output.
func versionLine(version, revision, vcs string) string {
	if version == "" || version == "dev" {
		version = release + "-dev"
	}
	if revision == "" {
		revision = vcs
	}
	if revision == "" {
		revision = "unknown"
	}
	return fmt.Sprintf("hearth %s (revision %s)", version, revision)
}

// vcsRevision is the commit `go build` recorded (with "-dirty" for a work
// tree with changes), "" when it recorded none.
func vcsRevision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}
