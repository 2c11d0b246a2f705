package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	var (
		o       Options
		created int64
		tag     = flag.String("tag", "hearth:dev", "the image's name and tag in the tarball (what `docker load` names it)")
		out     = flag.String("out", "bin/hearth-image.tar", "the tarball to write")
		rootfs  = flag.String("rootfs", "", "instead of a tarball, write the image's files (with -binary) under this directory (the Dockerfile's build stage)")
	)
	flag.StringVar(&o.Repo, "repo", ".", "root of the hearth module")
	flag.StringVar(&o.Version, "version", "dev", "version (main.version, org.opencontainers.image.version)")
	flag.StringVar(&o.Revision, "revision", "", "commit id (main.revision, org.opencontainers.image.revision)")
	flag.StringVar(&o.Source, "source", "https://github.com/hearth-dev/hearth", "org.opencontainers.image.source")
	flag.Int64Var(&created, "created", 0, "Unix time of every timestamp in the image (the commit's time)")
	flag.StringVar(&o.GOARCH, "goarch", runtime.GOARCH, "architecture")
	flag.StringVar(&o.Binary, "binary", "", "a prebuilt linux hearth binary (default: build one)")
	flag.Parse()
	o.Created = time.Unix(created, 0)
	if *rootfs != "" {
		err := func() error {
			if o.Binary == "" {
				return fmt.Errorf("-rootfs needs -binary")
			}
			b, err := os.ReadFile(o.Binary)
			if err != nil {
				return err
			}
			return WriteRootfs(*rootfs, b, o.Created)
		}()
		if err != nil {
			fmt.Fprintln(os.Stderr, "image:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o, *tag, *out); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(o Options, tag, out string) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	if created := o.Created; created.Unix() <= 0 {
		return fmt.Errorf("-created is required (the commit's time, for a reproducible image)")
	}
	img, err := Build(o)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	st, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Printf("%s %s %s (%.1f MiB)\n", out, tag, digest, float64(st.Size())/(1<<20))
	return nil
}
