package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

const repo = "../.."

var (
	once     sync.Once
	imgPath  string
	imgOpts  Options
	buildErr error
)

// testOptions build the image as `make image` does (the defaults of hack/build-image.sh),
// with the commit's time.
func testOptions(t *testing.T) Options {
	t.Helper()
	rev, err := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v", err)
	}
	ts, err := exec.Command("git", "-C", repo, "log", "-1", "--format=%ct").Output()
	if err != nil {
		t.Fatalf("git log: %v", err)
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(ts)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return Options{Repo: repo, Version: "v0.2.0-imagetest", Revision: strings.TrimSpace(string(rev)),
		Source: "https://github.com/hearth-dev/hearth", Created: time.Unix(sec, 0), GOARCH: runtime.GOARCH}
}

// image builds the image once per test binary (binary included) and writes its tarball.
func image(t *testing.T) (v1.Image, Options) {
	t.Helper()
	once.Do(func() {
		imgOpts = testOptions(t)
		dir, err := os.MkdirTemp("", "hearth-image-test-")
		if err != nil {
			buildErr = err
			return
		}
		img, err := Build(imgOpts)
		if err != nil {
			buildErr = err
			return
		}
		imgPath = filepath.Join(dir, "hearth-image.tar")
		buildErr = tarball.WriteToFile(imgPath, name.MustParseReference("hearth:dev"), img)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	// What crane and docker read: the tarball, not the in-memory image.
	img, err := tarball.ImageFromPath(imgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	return img, imgOpts
}

// Two builds from the same commit (the binary compiled twice) are the same image.
func TestReproducible(t *testing.T) {
	img, o := image(t)
	first, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tarball.Write(name.MustParseReference("hearth:dev"), again, &buf); err != nil {
		t.Fatal(err)
	}
	reloaded, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := reloaded.Digest()
	if err != nil {
		t.Fatal(err)
	}
	inMemory, err := again.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if first != second || second != inMemory {
		t.Fatalf("digests differ: first build %s, second build %s (in memory %s)", first, second, inMemory)
	}
	b, err := os.ReadFile(imgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, buf.Bytes()) {
		t.Error("the two tarballs differ byte for byte")
	}
	t.Logf("image %s, tarball %d bytes", first, len(b))
}

// What crane validate --tarball checks, and the config the operator's pods rely on.
func TestValidAndConfig(t *testing.T) {
	img, o := image(t)
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	c := cf.Config
	uid, _, _ := strings.Cut(c.User, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("user %q: want a numeric non-root UID (Kubernetes' runAsNonRoot needs a number)", c.User)
	}
	if c.User != fmt.Sprintf("%d:%d", UID, GID) {
		t.Errorf("user %q, the operator's pods run as %d:%d", c.User, UID, GID)
	}
	if len(c.Entrypoint) != 1 || c.Entrypoint[0] != "/hearth" {
		t.Errorf("entrypoint %q, want [/hearth] (the operator renders command [/hearth])", c.Entrypoint)
	}
	if strings.Join(c.Cmd, " ") != "ingester" {
		t.Errorf("cmd %q, want [ingester]", c.Cmd)
	}
	for k, want := range o.Labels() {
		if c.Labels[k] != want || want == "" {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], want)
		}
	}
	if got := c.Labels["org.opencontainers.image.revision"]; !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(got) {
		t.Errorf("revision label %q is not a commit id", got)
	}
	if !cf.Created.Time.Equal(o.Created) {
		t.Errorf("created %s, want the commit's time %s", cf.Created, o.Created)
	}
	for _, h := range cf.History {
		if !h.Created.Time.Equal(o.Created) {
			t.Errorf("history entry created %s, want %s", h.Created, o.Created)
		}
	}
}

// entry is a file of the image's filesystem.
type entry struct {
	hdr  *tar.Header
	body []byte
}

// flatten reads the image's filesystem (every layer applied) as mutate.Extract gives it.
func flatten(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	fs := map[string]entry{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		fs["/"+strings.Trim(h.Name, "/")] = entry{h, b}
	}
	return fs
}

func TestFiles(t *testing.T) {
	img, o := image(t)
	fs := flatten(t, img)

	bin, ok := fs["/hearth"]
	if !ok || bin.hdr.Typeflag != tar.TypeReg || bin.hdr.Mode&0o111 == 0 {
		t.Fatalf("/hearth missing or not executable: %+v", bin.hdr)
	}
	// A static binary: an ELF with no interpreter (PT_INTERP names the dynamic loader).
	if !bytes.HasPrefix(bin.body, []byte("\x7fELF")) || bytes.Contains(bin.body, []byte("/lib64/ld-linux")) || bytes.Contains(bin.body, []byte("/lib/ld-")) {
		t.Error("/hearth is not a static ELF binary")
	}

	for _, d := range []struct {
		path     string
		writable func(h *tar.Header) bool
	}{
		{"/tmp", func(h *tar.Header) bool { return h.Mode&0o1777 == 0o1777 }},
		{"/data", func(h *tar.Header) bool { return h.Uid == UID && h.Mode&0o700 == 0o700 }},
	} {
		e, ok := fs[d.path]
		if !ok || e.hdr.Typeflag != tar.TypeDir || !d.writable(e.hdr) {
			t.Errorf("%s is not a directory the user %d can write: %+v", d.path, UID, e.hdr)
		}
	}

	// The CA bundle Go's crypto/x509 reads first on Linux: S3, GCS and Azure over TLS.
	ca, ok := fs[CABundle]
	if !ok {
		t.Fatalf("no %s", CABundle)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := ca.body; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatalf("certificate %d: %v", n, err)
		}
		if !c.IsCA {
			t.Errorf("%s is not a CA", c.Subject)
		}
		pool.AddCert(c)
		n++
	}
	if n < 100 {
		t.Errorf("%s has %d certificates: want the Mozilla root store (over 100)", CABundle, n)
	}

	for path, e := range fs {
		if !e.hdr.ModTime.Equal(o.Created) {
			t.Errorf("%s has mtime %s, want the commit's time %s", path, e.hdr.ModTime, o.Created)
		}
	}
	if p := string(fs["/etc/passwd"].body); !strings.Contains(p, fmt.Sprintf(":%d:%d:", UID, GID)) {
		t.Errorf("/etc/passwd has no user %d:\n%s", UID, p)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(8000)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		_ = l.Close()
		return port
	}
	t.Fatal("no free loopback port")
	return 0
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The binary taken out of the image's layer runs: `hearth version` names the version and
// revision the image's labels carry, and `hearth ingester` with its data under the
// image's /data (laid out in a scratch root) turns ready.
func TestBinaryRuns(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the image's binary is linux/" + runtime.GOARCH)
	}
	img, o := image(t)
	root := t.TempDir()
	for path, e := range flatten(t, img) {
		dst := filepath.Join(root, path)
		switch e.hdr.Typeflag {
		case tar.TypeDir:
			// 0700 or wider for the test's own user, whoever runs it.
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, e.body, os.FileMode(e.hdr.Mode)&0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	bin := filepath.Join(root, "hearth")

	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("hearth version: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("hearth %s (revision %s)", o.Version, o.Revision); strings.TrimSpace(string(out)) != want {
		t.Errorf("hearth version printed %q, want %q", out, want)
	}

	port := freePort(t)
	log := &syncBuffer{}
	cmd := exec.Command(bin, "ingester",
		"-data-dir="+filepath.Join(root, "data", "ingester"),
		"-server.http-listen-address=127.0.0.1", "-server.http-listen-port="+strconv.Itoa(port),
		"-server.internal-listen-address=127.0.0.1", "-server.internal-listen-port="+strconv.Itoa(freePort(t)),
		"-memberlist.bind-addr=127.0.0.1", "-memberlist.bind-port="+strconv.Itoa(freePort(t)),
		"-ingester.ring.min-ready-duration=0s")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = log, log
	// The image's environment.
	cmd.Env = []string{"TMPDIR=" + filepath.Join(root, "tmp"), "SSL_CERT_FILE=" + filepath.Join(root, CABundle)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("hearth ingester log:\n%s", log.String())
		}
	})

	// Poll /ready until it answers 200 or the process exits; the test's own deadline
	// (go test -timeout) bounds the wait.
	url := fmt.Sprintf("http://127.0.0.1:%d/ready", port)
	for {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("hearth ingester exited before it was ready: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(root, "data", "ingester", "tokens")); err != nil {
		t.Errorf("the ingester wrote no tokens file under the image's /data: %v", err)
	}
}

// The image `make image` names by default is the one the chart deploys by default
// (image.repository, tag = the chart's appVersion) and the samples' spec.image.
func TestDefaultImageNames(t *testing.T) {
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(repo, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	find := func(p, re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(read(p))
		if m == nil {
			t.Fatalf("%s: no match for %s", p, re)
		}
		return m[1]
	}
	version := find("Makefile", `(?m)^VERSION \?= (\S+)$`)
	img := strings.ReplaceAll(find("Makefile", `(?m)^IMG \?= (\S+)$`), "$(VERSION)", version)
	if script := strings.ReplaceAll(find("hack/build-image.sh", `(?m)^IMG=\$\{IMG:-(\S+)\}$`), "$VERSION", version); script != img {
		t.Errorf("hack/build-image.sh names %s, the Makefile %s", script, img)
	}
	if flagDefault := find("hack/image/main.go", `"tag", "([^"]+)"`); flagDefault != img {
		t.Errorf("hack/image's -tag default %s, the Makefile's IMG %s", flagDefault, img)
	}
	chart := find("charts/hearth/values.yaml", `(?m)^  repository: (\S+)`) + ":" + strings.Trim(find("charts/hearth/Chart.yaml", `(?m)^appVersion: (\S+)`), `"`)
	if chart != img {
		t.Errorf("the chart deploys %s by default, make image builds %s", chart, img)
	}
	if tag := find("charts/hearth/values.yaml", `(?m)^  tag: (\S+)`); tag != `""` {
		t.Errorf("the chart's image.tag default %s: keep it empty so that appVersion decides", tag)
	}
	samples, err := filepath.Glob(filepath.Join(repo, "config/samples/*.yaml"))
	if err != nil || len(samples) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	n := 0
	for _, s := range samples {
		rel, _ := filepath.Rel(repo, s)
		if !regexp.MustCompile(`(?m)^kind: Ingester$`).MatchString(read(rel)) { // an HPA's scaleTargetRef names the kind indented
			continue
		}
		n++
		if got := find(rel, `(?m)^  image: (\S+)`); got != img {
			t.Errorf("%s: spec.image %s, make image builds %s", rel, got, img)
		}
	}
	if n == 0 {
		t.Error("no Ingester among config/samples")
	}
}
