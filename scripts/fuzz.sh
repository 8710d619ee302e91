#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, docs/FUZZING.md) into build-fuzz/
# with clang and runs each over its checked-in corpus for a bounded time.
# Fails on any crash, sanitizer report, leak, timeout or out-of-memory, and
# prints the saved input and the command that reproduces it.
#
#   scripts/fuzz.sh                      every target, FUZZ_SECONDS (8) each
#   scripts/fuzz.sh sigv4 kms_service    only these targets
#   FUZZ_SECONDS=600 scripts/fuzz.sh name_codec      one target for longer
#   scripts/fuzz.sh -DCMAKE_CXX_COMPILER_LAUNCHER=ccache   -D... go to cmake
#
# Inputs the fuzzer finds go to a temporary directory that is removed at the
# end; the checked-in corpus is only read.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${FUZZ_BUILD_DIR:-$repo/build-fuzz}
seconds=${FUZZ_SECONDS:-8}

all=(file_header chunk_reader name_codec ciphertext_blob kms_request
     kms_service sigv4 dotenv secrets_file)
targets=()
cmake_args=()
for a in "$@"; do
  if [[ $a == -D* ]]; then cmake_args+=("$a"); else targets+=("$a"); fi
done
if ((${#targets[@]} == 0)); then targets=("${all[@]}"); fi

cmake -S "$repo" -B "$build_dir" -DENVELOPE_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_COMPILER=clang++ "${cmake_args[@]}" >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target "${targets[@]/%/_fuzz}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Crash inputs outlive the run, beside the binaries.
artifacts="$build_dir/fuzz-artifacts"
mkdir -p "$artifacts"

failed=0
for t in "${targets[@]}"; do
  bin="$build_dir/tests/fuzz/${t}_fuzz"
  corpus="$repo/tests/fuzz/corpus/$t"
  [[ -d $corpus ]] || { echo "fuzz: no corpus $corpus" >&2; exit 1; }
  mkdir -p "$work/$t/new" "$work/$t/tmp"
  log="$work/$t/log"
  # kms_service keeps its key store under TMPDIR.
  if TMPDIR="$work/$t/tmp" UBSAN_OPTIONS=print_stacktrace=1 \
      "$bin" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts/$t-" -print_final_stats=1 \
      "$work/$t/new" "$corpus" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz: $t: ok, ${runs:-?} runs in ${seconds}s, $(find "$work/$t/new" -type f | wc -l) new inputs"
  else
    failed=1
    echo "fuzz: $t: FAILED" >&2
    grep -v '^#[0-9]' "$log" | tail -n 60 >&2
    input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    if [[ -n $input ]]; then
      echo "fuzz: $t: input saved as $input" >&2
      echo "fuzz: reproduce with: $bin $input" >&2
    fi
  fi
done
exit "$failed"
