#!/usr/bin/env bash
# Volume rotation against re-encryption: `envelopefs rotate` re-wraps each
# file's DEK (one KMS ReEncrypt and one 512-byte header slot per file), so
# its time should follow the number of files, not their bytes. The
# alternative it replaces is re-encrypting the tree: copying it into a
# fresh volume. Both are measured on the same three trees, in one run:
#
#   A: 10,000 files of 1 KiB    B: 100 files of 100 MiB    C: 10 files of 1 GiB
#
#   scripts/bench/rotate.sh              all three trees (~20 GiB written)
#   QUICK=1 scripts/bench/rotate.sh      1,000 × 1 KiB, 10 × 10 MiB, 2 × 100 MiB
#                                        (a smoke run, not for the docs)
#   NO_BUILD=1 scripts/bench/rotate.sh   use the binaries in build/ as they are
#   THREADS=N scripts/bench/rotate.sh    envelopefs rotate --threads N
#                                        (default: rotate's own, 8)
#
# Per tree: write it through a mount, unmount, sync; make a new key version;
# with cold caches, time `envelopefs rotate --json` (its "seconds" and the
# wall time of the whole command) and check that every file was re-wrapped;
# `envelopefs fsck --json` must find the volume clean with every file under
# the new version; then, with cold caches again, time `cp -a` of the
# rotated volume's mount into a fresh volume's mount plus `sync` (rotate
# ends with a syncfs, so the copy's data must be on disk too). A tree that
# does not fit twice on the disk (source and copy) is skipped with a note.
# Prints a Markdown table and whether the issue's targets are met.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bash "$repo/scripts/setup.sh" >/dev/null
[[ ${NO_BUILD:-0} == 1 ]] || BUILD_DIR="$repo/build" bash "$repo/scripts/build.sh" >/dev/null
build="$repo/build"
export LC_ALL=C  # $EPOCHREALTIME and printf use the locale's decimal point

quick=${QUICK:-0}
threads=${THREADS:-}
# name, files, bytes per file
if [[ $quick == 1 ]]; then
  trees=("A 1000 1024" "B 10 $((10 << 20))" "C 2 $((100 << 20))")
else
  trees=("A 10000 1024" "B 100 $((100 << 20))" "C 10 $((1 << 30))")
fi

work=$(mktemp -d /var/tmp/envelopefs-rotate.XXXXXX)
cleanup() {
  for m in "$work"/*/*/mnt; do mountpoint -q "$m" && fusermount3 -u "$m" 2>/dev/null || true; done
  pkill -f -- "envelope-keyd --data-dir $work/keyd" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The binaries are copied first: a run takes minutes, and all its figures
# must come from one build even if build/ is rebuilt meanwhile.
bin="$work/bin"
mkdir "$bin"
cp "$build/fs/envelopefs" "$build/keyservice/envelope-keyd" "$build/tools/envelopectl" "$bin/"

note() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
cold() {  # nothing dirty left to flush, nothing cached to read from
  sync
  echo 3 > /proc/sys/vm/drop_caches
}

note "revision $(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- core fs kms keyservice tools 2>/dev/null || echo ' (+ uncommitted changes)'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

"$bin/envelope-keyd" --data-dir "$work/keyd" --socket "$work/kms.sock"
kms="unix:$work/kms.sock"
key=$("$bin/envelopectl" --endpoint "$kms" key create)

new_volume() {  # DIR: a fresh volume in DIR/cipher, mount point DIR/mnt
  mkdir -p "$1/mnt"
  "$bin/envelopefs" init "$1/cipher" --key "$key" --kms "$kms" >/dev/null
}
mount_volume() { "$bin/envelopefs" mount "$1/cipher" "$1/mnt" -o "kms=$kms,key=$key"; }
umount_volume() { fusermount3 -u "$1/mnt"; }

write_tree() {  # DIR FILES SIZE: zeros (encrypted all the same), 1,000 files a directory
  /usr/bin/python3 - "$@" <<'PY'
import os, sys
root, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = b"\0" * min(size, 1 << 20)
for i in range(n):
    d = os.path.join(root, f"d{i // 1000:03d}")
    if i % 1000 == 0:
        os.mkdir(d)
    with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
        left = size
        while left:
            left -= f.write(block[:left])
PY
}

declare -A R
ran=()
for tree in "${trees[@]}"; do
  read -r name files size <<<"$tree"
  bytes=$((files * size))
  # Source and copy both on this disk: each is the plaintext plus 28 bytes
  # per 4 KiB chunk and a header per file (<1% and <8 KiB), and 2 GiB to spare.
  need=$((2 * (bytes + bytes / 100 + files * 8192) + (2 << 30)))
  avail=$(df --output=avail -B1 "$work" | tail -1)
  if ((avail < need)); then
    note "tree $name ($files × $size B) SKIPPED: needs $((need >> 20)) MiB free on $work, $((avail >> 20)) MiB available"
    R[$name,skipped]=1
    continue
  fi
  ran+=("$name")
  R[$name,files]=$files R[$name,bytes]=$bytes
  t="$work/$name"

  note "tree $name: writing $files × $size B through a mount"
  new_volume "$t/src"
  mount_volume "$t/src"
  t0=$EPOCHREALTIME
  write_tree "$t/src/mnt" "$files" "$size"
  umount_volume "$t/src"
  sync
  note "tree $name: written and synced in $(elapsed "$t0" "$EPOCHREALTIME") s"

  version=$("$bin/envelopectl" --endpoint "$kms" key rotate "$key")
  cold
  t0=$EPOCHREALTIME
  json=$("$bin/envelopefs" rotate "$t/src/cipher" --kms "$kms" --key "$key" --json ${threads:+--threads "$threads"})
  t1=$EPOCHREALTIME
  R[$name,wall]=$(elapsed "$t0" "$t1")
  # Every file found, every file re-wrapped to the version just made.
  out=$(/usr/bin/python3 -c '
import json, sys
j, files, version = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
if (j["files"], j["rewrapped"], j["failed"], j["key_version"]) != (files, files, 0, version):
    sys.exit(f"rotate: expected {files} files re-wrapped to version {version}: {sys.argv[1]}")
print(j["seconds"], j["bytes_written"])' "$json" "$files" "$version")
  read -r "R[$name,seconds]" "R[$name,written]" <<<"$out"
  note "tree $name: rotate to version $version: ${R[$name,seconds]} s (wall ${R[$name,wall]} s)"

  # fsck: clean, and the key_versions count puts every file under $version.
  "$bin/envelopefs" fsck "$t/src/cipher" --kms "$kms" --key "$key" --json | /usr/bin/python3 -c '
import json, sys
j, files, key, version = json.load(sys.stdin), int(sys.argv[1]), sys.argv[2], sys.argv[3]
if not j["clean"] or j["files"] != files or j["key_versions"] != {key: {version: files}}:
    sys.exit(f"fsck: expected a clean volume, {files} files under {key} version {version}: {json.dumps(j)}")
' "$files" "$key" "$version"
  note "tree $name: fsck clean, all $files files under version $version"

  # Re-encryption: the copy also reads every byte of the rotated volume back
  # through a mount, so a rotation that broke a file would fail here.
  new_volume "$t/copy"
  mount_volume "$t/src"
  mount_volume "$t/copy"
  cold
  t0=$EPOCHREALTIME
  cp -a "$t/src/mnt/." "$t/copy/mnt/"
  sync
  t1=$EPOCHREALTIME
  R[$name,copy]=$(elapsed "$t0" "$t1")
  copied=$(find "$t/copy/mnt" -type f | wc -l)
  ((copied == files)) || { note "copy: $copied files of $files"; exit 1; }
  umount_volume "$t/src"
  umount_volume "$t/copy"
  note "tree $name: re-encryption (cp -a + sync) ${R[$name,copy]} s"
  # Free the disk for the next tree.
  rm -rf "$t"
done

((${#ran[@]})) || { note "no tree fitted on the disk"; exit 1; }
/usr/bin/python3 - "$quick" "${ran[@]}" <<PY
import sys
R = {}
$(for k in "${!R[@]}"; do echo "R['$k'] = '${R[$k]}'"; done)
quick, ran = sys.argv[1] == "1", sys.argv[2:]

def size(b):
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if b >= 1 << shift:
            v = b / (1 << shift)
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.2f} {unit}"
    return f"{b} B"

print("| tree | files | bytes | rotate s | rotate wall s | files/s | bytes written by rotate "
      "| re-encrypt (cp -a + sync) s | speed-up (copy / rotate wall) |")
print("|---|---|---|---|---|---|---|---|---|")
for t in ran:
    files, b = int(R[f"{t},files"]), int(R[f"{t},bytes"])
    s, wall, copy = float(R[f"{t},seconds"]), float(R[f"{t},wall"]), float(R[f"{t},copy"])
    print(f"| {t}: {files:,} × {size(b // files)} | {files:,} | {size(b)} | {s:.3f} | {wall:.3f} "
          f"| {files / s:,.0f} | {int(R[f'{t},written']):,} | {copy:.1f} | {copy / wall:,.0f}× |")
for t in "ABC":
    if f"{t},skipped" in R:
        print(f"\nTree {t} skipped: not enough free disk space.")

print()
if "A" in ran and int(R["A,files"]) == 10000:
    wall = float(R["A,wall"])
    print(f"Target 10,000 files in at most 3 s: {'met' if wall <= 3 else 'NOT met'} ({wall:.3f} s wall).")
else:
    print("Target 10,000 files in at most 3 s: not measured (no 10,000-file tree in this run).")
big = max(ran, key=lambda t: int(R[f"{t},bytes"]))
x = float(R[f"{big},copy"]) / float(R[f"{big},wall"])
print(f"Target at least 100× faster than re-encryption, largest tree run ({big}): "
      f"{'met' if x >= 100 else 'NOT met'} ({x:,.0f}×).")
if quick:
    print("(QUICK=1: reduced sizes, not for the docs.)")
PY
