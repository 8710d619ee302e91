#!/usr/bin/env bash
# Filesystem benchmarks, envelopefs against gocryptfs and bindfs (both from
# Debian) and the plain backing filesystem, in one run on this machine.
#
#   scripts/bench/fs.sh            all workloads
#   QUICK=1 scripts/bench/fs.sh    smaller sizes (a smoke run, not for the docs)
#
# Workloads: fio sequential write of 1 GiB (end_fsync, no fallocate: see
# docs/BENCHMARKS.md) and cold read of it,
# fio 4 KiB random read and random write, fs_mark 4 KiB files without and
# with fsync, and untar, ls -lR and rm -rf of the Linux 6.1 source tree
# (Debian's linux-source-6.1): each workload on every filesystem in turn,
# sequential I/O and fs_mark three times (the median counts). Prints a Markdown table with ratios of
# envelopefs to each peer (higher is better for envelopefs).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bash "$repo/scripts/setup.sh" >/dev/null
export DEBIAN_FRONTEND=noninteractive
dpkg-query -W -f='${Status}' linux-source-6.1 2>/dev/null | grep -q "install ok installed" ||
  { apt-get update -qq && apt-get install -y -qq linux-source-6.1 >/dev/null; }
BUILD_DIR="$repo/build" bash "$repo/scripts/build.sh" >/dev/null
build="$repo/build"

quick=${QUICK:-0}
seq_size=$([[ $quick == 1 ]] && echo 128m || echo 1g)
rand_size=$([[ $quick == 1 ]] && echo 64m || echo 256m)
rand_time=$([[ $quick == 1 ]] && echo 5 || echo 20)
files=$([[ $quick == 1 ]] && echo 1000 || echo 5000)
tarballs=(/usr/src/linux-source-6.1*.tar.xz)
tarball=${tarballs[0]}

work=$(mktemp -d /var/tmp/envelopefs-bench.XXXXXX)
cleanup() {
  for m in "$work"/*/mnt; do mountpoint -q "$m" && fusermount3 -u "$m" 2>/dev/null || true; done
  pkill -f "envelope-keyd --data-dir $work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The source tree, uncompressed once so that untar measures the filesystem.
# QUICK=1 takes one subdirectory of it instead.
if [[ $quick == 1 ]]; then
  mkdir "$work/quick" && xz -dc "$tarball" | tar -C "$work/quick" -xf - --wildcards '*/fs/ext4/*'
  tar -C "$work/quick" -cf "$work/linux.tar" . && rm -rf "$work/quick"
else
  xz -dc "$tarball" > "$work/linux.tar"
fi
entries=$(tar -tf "$work/linux.tar" | wc -l)

setup_envelopefs() {
  mkdir -p "$work/envelopefs/mnt"
  "$build/keyservice/envelope-keyd" --data-dir "$work/keyd" --socket "$work/kms.sock"
  local key
  key=$("$build/tools/envelopectl" --endpoint "unix:$work/kms.sock" key create)
  "$build/fs/envelopefs" init "$work/envelopefs/cipher" --key "$key" --kms "unix:$work/kms.sock" >/dev/null
  "$build/fs/envelopefs" mount "$work/envelopefs/cipher" "$work/envelopefs/mnt" -o "kms=unix:$work/kms.sock,key=$key"
}
setup_gocryptfs() {
  mkdir -p "$work/gocryptfs/cipher" "$work/gocryptfs/mnt"
  gocryptfs -init -q -extpass "echo bench-password" "$work/gocryptfs/cipher" >/dev/null
  gocryptfs -q -extpass "echo bench-password" "$work/gocryptfs/cipher" "$work/gocryptfs/mnt"
}
setup_bindfs() {
  mkdir -p "$work/bindfs/cipher" "$work/bindfs/mnt"
  bindfs "$work/bindfs/cipher" "$work/bindfs/mnt"
}
setup_plain() { mkdir -p "$work/plain/mnt"; }

remount() {  # cold caches: drop the page cache (and for FUSE, its caches too)
  sync
  echo 3 > /proc/sys/vm/drop_caches
}

secs() { /usr/bin/python3 -c 'import sys,time; print(f"{time.time():.3f}")'; }

fio_bw() {  # prints MiB/s
  fio --output-format=json "$@" | /usr/bin/python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
bw = j["write"]["bw_bytes"] if j["write"]["bw_bytes"] else j["read"]["bw_bytes"]
print(f"{bw / 2**20:.1f}")'
}
fio_iops() {
  fio --output-format=json "$@" | /usr/bin/python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
print("%.0f" % (j["write"]["iops"] + j["read"]["iops"]))'
}

declare -A R
filesystems=(envelopefs gocryptfs bindfs plain)
remount
for fs in "${filesystems[@]}"; do "setup_$fs"; done

# Workload by workload, each on every filesystem in turn, the one going
# first rotating from step to step: the disk's speed drifts over a run (its
# sync latency varies by a factor of two within minutes here), and
# measuring one filesystem's whole series before the next one's put that
# drift on whichever filesystem ran at a bad moment. Before every
# measurement the script syncs and drops the page cache (remount), so no
# workload flushes what the previous one left dirty.
step=0
next_turn() {  # sets turn: the filesystems, starting at a different one each step
  local k=$((step % ${#filesystems[@]}))
  step=$((step + 1))
  turn=("${filesystems[@]:k}" "${filesystems[@]:0:k}")
}
mnt() { echo "$work/$1/mnt"; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

# Short measurements (a few seconds each) are taken three times, in turn,
# and the median kept: a slow moment of the disk then weighs on one sample.
declare -A SAMPLES
keep_median() {  # KEY LABEL: R[fs,KEY] = median of SAMPLES[fs,KEY]
  for fs in "${filesystems[@]}"; do
    # shellcheck disable=SC2086  # the list of samples
    R[$fs,$1]=$(median ${SAMPLES[$fs,$1]})
    echo "$2, $fs:${SAMPLES[$fs,$1]} (median ${R[$fs,$1]})" >&2
  done
}
for round in 1 2 3; do
  next_turn
  for fs in "${turn[@]}"; do
    rm -f "$(mnt "$fs")"/seq*
    remount
    SAMPLES[$fs,seqwrite]+=" $(fio_bw --name=seq --directory="$(mnt "$fs")" --rw=write \
      --bs=1m --size="$seq_size" --ioengine=psync --fallocate=none --end_fsync=1)"
  done
done
keep_median seqwrite "fio sequential write, MiB/s"
for round in 1 2 3; do
  next_turn
  for fs in "${turn[@]}"; do
    remount
    SAMPLES[$fs,seqread]+=" $(fio_bw --name=seq --directory="$(mnt "$fs")" --rw=read \
      --bs=1m --size="$seq_size" --ioengine=psync)"
  done
done
keep_median seqread "fio cold sequential read, MiB/s"
for fs in "${filesystems[@]}"; do rm -f "$(mnt "$fs")"/seq*; done
for rw in randread randwrite; do
  next_turn
  for fs in "${turn[@]}"; do
    remount
    R[$fs,$rw]=$(fio_iops --name="$rw" --directory="$(mnt "$fs")" --rw="$rw" --bs=4k \
      --size="$rand_size" --ioengine=psync --time_based --runtime="$rand_time")
  done
done
for fs in "${filesystems[@]}"; do rm -f "$(mnt "$fs")"/rand*; done
# No mass deletion before a workload that creates files: on ext4 without a
# journal (this machine's disk) the inode allocator checks every recently
# deleted inode of a block group (recently_deleted()) on each create for
# about 30 s afterwards, which taxes whichever filesystem's directories land
# in those groups. So the tree is untarred first, fs_mark's files stay
# until after the timed rm -rf, and that rm -rf comes last.
next_turn
for fs in "${turn[@]}"; do
  remount
  t0=$(secs); tar -C "$(mnt "$fs")" -xf "$work/linux.tar"; sync; t1=$(secs)
  R[$fs,untar]=$(/usr/bin/python3 -c "print(f'{$t1 - $t0:.1f}')")
done
next_turn
for fs in "${turn[@]}"; do
  remount
  t0=$(secs); ls -lR "$(mnt "$fs")" >/dev/null; t1=$(secs)
  R[$fs,lslr]=$(/usr/bin/python3 -c "print(f'{$t1 - $t0:.1f}')")
done
for sync in 0 1; do
  for round in 1 2 3; do
    next_turn
    for fs in "${turn[@]}"; do
      remount
      d=$(mnt "$fs")
      mkdir -p "$d/fsmark$sync.$round"
      # fs_mark wants a directory path under 40 bytes: run it from inside.
      if ! (cd "$d" && fs_mark -d "fsmark$sync.$round" -s 4096 -n "$files" -S "$sync" -L 1) \
          >"$work/fsmark.log" 2>&1; then
        echo "fs_mark failed on $fs:" >&2
        cat "$work/fsmark.log" >&2
        exit 1
      fi
      SAMPLES[$fs,fsmark$sync]+=" $(awk '/^ *[0-9]+ +[0-9]+ +4096/ {print $4}' "$work/fsmark.log" | tail -1)"
    done
  done
  keep_median "fsmark$sync" "fs_mark -S $sync, files/s"
done
next_turn
for fs in "${turn[@]}"; do
  remount
  d=$(mnt "$fs")
  tree=$(find "$d" -mindepth 1 -maxdepth 1 ! -name 'fsmark*')
  t0=$(secs); rm -rf $tree; sync; t1=$(secs)
  R[$fs,rmrf]=$(/usr/bin/python3 -c "print(f'{$t1 - $t0:.1f}')")
done
for fs in "${filesystems[@]}"; do
  d=$(mnt "$fs")
  rm -rf "${d:?}"/fsmark*
  [[ $fs != plain ]] && fusermount3 -u "$d"
done

/usr/bin/python3 - "$entries" <<PY
import sys
R = {}
$(for k in "${!R[@]}"; do echo "R['$k'] = float('${R[$k]:-0}')"; done)
rows = [("seqwrite", "fio sequential write $seq_size, 1 MiB, end_fsync, median of 3 (MiB/s)", True),
        ("seqread", "fio cold sequential read $seq_size, median of 3 (MiB/s)", True),
        ("randread", "fio 4 KiB random read (IOPS)", True),
        ("randwrite", "fio 4 KiB random write (IOPS)", True),
        ("fsmark0", "fs_mark 4 KiB files, no fsync, median of 3 (files/s)", True),
        ("fsmark1", "fs_mark 4 KiB files, fsync, median of 3 (files/s)", True),
        ("untar", f"untar Linux 6.1, {sys.argv[1]} entries (s)", False),
        ("lslr", "ls -lR, cold (s)", False),
        ("rmrf", "rm -rf (s)", False)]
print("| workload | envelopefs | gocryptfs | bindfs | plain | vs gocryptfs | vs bindfs |")
print("|---|---|---|---|---|---|---|")
for key, label, higher in rows:
    e, g, b, p = (R.get(f"{fs},{key}", 0) for fs in ("envelopefs", "gocryptfs", "bindfs", "plain"))
    def ratio(peer):
        if not e or not peer: return "n/a"
        return f"{(e / peer if higher else peer / e):.2f}"
    print(f"| {label} | {e:g} | {g:g} | {b:g} | {p:g} | {ratio(g)} | {ratio(b)} |")
PY
