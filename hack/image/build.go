// Command image builds the hearth container image with no Docker daemon and no
// registry: the static hearth binary, a CA bundle, /tmp and /data are appended as one
// layer to an empty image with go-containerregistry, with fixed timestamps so that the
// same commit gives the same digest. It writes a tarball that `docker load` and crane
// read (`make image` runs it).
//
// It is its own module so that go-containerregistry stays out of the project's go.mod.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// What the image is made of. The operator's rendered pods rely on these: the container
// command is BinaryPath, the pod runs as UID/GID, and /data is the volume mount point
// (controllers/render.go).
const (
	BinaryPath = "/hearth"
	UID        = 65532
	GID        = 65532
	DataDir    = "/data"
	TmpDir     = "/tmp"
	// CABundle is where Go's crypto/x509 (and most other TLS stacks) look first on Linux.
	CABundle = "/etc/ssl/certs/ca-certificates.crt"
)

// Options say what to build.
type Options struct {
	Repo     string    // root of the hearth module
	Version  string    // main.version and the version label
	Revision string    // main.revision and the revision label (a commit id)
	Source   string    // the source label (the repository's URL)
	Created  time.Time // every timestamp in the image (the commit's time)
	GOARCH   string    // the image's architecture (linux only)
	Binary   string    // a prebuilt hearth binary; empty builds one from Repo
}

// Labels are the OCI annotations the image carries as config labels.
func (o Options) Labels() map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "hearth",
		"org.opencontainers.image.description": "Hearth: a continuous-profiling ingester (Pyroscope-compatible) and its Kubernetes operator",
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.revision":    o.Revision,
		"org.opencontainers.image.source":      o.Source,
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.created":     o.Created.UTC().Format(time.RFC3339),
	}
}

// BuildFlags are go build's flags besides -ldflags (the Dockerfile uses the same).
var BuildFlags = []string{"-trimpath", "-buildvcs=false"}

// LDFlags links the version and revision in and strips the symbol tables.
func LDFlags(version, revision string) string {
	return fmt.Sprintf("-s -w -X main.version=%s -X main.revision=%s", version, revision)
}

// BuildBinary compiles cmd/hearth statically (CGO_ENABLED=0, -trimpath) for linux/GOARCH
// with the version and revision linked in, into out.
func BuildBinary(o Options, out string) error {
	cmd := exec.Command("go", append(append([]string{"build"}, BuildFlags...), "-ldflags", LDFlags(o.Version, o.Revision), "-o", out, "./cmd/hearth")...)
	cmd.Dir = o.Repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/hearth: %v\n%s", err, b)
	}
	return nil
}

// CABundlePEM is the Mozilla root store (NSS) as the pinned golang.org/x/crypto/x509roots
// module carries it, in PEM. It comes from the Go module proxy, so every machine builds
// the same bytes. Roots with a distrust-after constraint, which a PEM bundle cannot
// express, are left out (what Debian's ca-certificates does too once the date passes).
func CABundlePEM() []byte {
	var b bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})
	}
	return b.Bytes()
}

// file is one entry of the layer.
type file struct {
	name     string // without the leading slash
	mode     int64
	uid, gid int
	typ      byte
	body     []byte
}

// layerFiles are the image's files in the layer's order.
func layerFiles(binary []byte) []file {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, GID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", GID)
	files := []file{
		{name: "data/", mode: 0o755, uid: UID, gid: GID, typ: tar.TypeDir},
		{name: "etc/", mode: 0o755, typ: tar.TypeDir},
		{name: "etc/group", mode: 0o644, typ: tar.TypeReg, body: []byte(group)},
		{name: "etc/passwd", mode: 0o644, typ: tar.TypeReg, body: []byte(passwd)},
		{name: "etc/ssl/", mode: 0o755, typ: tar.TypeDir},
		{name: "etc/ssl/certs/", mode: 0o755, typ: tar.TypeDir},
		{name: strings.TrimPrefix(CABundle, "/"), mode: 0o644, typ: tar.TypeReg, body: CABundlePEM()},
		{name: strings.TrimPrefix(BinaryPath, "/"), mode: 0o755, typ: tar.TypeReg, body: binary},
		{name: "home/", mode: 0o755, typ: tar.TypeDir},
		{name: "home/nonroot/", mode: 0o700, uid: UID, gid: GID, typ: tar.TypeDir},
		{name: "tmp/", mode: 0o1777, typ: tar.TypeDir},
	}
	return files
}

// layerTar is the image's only layer: entries in a fixed order, every timestamp the
// same, no user or group names, so that the bytes depend only on the inputs.
func layerTar(o Options, binary []byte) ([]byte, error) {
	files := layerFiles(binary)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{
			Typeflag: f.typ, Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.gid,
			Size: int64(len(f.body)), ModTime: o.Created.UTC(), Format: tar.FormatPAX,
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Build assembles the image. Its manifest and config use the Docker v2 schema 2 media
// types, which is what the tarball format records: the digest Build returns is the
// digest crane pushes from the tarball.
func Build(o Options) (v1.Image, error) {
	if o.Version == "" || o.Revision == "" || o.Created.IsZero() || o.GOARCH == "" {
		return nil, errors.New("version, revision, created and GOARCH are required")
	}
	bin := o.Binary
	if bin == "" {
		dir, err := os.MkdirTemp("", "hearth-image-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "hearth")
		if err := BuildBinary(o, bin); err != nil {
			return nil, err
		}
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	layerBytes, err := layerTar(o, binary)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	})
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: o.Created.UTC()}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   created,
			CreatedBy: fmt.Sprintf("hack/image: hearth %s (%s), CA bundle, /data, /tmp", o.Version, o.Revision),
			Comment:   "built without a daemon by go-containerregistry",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = o.GOARCH
	cf.OS = "linux"
	cf.Created = created
	cf.Config = imageConfig(o)
	return mutate.ConfigFile(img, cf)
}

// WriteRootfs writes the layer's files under dir, with their modes, owners (when run as
// root, as in the Dockerfile's build stage) and times: what the Dockerfile copies into
// its scratch image, so that both builds hold the same files.
func WriteRootfs(dir string, binary []byte, created time.Time) error {
	files := layerFiles(binary)
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(strings.TrimSuffix(f.name, "/")))
		mode := os.FileMode(f.mode & 0o777)
		if f.mode&0o1000 != 0 {
			mode |= os.ModeSticky
		}
		switch f.typ {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.WriteFile(p, f.body, 0o644); err != nil {
				return err
			}
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
		if os.Geteuid() == 0 {
			if err := os.Lchown(p, f.uid, f.gid); err != nil {
				return err
			}
		}
	}
	// Times last: creating a file changes its directory's.
	for i := len(files) - 1; i >= 0; i-- {
		p := filepath.Join(dir, filepath.FromSlash(strings.TrimSuffix(files[i].name, "/")))
		if err := os.Chtimes(p, created, created); err != nil {
			return err
		}
	}
	return nil
}

// imageConfig is the image's runtime configuration (the Dockerfile's USER, WORKDIR,
// ENV, EXPOSE, VOLUME, LABEL, ENTRYPOINT and CMD say the same).
func imageConfig(o Options) v1.Config {
	return v1.Config{
		User:       fmt.Sprintf("%d:%d", UID, GID),
		Entrypoint: []string{BinaryPath},
		Cmd:        []string{"ingester"},
		WorkingDir: "/",
		Env: []string{
			"PATH=/",
			"SSL_CERT_FILE=" + CABundle,
			"TMPDIR=" + TmpDir,
		},
		ExposedPorts: map[string]struct{}{"4040/tcp": {}, "7946/tcp": {}},
		Volumes:      map[string]struct{}{DataDir: {}},
		Labels:       o.Labels(),
	}
}
