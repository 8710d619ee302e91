#!/usr/bin/env bash
# Configures and builds one of the project's two builds.
#
#   scripts/build.sh [release]     Release build (the default compiler) into
#                                  build/: the programs, tests, benchmarks
#   scripts/build.sh sanitize      clang, ASan + UBSan, into build-asan/: the
#                                  tests and the libFuzzer targets, sharing
#                                  one set of instrumented objects
#
# BUILD_DIR overrides the directory. Further arguments: -D... go to cmake's
# configure step, anything else (e.g. --target sigv4_fuzz) to its build step.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

kind=release
if [[ ${1:-} == release || ${1:-} == sanitize ]]; then kind=$1; shift; fi
configure=()
build=()
for a in "$@"; do
  if [[ $a == -D* ]]; then configure+=("$a"); else build+=("$a"); fi
done

if [[ $kind == release ]]; then
  build_dir=${BUILD_DIR:-$repo/build}
  configure=(-DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" "${configure[@]}")
else
  build_dir=${BUILD_DIR:-$repo/build-asan}
  configure=(-DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++
             -DENVELOPE_SANITIZE=ON -DENVELOPE_BUILD_BENCHMARKS=OFF "${configure[@]}")
fi
cmake -S "$repo" -B "$build_dir" "${configure[@]}" >/dev/null
cmake --build "$build_dir" -j"$(nproc)" "${build[@]}"
