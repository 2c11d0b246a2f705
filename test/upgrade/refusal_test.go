package upgrade

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/internal/testutil"
)

// TestNewerPeerRefused: a real ingester answers an internal request of
// protocol version 2 with 501 and the reason, counts it, and names its own
// version in the answer; version 1 and no version (the previous release) go
// through to the endpoint.
func TestNewerPeerRefused(t *testing.T) {
	p := testutil.StartIngester(t, testutil.FreePort(t), "-data-dir="+t.TempDir(), "-log.level=warn", "-storage.filesystem.dir="+t.TempDir())
	post := func(version string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, p.InternalURL+"/internal/v1/append", bytes.NewReader([]byte("not a record")))
		if version != "" {
			req.Header.Set("X-Hearth-Protocol", version)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp, b.String()
	}
	for _, v := range []string{"", "1"} {
		// The endpoint itself answers: the body is no record.
		if resp, body := post(v); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "record") {
			t.Fatalf("version %q: %s %q", v, resp.Status, body)
		}
	}
	resp, body := post("2")
	if resp.StatusCode != http.StatusNotImplemented || resp.Header.Get("X-Hearth-Protocol") != "1" ||
		!strings.Contains(body, "replica_protocol format version 2 is not supported") {
		t.Fatalf("version 2: %s %q (answered version %q)", resp.Status, body, resp.Header.Get("X-Hearth-Protocol"))
	}
	if n := metric(t, p.URL, `hearth_unsupported_format_version_total{format="replica_protocol"}`); n != 1 {
		t.Fatalf("refusals counted %v, want 1", n)
	}
}

// TestNewerTokensFileStopsTheStart: an ingester whose tokens file is of
// version 2 exits at start with the file, its version and what to do in its
// log, and leaves the file (and its WAL) as they were.
func TestNewerTokensFileStopsTheStart(t *testing.T) {
	data := t.TempDir()
	args := []string{"-data-dir=" + data, "-log.level=warn", "-storage.filesystem.dir=" + t.TempDir()}
	p := testutil.StartIngester(t, testutil.FreePort(t), args...)
	if err := p.Stop(time.Minute); err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(data, "tokens")
	future := []byte(`{"version":2,"tokens":[1,2,3],"ranges":"next release"}`)
	if err := os.WriteFile(tokens, future, 0o644); err != nil {
		t.Fatal(err)
	}
	wal := snapshotDir(t, filepath.Join(data, "wal"))
	cmd := exec.Command(testutil.Hearth(t), append([]string{"ingester",
		"-server.http-listen-address=127.0.0.1", "-server.http-listen-port=" + strconv.Itoa(testutil.FreePort(t)),
		"-server.internal-listen-address=127.0.0.1", "-server.internal-listen-port=" + strconv.Itoa(testutil.FreePort(t)),
		"-memberlist.bind-addr=127.0.0.1", "-memberlist.bind-port=" + strconv.Itoa(testutil.FreePort(t)),
		"-ingester.ring.instance-addr=127.0.0.1", "-ingester.ring.min-ready-duration=0s"}, args...)...)
	log := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("the ingester exited 0\n%s", log.String())
		}
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the ingester did not refuse to start within 90 s\n%s", log.String())
	}
	t.Logf("the ingester's log:\n%s", log.String())
	for _, want := range []string{tokens, "tokens format version 2 is not supported", "do not delete the file"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, log.String())
		}
	}
	if b, err := os.ReadFile(tokens); err != nil || !bytes.Equal(b, future) {
		t.Fatalf("the tokens file changed: %s %v", b, err)
	}
	if after := snapshotDir(t, filepath.Join(data, "wal")); len(after) != len(wal) || len(wal) == 0 {
		t.Fatalf("WAL files before %d, after %d", len(wal), len(after))
	} else {
		for name, b := range wal {
			if after[name] != b {
				t.Fatalf("WAL file %s changed", name)
			}
		}
	}
}

func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}
