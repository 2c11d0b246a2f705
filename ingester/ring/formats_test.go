package ring

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dskitring "github.com/grafana/dskit/ring"

	"github.com/hearth-dev/hearth/internal/formatver"
)

var update = flag.Bool("update", false, "write testdata/"+fixtureRelease+" again (once per release)")

// fixtureRelease is the release whose tokens file and marker -update writes.
const fixtureRelease = "v0.2.0"

// TestWriteFixtures writes testdata/<release>/{tokens,prepare-shutdown} with
// -update, as a started ring and a set marker of this release write them.
func TestWriteFixtures(t *testing.T) {
	if !*update {
		t.Skip("writes testdata/" + fixtureRelease + " only with -update")
	}
	out := filepath.Join("testdata", fixtureRelease)
	if _, err := os.Stat(out); err == nil {
		t.Fatalf("%s exists: a release's fixtures are written once", out)
	}
	n := newNode(t, "fixture", "")
	n.rf = 1
	n.start(t)
	n.stop(t)
	if err := NewPrepareShutdown(n.dir).Set(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tokens", PrepareShutdownFile} {
		b, err := os.ReadFile(filepath.Join(n.dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fixtureDirs are the releases' fixture directories.
func fixtureDirs(t *testing.T) map[string]string {
	dirs := map[string]string{}
	ents, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), "v") {
			dirs[e.Name()] = filepath.Join("testdata", e.Name())
		}
	}
	if len(dirs) == 0 {
		t.Fatal("no fixtures")
	}
	return dirs
}

// TestFixturesTokensAndMarker starts a ring on a copy of each release's
// tokens file and marker: it registers with exactly the file's tokens, and
// the marker reads as set.
func TestFixturesTokensAndMarker(t *testing.T) {
	for rel, dir := range fixtureDirs(t) {
		t.Run(rel, func(t *testing.T) {
			want := readTokensFile(t, filepath.Join(dir, "tokens"))
			if len(want) != 128 {
				t.Fatalf("%d tokens in the fixture", len(want))
			}
			n := newNode(t, "fixture", "")
			n.rf = 1
			if err := os.CopyFS(n.dir, os.DirFS(dir)); err != nil {
				t.Fatal(err)
			}
			if !NewPrepareShutdown(n.dir).IsSet() {
				t.Fatal("the marker does not read as set")
			}
			n.start(t)
			if got := n.r.Tokens(); !got.Equals(want) {
				t.Fatalf("registered with other tokens than the file's")
			}
			if !n.r.PrepareShutdownSet() {
				t.Fatal("the ring does not see the marker set")
			}
		})
	}
}

// TestTokensFileVersions: no version field (the first release, dskit's
// encoding) and version 1 read; this release writes version 1.
func TestTokensFileVersions(t *testing.T) {
	for _, b := range []string{`{"tokens":[1,2,3]}`, `{"version":1,"tokens":[1,2,3]}`, `not json`} {
		if err := parseTokensVersion("tokens", []byte(b)); err != nil {
			t.Errorf("%s: %v", b, err)
		}
	}
	b, err := marshalTokens(dskitring.Tokens{1, 2, 3})
	if err != nil || string(b) != `{"version":1,"tokens":[1,2,3]}` {
		t.Fatalf("%s %v", b, err)
	}
	var back dskitring.Tokens
	if err := back.Unmarshal(b); err != nil || !back.Equals(dskitring.Tokens{1, 2, 3}) {
		t.Fatalf("dskit reads %v %v", back, err)
	}
}

// startRefused starts a ring on dir and requires a refusal of format f's
// version 2 naming path, counted, and the file unchanged.
func startRefused(t *testing.T, dir, path string, f formatver.Format) {
	t.Helper()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	count := formatver.Refused(f)
	n := newNode(t, "future", "")
	n.rf = 1
	r, err := New(n.config(), n.httpPort, dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = r.Start(ctx)
	_ = r.Stop()
	if !errors.Is(err, formatver.ErrUnsupported) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("start: %v", err)
	}
	if got := formatver.Refused(f) - count; got != 1 {
		t.Errorf("refusals counted %v, want 1", got)
	}
	after, err := os.ReadFile(path)
	if err != nil || string(after) != string(before) {
		t.Fatalf("%s changed or is gone: %v", path, err)
	}
}

// TestFutureTokensVersion: a tokens file of version 2 stops the start (dskit
// alone would log it and draw new tokens over it).
func TestFutureTokensVersion(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	if err := os.WriteFile(path, []byte(`{"version":2,"tokens":[5,6,7],"zones":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	startRefused(t, dir, path, formatver.Tokens)
}

// TestFutureMarkerVersion: a prepare-shutdown marker of version 2 stops the
// start rather than guessing whether the next stop is final.
func TestFutureMarkerVersion(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, PrepareShutdownFile)
	if err := os.WriteFile(path, []byte("version 2\nfinal after=1h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startRefused(t, dir, path, formatver.PrepareShutdown)
	if err := parseMarkerVersion("m", "set\n"); err != nil {
		t.Fatal(err)
	}
	if err := parseMarkerVersion("m", ""); err != nil {
		t.Fatal(err)
	}
}
