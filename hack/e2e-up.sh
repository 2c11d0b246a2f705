#!/usr/bin/env bash
# Starts the end-to-end platform (kube-apiserver, etcd, kube-controller-manager,
# kube-scheduler, the test node agent running pods as local hearth processes on loopback
# addresses, and `hearth operator`) and leaves it running until Ctrl-C.
#
#   hack/e2e-up.sh [-dir DIR] [-apply config/samples/hearth_v1alpha1_ingester_minimal.yaml] [-v]
#
# It prints the KUBECONFIG path. Needs the control-plane binaries (make k8s-bins).
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
K8S_VERSION="${K8S_VERSION:-v1.37.2}"
export KUBEBUILDER_ASSETS="${KUBEBUILDER_ASSETS:-$PWD/bin/k8s/$K8S_VERSION}"
go build -o bin/e2e/hearth ./cmd/hearth
exec go run ./test/e2e/cmd/platform -hearth "$PWD/bin/e2e/hearth" "$@"
