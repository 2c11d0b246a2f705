package main

import "testing"

func TestVersionLine(t *testing.T) {
	for _, c := range []struct{ version, revision, vcs, want string }{
		{"dev", "", "", "hearth " + release + "-dev (revision unknown)"},
		{"", "", "abc123-dirty", "hearth " + release + "-dev (revision abc123-dirty)"},
		{"v0.2.0", "0123456789abcdef", "ffff", "hearth v0.2.0 (revision 0123456789abcdef)"},
	} {
		if got := versionLine(c.version, c.revision, c.vcs); got != c.want {
			t.Errorf("versionLine(%q, %q, %q) = %q, want %q", c.version, c.revision, c.vcs, got, c.want)
		}
	}
}
