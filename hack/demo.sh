#!/usr/bin/env bash
# The demo: a local ingester with the embedded defaults (port 4040, ./data,
# a filesystem bucket), a real Go program profiling itself with the Pyroscope
# SDK and pushing to it, then a top-10 table of its merged CPU profile.
# The ingester keeps running afterwards; Ctrl-C stops it.
# DEMO_DURATION sets how long the workload runs; DEMO_EXIT=1 stops after the table.
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
port=${DEMO_PORT:-4040}
url=http://127.0.0.1:$port
mkdir -p data bin
echo "==> building hearth and the demo workload"
go build -o bin/hearth ./cmd/hearth
go build -o bin/demoapp ./hack/demoapp

echo "==> starting the ingester on $url (data in ./data, log in data/ingester.log)"
./bin/hearth ingester -server.http-listen-address=127.0.0.1 -server.http-listen-port="$port" -data-dir=./data >data/ingester.log 2>&1 &
ing=$!
trap 'kill $ing 2>/dev/null; wait $ing 2>/dev/null' EXIT
for i in $(seq 1 300); do
  if curl -fsS "$url/ready" >/dev/null 2>&1; then break; fi
  if ! kill -0 $ing 2>/dev/null; then echo "the ingester exited:"; cat data/ingester.log; exit 1; fi
  sleep 0.2
done
curl -fsS "$url/ready" >/dev/null || { echo "the ingester is not ready:"; tail -20 data/ingester.log; exit 1; }

echo "==> running a real workload that profiles itself and pushes every 5s (${DEMO_DURATION:-20s})"
./bin/demoapp -url "$url" -duration "${DEMO_DURATION:-20s}" -upload-rate 5s

echo "==> profile types stored"
./bin/hearth query -url "$url" -types
echo
echo "==> top 10 functions of the merged CPU profile"
./bin/hearth query -url "$url" -type process_cpu:cpu:nanoseconds:cpu:nanoseconds -selector '{service_name="hearth-demo"}' -n 10
echo
echo "==> the CPU of the search handler only (pprof labels are series labels)"
./bin/hearth query -url "$url" -type process_cpu:cpu:nanoseconds:cpu:nanoseconds -selector '{service_name="hearth-demo", handler="search"}' -n 5
echo
echo "==> top 5 allocation sites"
./bin/hearth query -url "$url" -type memory:alloc_space:bytes:space:bytes -selector '{service_name="hearth-demo"}' -n 5
cat <<MSG

The ingester keeps running at $url (Pyroscope's API: point Grafana's Pyroscope
data source, profilecli or an SDK at it). Try:
  ./bin/hearth query -url $url -types
  ./bin/hearth load -url $url -dir <a directory of pprof files> -duration 10s
  curl -s $url/metrics | grep hearth_
Ctrl-C stops it; its data stays in ./data.
MSG
if [ "${DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
wait $ing
