#!/usr/bin/env bash
# Builds versitygw, an Apache-2.0 S3-compatible server that serves a local directory,
# from the Go module proxy (nothing can be downloaded prebuilt here). The S3 tests
# (internal/s3test) run it on 127.0.0.1. The binary is cached outside the work tree,
# keyed by version, so a fresh clone reuses it. Prints the binary's path.
set -euo pipefail

VERSITYGW_VERSION=${VERSITYGW_VERSION:-v1.8.0}
dir=${HEARTH_CACHE:-$HOME/.cache/hearth}/bin
bin=$dir/versitygw-$VERSITYGW_VERSION

if [ ! -x "$bin" ]; then
  echo "build-versitygw: building versitygw $VERSITYGW_VERSION (about 1.5 minutes cold)" >&2
  start=$(date +%s)
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.versitygw-build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # Outside any module, so the project's go.mod plays no part.
  (cd "$tmp" && CGO_ENABLED=0 GOFLAGS=-mod=mod GOBIN="$tmp" \
    go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION")
  mv "$tmp/versitygw" "$bin.tmp.$$"
  mv "$bin.tmp.$$" "$bin"
  echo "build-versitygw: built in $(( $(date +%s) - start ))s" >&2
fi
echo "$bin"
