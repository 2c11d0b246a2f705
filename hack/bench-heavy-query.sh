#!/usr/bin/env bash
# Heavy query beside pushes (issue 22): on one default ingester with
# multitenancy, tenant b is loaded with the corpus for PRELOAD, then rounds
# alternate (interleaved, so the machine's other load hits both alike):
#   quiet: tenant a pushes the corpus at RATE/s (4 clients) for DURATION;
#   heavy: the same, while QUERIERS loops of tenant b merge all its data
#          (/pyroscope/render over the last hour: every profile) back to back.
# Prints a's push p50/p99 per round and b's query answers by status code
# (429: refused by -querier.max-concurrent/-max-queued).
# TRACE_DIR=dir: an execution trace of 5 s of each round into dir
# (go tool trace; -pprof=sched|sync|net shows where the pushes waited).
# Usage: hack/bench-heavy-query.sh [duration] [extra ingester flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
dur=${1:-20s}; shift || true
rounds=${ROUNDS:-2}; rate=${RATE:-20}; queriers=${QUERIERS:-8}
corpus=../shared/testdata/pprof
[ -d "$corpus" ] || { echo "bench-heavy-query: $corpus is not beside the project"; exit 1; }
work=$(mktemp -d)
trap 'kill $ing 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
for f in "$corpus"/*; do
  case $(basename "$f") in invalid_utf8.pb.gz|dotnet-pprof-3.pb.gz) continue ;; esac
  cp "$f" "$work/corpus/"
done
bin=${HEARTH_BIN:-bin/hearth}
[ -n "${HEARTH_BIN:-}" ] || go build -o bin/hearth ./cmd/hearth
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
iport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mlport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" ingester -server.http-listen-address=127.0.0.1 -server.http-listen-port="$port" \
  -server.internal-listen-address=127.0.0.1 -server.internal-listen-port="$iport" -memberlist.bind-port="$mlport" \
  -data-dir="$work/data" -auth.multitenancy-enabled -log.level=warn "$@" >"$work/ingester.log" 2>&1 &
ing=$!
for _ in $(seq 1 600); do curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break; sleep 0.1; done
url="http://127.0.0.1:$port"
"$bin" load -url "$url" -tenant b -dir "$work/corpus" -workers 4 -series 50 -duration "${PRELOAD:-20s}" | grep -E "^profiles"
q=$(python3 -c 'import urllib.parse; print(urllib.parse.quote("memory:alloc_space:bytes:space:bytes{}"))')
querier() { # loops until $work/stop exists; one status code a line. One
  # process and one kept-alive connection per loop: a curl per query would
  # spend more of the machine's CPU forking than the server spends answering.
  python3 - "$port" "/pyroscope/render?query=$q&from=now-1h&until=now&max-nodes=8192" "$work/stop" >>"$work/codes-$1" <<'PY'
import http.client, os, sys
port, path, stop = sys.argv[1:]
c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=300)
while not os.path.exists(stop):
    try:
        c.request("GET", path, headers={"X-Scope-OrgID": "b"})
        r = c.getresponse(); r.read(); print(r.status, flush=True)
    except Exception:
        print("000", flush=True); c.close(); c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=300)
PY
}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$rounds"); do
  for mode in quiet heavy; do
    rm -f "$work/stop" "$work"/codes-*
    qp=()
    if [ $mode = heavy ]; then for i in $(seq 1 "$queriers"); do querier "$i" & qp+=($!); done; fi
    if [ -n "${TRACE_DIR:-}" ]; then # an execution trace of 5 s of each round, 5 s in
      (sleep 5; curl -fsS -o "$TRACE_DIR/round-$r-$mode.trace" "http://127.0.0.1:$iport/debug/pprof/trace?seconds=5") &
    fi
    out=$("$bin" load -url "$url" -tenant a -dir "$work/corpus" -workers 4 -rate "$rate" -series 50 -duration "$dur")
    touch "$work/stop"; for p in "${qp[@]}"; do wait "$p" 2>/dev/null || true; done
    lat=$(grep -E "^latency" <<<"$out"); prof=$(grep -E "^profiles" <<<"$out")
    codes=""; [ $mode = heavy ] && codes="b's queries: $(cat "$work"/codes-* | sort | uniq -c | awk '{printf "%s=%s ", $2, $1}')"
    echo "round $r $mode: a $lat; $prof $codes"
  done
done
rss=$(awk '/VmHWM/{printf "%.0f MiB", $2/1024}' /proc/$ing/status 2>/dev/null || echo "?")
if kill -0 $ing 2>/dev/null; then state=running; else state=EXITED; fi
echo "server: $state, peak RSS $rss; load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
