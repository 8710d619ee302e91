#!/usr/bin/env bash
# The README's test command: installs dependencies, builds, runs every test.
#
#   scripts/test.sh            release build + tests, the libFuzzer targets
#                              for a bounded time (scripts/fuzz.sh,
#                              docs/FUZZING.md), then the unit tests again
#                              under AddressSanitizer + UBSan
#   ENVELOPE_SKIP_SANITIZE=1   skip the sanitizer pass (quicker local runs)
#   ENVELOPE_SKIP_FUZZ=1       skip the fuzz stage
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

bash scripts/setup.sh

echo "== release build"
BUILD_DIR="$repo/build" bash scripts/build.sh
echo "== tests (release)"
ctest --test-dir "$repo/build" --output-on-failure -j"$(nproc)" --timeout 900

if [[ "${ENVELOPE_SKIP_FUZZ:-0}" != 1 ]]; then
  echo "== fuzz"
  bash scripts/fuzz.sh
fi

if [[ "${ENVELOPE_SKIP_SANITIZE:-0}" != 1 ]]; then
  echo "== sanitizer build (ASan + UBSan)"
  BUILD_DIR="$repo/build-asan" BUILD_TYPE=Debug bash scripts/build.sh \
    -DENVELOPE_SANITIZE=ON -DENVELOPE_BUILD_BENCHMARKS=OFF
  echo "== tests (sanitizers)"
  # The secure heap is a guarded mmap arena; ASan does not see inside it,
  # but every other allocation and all UB checks apply.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir "$repo/build-asan" --output-on-failure -j"$(nproc)" --timeout 900
fi
