#!/usr/bin/env bash
# Restart time of one `hearth ingester` with a large WAL (issue 17): load the
# shared corpus (as hack/bench-load.sh does) until the WAL holds WAL_MB MiB,
# then (1) kill -9 it and time a start until /ready answers 200 (a full WAL
# replay), and (2) stop it gracefully (it runs with
# -ingester.flush-on-stop-wal-bytes=256MiB, the operator's default: the head is
# written into local blocks) and time that stop and the next
# start until /ready. It prints the head snapshots the ingester wrote and
# loaded (none with -ingester.head-snapshot-wal-bytes=0 or an older binary).
# Usage: hack/bench-restart.sh [wal MiB, default 256] [extra ingester flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
walmb=${1:-256}; shift || true
corpus=../shared/testdata/pprof
[ -d "$corpus" ] || { echo "bench-restart: $corpus is not beside the project"; exit 1; }
work=$(mktemp -d)
ing=
trap '[ -z "$ing" ] || { kill -9 $ing; wait $ing; } 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
for f in "$corpus"/*; do
  case $(basename "$f") in invalid_utf8.pb.gz|dotnet-pprof-3.pb.gz) continue ;; esac
  cp "$f" "$work/corpus/"
done
bin=${HEARTH_BIN:-bin/hearth}
[ -n "${HEARTH_BIN:-}" ] || go build -o bin/hearth ./cmd/hearth
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(freeport); iport=$(freeport); mport=$(freeport)
now() { date +%s.%N; }
start_ingester() {
  "$bin" ingester -server.http-listen-address=127.0.0.1 -server.http-listen-port="$port" \
    -server.internal-listen-address=127.0.0.1 -server.internal-listen-port="$iport" \
    -memberlist.bind-port="$mport" \
    -data-dir="$work/data" -log.level=info -ingester.max-head-bytes=8GiB -ingester.flush-on-stop-wal-bytes=256MiB "$@" >>"$work/ingester.log" 2>&1 &
  ing=$!
}
wait_ready() { # prints seconds from $1 until /ready is 200 (gives up after 20 minutes)
  local n=0
  until curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do
    n=$((n + 1)); [ $n -lt 24000 ] || { echo "not ready after 20 minutes; log:" >&2; tail -5 "$work/ingester.log" >&2; exit 1; }
    kill -0 $ing 2>/dev/null || { echo "the ingester exited; log:" >&2; tail -5 "$work/ingester.log" >&2; exit 1; }
    sleep 0.05
  done
  python3 -c "import time; print(round(time.time()-$1,2))"
}
walbytes() { find "$work/data" -name '*.wal' -printf '%s\n' 2>/dev/null | awk '{s+=$1} END{print s+0}'; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' /proc/$1/stat; }
fill() {
  "$bin" load -url "http://127.0.0.1:$port" -dir "$work/corpus" -workers 4 -series 50 -duration 600s >/dev/null 2>&1 &
  local load=$!
  local n=0
  while [ "$(walbytes)" -lt $((walmb << 20)) ]; do
    n=$((n + 1)); [ $n -lt 2400 ] || { echo "the WAL did not reach $walmb MiB in 20 minutes" >&2; exit 1; }
    sleep 0.5
  done
  kill $load; wait $load 2>/dev/null || true
}

start_ingester "$@"; t0=$(now); t=$(wait_ready "$t0"); echo "first start: ${t}s"
t0=$(now); fill
echo "WAL: $(( $(walbytes) >> 20 )) MiB, filled in $(python3 -c "import time; print(round(time.time()-$t0,1))")s"
kill -9 $ing; wait $ing 2>/dev/null || true
start_ingester "$@"; t0=$(now); t=$(wait_ready "$t0")
echo "kill -9, then start until ready: ${t}s ($(cpu_s $ing) CPU-s); $(grep -o '"wal replay done".*' "$work/ingester.log" | tail -1 | grep -oE '(seconds|mb_per_second)[=":]+[0-9.]+' | tr '\n' ' ')"

# Head snapshots (-ingester.head-snapshot-wal-bytes): those written while
# filling, and what the start after kill -9 loaded and replayed after it.
grep -E 'head snapshot (written|loaded|ignored)|restart from the head snapshot' "$work/ingester.log" | sed 's/^/  /' || true

t0=$(now); kill -TERM $ing; wait $ing 2>/dev/null || true
echo "graceful stop, flush-on-stop-wal-bytes=256MiB: $(python3 -c "import time; print(round(time.time()-$t0,2))")s"
start_ingester "$@"; t0=$(now); t=$(wait_ready "$t0")
echo "start after it until ready: ${t}s ($(cpu_s $ing) CPU-s), WAL left $(( $(walbytes) >> 20 )) MiB"
