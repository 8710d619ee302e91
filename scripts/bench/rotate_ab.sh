#!/usr/bin/env bash
# Two builds of envelopefs rotate (and their envelope-keyd) against each
# other, interleaved on one volume: the CPU each spends per file, and the
# effect of unrelated dirty data.
#
#   scripts/bench/rotate_ab.sh OLD_BIN NEW_BIN
#
# OLD_BIN and NEW_BIN hold envelopefs, envelope-keyd and envelopectl (the
# first's envelopectl makes the volume). FILES (default 20000) files of
# 1 KiB are written through a mount; then, ROUNDS times (default 3), for
# each build in turn: its envelope-keyd is started on the same data
# directory, a new key version is made and the volume rotated with the
# page cache warm ("clean": nothing else dirty), and once more right after
# dd has written DIRTY_MIB MiB (default 2048; 0 skips it) to a file on the
# same filesystem, not synced ("dirty"). Reported per run: rotate's
# `seconds`, the CPU time of the rotate process (user + system, from
# /usr/bin/time) and of the daemon (from /proc/PID/stat), per file.
set -euo pipefail
old=$1 new=$2
files=${FILES:-20000}
rounds=${ROUNDS:-3}
dirty_mib=${DIRTY_MIB:-2048}
export LC_ALL=C

work=$(mktemp -d /var/tmp/envelopefs-rotate-ab.XXXXXX)
keyd_pid=
cleanup() {
  mountpoint -q "$work/mnt" 2>/dev/null && fusermount3 -u "$work/mnt" 2>/dev/null || true
  [[ -n $keyd_pid ]] && kill "$keyd_pid" 2>/dev/null && wait "$keyd_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
kms="unix:$work/kms.sock"
tick=$(getconf CLK_TCK)
cpu() { awk -v t="$tick" '{ print ($14 + $15) / t }' "/proc/$1/stat"; }
start_keyd() {  # BIN
  rm -f "$work/kms.sock"
  "$1/envelope-keyd" -f --data-dir "$work/keyd" --socket "$work/kms.sock" >>"$work/keyd.log" 2>&1 &
  keyd_pid=$!
  for _ in $(seq 100); do [[ -S $work/kms.sock ]] && return; sleep 0.1; done
  echo "envelope-keyd did not start" >&2
  exit 1
}
stop_keyd() { kill "$keyd_pid"; wait "$keyd_pid" 2>/dev/null || true; keyd_pid=; }

start_keyd "$old"
key=$("$old/envelopectl" --endpoint "$kms" key create)
"$old/envelopefs" init "$work/cipher" --key "$key" --kms "$kms" >/dev/null
mkdir "$work/mnt"
"$old/envelopefs" mount "$work/cipher" "$work/mnt" -o "kms=$kms,key=$key"
/usr/bin/python3 - "$work/mnt" "$files" <<'PY'
import os, sys
from multiprocessing import Pool
root, n = sys.argv[1], int(sys.argv[2])
data = os.urandom(1024)
def one_dir(d):
    os.mkdir(os.path.join(root, f"d{d:04d}"))
    for i in range(d * 1000, min(n, (d + 1) * 1000)):
        with open(os.path.join(root, f"d{d:04d}", f"f{i:07d}"), "wb") as f:
            f.write(data)
with Pool(8) as pool:
    pool.map(one_dir, range((n + 999) // 1000), chunksize=1)
PY
fusermount3 -u "$work/mnt"
sync
stop_keyd
echo "$files files of 1 KiB; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

echo "| round | build | dirty MiB at start | rotate s | rotate CPU µs/file | envelope-keyd CPU µs/file |"
echo "|---|---|---|---|---|---|"
for r in $(seq "$rounds"); do
  for bin in "$old" "$new"; do
    start_keyd "$bin"
    for mode in clean dirty; do
      [[ $mode == dirty && $dirty_mib == 0 ]] && continue
      sync
      "$bin/envelopectl" --endpoint "$kms" key rotate "$key" >/dev/null
      [[ $mode == dirty ]] && dd if=/dev/zero of="$work/unrelated" bs=1M count="$dirty_mib" status=none
      dirty=$(awk '/^Dirty:/ { print int($2 / 1024) }' /proc/meminfo)
      k0=$(cpu "$keyd_pid")
      out=$({ /usr/bin/time -f "TIME %U %S" "$bin/envelopefs" rotate "$work/cipher" --kms "$kms" \
                --key "$key" --json; } 2>&1)
      k1=$(cpu "$keyd_pid")
      rm -f "$work/unrelated"
      /usr/bin/python3 - "$r" "$bin" "$mode" "$dirty" "$k0" "$k1" "$out" <<'PY'
import json, sys
r, b, mode, dirty, k0, k1, out = sys.argv[1:]
j = json.loads(next(l for l in out.splitlines() if l.startswith("{")))
user, system = map(float, next(l for l in out.splitlines() if l.startswith("TIME")).split()[1:])
n = j["rewrapped"]
if j["failed"] or n == 0:
    sys.exit(f"rotate: {out[:2000]}")
print(f"| {r} | {b} ({mode}) | {dirty} | {j['seconds']:.3f} | {1e6 * (user + system) / n:.0f} "
      f"| {1e6 * (float(k1) - float(k0)) / n:.0f} |")
PY
    done
    stop_keyd
  done
done
