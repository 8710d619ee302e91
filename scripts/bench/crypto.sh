#!/usr/bin/env bash
# Chunk seal/open throughput (tests/bench/chunk_seal_bench) beside
# `openssl speed -evp aes-256-gcm` on the same machine, in one run.
# Prints a Markdown table for docs/BENCHMARKS.md.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bash "$repo/scripts/setup.sh" >/dev/null
BUILD_DIR="$repo/build" bash "$repo/scripts/build.sh" >/dev/null
bench="$repo/build/tests/chunk_seal_bench"

json=$(mktemp)
trap 'rm -f "$json"' EXIT
"$bench" --benchmark_min_time=1 --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true --benchmark_format=json >"$json" 2>/dev/null

# openssl speed's EVP table: sizes 16 64 256 1024 8192 16384, in 1000s of B/s.
mapfile -t ossl < <(openssl speed -evp aes-256-gcm -seconds 2 2>/dev/null |
  awk '/^AES-256-GCM/ {for (i = 2; i <= NF; i++) {sub("k", "", $i); print $i}}')

python3 - "$json" "${ossl[@]}" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
ossl = [float(x) * 1000 for x in sys.argv[2:]]
sizes = [16, 64, 256, 1024, 8192, 16384]
med = {}
for b in data["benchmarks"]:
    if b.get("aggregate_name") != "median":
        continue
    name, size = b["run_name"].split("/")
    med[(name, int(size))] = b["bytes_per_second"] / 2**30, b["real_time"]
print("| chunk | seal GiB/s | seal ns/chunk | open GiB/s | open ns/chunk |")
print("|---|---|---|---|---|")
for size in (4096, 16384, 65536):
    s, st = med[("BM_SealChunk", size)]
    o, ot = med[("BM_OpenChunk", size)]
    print(f"| {size // 1024} KiB | {s:.2f} | {st:.0f} | {o:.2f} | {ot:.0f} |")
print()
print("| openssl speed -evp aes-256-gcm | " + " | ".join(f"{s} B" for s in sizes) + " |")
print("|---|" + "---|" * len(sizes))
print("| GiB/s | " + " | ".join(f"{v / 2**30:.2f}" for v in ossl) + " |")
PY
