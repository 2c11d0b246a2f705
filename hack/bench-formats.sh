#!/usr/bin/env bash
# JFR and OTLP ingestion side by side with Pyroscope (issue 20): the same
# requests, posted by hack/benchformats with WORKERS concurrent clients, to a
# fresh `hearth ingester` (defaults, -data-dir in a temp dir) and, when
# PYROSCOPE_BIN names a Pyroscope server binary, a fresh Pyroscope single
# binary (-target=all, filesystem storage in a temp dir, rate and series
# limits lifted so it measures instead of refusing). Everything listens and
# advertises on 127.0.0.1 only.
#
# Inputs (all committed in the repository):
#   jfr-workload  ingester/ingest/jfr/testdata/workload.jfr.gz on /ingest?format=jfr
#   jfr-tiny      ingester/ingest/jfr/testdata/tiny.jfr.gz on /ingest?format=jfr
#   otlp          ingester/ingest/otlp/testdata/go-cpu.otlp.pb on POST /v1development/profiles
# A JFR recording is sent as the `jfr` part of a multipart form, gzipped, as
# the Pyroscope Java agent sends it (Pyroscope gunzips a recording only there).
#
# Per measurement: the server's CPU time (utime+stime from /proc/<pid>/stat)
# before and after the load, its VmHWM after it, and the profiles it counted
# (Hearth: hearth_received_profiles_total less hearth_discarded_profiles_total; Pyroscope:
# pyroscope_distributor_received_samples_count less
# pyroscope_discarded_samples_total). ROUNDS rounds, the servers' order
# alternating from one round to the next; a summary with ranges at the end.
#
# CPU_PROFILE_DIR=dir: also save each server's CPU profile over PROFILE_SECONDS
# (default 8) from half a second into each load, as <format>-<server>-<round>.pb.gz
# (the sampling then adds a little to the CPU measured).
#
# Usage: [PYROSCOPE_BIN=path] [ROUNDS=2] [WORKERS=4] [FORMATS="jfr-workload jfr-tiny otlp"]
#        [JFR_WORKLOAD_N=800] [JFR_TINY_N=1500] [OTLP_N=10000] [DURATION=60s] hack/bench-formats.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
rounds=${ROUNDS:-2}
workers=${WORKERS:-4}
cap=${DURATION:-60s}
formats=${FORMATS:-jfr-workload jfr-tiny otlp}
work=$(mktemp -d)
pid=""
stop_server() {
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}
trap 'stop_server; rm -rf "$work"' EXIT

bin=${HEARTH_BIN:-bin/hearth}
[ -n "${HEARTH_BIN:-}" ] || go build -o bin/hearth ./cmd/hearth
go build -o "$work/benchformats" ./hack/benchformats
servers=(hearth)
if [ -n "${PYROSCOPE_BIN:-}" ]; then
  [ -x "$PYROSCOPE_BIN" ] || { echo "bench-formats: PYROSCOPE_BIN=$PYROSCOPE_BIN is not executable"; exit 1; }
  servers+=(pyroscope)
fi
hz=$(getconf CLK_TCK)
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# utime+stime in clock ticks (fields 14 and 15; the fields after "(comm) " start at 3).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
hwm_mib() { awk '/VmHWM/{printf "%.0f", $2/1024}' "/proc/$1/status"; }

# start_<server> <dir>: starts the server in the background, sets pid and url.
start_hearth() {
  local d=$1 port iport mport
  port=$(freeport); iport=$(freeport); mport=$(freeport)
  "$bin" ingester -server.http-listen-address=127.0.0.1 -server.http-listen-port="$port" \
    -server.internal-listen-address=127.0.0.1 -server.internal-listen-port="$iport" \
    -memberlist.bind-addr=127.0.0.1 -memberlist.advertise-addr=127.0.0.1 -memberlist.bind-port="$mport" \
    -ingester.ring.instance-addr=127.0.0.1 \
    -data-dir="$d/data" -log.level=warn >"$d/server.log" 2>&1 &
  pid=$!
  url=http://127.0.0.1:$port
  pprof_url=http://127.0.0.1:$iport/debug/pprof/profile
}
start_pyroscope() {
  local d=$1 port gport mport a=127.0.0.1
  port=$(freeport); gport=$(freeport); mport=$(freeport)
  (cd "$d" && exec "$PYROSCOPE_BIN" -target=all \
    -server.http-listen-address=$a -server.http-listen-port="$port" \
    -server.grpc-listen-address=$a -server.grpc-listen-port="$gport" \
    -memberlist.bind-addr=$a -memberlist.bind-port="$mport" -memberlist.advertise-addr=$a -memberlist.advertise-port="$mport" \
    -ingester.lifecycler.addr=$a -distributor.ring.instance-addr=$a -compactor.ring.instance-addr=$a \
    -query-scheduler.ring.instance-addr=$a -query-frontend.instance-addr=$a \
    -store-gateway.sharding-ring.instance-addr=$a -overrides-exporter.ring.instance-addr=$a \
    -storage.backend=filesystem -storage.filesystem.dir="$d/bucket" -pyroscopedb.data-path="$d/data" \
    -compactor.data-dir="$d/compactor" \
    -usage-stats.enabled=false -self-profiling.disable-push=true -tracing.enabled=false \
    -ingester.min-ready-duration=0s \
    -distributor.ingestion-rate-limit-mb=100000 -distributor.ingestion-burst-size-mb=100000 \
    -ingester.max-global-series-per-tenant=0 -ingester.max-local-series-per-tenant=0 \
    -log.level=warn) >"$d/server.log" 2>&1 &
  pid=$!
  url=http://127.0.0.1:$port
  pprof_url=$url/debug/pprof/profile
}
# profiles_<server>: the profiles the server counted as stored so far.
profiles_hearth() { curl -fsS "$url/metrics" | awk '/^hearth_received_profiles_total/{s+=$2} /^hearth_discarded_profiles_total/{s-=$2} END{printf "%d", s}'; }
profiles_pyroscope() {
  curl -fsS "$url/metrics" | awk '/^pyroscope_distributor_received_samples_count/{s+=$2}
    /^pyroscope_discarded_samples_total/{s-=$2} END{printf "%d", s}'
}

# load_args <format>: sets largs to the benchformats flags for one input
# ($SERIES, $FROM, $UNTIL are benchformats' placeholders, not shell variables).
load_args() {
  local jfrpath='/ingest?name=bench%7Bformat%3Djfr%2Cinstance%3Di-$SERIES%7D&format=jfr&from=$FROM&until=$UNTIL'
  case $1 in
    jfr-workload) largs=(-file ingester/ingest/jfr/testdata/workload.jfr.gz -form jfr -n "${JFR_WORKLOAD_N:-800}" -path "$jfrpath") ;;
    jfr-tiny) largs=(-file ingester/ingest/jfr/testdata/tiny.jfr.gz -form jfr -n "${JFR_TINY_N:-1500}" -path "$jfrpath") ;;
    otlp) largs=(-file ingester/ingest/otlp/testdata/go-cpu.otlp.pb -otlp-now -content-type application/x-protobuf
      -n "${OTLP_N:-10000}" -path /v1development/profiles) ;;
    *) echo "bench-formats: unknown format $1" >&2; exit 1 ;;
  esac
}

results=$work/results.tsv
# measure <server> <format> <round>: one fresh server, one load, one result line.
measure() {
  local server=$1 format=$2 round=$3 d out
  d=$(mktemp -d "$work/$server.XXXX")
  "start_$server" "$d"
  for _ in $(seq 1 600); do
    curl -fsS "$url/ready" 2>/dev/null | grep -q ready && break
    kill -0 "$pid" 2>/dev/null || { echo "$server exited:"; tail -20 "$d/server.log"; exit 1; }
    sleep 0.1
  done
  curl -fsS "$url/ready" 2>/dev/null | grep -q ready || { echo "$server not ready after 60 s"; tail -20 "$d/server.log"; exit 1; }
  # Two idle seconds: what the server spends with no load (not subtracted below).
  local i0 c0 c1 p0 p1
  i0=$(cpu_ticks "$pid"); sleep 2; c0=$(cpu_ticks "$pid")
  p0=$("profiles_$server")
  load_args "$format"
  local prof=""
  if [ -n "${CPU_PROFILE_DIR:-}" ]; then
    mkdir -p "$CPU_PROFILE_DIR"
    (sleep 0.5; curl -fsS "$pprof_url?seconds=${PROFILE_SECONDS:-8}" -o "$CPU_PROFILE_DIR/$format-$server-$round.pb.gz" || true) &
    prof=$!
  fi
  out=$("$work/benchformats" -url "$url" -c "$workers" -duration "$cap" "${largs[@]}")
  c1=$(cpu_ticks "$pid")
  p1=$("profiles_$server")
  [ -z "$prof" ] || wait "$prof" || true
  local hwm; hwm=$(hwm_mib "$pid")
  stop_server
  echo "$out" | grep -v '^RESULT' | sed "s/^/  $server $format: /"
  local kv; kv=$(echo "$out" | grep '^RESULT' | cut -d' ' -f2-)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$format" "$server" "$round" \
    "$(( c1 - c0 ))" "$(( c0 - i0 ))" "$(( p1 - p0 ))" "$hwm" "$hz" "$kv" "$(date +%T)" >>"$results"
  rm -rf "$d"
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); hearth $(git describe --always --dirty 2>/dev/null || echo '?'); servers: ${servers[*]}; rounds: $rounds; workers: $workers"
for round in $(seq 1 "$rounds"); do
  order=("${servers[@]}")
  if (( round % 2 == 0 )) && (( ${#servers[@]} == 2 )); then order=("${servers[1]}" "${servers[0]}"); fi
  for format in $formats; do
    for server in "${order[@]}"; do
      measure "$server" "$format" "$round"
    done
  done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" <<'EOF'
import sys, collections
rows = []
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    kv = dict(x.split("=") for x in f[8].split())
    hz = int(f[7])
    cpu, idle = int(f[3]) / hz, int(f[4]) / hz / 2
    acc = int(kv["accepted"])
    rows.append(dict(format=f[0], server=f[1], round=int(f[2]), cpu=cpu, idle=idle, profiles=int(f[5]),
                     rss=int(f[6]), acc=acc, refused=int(kv["refused"]) + int(kv["errors"]),
                     elapsed=float(kv["elapsed_s"]), p50=float(kv["p50_ms"]), p99=float(kv["p99_ms"]), at=f[9]))
print()
print("| input | server | round | requests accepted (refused) | profiles | profiles per request | server CPU-s | idle CPU-s/s | requests per CPU-s | profiles per CPU-s | accepted/s | p50 / p99 ms | peak RSS MiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    per = r["profiles"] / r["acc"] if r["acc"] else 0
    cpu = max(r["cpu"], 0.01)
    print(f"| {r['format']} | {r['server']} | {r['round']} | {r['acc']} ({r['refused']}) | {r['profiles']} | {per:.2f} | {r['cpu']:.2f} | {r['idle']:.2f} | "
          f"{r['acc']/cpu:.1f} | {r['profiles']/cpu:.1f} | {r['acc']/max(r['elapsed'],1e-3):.1f} | {r['p50']:.1f} / {r['p99']:.1f} | {r['rss']} |")
def rng(v, fmt="{:.0f}"):
    lo, hi = min(v), max(v)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else fmt.format(lo) + "–" + fmt.format(hi)
print()
print("| input | Hearth profiles per CPU-s | Pyroscope profiles per CPU-s | ratio (per round) | Hearth peak RSS MiB | Pyroscope peak RSS MiB |")
print("|---|---|---|---|---|---|")
by = collections.defaultdict(list)
for r in rows:
    by[(r["format"], r["server"])].append(r)
for fmt in dict.fromkeys(r["format"] for r in rows):
    h, p = by[(fmt, "hearth")], by.get((fmt, "pyroscope"), [])
    rate = lambda r: r["profiles"] / max(r["cpu"], 0.01)
    ratios = []
    for rh in h:
        rp = [x for x in p if x["round"] == rh["round"]]
        if rp and rate(rp[0]) > 0:
            ratios.append(rate(rh) / rate(rp[0]))
    cols = [rng([rate(r) for r in h]), rng([rate(r) for r in p]) if p else "—",
            (rng(ratios, "{:.2f}") + "×") if ratios else "—",
            rng([r["rss"] for r in h]), rng([r["rss"] for r in p]) if p else "—"]
    print(f"| {fmt} | " + " | ".join(cols) + " |")
EOF
