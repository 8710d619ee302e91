#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, docs/FUZZING.md) in the sanitizer
# build (scripts/build.sh sanitize: clang, build-asan/) and runs each over its
# checked-in corpus for a bounded time (seconds, or inputs from a fixed seed),
# FUZZ_JOBS (default: the number of CPUs) targets at once. Fails on any
# crash, sanitizer report, leak, timeout or out-of-memory, and prints the
# saved input and the command that reproduces it.
#
#   scripts/fuzz.sh                      every target, FUZZ_SECONDS (8) each
#   FUZZ_RUNS=20000 scripts/fuzz.sh      every target, 20,000 inputs each from
#                                        a fixed seed (FUZZ_SEED, default 1):
#                                        the same inputs on every machine, so
#                                        a run's verdict does not depend on
#                                        how fast the machine is (CI's mode)
#   scripts/fuzz.sh sigv4 kms_service    only these targets
#   FUZZ_SECONDS=600 scripts/fuzz.sh name_codec      one target for longer
#   scripts/fuzz.sh -DCMAKE_CXX_COMPILER_LAUNCHER=ccache   -D... go to cmake
#
# Inputs the fuzzer finds go to a temporary directory that is removed at the
# end; the checked-in corpus is only read.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$repo/build-asan}
seconds=${FUZZ_SECONDS:-8}
runs=${FUZZ_RUNS:-}
seed=${FUZZ_SEED:-1}
if [[ -n $runs ]]; then
  budget=(-runs="$runs" -seed="$seed")
  budget_text="$runs inputs from seed $seed"
else
  budget=(-max_total_time="$seconds")
  budget_text="${seconds}s"
fi
max_jobs=${FUZZ_JOBS:-$(nproc)}

all=(file_header chunk_reader name_codec ciphertext_blob kms_request
     kms_service sigv4 dotenv secrets_file)
targets=()
cmake_args=()
for a in "$@"; do
  if [[ $a == -D* ]]; then cmake_args+=("$a"); else targets+=("$a"); fi
done
if ((${#targets[@]} == 0)); then targets=("${all[@]}"); fi
for t in "${targets[@]}"; do
  [[ -d $repo/tests/fuzz/corpus/$t ]] || { echo "fuzz: no corpus for $t" >&2; exit 1; }
done

BUILD_DIR="$build_dir" bash "$repo/scripts/build.sh" sanitize "${cmake_args[@]}" \
  --target "${targets[@]/%/_fuzz}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Failing inputs outlive the run, beside the binaries.
artifacts="$build_dir/fuzz-artifacts"
mkdir -p "$artifacts"

# Runs target $1; its output goes to $work/$1/log, its exit status to
# $work/$1/rc.
run() {
  local t=$1 rc=0
  mkdir -p "$work/$t/new" "$work/$t/tmp"
  # kms_service keeps its key store under TMPDIR.
  TMPDIR="$work/$t/tmp" UBSAN_OPTIONS=print_stacktrace=1 \
    "$build_dir/tests/fuzz/${t}_fuzz" "${budget[@]}" -timeout=20 \
    -rss_limit_mb=2048 -artifact_prefix="$artifacts/$t-" -print_final_stats=1 \
    "$work/$t/new" "$repo/tests/fuzz/corpus/$t" >"$work/$t/log" 2>&1 || rc=$?
  echo "$rc" >"$work/$t/rc"
}

for t in "${targets[@]}"; do
  while (($(jobs -rp | wc -l) >= max_jobs)); do wait -n || true; done
  run "$t" &
done
wait

failed=0
for t in "${targets[@]}"; do
  log="$work/$t/log"
  if [[ $(cat "$work/$t/rc") == 0 ]]; then
    done_runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz: $t: ok, ${done_runs:-?} runs ($budget_text), $(find "$work/$t/new" -type f | wc -l) new inputs"
    continue
  fi
  failed=1
  echo "fuzz: $t: FAILED" >&2
  grep -v '^#[0-9]' "$log" | tail -n 60 >&2
  input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
  if [[ -n $input ]]; then
    echo "fuzz: $t: input saved as $input" >&2
    echo "fuzz: reproduce with: $build_dir/tests/fuzz/${t}_fuzz $input" >&2
  fi
done
exit "$failed"
