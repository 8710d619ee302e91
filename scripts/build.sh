#!/usr/bin/env bash
# Configures and builds into $BUILD_DIR (default: build/ in the repo).
# Extra arguments go to cmake's configure step, e.g. -DENVELOPE_SANITIZE=ON.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$repo/build}
cmake -S "$repo" -B "$build_dir" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" "$@" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
