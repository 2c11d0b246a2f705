#!/usr/bin/env bash
# Whole-system throughput as ../shared/PERFORMANCE.md measures it: the shared
# corpus (less invalid_utf8 and dotnet-pprof-3), 50 series per file, 4
# concurrent clients for DURATION, against one `hearth ingester`; the server's
# CPU seconds and peak RSS from /proc, bucket bytes after a final flush.
# Usage: hack/bench-load.sh [duration] [extra ingester flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
dur=${1:-60s}; shift || true
corpus=../shared/testdata/pprof
[ -d "$corpus" ] || { echo "bench-load: $corpus is not beside the project"; exit 1; }
work=$(mktemp -d)
trap 'kill $ing 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
for f in "$corpus"/*; do
  case $(basename "$f") in invalid_utf8.pb.gz|dotnet-pprof-3.pb.gz) continue ;; esac
  cp "$f" "$work/corpus/"
done
# HEARTH_BIN: an already built binary to measure (e.g. an older commit's), else bin/hearth from here.
bin=${HEARTH_BIN:-bin/hearth}
[ -n "${HEARTH_BIN:-}" ] || go build -o bin/hearth ./cmd/hearth
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
iport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mlport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" ingester -server.http-listen-address=127.0.0.1 -server.http-listen-port="$port" \
  -server.internal-listen-address=127.0.0.1 -server.internal-listen-port="$iport" -memberlist.bind-port="$mlport" \
  -data-dir="$work/data" -log.level=warn "$@" >"$work/ingester.log" 2>&1 &
ing=$!
for i in $(seq 1 300); do curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break; sleep 0.1; done
# MAX_PUSHES=n: stop after n pushes (the same work whatever the machine's speed; duration is then a cap).
# RATE=n: n pushes a second in total (0: as fast as the 4 clients go).
# CPU_PROFILE=file: the server's CPU profile over 30 s of the load, from its 5th second.
[ -z "${CPU_PROFILE:-}" ] || { sleep 5; curl -fsS "http://127.0.0.1:$iport/debug/pprof/profile?seconds=30" -o "$CPU_PROFILE" || true; } &
"$bin" load -url "http://127.0.0.1:$port" -dir "$work/corpus" -workers 4 -series 50 -duration "$dur" -max-pushes "${MAX_PUSHES:-0}" -rate "${RATE:-0}" | tail -8
read -r utime stime < <(awk '{print $14, $15}' /proc/$ing/stat)
hz=$(getconf CLK_TCK)
cpu=$(python3 -c "print(round(($utime+$stime)/$hz,1))")
rss=$(awk '/VmHWM/{print $2/1024 " MiB"}' /proc/$ing/status)
metrics=$(curl -fsS "http://127.0.0.1:$port/metrics")
pushes=$(awk '/^hearth_received_profiles_total/{s+=$2} /^hearth_discarded_profiles_total/{s-=$2} END{print s}' <<<"$metrics")
headb=$(awk '/^hearth_head_bytes/{s+=$2} END{print s+0}' <<<"$metrics")
series=$(awk '/^hearth_head_series/{s+=$2} END{print s+0}' <<<"$metrics")
# HEAP_PROFILE=file: the server's heap profile (in use and allocated) at the end of the load.
[ -z "${HEAP_PROFILE:-}" ] || curl -fsS "http://127.0.0.1:$iport/debug/pprof/heap" -o "$HEAP_PROFILE" || true
start=$(date +%s.%N)
curl -fsS -X POST "http://127.0.0.1:$iport/ingester/flush?wait=true" >/dev/null
flushs=$(python3 -c "import time; print(round(time.time()-$start,2))")
bucket=$(du -sb "$work/data/bucket" | awk '{print $1}')
echo "server: ${cpu} CPU-s, peak RSS ${rss}, ${pushes} profiles accepted, $(python3 -c "print(round($pushes/max($cpu,0.001)))") profiles per CPU-second"
echo "head: $(python3 -c "print(round($headb/2**20,1))") MiB (hearth_head_bytes), $series active series, $(python3 -c "print(round($headb/max($series,1)))") head bytes per active series"
echo "flush of the head: ${flushs}s; bucket: $bucket bytes, $(python3 -c "print(round($bucket/max($pushes,1)))") B per push"
start=$(date +%s.%N)
kill -TERM $ing; wait $ing || true
echo "graceful stop: $(python3 -c "import time; print(round(time.time()-$start,2))")s"
