#!/usr/bin/env bash
# Builds the Kubernetes control-plane binaries the operator's tests run against
# (kube-apiserver, etcd, kube-controller-manager, kube-scheduler) from the Go module
# proxy: nothing can be downloaded prebuilt here. The outputs are cached outside the
# work tree (keyed by version) so a fresh clone, such as CI's, reuses them, and are
# linked into the git-ignored bin/k8s/<version>/.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
STAGING_VERSION=${STAGING_VERSION:-v0.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.0}
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${HEARTH_CACHE:-$HOME/.cache/hearth}/k8s/$K8S_VERSION
out=$root/bin/k8s/$K8S_VERSION
bins=(kube-apiserver kube-controller-manager kube-scheduler etcd)

mkdir -p "$cache" "$out"
# One build at a time per cache (concurrent test runs, worktrees): a second run waits for
# the first and then finds the binaries built.
if command -v flock >/dev/null; then exec 9>"$cache/.lock"; flock 9; fi
missing=()
for b in "${bins[@]}"; do [ -x "$cache/$b" ] || missing+=("$b"); done

if [ ${#missing[@]} -gt 0 ]; then
  echo "build-k8s: building ${missing[*]} for $K8S_VERSION (about 10 minutes cold)" >&2
  mod=$cache/src
  mkdir -p "$mod"
  cd "$mod"
  export CGO_ENABLED=0 GOFLAGS=-mod=mod
  if [ ! -f go.mod ]; then
    go mod init k8sbin >/dev/null 2>&1
    go mod edit -require=k8s.io/kubernetes@"$K8S_VERSION"
    # k8s.io/kubernetes points its staging modules at ./staging; a dependent must name versions.
    for m in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider \
      cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api \
      cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice externaljwt \
      kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics \
      mount-utils pod-security-admission sample-apiserver streaming; do
      if go list -m "k8s.io/$m@$STAGING_VERSION" >/dev/null 2>&1; then
        go mod edit -replace="k8s.io/$m=k8s.io/$m@$STAGING_VERSION"
      fi
    done
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
    go mod tidy
  fi
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
  for b in "${missing[@]}"; do
    start=$(date +%s)
    case $b in
      etcd) go build -trimpath -ldflags="-s -w" -o "$cache/.$b.tmp" go.etcd.io/etcd/server/v3 ;;
      *) go build -trimpath -ldflags="$ldflags" -o "$cache/.$b.tmp" "k8s.io/kubernetes/cmd/$b" ;;
    esac
    mv "$cache/.$b.tmp" "$cache/$b"
    echo "build-k8s: $b built in $(( $(date +%s) - start ))s" >&2
  done
fi

for b in "${bins[@]}"; do ln -sf "$cache/$b" "$out/$b"; done
echo "$out"
