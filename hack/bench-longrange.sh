#!/usr/bin/env bash
# Week-long reads from a compacted bucket, side by side with Pyroscope
# (issue 25): a week-long flame graph (querier.v1 SelectMergeStacktraces) and
# a week-long SelectSeries (group_by instance: SERIES series, hourly step),
# Hearth reading its compacted blocks from the bucket, Pyroscope (when
# PYROSCOPE_BIN names a v1 server binary) reading its own through its
# store-gateway. Everything listens and advertises on 127.0.0.1 only.
#
# Data: hack/benchlongrange pushes PROFILE (the corpus' Go CPU profile, its
# pprof labels dropped) re-stamped every STEP for SERIES series over the 7
# days [T0, T1) with T1 the last midnight (UTC) at least 2 h ago, plus one
# stamp at T1+30m (so that Pyroscope's compactor, which compacts a range only
# once a block is newer than it, compacts the last day; it is outside the
# queries' range). The same data to both servers:
#   Hearth: pushed to one ingester (-limits.reject-older-than=0), flushed and
#     uploaded (/ingester/flush?wait=true), compacted by its compactor (ranges
#     1h,4h,24h, every 5 s, deletion delay 0) until no ingester block of the
#     week is left in the bucket: 7 day blocks.
#   Pyroscope: pushed to -target=all (-validation.reject-older-than=0; its
#     ingester keeps 1 h heads by profile time), stopped (which flushes and
#     uploads the heads), restarted with its compactor every 5 s (ranges
#     1h,24h, no first-level wait, deletion delay 0) until no level-1 block of
#     the week is left: 7 day blocks.
# Each bucket is checked (the script prints its blocks) before timing.
#
# Measurement: per kind (merge, series) and round, each server started fresh
# on its bucket (empty local data directory: Hearth's compactor off;
# Pyroscope's compactor idle, -querier.query-store-after=1h so that only its
# store-gateway is asked), two idle seconds, then QUERIES sequential queries.
# Reported: first (cold) and median latency, server CPU per query (utime+stime
# from /proc over the queries / QUERIES), VmHWM after the queries, the bytes
# read from the bucket (Hearth: hearth_objstore_bucket_operation_fetched_bytes_total;
# Pyroscope: its objstore fetched-bytes metrics) and the server's rchar
# (/proc/<pid>/io) over the queries. The answers (flame graph total and node
# count; series, points, sum) must be the same on both servers or the script
# fails. ROUNDS rounds, the servers' order alternating.
#
# CPU_PROFILE_DIR=dir: also save Hearth's CPU profile over the queries of each
# measurement (/debug/pprof/profile on its internal port).
#
# Usage: [PYROSCOPE_BIN=path] [SERIES=1000] [STEP=1h] [ROUNDS=2] [QUERIES=5]
#        [KINDS="merge series"] [KEEP=dir] hack/bench-longrange.sh
# KEEP=dir keeps the loaded buckets in dir and reuses them when they exist
# (same SERIES, STEP and week) so that a rerun skips the load.
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
series=${SERIES:-1000}
step=${STEP:-1h}
rounds=${ROUNDS:-2}
queries=${QUERIES:-5}
kinds=${KINDS:-merge series}
profile_file=${PROFILE:-/work/shared/testdata/pprof/go.cpu.labels.pprof}
work=$(mktemp -d)
pid=""
stop_server() {
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 240); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}
trap 'stop_server; rm -rf "$work"' EXIT

bin=${HEARTH_BIN:-bin/hearth}
[ -n "${HEARTH_BIN:-}" ] || go build -o bin/hearth ./cmd/hearth
go build -o "$work/benchlongrange" ./hack/benchlongrange
client=$work/benchlongrange
servers=(hearth)
if [ -n "${PYROSCOPE_BIN:-}" ]; then
  [ -x "$PYROSCOPE_BIN" ] || { echo "bench-longrange: PYROSCOPE_BIN=$PYROSCOPE_BIN is not executable"; exit 1; }
  servers+=(pyroscope)
fi
hz=$(getconf CLK_TCK)
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
hwm_mib() { awk '/VmHWM/{printf "%.0f", $2/1024}' "/proc/$1/status"; }
rchar() { awk '/^rchar/{print $2}' "/proc/$1/io"; }

now=$(date +%s)
t1=$(( (now - 7200) / 86400 * 86400 ))
t0=$(( t1 - 7 * 86400 ))
keep=${KEEP:-}
if [ -n "$keep" ]; then
  mkdir -p "$keep"
  base=$keep/s$series-$step-$t0
else
  base=$work
fi
mkdir -p "$base"

# start_hearth <data-dir> <bucket> <compactor on|off>: sets pid, url, iurl.
start_hearth() {
  local d=$1 bucket=$2 comp=$3 port iport mport
  port=$(freeport); iport=$(freeport); mport=$(freeport)
  mkdir -p "$d"
  local cargs=(-compactor.enabled=false)
  if [ "$comp" = on ]; then
    cargs=(-compactor.enabled=true -compactor.compaction-interval=5s -compactor.first-level-compaction-wait-period=30m
      -compactor.deletion-delay=0s -compactor.block-ranges=1h,4h,24h)
  fi
  "$bin" ingester -server.http-listen-address=127.0.0.1 -server.http-listen-port="$port" \
    -server.internal-listen-address=127.0.0.1 -server.internal-listen-port="$iport" \
    -memberlist.bind-addr=127.0.0.1 -memberlist.advertise-addr=127.0.0.1 -memberlist.bind-port="$mport" \
    -ingester.ring.instance-addr=127.0.0.1 -ingester.ring.min-ready-duration=0s \
    -limits.reject-older-than=0 -querier.max-query-length=0 -querier.max-query-lookback=0 \
    -querier.max-fetched-bytes-per-query=0 \
    "${cargs[@]}" -storage.filesystem.dir="$bucket" \
    -data-dir="$d/data" -log.level=warn >>"$d/server.log" 2>&1 &
  pid=$!
  url=http://127.0.0.1:$port
  iurl=http://127.0.0.1:$iport
  pprof_url=$iurl/debug/pprof/profile
}
# start_pyroscope <dir> <bucket> <compactor on|off>
start_pyroscope() {
  local d=$1 bucket=$2 comp=$3 port gport mport a=127.0.0.1
  port=$(freeport); gport=$(freeport); mport=$(freeport)
  mkdir -p "$d"
  local cargs=(-compactor.compaction-interval=24h -compactor.cleanup-interval=24h)
  if [ "$comp" = on ]; then
    cargs=(-compactor.compaction-interval=5s -compactor.cleanup-interval=5s -compactor.first-level-compaction-wait-period=0s
      -compactor.deletion-delay=0s -compactor.block-ranges=1h,24h)
  fi
  (cd "$d" && exec "$PYROSCOPE_BIN" -target=all \
    -server.http-listen-address=$a -server.http-listen-port="$port" \
    -server.grpc-listen-address=$a -server.grpc-listen-port="$gport" \
    -memberlist.bind-addr=$a -memberlist.bind-port="$mport" -memberlist.advertise-addr=$a -memberlist.advertise-port="$mport" \
    -ingester.lifecycler.addr=$a -distributor.ring.instance-addr=$a -compactor.ring.instance-addr=$a \
    -query-scheduler.ring.instance-addr=$a -query-frontend.instance-addr=$a \
    -store-gateway.sharding-ring.instance-addr=$a -overrides-exporter.ring.instance-addr=$a \
    -storage.backend=filesystem -storage.filesystem.dir="$bucket" -pyroscopedb.data-path="$d/data" \
    -compactor.data-dir="$d/compactor" -blocks-storage.bucket-store.sync-dir="$d/sync" \
    -usage-stats.enabled=false -self-profiling.disable-push=true -tracing.enabled=false \
    -ingester.min-ready-duration=0s \
    -distributor.ingestion-rate-limit-mb=100000 -distributor.ingestion-burst-size-mb=100000 \
    -ingester.max-global-series-per-tenant=0 -ingester.max-local-series-per-tenant=0 \
    -validation.reject-older-than=0 -querier.max-query-length=0 -querier.max-query-lookback=0 \
    -querier.query-store-after=1h -blocks-storage.bucket-store.ignore-blocks-within=0s \
    -blocks-storage.bucket-store.ignore-deletion-marks-delay=0s \
    "${cargs[@]}" -log.level=warn) >>"$d/server.log" 2>&1 &
  pid=$!
  url=http://127.0.0.1:$port
  pprof_url=$url/debug/pprof/profile
}
wait_ready() {
  local server=$1 d=$2
  for _ in $(seq 1 1200); do
    curl -fsS "$url/ready" 2>/dev/null | grep -q ready && return 0
    kill -0 "$pid" 2>/dev/null || { echo "$server exited:"; tail -30 "$d/server.log"; exit 1; }
    sleep 0.1
  done
  echo "$server not ready after 120 s"; tail -30 "$d/server.log"; exit 1
}

# blocks <bucket>: "<level> <min unix s> <max unix s>" per block (meta.json) in the bucket.
blocks() {
  python3 - "$1" <<'EOF'
import json, os, sys
for root, dirs, files in os.walk(sys.argv[1]):
    if "meta.json" not in files:
        continue
    m = json.load(open(os.path.join(root, "meta.json")))
    if "min_time_ns" in m:  # Hearth
        lvl = (m.get("compaction") or {}).get("level", 0)
        lo, hi = m["min_time_ns"] // 10**9, m["max_time_ns"] // 10**9
    else:  # Pyroscope (model.Time: seconds in JSON); its ingesters' blocks are level 1
        lvl = m.get("compaction", {}).get("level", 1) - 1
        lo, hi = int(float(m["minTime"])), int(float(m["maxTime"]))
    print(lvl, lo, hi, root)
EOF
}
# compacted <bucket>: true when every block of [t0, t1) is compacted (level > 0).
compacted() {
  local out; out=$(blocks "$1")
  [ -n "$out" ] || return 1
  echo "$out" | awk -v t0="$t0" -v t1="$t1" '$3 >= t0 && $2 < t1 { n++; if ($1 == 0) raw++ } END { exit !(n > 0 && raw == 0) }'
}
show_blocks() {
  blocks "$1" | sort -k2n | awk -v t0="$t0" '{printf "    level %d  day %+.2f .. %+.2f  %s\n", $1, ($2-t0)/86400, ($3-t0)/86400, $4}'
}

push_week() {
  local u=$1
  "$client" push -url "$u" -file "$profile_file" -series "$series" -from "$t0" -to "$t1" -step "$step" | sed 's/^/    /'
  "$client" push -url "$u" -file "$profile_file" -series "$series" -from $(( t1 + 1800 )) -to $(( t1 + 1801 )) -step "$step" | sed 's/^/    /'
}

load_hearth() {
  local b=$base/hearth-bucket d=$base/hearth-load
  if [ -d "$b" ] && compacted "$b"; then echo "  hearth: reusing $b"; return; fi
  rm -rf "$b" "$d"
  echo "  hearth: pushing $(date +%T)"
  start_hearth "$d" "$b" on; wait_ready hearth "$d"
  push_week "$url"
  echo "  hearth: flushing $(date +%T)"
  curl -fsS -X POST "$iurl/ingester/flush?wait=true" | sed 's/^/    /'
  echo "  hearth: compacting $(date +%T)"
  for _ in $(seq 1 600); do compacted "$b" && break; sleep 1; done
  compacted "$b" || { echo "hearth: bucket not compacted after 10 min"; show_blocks "$b"; tail -20 "$d/server.log"; exit 1; }
  sleep 6 # one more pass: the deletions of the compacted sources
  stop_server
  echo "  hearth: done $(date +%T)"
}
load_pyroscope() {
  local b=$base/pyroscope-bucket d=$base/pyroscope-load
  if [ -d "$b" ] && compacted "$b"; then echo "  pyroscope: reusing $b"; return; fi
  rm -rf "$b" "$d"
  echo "  pyroscope: pushing $(date +%T)"
  start_pyroscope "$d" "$b" off; wait_ready pyroscope "$d"
  push_week "$url"
  echo "  pyroscope: stopping (flush and upload) $(date +%T)"
  stop_server
  echo "  pyroscope: compacting $(date +%T)"
  start_pyroscope "$d" "$b" on; wait_ready pyroscope "$d"
  for _ in $(seq 1 900); do compacted "$b" && break; sleep 1; done
  compacted "$b" || { echo "pyroscope: bucket not compacted after 15 min"; show_blocks "$b"; tail -20 "$d/server.log"; exit 1; }
  sleep 10 # one more pass: the deletions and the bucket index
  stop_server
  echo "  pyroscope: done $(date +%T)"
}

# fetched_<server>: bytes read from the bucket so far (objstore metrics).
fetched_hearth() { curl -fsS "$url/metrics" | awk '/^hearth_objstore_bucket_operation_fetched_bytes_total/{s+=$2} END{printf "%d", s}'; }
fetched_pyroscope() { curl -fsS "$url/metrics" | awk '/^[a-z_]*objstore_bucket_operation_fetched_bytes_total/{s+=$2} END{printf "%d", s}'; }

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); hearth $(git describe --always --dirty 2>/dev/null || echo '?'); servers: ${servers[*]}"
echo "week: $(date -u -d @"$t0" +%FT%TZ) .. $(date -u -d @"$t1" +%FT%TZ); $series series, one profile per series every $step ($(basename "$profile_file"), pprof labels dropped)"
echo "loading (load average $(cut -d' ' -f1-3 /proc/loadavg)):"
for s in "${servers[@]}"; do "load_$s"; done
for s in "${servers[@]}"; do
  echo "  $s bucket: $(du -sb "$base/$s-bucket" | cut -f1) bytes"
  show_blocks "$base/$s-bucket"
done

results=$work/results.tsv
answers=$work/answers.tsv
measure() {
  local server=$1 kind=$2 round=$3 d out
  d=$(mktemp -d "$work/$server.XXXX")
  "start_$server" "$d" "$base/$server-bucket" off
  wait_ready "$server" "$d"
  local i0 c0 c1 f0 f1 r0 r1
  i0=$(cpu_ticks "$pid"); sleep 2; c0=$(cpu_ticks "$pid")
  f0=$("fetched_$server"); r0=$(rchar "$pid")
  local prof=""
  if [ -n "${CPU_PROFILE_DIR:-}" ] && [ "$server" = hearth ]; then
    mkdir -p "$CPU_PROFILE_DIR"
    (curl -fsS "$pprof_url?seconds=${PROFILE_SECONDS:-20}" -o "$CPU_PROFILE_DIR/$kind-$server-$round.pb.gz" || true) &
    prof=$!
  fi
  out=$("$client" query -url "$url" -kind "$kind" -from "$t0" -to "$t1" -n "$queries") || {
    echo "$out"; echo "$server $kind failed:"; tail -20 "$d/server.log"; exit 1; }
  c1=$(cpu_ticks "$pid"); r1=$(rchar "$pid")
  f1=$("fetched_$server")
  [ -z "$prof" ] || wait "$prof" || true
  local hwm; hwm=$(hwm_mib "$pid")
  stop_server
  echo "$out" | grep -v '^RESULT' | sed "s/^/  $server $kind round $round: /"
  local kv; kv=$(echo "$out" | grep '^RESULT' | cut -d' ' -f2-)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$server" "$round" \
    "$(( c1 - c0 ))" "$(( c0 - i0 ))" "$hwm" "$hz" "$(( f1 - f0 ))" "$(( r1 - r0 ))" "$kv" >>"$results"
  rm -rf "$d"
}

echo "measuring (load average $(cut -d' ' -f1-3 /proc/loadavg)):"
for round in $(seq 1 "$rounds"); do
  order=("${servers[@]}")
  if (( round % 2 == 0 )) && (( ${#servers[@]} == 2 )); then order=("${servers[1]}" "${servers[0]}"); fi
  for kind in $kinds; do
    for server in "${order[@]}"; do
      measure "$server" "$kind" "$round"
    done
  done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" "$queries" <<'EOF'
import sys, collections
rows = []
n = int(sys.argv[2])
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    kv = dict(x.split("=") for x in f[9].split())
    hz = int(f[6])
    rows.append(dict(kind=f[0], server=f[1], round=int(f[2]), cpu=int(f[3]) / hz / n, idle=int(f[4]) / hz / 2,
                     hwm=int(f[5]), fetched=int(f[7]), rchar=int(f[8]), first=float(kv["first_s"]),
                     med=float(kv["median_s"]), answer=" ".join(f"{k}={v}" for k, v in kv.items() if not k.endswith("_s"))))
bad = False
for kind in dict.fromkeys(r["kind"] for r in rows):
    ans = {r["answer"] for r in rows if r["kind"] == kind}
    print(f"{kind}: answers {'the same on every server and round' if len(ans) == 1 else 'DIFFER'}: " + " | ".join(sorted(ans)))
    bad |= len(ans) != 1
MB = 1 << 20
print()
print("| query | server | round | first s | median s | CPU-s per query | idle CPU-s/s | VmHWM MiB | bucket bytes fetched (all queries) MiB | rchar MiB |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['kind']} | {r['server']} | {r['round']} | {r['first']:.2f} | {r['med']:.2f} | {r['cpu']:.2f} | {r['idle']:.2f} | {r['hwm']} | {r['fetched']/MB:.1f} | {r['rchar']/MB:.1f} |")
print()
print("| query | ratio Hearth/Pyroscope median latency (per round) | first-query latency | CPU per query | VmHWM | bucket bytes |")
print("|---|---|---|---|---|---|")
def rng(v):
    lo, hi = min(v), max(v)
    return f"{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}–{hi:.2f}"
for kind in dict.fromkeys(r["kind"] for r in rows):
    h = {r["round"]: r for r in rows if r["kind"] == kind and r["server"] == "hearth"}
    p = {r["round"]: r for r in rows if r["kind"] == kind and r["server"] == "pyroscope"}
    rs = [k for k in h if k in p]
    if not rs:
        continue
    cols = []
    for key in ("med", "first", "cpu", "hwm", "fetched"):
        cols.append(rng([h[k][key] / max(p[k][key], 1e-9) for k in rs]) + "×")
    print(f"| {kind} | " + " | ".join(cols) + " |")
sys.exit(1 if bad else 0)
EOF
