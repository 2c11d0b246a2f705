#!/usr/bin/env bash
# Cardinality: the memory one `hearth ingester` takes per active series with
# small profiles. `hearth load` pushes the shared corpus's cpu.pb.gz (a Go CPU
# profile: 7 samples, two sample types, so two head series per label set)
# under LABEL_SETS distinct instance values, PER_PUSH series per request, ROWS
# pushes per label set (rows per series; 240 is an hour at 15 s, the default
# -ingester.max-block-duration). Reported: the server's Go heap after a forced
# GC and its RSS, before and after, per head series and per row.
# Usage: LABEL_SETS=500000 ROWS=1 hack/bench-cardinality.sh [extra ingester flags...]
# HEARTH_BIN: an already built ingester binary to measure (e.g. an older commit's).
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
sets=${LABEL_SETS:-500000}
per=${PER_PUSH:-100}
rows=${ROWS:-1}
profile=../shared/testdata/pprof/cpu.pb.gz
[ -f "$profile" ] || { echo "bench-cardinality: $profile is not beside the project"; exit 1; }
work=$(mktemp -d)
trap 'kill $ing 2>/dev/null || true; [ -z "${KEEP_LOG:-}" ] || cp "$work/ingester.log" "$KEEP_LOG"; rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
cp "$profile" "$work/corpus/"
go build -o bin/hearth ./cmd/hearth # the load client (and the ingester unless HEARTH_BIN)
bin=${HEARTH_BIN:-bin/hearth}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
iport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# No series limits, and a head that is not cut by size during the run.
"$bin" ingester -server.http-listen-address=127.0.0.1 -server.http-listen-port="$port" \
  -server.internal-listen-address=127.0.0.1 -server.internal-listen-port="$iport" \
  -data-dir="$work/data" -log.level=warn -limits.max-series-per-tenant=0 \
  -ingester.max-head-bytes=8GiB "$@" >"$work/ingester.log" 2>&1 &
ing=$!
for i in $(seq 1 1200); do curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$port/ready" >/dev/null || { echo "bench-cardinality: the ingester is not ready:"; tail -20 "$work/ingester.log"; exit 1; }
# heap: the Go heap in use after a forced GC (the heap profile endpoint's gc=1).
heap() {
  curl -fsS "http://127.0.0.1:$iport/debug/pprof/heap?gc=1" -o /dev/null
  curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^go_memstats_heap_alloc_bytes /{print $2}'
}
rss() { awk '/VmRSS/{print $2*1024}' /proc/$ing/status; }
heap0=$(heap); rss0=$(rss)
start=$(date +%s)
bin/hearth load -url "http://127.0.0.1:$port" -dir "$work/corpus" -workers 4 -series "$sets" \
  -series-per-push "$per" -max-pushes $(( (sets * rows + per - 1) / per )) -duration 0 | tail -4
secs=$(( $(date +%s) - start ))
heap1=$(heap); rss1=$(rss)
metrics=$(curl -fsS "http://127.0.0.1:$port/metrics")
headb=$(awk '/^hearth_head_bytes/{s+=$2} END{print s+0}' <<<"$metrics")
series=$(awk '/^hearth_head_series/{s+=$2} END{print s+0}' <<<"$metrics")
nrows=$(awk '/^hearth_head_profiles/{s+=$2} END{print s+0}' <<<"$metrics")
# HEAP_PROFILE=file: the server's heap profile at the end.
[ -z "${HEAP_PROFILE:-}" ] || curl -fsS "http://127.0.0.1:$iport/debug/pprof/heap" -o "$HEAP_PROFILE" || true
python3 - "$series" "$nrows" "$heap0" "$heap1" "$rss0" "$rss1" "$headb" "$secs" <<'PY'
import sys
series, nrows, heap0, heap1, rss0, rss1, headb, secs = (float(x) for x in sys.argv[1:])
s = max(series, 1)
print(f"{int(series)} active series, {int(nrows)} rows ({nrows/s:.0f} per series), pushed in {int(secs)} s")
print(f"Go heap after GC: {heap0/2**20:.0f} -> {heap1/2**20:.0f} MiB, {(heap1-heap0)/s:.0f} B per series")
print(f"RSS: {rss0/2**20:.0f} -> {rss1/2**20:.0f} MiB, {(rss1-rss0)/s:.0f} B per series")
print(f"hearth_head_bytes: {headb/2**20:.0f} MiB, {headb/s:.0f} B per series")
print(f"series in 8 GiB at the heap's bytes per series: {8*2**30/max((heap1-heap0)/s,1)/1e6:.1f} M")
PY
kill -TERM $ing; wait $ing || true
