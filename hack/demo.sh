#!/usr/bin/env bash
# The demo: the operator running a 3-replica Ingester on a real (local) Kubernetes control
# plane, a real Go program profiling itself into it, and a top-10 table of the merged CPU
# profile. It builds what it needs (the control-plane binaries take about 10 minutes the
# first time, cached in ~/.cache/hearth), starts the end-to-end platform of test/e2e
# (kube-apiserver, etcd, kube-controller-manager, kube-scheduler, a node agent running each
# pod as a `hearth ingester` process on its own 127.x.y.z address, `hearth operator`),
# applies config/samples/hearth_v1alpha1_ingester_minimal.yaml, waits for it to be Ready,
# pushes profiles to a pod, queries them, and leaves everything running until Ctrl-C.
# Everything listens on loopback.
#
# DEMO_DURATION: how long the workload runs (20s). DEMO_DIR: the platform's directory
# (./data/demo, recreated each run). DEMO_EXIT=1: stop everything after the table.
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
K8S_VERSION=${K8S_VERSION:-v1.37.2}
export KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$PWD/bin/k8s/$K8S_VERSION}
dir=${DEMO_DIR:-$PWD/data/demo}
sample=config/samples/hearth_v1alpha1_ingester_minimal.yaml
name=$(awk '/^metadata:/{m=1} m && /^  name:/{print $2; exit}' "$sample")
start=$(date +%s)
step() { echo "==> [$(($(date +%s) - start))s] $*"; }

step "building bin/hearth, bin/demoapp and the platform (bin/e2e/platform)"
mkdir -p bin/e2e
go build -o bin/hearth ./cmd/hearth
go build -o bin/demoapp ./hack/demoapp
go build -o bin/e2e/platform ./test/e2e/cmd/platform

need=0
for b in kube-apiserver etcd kube-controller-manager kube-scheduler; do
  [ -x "$KUBEBUILDER_ASSETS/$b" ] || need=1
done
if [ $need = 1 ]; then
  step "building kube-apiserver, etcd, kube-controller-manager and kube-scheduler $K8S_VERSION from the Go module proxy"
  echo "    (first run only: about 10 minutes on 2 cores; cached in ~/.cache/hearth)"
  K8S_VERSION=$K8S_VERSION ./hack/build-k8s.sh
fi
if command -v kubectl >/dev/null 2>&1; then
  KUBECTL=$(command -v kubectl)
else
  # No kubectl on PATH: build it next to the control-plane binaries (same module, cached).
  KUBECTL=${HEARTH_CACHE:-$HOME/.cache/hearth}/k8s/$K8S_VERSION/kubectl
  if [ ! -x "$KUBECTL" ]; then
    step "building kubectl $K8S_VERSION (no kubectl on PATH; about 5 minutes once, cached in ~/.cache/hearth)"
    (cd "$(dirname "$KUBECTL")/src" && GOFLAGS=-mod=mod go build -o "$KUBECTL" k8s.io/kubernetes/cmd/kubectl)
  fi
fi

rm -rf "$dir"
mkdir -p "$dir"
export KUBECONFIG=$dir/kubeconfig
k() { "$KUBECTL" --request-timeout=10s "$@"; }

step "starting the platform in $dir (log: $dir/platform.log)"
./bin/e2e/platform -dir "$dir" -hearth "$PWD/bin/hearth" -ready-file "$dir/ready" >"$dir/platform.log" 2>&1 &
plat=$!
stopping=0
stop() {
  [ $stopping = 1 ] && return
  stopping=1
  echo
  step "stopping the platform and every pod"
  kill -TERM $plat 2>/dev/null || true
  # bounded: the platform stops each process within 5s, then SIGKILL
  for _ in $(seq 1 300); do kill -0 $plat 2>/dev/null || break; sleep 0.1; done
  kill -KILL $plat 2>/dev/null || true
  wait $plat 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM

for i in $(seq 1 240); do
  [ -f "$dir/ready" ] && break
  if ! kill -0 $plat 2>/dev/null; then echo "the platform exited:"; tail -30 "$dir/platform.log"; exit 1; fi
  if [ $((i % 20)) = 0 ]; then echo "    $(grep '^platform:' "$dir/platform.log" | tail -1)"; fi
  sleep 0.5
done
[ -f "$dir/ready" ] || { echo "the platform is not up after 120s:"; tail -30 "$dir/platform.log"; exit 1; }
step "platform up: the CRD is installed and hearth operator is running"
echo "    export KUBECONFIG=$KUBECONFIG"

step "applying $sample (image hearth:dev, which the node agent runs with bin/hearth)"
k apply -f "$sample"

step "waiting for ingester/$name to be Ready (up to 180s)"
ready=0
t0=$SECONDS
next=0
while [ $((SECONDS - t0)) -lt 180 ]; do
  want=$(k get ingester "$name" -o jsonpath='{.spec.replicas}' 2>/dev/null || true)
  got=$(k get ingester "$name" -o jsonpath='{.status.readyReplicas}' 2>/dev/null || true)
  avail=$(k get ingester "$name" -o jsonpath='{.status.conditions[?(@.type=="Available")].status}' 2>/dev/null || true)
  if [ -n "$want" ] && [ "${got:-0}" = "$want" ] && [ "$avail" = True ]; then ready=1; break; fi
  if [ $((SECONDS - t0)) -ge $next ]; then
    next=$((SECONDS - t0 + 5))
    pods=$(k get pods -l app.kubernetes.io/instance="$name" --no-headers 2>/dev/null | awk '{printf "%s%s:%s", sep, $1, $3; sep=" "}' || true)
    echo "    [$((SECONDS - t0))s] ready ${got:-0}/${want:-?}, available ${avail:-unknown}; pods: ${pods:-none yet}"
  fi
  sleep 1
done
if [ $ready != 1 ]; then
  echo "ingester/$name is not Ready after 180s:"
  k get ingesters,pods -o wide || true
  tail -20 "$dir/logs/hearth-operator.log" || true
  exit 1
fi
k get ingesters

ip=$(k get pods -l app.kubernetes.io/instance="$name" -o jsonpath='{.items[0].status.podIP}' 2>/dev/null || true)
pod=$(k get pods -l app.kubernetes.io/instance="$name" -o jsonpath='{.items[0].metadata.name}' 2>/dev/null || true)
[ -n "$ip" ] || { echo "no pod IP for ingester/$name"; k get pods -o wide; exit 1; }
url=http://$ip:4040
step "pushing: a real Go workload profiles itself with the Pyroscope SDK and pushes to $pod at $url every 5s (${DEMO_DURATION:-20s})"
echo "    (no kube-proxy here, so a pod IP rather than service/$name; the pod replicates each series to 3 ingesters)"
./bin/demoapp -url "$url" -duration "${DEMO_DURATION:-20s}" -upload-rate 5s

echo
step "kubectl get ingesters,pods -o wide"
k get ingesters,pods -o wide
echo
step "top 10 functions of the merged CPU profile (queried through $pod)"
./bin/hearth query -url "$url" -type process_cpu:cpu:nanoseconds:cpu:nanoseconds -selector '{service_name="hearth-demo"}' -n 10

cat <<MSG

The platform keeps running (took $(($(date +%s) - start))s to get here). In another shell:
  export KUBECONFIG=$KUBECONFIG
  kubectl get ingesters,pods -o wide
  curl -s $url/ring             # the ring as $pod sees it (-H 'Accept: application/json' for JSON)
  kubectl patch ingester $name --type=merge -p '{"spec":{"image":"hearth:dev-2"}}'   # a rolling update
  kubectl scale ingester/$name --replicas=5   # then --replicas=2: a drained scale-down
  kubectl patch ingester $name --type=merge -p '{"spec":{"storage":{"size":"20Gi"}}}'   # grow the volumes, pods keep running
  kubectl get ingester $name -o yaml          # status.rollout / status.scaleDown while they run
  ./bin/hearth query -url $url -types
  ./bin/demoapp -url $url -duration 60s       # push more
Pod IPs: kubectl get pods -o wide. Logs: $dir/logs (platform), $dir/node/logs (pods).
Ctrl-C stops everything (operator, pods, control plane).
MSG
if [ "${DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
wait $plat
