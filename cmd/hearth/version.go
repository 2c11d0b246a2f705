package main

import (
	"context"
	"fmt"
)

// version and revision are set at build time with
// -ldflags "-X main.version=... -X main.revision=..." (`make image` does).
var (
	version  = "dev"
	revision = "unknown"
)

func init() {
	register("version", "print the version", func(context.Context, []string) error {
		fmt.Printf("hearth %s (revision %s)\n", version, revision)
		return nil
	})
}
