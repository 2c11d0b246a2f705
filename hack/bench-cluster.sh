#!/usr/bin/env bash
# Throughput and latency of a 3-ingester ring (RF 3, every push replicated to
# all three) against the same load as hack/bench-load.sh, pushed through one
# ingester; then the time a restarted ingester takes to be ACTIVE and ready
# again with its WAL. All on loopback ports.
# Usage: hack/bench-cluster.sh [duration]
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
dur=${1:-60s}
corpus=../shared/testdata/pprof
[ -d "$corpus" ] || { echo "bench-cluster: $corpus is not beside the project"; exit 1; }
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; done; rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
for f in "$corpus"/*; do
  case $(basename "$f") in invalid_utf8.pb.gz|dotnet-pprof-3.pb.gz) continue ;; esac
  cp "$f" "$work/corpus/"
done
go build -o bin/hearth ./cmd/hearth
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=(); ml=(); internal=()
for i in 0 1 2; do http+=("$(free)"); ml+=("$(free)"); internal+=("$(free)"); done
start_node() {
  local i=$1 joins=()
  for j in 0 1 2; do [ "$j" = "$i" ] || joins+=("-memberlist.join=127.0.0.1:${ml[$j]}"); done
  ./bin/hearth ingester -server.http-listen-address=127.0.0.1 -server.http-listen-port="${http[$i]}" \
    -server.internal-listen-address=127.0.0.1 -server.internal-listen-port="${internal[$i]}" \
    -data-dir="$work/data-$i" -storage.filesystem.dir="$work/bucket" -ingester.ring.instance-id="ingester-$i" \
    -memberlist.bind-port="${ml[$i]}" -ingester.ring.min-ready-duration=0s -log.level=warn "${joins[@]}" \
    >>"$work/ingester-$i.log" 2>&1 &
  pids[$i]=$!
}
wait_ready() { for _ in $(seq 1 600); do curl -fsS "http://127.0.0.1:$1/ready" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
for i in 0 1 2; do start_node $i; done
for i in 0 1 2; do wait_ready "${http[$i]}"; done
echo "3 ingesters ACTIVE; pushing through ingester-0 for $dur"
./bin/hearth load -url "http://127.0.0.1:${http[0]}" -dir "$work/corpus" -workers 4 -series 50 -duration "$dur" | tail -3
wal=$(du -sb "$work/data-2/wal" | awk '{print $1}')
kill -TERM "${pids[2]}"; wait "${pids[2]}" 2>/dev/null || true
s=$(date +%s.%N)
start_node 2
wait_ready "${http[2]}"
echo "ingester-2 restarted with $((wal/1048576)) MiB of WAL: ready (ACTIVE, WAL replayed) in $(python3 -c "import time; print(round(time.time()-$s,2))")s"
grep -h "wal replay done" "$work/ingester-2.log" | tail -1 || true
