#!/usr/bin/env bash
# Overload (issue 22): WORKERS clients (default 128) push the largest profile of
# the corpus (a Go heap, 316 KB gzipped) as fast as they can at one default
# `hearth ingester` for DURATION; prints the answers by code and the server's
# peak RSS (VmHWM), and whether it is still running.
# Usage: hack/bench-overload.sh [duration] [extra ingester flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
dur=${1:-20s}; shift || true
profile=${PROFILE:-../shared/testdata/pprof/heap_go_truncated_1.pb.gz}
[ -f "$profile" ] || { echo "bench-overload: $profile is not beside the project"; exit 1; }
work=$(mktemp -d)
trap 'kill $ing 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/corpus" && cp "$profile" "$work/corpus/"
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
"$bin" load -url "http://127.0.0.1:$port" -dir "$work/corpus" -workers "${WORKERS:-128}" -series 50 -duration "$dur" | tail -8
if kill -0 $ing 2>/dev/null; then state=running; else state=EXITED; fi
rss=$(awk '/VmHWM/{print $2/1024 " MiB"}' /proc/$ing/status 2>/dev/null || echo "?")
echo "server: ${state}, peak RSS ${rss}"
grep -c . "$work/ingester.log" | xargs echo "ingester log lines:"
