#!/usr/bin/env bash
# Builds the hearth container image with no Docker daemon and no registry (hack/image,
# go-containerregistry): bin/hearth-image.tar, which `docker load` and crane read.
# The builder is compiled once per version of its module and cached outside the work
# tree, like the Kubernetes test binaries. Every timestamp in the image is the commit's
# time, so the same commit gives the same digest.
#
#   IMG=hearth:dev VERSION=dev ./hack/build-image.sh        (make image)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
IMG=${IMG:-hearth:dev}
VERSION=${VERSION:-dev}
GOARCH=${GOARCH:-$(go env GOARCH)}
OUT=${OUT:-$root/bin/hearth-image.tar}
REVISION=${REVISION:-$(git -C "$root" rev-parse HEAD)}
CREATED=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct)}
if [ -z "${REVISION_DIRTY_OK:-}" ] && [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
  echo "build-image: the work tree has uncommitted changes: the image is labelled $REVISION-dirty" >&2
  REVISION=$REVISION-dirty
fi

cache=${HEARTH_CACHE:-$HOME/.cache/hearth}/bin
key=$(cat "$root/hack/image/go.mod" "$root/hack/image/go.sum" "$root"/hack/image/*.go | sha256sum | cut -c1-16)
builder=$cache/hearth-image-builder-$key
if [ ! -x "$builder" ]; then
  mkdir -p "$cache"
  (cd "$root/hack/image" && CGO_ENABLED=0 go build -trimpath -o "$builder.tmp.$$" . && mv "$builder.tmp.$$" "$builder")
fi

exec "$builder" -repo "$root" -tag "$IMG" -version "$VERSION" -revision "$REVISION" \
  -created "$CREATED" -goarch "$GOARCH" -out "$OUT"
