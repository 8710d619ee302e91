#!/usr/bin/env bash
# envelope-keyd throughput and latency over the Unix socket: Decrypt and
# GenerateDataKey with 1 and 8 concurrent keep-alive clients, through the
# project's client library (tests/bench/keyd_load). Prints a Markdown table
# for docs/BENCHMARKS.md. SECONDS_PER_RUN (default 5) sets each run's length.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bash "$repo/scripts/setup.sh" >/dev/null
BUILD_DIR="$repo/build" bash "$repo/scripts/build.sh" >/dev/null
build="$repo/build"
seconds=${SECONDS_PER_RUN:-5}

work=$(mktemp -d)
"$build/keyservice/envelope-keyd" --data-dir "$work/data" --socket "$work/kms.sock" -f \
  2>"$work/keyd.log" &
keyd=$!
trap 'kill $keyd 2>/dev/null; wait $keyd 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [[ -S "$work/kms.sock" ]] && break; sleep 0.05; done
endpoint="unix:$work/kms.sock"
key=$("$build/tools/envelopectl" --endpoint "$endpoint" key create --description bench)

echo "| operation | clients | requests/s | p50 µs | p99 µs |"
echo "|---|---|---|---|---|"
for op in Decrypt GenerateDataKey; do
  for clients in 1 8; do
    "$build/tests/keyd_load" --endpoint "$endpoint" --key "$key" --op "$op" \
      --clients "$clients" --seconds "$seconds" |
      /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)
print("| %s | %d | %s | %.0f | %.0f |" % (r["op"], r["clients"], format(round(r["per_second"]), ","), r["p50_us"], r["p99_us"]))'
  done
done
echo
echo "audit log after the run: $(wc -l <"$work/data/audit.log") records"
