package platform

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// fakeHearth writes a script that answers `ingester -help` and `prestop -help` the way
// a hearth release does (exit 2, like Go's flag package on -help), with or without the
// internal listener and prestop's -addr.
func fakeHearth(t *testing.T, current bool) string {
	t.Helper()
	ing := "  -server.http-listen-address string\n    \tHTTP listen address\n"
	pre := "  -timeout duration\n    \tgive up after this long (default 10s)\n  -url string\n    \tthe local ingester's HTTP URL\n"
	if current {
		ing += "  -server.internal-listen-address string\n    \tinternal listen address\n"
		pre = "  -addr string\n    \tthe ingester's internal listener\n" + pre
	}
	dir := t.TempDir()
	for name, text := range map[string]string{"ingester.help": ing, "prestop.help": pre} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script := "#!/bin/sh\ncase \"$1 $2\" in\n" +
		"\"ingester -help\") cat " + filepath.Join(dir, "ingester.help") + " >&2; exit 2;;\n" +
		"\"prestop -help\") cat " + filepath.Join(dir, "prestop.help") + " >&2; exit 2;;\n" +
		"esac\nexit 1\n"
	p := filepath.Join(dir, "hearth")
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHearthImageFor: the extra arguments follow the binary's flags: a binary without an
// internal listener (v0.1.0) binds only its HTTP port and prestop takes that port's URL;
// a current one gets exactly HearthImage's.
func TestHearthImageFor(t *testing.T) {
	old, err := HearthImageFor(fakeHearth(t, false))
	if err != nil {
		t.Fatal(err)
	}
	if got := old.ExtraArgs["ingester"]; !slices.Equal(got, []string{"-server.http-listen-address=$(POD_IP)"}) {
		t.Errorf("old ingester args %q", got)
	}
	if got := old.ExtraArgs["prestop"]; !slices.Equal(got, []string{"-url=http://$(POD_IP):$(PORT_http)"}) {
		t.Errorf("old prestop args %q", got)
	}
	curBin := fakeHearth(t, true)
	cur, err := HearthImageFor(curBin)
	if err != nil {
		t.Fatal(err)
	}
	want := HearthImage(curBin)
	for _, sub := range []string{"ingester", "prestop"} {
		if !slices.Equal(cur.ExtraArgs[sub], want.ExtraArgs[sub]) {
			t.Errorf("current %s args %q, HearthImage's %q", sub, cur.ExtraArgs[sub], want.ExtraArgs[sub])
		}
	}
	if cur.Binary != curBin || cur.Entrypoint != "/hearth" {
		t.Errorf("image %+v", cur)
	}
	if _, err := HearthImageFor(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing binary was accepted")
	}
	notHearth := filepath.Join(t.TempDir(), "true")
	if err := os.WriteFile(notHearth, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := HearthImageFor(notHearth); err == nil {
		t.Error("a binary without -server.http-listen-address was accepted")
	}
}

// TestAgentImages: without ImageBinaries every image runs Hearth (as before); an image
// named there runs its own binary with the arguments its flags call for, is known even
// when Images does not list it, and gets IngesterArgs like the others.
func TestAgentImages(t *testing.T) {
	o := Options{Hearth: "/bin/current", Images: DefaultImages, IngesterArgs: []string{"-x=1"}}
	imgs, err := agentImages(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != len(DefaultImages) {
		t.Fatalf("%d images, want %d", len(imgs), len(DefaultImages))
	}
	for name, img := range imgs {
		if img.Binary != "/bin/current" || img.ExtraArgs["ingester"][len(img.ExtraArgs["ingester"])-1] != "-x=1" {
			t.Errorf("%s: %+v", name, img)
		}
	}
	old := fakeHearth(t, false)
	o.ImageBinaries = map[string]string{"hearth:v0.1.0": old, "hearth:v0.0.9": old}
	if imgs, err = agentImages(o); err != nil {
		t.Fatal(err)
	}
	if len(imgs) != len(DefaultImages)+1 {
		t.Fatalf("%d images, want %d", len(imgs), len(DefaultImages)+1)
	}
	for _, name := range []string{"hearth:v0.1.0", "hearth:v0.0.9"} {
		img := imgs[name]
		if img.Binary != old || !slices.Equal(img.ExtraArgs["ingester"], []string{"-server.http-listen-address=$(POD_IP)", "-x=1"}) {
			t.Errorf("%s: %+v", name, img)
		}
	}
	if img := imgs["hearth:dev"]; img.Binary != "/bin/current" || !slices.Contains(img.ExtraArgs["ingester"], "-server.internal-listen-address=$(POD_IP)") {
		t.Errorf("hearth:dev: %+v", img)
	}
	// The images do not share argument slices: IngesterArgs went once into each.
	if n := len(imgs["hearth:dev"].ExtraArgs["ingester"]); n != 3 {
		t.Errorf("hearth:dev has %d ingester args: %q", n, imgs["hearth:dev"].ExtraArgs["ingester"])
	}
	o.ImageBinaries = map[string]string{"hearth:v0.1.0": filepath.Join(t.TempDir(), "missing")}
	if _, err := agentImages(o); err == nil {
		t.Error("an image with a missing binary was accepted")
	}
}
