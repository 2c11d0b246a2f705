#!/usr/bin/env bash
# Overload on a 3-ingester ring (issue 22): WORKERS clients (default 128, split
# over the three ingesters as a load balancer would) push the corpus's largest
# profile (a Go heap, 316 KB gzipped) as fast as they can for DURATION at a
# default ring (RF 3), beside one client (service_name=checked) whose every
# acknowledged push is queried afterwards (`hearth load -check`). Prints the
# answers by code (200 = acknowledged; "transport" would be a reset or
# refused connection), each ingester's peak RSS (VmHWM) and whether it still
# runs, and the check.
# Usage: hack/bench-overload-ring.sh [duration] [extra ingester flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
dur=${1:-20s}; shift || true
profile=${PROFILE:-../shared/testdata/pprof/heap_go_truncated_1.pb.gz}
[ -f "$profile" ] || { echo "bench-overload-ring: $profile is not beside the project"; exit 1; }
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; done; [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"' EXIT
mkdir -p "$work/corpus" && cp "$profile" "$work/corpus/"
bin=${HEARTH_BIN:-bin/hearth}
[ -n "${HEARTH_BIN:-}" ] || go build -o bin/hearth ./cmd/hearth
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=(); ml=(); internal=()
for i in 0 1 2; do http+=("$(free)"); ml+=("$(free)"); internal+=("$(free)"); done
for i in 0 1 2; do
  joins=()
  for j in 0 1 2; do [ "$j" = "$i" ] || joins+=("-memberlist.join=127.0.0.1:${ml[$j]}"); done
  "$bin" ingester -server.http-listen-address=127.0.0.1 -server.http-listen-port="${http[$i]}" \
    -server.internal-listen-address=127.0.0.1 -server.internal-listen-port="${internal[$i]}" \
    -data-dir="$work/data-$i" -storage.filesystem.dir="$work/bucket" -ingester.ring.instance-id="ingester-$i" \
    -memberlist.bind-port="${ml[$i]}" -ingester.ring.min-ready-duration=0s -log.level=warn "${joins[@]}" "$@" \
    >"$work/ingester-$i.log" 2>&1 &
  pids[$i]=$!
done
for i in 0 1 2; do
  for _ in $(seq 1 600); do curl -fsS "http://127.0.0.1:${http[$i]}/ready" >/dev/null 2>&1 && break; sleep 0.1; done
done
w=${WORKERS:-128}
echo "3 ingesters ready; $w clients for $dur (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
for i in 0 1 2; do
  n=$(( w / 3 + (i < w % 3 ? 1 : 0) ))
  "$bin" load -url "http://127.0.0.1:${http[$i]}" -dir "$work/corpus" -workers "$n" -series 50 -duration "$dur" >"$work/load-$i.out" 2>&1 &
  lp[$i]=$!
done
set +e
"$bin" load -url "http://127.0.0.1:${http[1]}" -dir "$work/corpus" -workers 1 -series 5 -service checked -duration "$dur" -check >"$work/check.out" 2>&1
crc=$?
for i in 0 1 2; do wait "${lp[$i]}"; done
set -e
for i in 0 1 2; do echo "--- clients at ingester-$i"; grep -E "^profiles|^latency|^errors|^first|^error kind" "$work/load-$i.out" || tail -3 "$work/load-$i.out"; done
echo "--- checked client (exit $crc)"; grep -E "^profiles|^latency|^errors|^first|^check" "$work/check.out" || tail -5 "$work/check.out"
for i in 0 1 2; do
  if kill -0 "${pids[$i]}" 2>/dev/null; then state=running; else state=EXITED; fi
  rss=$(awk '/VmHWM/{printf "%.0f MiB", $2/1024}' "/proc/${pids[$i]}/status" 2>/dev/null || echo "?")
  echo "ingester-$i: $state, peak RSS $rss, $(grep -c . "$work/ingester-$i.log") log lines"
done
echo "--- ingester log messages (distinct, first 8)"; cat "$work"/ingester-*.log | sed -E 's/^.*msg="?([^"]*)"?.*(err="[^"]{0,160}).*$/\1 \2/' | sort | uniq -c | sort -rn | head -8
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
