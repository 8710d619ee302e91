#!/usr/bin/env bash
# How envelopefs's costs grow: creates per second with 1, 4 and 16
# concurrent writers (against gocryptfs and the FUSE ceiling in the same
# run), and the mount daemon's memory with many files open and after a walk
# of a large tree.
#
#   scripts/bench/scale.sh                   all of it (about 10 min, estimated)
#   QUICK=1 scripts/bench/scale.sh           smaller sizes (a smoke run, not for the docs)
#   BENCH_JSON=FILE scripts/bench/scale.sh   also write the results as JSON (for plot.py)
#
# Other knobs: BUILD_DIR, CEILING_SRC (as fs.sh), WALK_FILES (the walked
# tree, default 1,000,000, QUICK 100,000), WALK_BACKING=tmpfs|disk (where
# that tree's backing files live; default tmpfs when there is memory for it).
#
# (a) creates: fs_mark, 4 KiB files without fsync, N writers each in its own
#     directory (one -d per writer), the same number of files in all; three
#     rounds on every filesystem in turn (rotating order, caches dropped
#     before each measurement), median kept.
# (b) rss, open files: a fresh envelopefs mount, 10,000 files of 1 KiB
#     written through it, then one process holding all 10,000 open, then
#     reading each of them once while it holds them; the daemon's VmRSS
#     and VmHWM (/proc/PID/status) at each step.
# (c) rss, walk: WALK_FILES empty files created through a fresh mount by 8
#     parallel writers (1,000 a directory), caches dropped, `find -ls` of the
#     whole tree (a LOOKUP per entry: the daemon's inode table grows to the
#     tree), then `echo 2 > /proc/sys/vm/drop_caches` (the kernel forgets its
#     inodes, the daemon's table must shrink), twice: VmRSS and VmHWM after
#     each step.
set -Eeuo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

work=$(mktemp -d /var/tmp/envelopefs-scale.XXXXXX)
# shellcheck source=scripts/bench/lib.sh
source "$repo/scripts/bench/lib.sh"
walk_tmpfs=
scale_cleanup() {
  bench_cleanup
  if [[ -n $walk_tmpfs ]]; then
    mountpoint -q "$walk_tmpfs" && umount "$walk_tmpfs"
    rmdir "$walk_tmpfs" 2>/dev/null
  fi
  return 0
}
trap scale_cleanup EXIT
workload="setup"
trap 'echo "scale.sh: FAILED in \"$workload\" (line $LINENO): see above" >&2' ERR
start=$(now)
bench_build

quick=${QUICK:-0}
if [[ $quick == 1 ]]; then
  create_total=1600; walk_files=${WALK_FILES:-100000}
else
  create_total=4800; walk_files=${WALK_FILES:-1000000}
fi
writers=(1 4 16)
open_files=10000
rss_target_mib=100

rss() {  # PID: "VmRSS VmHWM" in KiB
  awk '/^VmRSS:/ {r = $2} /^VmHWM:/ {h = $2} END {print r, h}' "/proc/$1/status"
}
declare -a RSS_ROWS=()  # "step<TAB>VmRSS KiB<TAB>VmHWM KiB"
record_rss() {  # PID STEP
  local r h
  read -r r h < <(rss "$1")
  RSS_ROWS+=("$2"$'\t'"$r"$'\t'"$h")
  echo "rss: $2: VmRSS $((r / 1024)) MiB, VmHWM $((h / 1024)) MiB" >&2
}

# ---- (a) creates per second ----------------------------------------------
filesystems=(envelopefs gocryptfs ceiling)
setup_keyd
for fs in "${filesystems[@]}"; do "setup_$fs"; done
cold

# As in fs.sh: each measurement on every filesystem in turn, the first one
# rotating, caches synced and dropped before each, so that the disk's drift
# spreads over all of them; the created files stay until the end (no mass
# deletion before a workload that creates: ext4's recently_deleted() scan).
step=0
next_turn() {
  local k=$((step % ${#filesystems[@]}))
  step=$((step + 1))
  turn=("${filesystems[@]:k}" "${filesystems[@]:0:k}")
}
declare -A CREATES
for n in "${writers[@]}"; do
  workload="creates, $n writers"
  per_writer=$((create_total / n))
  for round in 1 2 3; do
    next_turn
    for fs in "${turn[@]}"; do
      d=$(mnt "$fs")
      dirs=()
      for ((w = 0; w < n; w++)); do dirs+=(-d "c$n.$round.$w"); done
      cold
      # fs_mark wants directory paths under 40 bytes: run it from inside.
      if ! (cd "$d" && fs_mark "${dirs[@]}" -s 4096 -n "$per_writer" -S 0 -L 1) \
          >"$work/fsmark.log" 2>&1; then
        cat "$work/fsmark.log" >&2
        die "fs_mark failed on $fs"
      fi
      v=$(awk '/^ *[0-9]+ +[0-9]+ +4096/ {print $4}' "$work/fsmark.log" | tail -1)
      is_number "$v" || { cat "$work/fsmark.log" >&2; die "fs_mark gave no result on $fs"; }
      CREATES[$fs,$n]+="${CREATES[$fs,$n]:+ }$v"
    done
  done
  for fs in "${filesystems[@]}"; do
    # shellcheck disable=SC2086  # the list of samples
    echo "creates/s, $n writers, $fs: ${CREATES[$fs,$n]} (median $(median ${CREATES[$fs,$n]}))" >&2
  done
done
workload="creates teardown"
for fs in gocryptfs ceiling; do fusermount3 -u "$(mnt "$fs")"; done
fusermount3 -u "$(mnt envelopefs)"
rm -rf "$work/envelopefs" "$work/gocryptfs" "$work/ceiling"

# ---- (b) RSS with 10,000 files open -----------------------------------------
workload="rss, $open_files open files"
setup_envelopefs
pid=$PID_envelopefs
record_rss "$pid" "mounted"
/usr/bin/python3 - "$(mnt envelopefs)/open" "$open_files" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
data = b"x" * 1024
for i in range(n):
    d = f"{root}/d{i // 1000}"
    if i % 1000 == 0:
        os.makedirs(d)
    with open(f"{d}/f{i}", "wb") as f:
        f.write(data)
PY
cold
record_rss "$pid" "$open_files files of 1 KiB written, caches dropped"
# The holder opens every file, says so, and keeps them open until its
# stdin closes.
coproc HOLDER {
  /usr/bin/python3 -c '
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
fds = [os.open(f"{root}/d{i // 1000}/f{i}", os.O_RDONLY) for i in range(n)]
print(len(fds), flush=True)
sys.stdin.readline()
assert all(len(os.pread(fd, 2048, 0)) == 1024 for fd in fds)
print("read", flush=True)
sys.stdin.read()
' "$(mnt envelopefs)/open" "$open_files" 2>&1
}
# shellcheck disable=SC2153  # set by coproc
holder_pid=$HOLDER_PID
BENCH_PIDS+=("$holder_pid")
read -r held <&"${HOLDER[0]}" || true
[[ $held == "$open_files" ]] || die "the holder did not open $open_files files (said: '$held')"
record_rss "$pid" "$open_files files held open"
echo >&"${HOLDER[1]}"
read -r said <&"${HOLDER[0]}" || true
[[ $said == read ]] || die "the holder did not read its files (said: '$said')"
record_rss "$pid" "$open_files files held open, each read once"
open_rss=${RSS_ROWS[-1]}
holder_in=${HOLDER[1]}
exec {holder_in}>&-
wait "$holder_pid" || die "the holder failed"
cold
record_rss "$pid" "all closed, caches dropped"
fusermount3 -u "$(mnt envelopefs)"
wait "$pid" || true
rm -rf "$work/envelopefs"

# ---- (c) RSS after a walk of a large tree -----------------------------------
workload="rss, walk of $walk_files files"
# The backing tree of a million files: on ext4 each backing file (a
# 1,088-byte header) takes a 4 KiB block, 4 GiB written; a tmpfs holds the
# same in memory and writes nothing, and the daemon's memory is the same.
backing=${WALK_BACKING:-auto}
if [[ $backing == auto ]]; then
  avail_kib=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
  need_kib=$((walk_files * 6 + 2 * 1024 * 1024))  # 4 KiB page + inode + dentry, + 2 GiB
  backing=disk
  ((avail_kib > need_kib)) && backing=tmpfs
fi
if [[ $backing == tmpfs ]]; then
  walk_tmpfs=$(mktemp -d /var/tmp/envelopefs-walk.XXXXXX)
  mount -t tmpfs -o "size=$((walk_files * 5 / 1024 + 1024))m,nr_inodes=$((walk_files * 2))" \
    envelopefs-bench "$walk_tmpfs"
  setup_envelopefs "$walk_tmpfs/cipher"
else
  setup_envelopefs
fi
pid=$PID_envelopefs
record_rss "$pid" "walk: mounted (backing: $backing)"
t0=$(now)
/usr/bin/python3 - "$(mnt envelopefs)/walk" "$walk_files" 8 <<'PY'
import os, sys
from multiprocessing import Pool
root, n, writers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
per_dir = 1000
dirs = (n + per_dir - 1) // per_dir
os.makedirs(root)
def make(d):
    p = f"{root}/{d // 100}/{d}"
    os.makedirs(p, exist_ok=True)
    for i in range(min(per_dir, n - d * per_dir)):
        os.close(os.open(f"{p}/f{i}", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))
    return 1
with Pool(writers) as pool:
    assert sum(pool.imap_unordered(make, range(dirs), chunksize=4)) == dirs
PY
t1=$(now)
echo "walk: created $walk_files files in $(elapsed "$t0" "$t1") s" >&2
record_rss "$pid" "walk: $walk_files files created"
cold
record_rss "$pid" "walk: caches dropped"
# Two walks, each followed by the kernel forgetting the tree: the second
# shows whether memory freed after the first is reused (bounded) or the
# process grows again.
for w in 1 2; do
  t0=$(now)
  found=$(find "$(mnt envelopefs)/walk" -type f -ls | wc -l)
  t1=$(now)
  [[ $found == "$walk_files" ]] || die "walk $w found $found files, not $walk_files"
  echo "walk: find -ls of $found files in $(elapsed "$t0" "$t1") s" >&2
  record_rss "$pid" "walk: after find -ls of every file ($w)"
  # The larger of the two: another process's drop_caches during a walk
  # (the setting is global) makes the kernel forget part of the tree early.
  if [[ $w == 1 ]] || (($(cut -f2 <<<"${RSS_ROWS[-1]}") > $(cut -f2 <<<"$walk_rss"))); then
    walk_rss=${RSS_ROWS[-1]}
  fi
  sync
  echo 2 > /proc/sys/vm/drop_caches
  # The kernel sends its FORGETs as it evicts; give the daemon a moment to
  # handle them (a measurement, not a test: nothing waits on it).
  sleep 2
  record_rss "$pid" "walk: after echo 2 > drop_caches ($w)"
done
forgot_rss=${RSS_ROWS[-1]}
workload="teardown"
fusermount3 -u "$(mnt envelopefs)"
wait "$pid" || true
minutes=$(awk -v s="$(elapsed "$start" "$(now)")" 'BEGIN {printf "%.1f", s / 60}')
echo "scale.sh: whole run $minutes min" >&2

# ---- Report ----------------------------------------------------------------
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
{
  for fs in "${filesystems[@]}"; do
    for n in "${writers[@]}"; do printf 'creates\t%s\t%s\t%s\n' "$fs" "$n" "${CREATES[$fs,$n]}"; done
  done
  for row in "${RSS_ROWS[@]}"; do printf 'rss\t%s\n' "$row"; done
  printf 'meta\t%s\t%s\t%s\t%s\n' "$create_total" "$walk_files" "$open_files" "$rss_target_mib"
  printf 'key\topen\t%s\nkey\twalk\t%s\nkey\tforgot\t%s\n' "$open_rss" "$walk_rss" "$forgot_rss"
} >"$work/results.tsv"
/usr/bin/python3 - "$work/results.tsv" "${BENCH_JSON:-}" "$commit" <<'PY'
import json, statistics, sys, time
tsv, bench_json, commit = sys.argv[1:4]
creates, rss, key = {}, [], {}
for line in open(tsv):
    f = line.rstrip("\n").split("\t")
    if f[0] == "creates":
        creates.setdefault(f[1], {})[int(f[2])] = [float(x) for x in f[3].split()]
    elif f[0] == "rss":
        rss.append((f[1], int(f[2]) / 1024, int(f[3]) / 1024))
    elif f[0] == "meta":
        total, walk, opened, target = map(int, f[1:])
    elif f[0] == "key":
        key[f[1]] = (f[2], int(f[3]) / 1024, int(f[4]) / 1024)
fss = list(creates)
ns = sorted(next(iter(creates.values())))
med = {fs: {n: statistics.median_low(creates[fs][n]) for n in ns} for fs in fss}

print(f"Creates per second: fs_mark, {total:,} files of 4 KiB in all, no fsync, "
      "N writers each in its own directory; median of 3 rounds (all rounds in brackets).\n")
print("| writers | " + " | ".join(fss) + " | vs gocryptfs | vs ceiling |")
print("|---" * (len(fss) + 3) + "|")
for n in ns:
    cells = " | ".join(f"{med[fs][n]:,.0f} ({', '.join(f'{x:,.0f}' for x in creates[fs][n])})"
                       for fs in fss)
    e = med["envelopefs"][n]
    print(f"| {n} | {cells} | {e / med['gocryptfs'][n]:.2f} | {e / med['ceiling'][n]:.2f} |")
print(f"\nenvelopefs mount daemon memory (/proc/PID/status; target with "
      f"{opened:,} open files: VmRSS < {target} MiB):\n")
print("| step | VmRSS MiB | VmHWM MiB |\n|---|---|---|")
for step, r, h in rss:
    print(f"| {step} | {r:.1f} | {h:.1f} |")
o, w, g = key["open"][1], key["walk"][1], key["forgot"][1]
print(f"\nWith {opened:,} files open: VmRSS {o:.1f} MiB "
      f"({'within' if o < target else 'OVER'} the {target} MiB target). "
      f"After a walk of {walk:,} files (the larger of two): {w:.1f} MiB; after the kernel "
      f"forgot them the second time: {g:.1f} MiB "
      f"({'came down' if g < w * 0.5 else 'did NOT come down by half'}).")
if bench_json:
    series = [{"group": "creates", "title": f"creates/s, 4 KiB files, {fs}",
               "x": "concurrent writers", "y": "creates/s", "log_x": True,
               "points": [[n, med[fs][n]] for n in ns]} for fs in fss]
    # One curve per experiment and reading, on a shared axis of steps.
    labels = [step for step, _, _ in rss]
    for part, title in (("open", f"{opened:,} open files"), ("walk", f"walk of {walk:,} files")):
        idx = [i for i, (step, _, _) in enumerate(rss) if step.startswith("walk:") == (part == "walk")]
        for col, name in ((1, "VmRSS"), (2, "VmHWM")):
            series.append({"group": "rss", "title": f"envelopefs daemon {name}, {title}",
                           "x": "step", "y": "MiB", "log_x": False, "labels": labels,
                           "points": [[i, rss[i][col]] for i in idx]})
    with open(bench_json, "w") as f:
        json.dump({"bench": "scale", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "commit": commit, "series": series, "table": []}, f, indent=1)
PY
