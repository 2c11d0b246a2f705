package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// dockerfile parses the top-level Dockerfile with BuildKit's parser, its
// instructions with BuildKit's linter: every warning fails the test.
func dockerfile(t *testing.T) ([]instructions.Stage, []instructions.ArgCommand, []byte) {
	t.Helper()
	dt, err := os.ReadFile(filepath.Join(repo, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile parser: %s (line %d)", w.Short, w.Location.Start.Line)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		t.Errorf("Dockerfile lint %s: %s %v", rule, msg, loc)
	}})
	stages, args, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return stages, args, dt
}

// TestDockerfileLint runs BuildKit's whole lint pass (what `docker build
// --check` reports: undefined variables, base image arguments, stage names,
// casing, JSON forms) on the Dockerfile for every target platform make image
// builds; no warning is allowed.
func TestDockerfileLint(t *testing.T) {
	_, _, dt := dockerfile(t)
	for _, arch := range []string{"amd64", "arm64"} {
		plat := ocispecs.Platform{OS: "linux", Architecture: arch}
		sm := llb.NewSourceMap(nil, "Dockerfile", "", dt)
		sm.Definition = &llb.Definition{} // the lint results' source; nothing is solved
		res, err := dockerfile2llb.DockerfileLint(context.Background(), dt, dockerfile2llb.ConvertOpt{
			Config:         dockerui.Config{BuildPlatforms: []ocispecs.Platform{plat}},
			SourceMap:      sm,
			TargetPlatform: &plat,
			MetaResolver:   offlineResolver{},
		})
		if err != nil {
			t.Fatalf("%s: lint: %v", arch, err)
		}
		for _, w := range res.Warnings {
			t.Errorf("%s: %s: %s (%s)", arch, w.RuleName, w.Detail, w.URL)
		}
		if res.Error != nil {
			t.Errorf("%s: %s", arch, res.Error.Message)
		}
	}
}

// offlineResolver answers BuildKit's base image lookups without a network: a
// linux image of the asked platform with a PATH, all the lint pass needs.
type offlineResolver struct{}

func (offlineResolver) ResolveImageConfig(_ context.Context, ref string, opt sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	plat := ocispecs.Platform{OS: "linux", Architecture: "amd64"}
	if opt.ImageOpt != nil && opt.ImageOpt.Platform != nil {
		plat = *opt.ImageOpt.Platform
	}
	cfg, err := json.Marshal(ocispecs.Image{Platform: plat, Config: ocispecs.ImageConfig{Env: []string{"PATH=/usr/local/go/bin:/usr/bin:/bin"}}})
	if err != nil {
		return "", "", nil, err
	}
	return ref, digest.FromBytes(cfg), cfg, nil
}

// TestDockerfileMatchesImage compares the Dockerfile with the image `make
// image` builds, instruction by instruction: the build (Go version, flags,
// ldflags), the files (hack/image's own layout, owners), and every config
// field (user, working directory, entrypoint, command, environment, ports,
// volume, labels).
func TestDockerfileMatchesImage(t *testing.T) {
	stages, metaArgs, _ := dockerfile(t)
	if len(stages) != 2 || stages[0].Name != "build" || stages[1].BaseName != "scratch" {
		t.Fatalf("want a build stage and a scratch image, got %d stages", len(stages))
	}
	gomod, err := os.ReadFile(filepath.Join(repo, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)[1]
	if len(metaArgs) != 1 || metaArgs[0].Args[0].Key != "GO_VERSION" || metaArgs[0].Args[0].ValueString() != string(goVersion) {
		t.Errorf("ARG GO_VERSION: want the go.mod's %s, got %v", goVersion, metaArgs)
	}
	if stages[0].BaseName != "golang:${GO_VERSION}" {
		t.Errorf("build stage FROM %s", stages[0].BaseName)
	}

	// The build stage: go build as BuildBinary runs it, then the image's files laid
	// out by WriteRootfs.
	var runs []string
	for _, c := range stages[0].Commands {
		if r, ok := c.(*instructions.RunCommand); ok {
			runs = append(runs, strings.Join(r.CmdLine, " "))
		}
	}
	wantBuild := fmt.Sprintf(`CGO_ENABLED=0 GOOS=linux GOARCH=${TARGETARCH} go build %s -ldflags "%s" -o /out/hearth ./cmd/hearth`,
		strings.Join(BuildFlags, " "), LDFlags("${VERSION}", "${REVISION}"))
	if !slices.Contains(runs, wantBuild) {
		t.Errorf("no RUN %s in the build stage: %q", wantBuild, runs)
	}
	wantRootfs := "cd hack/image && CGO_ENABLED=0 go run . -rootfs /rootfs -binary /out/hearth -created ${SOURCE_DATE_EPOCH}"
	if !slices.Contains(runs, wantRootfs) {
		t.Errorf("no RUN %s in the build stage: %q", wantRootfs, runs)
	}

	// The image.
	o := Options{Version: "${VERSION}", Revision: "${REVISION}", Source: "https://github.com/hearth-dev/hearth", Created: time.Unix(1, 0), GOARCH: "amd64"}
	var (
		user, workdir   string
		entrypoint, cmd []string
		env             []string
		ports, volumes  []string
		labels          = map[string]string{}
		copies          []string
	)
	for _, c := range stages[1].Commands {
		switch c := c.(type) {
		case *instructions.CopyCommand:
			copies = append(copies, fmt.Sprintf("from=%s chown=%s %s %s", c.From, c.Chown, strings.Join(c.SourcePaths, " "), c.DestPath))
		case *instructions.UserCommand:
			user = c.User
		case *instructions.WorkdirCommand:
			workdir = c.Path
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				env = append(env, kv.Key+"="+kv.Value)
			}
		case *instructions.ExposeCommand:
			ports = append(ports, c.Ports...)
		case *instructions.VolumeCommand:
			volumes = append(volumes, c.Volumes...)
		case *instructions.LabelCommand:
			for _, kv := range c.Labels {
				labels[kv.Key] = strings.Trim(kv.Value, `"`) // quotes go at expansion
			}
		case *instructions.EntrypointCommand:
			if c.PrependShell {
				t.Error("ENTRYPOINT in shell form")
			}
			entrypoint = c.CmdLine
		case *instructions.CmdCommand:
			if c.PrependShell {
				t.Error("CMD in shell form")
			}
			cmd = c.CmdLine
		case *instructions.ArgCommand:
		default:
			t.Errorf("the image stage has a %s instruction make image has no equivalent of", c.Name())
		}
	}
	wantCopies := []string{
		"from=build chown= /rootfs/ /",
		fmt.Sprintf("from=build chown=%d:%d /rootfs/data/ %s/", UID, GID, DataDir),
		fmt.Sprintf("from=build chown=%d:%d /rootfs/home/nonroot/ /home/nonroot/", UID, GID),
	}
	if !slices.Equal(copies, wantCopies) {
		t.Errorf("COPY: %q, want %q", copies, wantCopies)
	}
	img := imageConfig(o)
	check := func(what string, got, want any) {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: Dockerfile %v, make image %v", what, got, want)
		}
	}
	check("USER", user, img.User)
	check("WORKDIR", workdir, img.WorkingDir)
	check("ENTRYPOINT", entrypoint, img.Entrypoint)
	check("CMD", cmd, img.Cmd)
	slices.Sort(env)
	check("ENV", env, sorted(img.Env))
	check("EXPOSE", sorted(ports), sortedKeys(img.ExposedPorts))
	check("VOLUME", sorted(volumes), sortedKeys(img.Volumes))
	wantLabels := o.Labels()
	wantLabels["org.opencontainers.image.created"] = "${CREATED}"
	check("LABEL", labels, wantLabels)
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

func sortedKeys(m map[string]struct{}) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestWriteRootfs: the files the Dockerfile copies are the layer's files,
// with the same modes and contents.
func TestWriteRootfs(t *testing.T) {
	dir := t.TempDir()
	bin := []byte("#!/bin/true\n")
	created := time.Unix(1700000000, 0)
	if err := WriteRootfs(dir, bin, created); err != nil {
		t.Fatal(err)
	}
	want := map[string]file{}
	for _, f := range layerFiles(bin) {
		want[strings.TrimSuffix(f.name, "/")] = f
	}
	seen := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(p, dir+"/"))
		f, ok := want[rel]
		if !ok {
			t.Errorf("%s is not in the layer", rel)
			return nil
		}
		seen++
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		mode := int64(fi.Mode().Perm())
		if fi.Mode()&os.ModeSticky != 0 {
			mode |= 0o1000
		}
		if mode != f.mode {
			t.Errorf("%s: mode %o, the layer's %o", rel, mode, f.mode)
		}
		if !fi.ModTime().Equal(created) {
			t.Errorf("%s: time %v", rel, fi.ModTime())
		}
		if !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(b, f.body) {
				t.Errorf("%s: contents differ (%v)", rel, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(want) {
		t.Errorf("%d files written, the layer has %d", seen, len(want))
	}
}
