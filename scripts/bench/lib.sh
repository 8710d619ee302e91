# shellcheck shell=bash disable=SC2034
# Shared by scripts/bench/fs.sh and scripts/bench/scale.sh (sourced, not run):
# builds what they compare, mounts it side by side under one work directory,
# and takes everything down again on exit, whatever happened.
#
# The caller sets `repo` and `work` (a fresh directory) before sourcing, then
# calls bench_setup; every daemon is started in the foreground from here, so
# its process id is known and only that process is ever killed.

BUILD_DIR=${BUILD_DIR:-$repo/build}
build=$BUILD_DIR
declare -a BENCH_PIDS=()   # daemons this script started
declare -a BENCH_MOUNTS=() # FUSE mount points this script mounted

bench_cleanup() {
  local m p
  # /proc/mounts, not mountpoint(1): the mount of a daemon that died is
  # still there, but stat fails on it (ENOTCONN).
  for m in "${BENCH_MOUNTS[@]}"; do
    if grep -q " $m fuse" /proc/mounts; then
      fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true
    fi
  done
  for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${BENCH_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  [[ -n ${work:-} && -d $work ]] && rm -rf "$work"
}

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# Waits until MOUNTPOINT is mounted, failing (with LOG) if PID dies first.
wait_mounted() {  # MOUNTPOINT PID LOG
  for _ in $(seq 200); do
    mountpoint -q "$1" && return 0
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; die "mount of $1 failed"; }
    sleep 0.05
  done
  cat "$3" >&2
  die "mount of $1 did not appear in 10 s"
}

bench_build() {  # the envelopefs release build and the FUSE ceiling
  bash "$repo/scripts/setup.sh" >/dev/null
  BUILD_DIR=$build bash "$repo/scripts/build.sh" release \
    --target envelopefs envelope-keyd envelopectl >/dev/null
  # The ceiling: libfuse's passthrough_hp, from CEILING_SRC (a libfuse
  # example/ directory, with cxxopts.hpp beside passthrough_hp.cc) or the
  # copy pinned to Debian's libfuse version in ../shared/ceiling (whose
  # build.sh is the same command without the defines). The defines are
  # what libfuse's own meson build sets on Linux: without HAVE_UTIMENSAT
  # the example answers every change of a file's times with EOPNOTSUPP (tar
  # fails), without the others fallocate and xattrs.
  local src=${CEILING_SRC:-$repo/../shared/ceiling}
  [[ -f $src/passthrough_hp.cc ]] ||
    die "no FUSE ceiling: set CEILING_SRC to libfuse's example/ directory"
  mkdir -p "$work/bin"
  # shellcheck disable=SC2046  # pkg-config's flags are words
  g++ -O2 -std=c++17 -DHAVE_UTIMENSAT -DHAVE_POSIX_FALLOCATE -DHAVE_SETXATTR \
    -o "$work/bin/passthrough_hp" "$src/passthrough_hp.cc" -I"$src" \
    $(pkg-config --cflags --libs fuse3)
  # The same ceiling without the writeback cache (passthrough_hp has no
  # option for that alone: --nocache also drops its day-long entry and
  # attribute timeouts). envelopefs runs without the writeback cache by
  # default (docs/BENCHMARKS.md, "FUSE options chosen"), so this one bounds
  # what the kernel path allows a filesystem that makes the same choice.
  local line='if (fs.timeout && conn->capable & FUSE_CAP_WRITEBACK_CACHE)'
  grep -qF "$line" "$src/passthrough_hp.cc" ||
    die "passthrough_hp.cc no longer has the line that turns on the writeback cache"
  sed "s/$line/if (false)/" "$src/passthrough_hp.cc" >"$work/bin/passthrough_nowb.cc"
  # shellcheck disable=SC2046
  g++ -O2 -std=c++17 -DHAVE_UTIMENSAT -DHAVE_POSIX_FALLOCATE -DHAVE_SETXATTR \
    -o "$work/bin/passthrough_nowb" "$work/bin/passthrough_nowb.cc" -I"$src" \
    $(pkg-config --cflags --libs fuse3)
}

# Descriptors: passthrough_hp holds one per inode the kernel knows and raises
# its soft limit to the hard one. CEILING_NOFILE is that hard limit, raised
# for the ceiling when this process may raise it (root with
# CAP_SYS_RESOURCE), else the current one.
CEILING_NOFILE=$(ulimit -Hn)
if [[ $CEILING_NOFILE != unlimited ]] && (ulimit -Hn 1048576) 2>/dev/null; then
  CEILING_NOFILE=1048576
fi

setup_keyd() {
  "$build/keyservice/envelope-keyd" --foreground --data-dir "$work/keyd" \
    --socket "$work/kms.sock" >"$work/keyd.log" 2>&1 &
  BENCH_PIDS+=($!)
  local pid=$!
  PID_keyd=$pid
  for _ in $(seq 200); do
    [[ -S $work/kms.sock ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/keyd.log" >&2; die "envelope-keyd failed"; }
    sleep 0.05
  done
  [[ -S $work/kms.sock ]] || die "envelope-keyd did not open its socket"
  KEY=$("$build/tools/envelopectl" --endpoint "unix:$work/kms.sock" key create)
}
# The mount daemons' process ids (PID_envelopefs, ...), for scale.sh's
# memory readings.
# ENVELOPEFS_OPTS: further mount options, e.g. writeback_cache.
setup_envelopefs() {  # [CIPHERDIR]; needs setup_keyd first
  local cipher=${1:-$work/envelopefs/cipher}
  mkdir -p "$cipher" "$work/envelopefs/mnt"
  "$build/fs/envelopefs" init "$cipher" --key "$KEY" --kms "unix:$work/kms.sock" >/dev/null
  "$build/fs/envelopefs" mount -f "$cipher" "$work/envelopefs/mnt" \
    -o "kms=unix:$work/kms.sock,key=$KEY${ENVELOPEFS_OPTS:+,$ENVELOPEFS_OPTS}" \
    >"$work/envelopefs.log" 2>&1 &
  PID_envelopefs=$!
  BENCH_PIDS+=($!); BENCH_MOUNTS+=("$work/envelopefs/mnt")
  wait_mounted "$work/envelopefs/mnt" $! "$work/envelopefs.log"
}
setup_gocryptfs() {
  mkdir -p "$work/gocryptfs/cipher" "$work/gocryptfs/mnt"
  gocryptfs -init -q -extpass "echo bench-password" "$work/gocryptfs/cipher" >/dev/null
  gocryptfs -fg -q -extpass "echo bench-password" "$work/gocryptfs/cipher" \
    "$work/gocryptfs/mnt" >"$work/gocryptfs.log" 2>&1 &
  PID_gocryptfs=$!
  BENCH_PIDS+=($!); BENCH_MOUNTS+=("$work/gocryptfs/mnt")
  wait_mounted "$work/gocryptfs/mnt" $! "$work/gocryptfs.log"
}
setup_ceiling() {  # passthrough_hp with its defaults (docs/BENCHMARKS.md), or CEILING_OPTS
  mkdir -p "$work/ceiling/cipher" "$work/ceiling/mnt"
  # shellcheck disable=SC2086  # CEILING_OPTS: options, split into words
  prlimit --nofile="$CEILING_NOFILE:$CEILING_NOFILE" -- \
    "$work/bin/passthrough_hp" --foreground ${CEILING_OPTS:-} "$work/ceiling/cipher" "$work/ceiling/mnt" \
    >"$work/ceiling.log" 2>&1 &
  PID_ceiling=$!
  BENCH_PIDS+=($!); BENCH_MOUNTS+=("$work/ceiling/mnt")
  wait_mounted "$work/ceiling/mnt" $! "$work/ceiling.log"
}
setup_ceiling_nowb() {  # the ceiling without the writeback cache, otherwise its defaults
  mkdir -p "$work/ceiling-nowb/cipher" "$work/ceiling-nowb/mnt"
  prlimit --nofile="$CEILING_NOFILE:$CEILING_NOFILE" -- \
    "$work/bin/passthrough_nowb" --foreground "$work/ceiling-nowb/cipher" "$work/ceiling-nowb/mnt" \
    >"$work/ceiling-nowb.log" 2>&1 &
  PID_ceiling_nowb=$!
  BENCH_PIDS+=($!); BENCH_MOUNTS+=("$work/ceiling-nowb/mnt")
  wait_mounted "$work/ceiling-nowb/mnt" $! "$work/ceiling-nowb.log"
}
setup_plain() { mkdir -p "$work/plain/mnt"; }

mnt() { echo "$work/$1/mnt"; }

cold() {  # cold caches: write back everything and drop the page cache
  sync
  echo 3 > /proc/sys/vm/drop_caches
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
is_number() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
