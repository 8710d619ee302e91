#!/usr/bin/env bash
# Re-keying file data (`envelopefs rekey`, docs/ROTATION.md) against what a
# user would do without it: copy the tree into a fresh volume. One volume
# holds a tree of TREE_MIB MiB (default 256: 2,000 files of 64 KiB and the
# rest in 4 large files); each round, in alternating order:
#
#   rekey offline   `envelopefs rekey` on the unmounted volume
#   rekey online    `envelopefs rekey` through its mount (each file re-keyed
#                   by the mount, one request per file)
#   copy            `cp -a` from the volume's mount into a fresh volume's
#                   mount, then `sync -f` of the new one
#
# with cold caches before each (drop_caches). Reports each one's MiB/s
# (plaintext MiB over wall seconds), the median of ROUNDS (default 3), and
# the ratios to copy, all from this one run. Writes about
# 3 x ROUNDS x TREE_MIB MiB. Needs root and FUSE. Prints a Markdown table.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export LC_ALL=C
tree_mib=${TREE_MIB:-256}
rounds=${ROUNDS:-3}
bash "$repo/scripts/setup.sh" >/dev/null
[[ ${NO_BUILD:-0} == 1 ]] || BUILD_DIR="$repo/build" bash "$repo/scripts/build.sh" \
  --target envelopefs envelope-keyd envelopectl >/dev/null
build=$repo/build
work=$(mktemp -d "${BASE:-/var/tmp}/rekey-bench.XXXXXX")
source "$repo/scripts/bench/lib.sh"
trap bench_cleanup EXIT

setup_keyd
kms="unix:$work/kms.sock"
mount_vol() {  # CIPHERDIR MOUNTPOINT
  "$build/fs/envelopefs" mount "$1" "$2" -o "kms=$kms,key=$KEY"
  BENCH_MOUNTS+=("$2")
}
unmount_vol() { fusermount3 -u "$1"; }
mkdir -p "$work/a/cipher" "$work/a/mnt" "$work/b/mnt"
"$build/fs/envelopefs" init "$work/a/cipher" --key "$KEY" --kms "$kms" >/dev/null
mount_vol "$work/a/cipher" "$work/a/mnt"

# The tree.
small=2000
big_mib=$(( (tree_mib - small * 64 / 1024) / 4 ))
(( big_mib > 0 )) || die "TREE_MIB too small"
for d in $(seq 0 19); do mkdir "$work/a/mnt/d$d"; done
for i in $(seq 0 $((small - 1))); do
  head -c 65536 /dev/urandom >"$work/a/mnt/d$((i % 20))/f$i"
done
for i in 0 1 2 3; do
  dd if=/dev/urandom of="$work/a/mnt/big$i" bs=1M count="$big_mib" status=none
done
total_mib=$(du -sm --apparent-size "$work/a/mnt" | cut -f1)
files=$((small + 4))
sync -f "$work/a/mnt"

declare -A T
run_rekey_offline() {
  unmount_vol "$work/a/mnt"; cold
  local t0; t0=$(now)
  "$build/fs/envelopefs" rekey "$work/a/cipher" --kms "$kms" --key "$KEY" >"$work/out" 2>&1 ||
    { cat "$work/out" >&2; die "rekey failed"; }
  T[offline]+=" $(elapsed "$t0" "$(now)")"
  grep -q "re-keyed $files of $files files" "$work/out" || { cat "$work/out" >&2; die "not every file re-keyed"; }
  mount_vol "$work/a/cipher" "$work/a/mnt"
}
run_rekey_online() {
  cold
  local t0; t0=$(now)
  "$build/fs/envelopefs" rekey "$work/a/cipher" --kms "$kms" --key "$KEY" >"$work/out" 2>&1 ||
    { cat "$work/out" >&2; die "online rekey failed"; }
  T[online]+=" $(elapsed "$t0" "$(now)")"
  grep -q "re-keyed $files of $files files" "$work/out" || { cat "$work/out" >&2; die "not every file re-keyed"; }
}
run_copy() {
  rm -rf "$work/b/cipher"; mkdir "$work/b/cipher"
  "$build/fs/envelopefs" init "$work/b/cipher" --key "$KEY" --kms "$kms" >/dev/null
  mount_vol "$work/b/cipher" "$work/b/mnt"
  cold
  local t0; t0=$(now)
  cp -a "$work/a/mnt/." "$work/b/mnt/"
  sync -f "$work/b/mnt"
  T[copy]+=" $(elapsed "$t0" "$(now)")"
  unmount_vol "$work/b/mnt"
  rm -rf "$work/b/cipher"
}

for r in $(seq "$rounds"); do
  if (( r % 2 == 1 )); then order=(run_rekey_offline run_rekey_online run_copy); else order=(run_copy run_rekey_online run_rekey_offline); fi
  for f in "${order[@]}"; do $f; done
done

rate() { awk -v m="$total_mib" -v s="$1" 'BEGIN {printf "%.0f", m / s}'; }
copy_s=$(median ${T[copy]})
echo "Tree: $files files, $total_mib MiB (2,000 x 64 KiB, 4 x $big_mib MiB); $rounds rounds, cold caches"
echo
echo "| workload | median s | MiB/s | vs copy into a fresh volume | samples (s) |"
echo "|---|---|---|---|---|"
for k in offline online copy; do
  s=$(median ${T[$k]})
  label=$([[ $k == copy ]] && echo "cp -a into a fresh volume + sync" || echo "envelopefs rekey, $k")
  echo "| $label | $s | $(rate "$s") | $(awk -v a="$copy_s" -v b="$s" 'BEGIN {printf "%.2f", a / b}') |${T[$k]} |"
done
