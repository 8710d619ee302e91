#!/usr/bin/env bash
# Small-file workloads, two envelopefs daemons side by side (an A/B of a
# change to the daemon's per-request cost), with libfuse's passthrough_hp as
# the FUSE ceiling and, optionally, gocryptfs.
#
#   OLD=/path/to/old/envelopefs NEW=/path/to/new/envelopefs \
#   CEILING=/path/to/passthrough_hp TAR=/path/to/tree.tar \
#     scripts/bench/small_files_ab.sh
#
# OLD defaults to build/fs/envelopefs (then only one envelopefs is
# measured); NEW to build/fs/envelopefs; CEILING is built with
# ../shared/ceiling/build.sh when unset and that script exists; TAR
# defaults to the fs/ subtree of Debian's linux-source-6.1; GOCRYPTFS=1
# adds gocryptfs; ROUNDS (3) rounds; FILES (3000) files for fs_mark
# without fsync and FILES_SYNC (1000) with it. Both envelopefs mounts use
# the same envelope-keyd (build/keyservice).
#
# Each round runs every workload on every filesystem in turn, the first
# one rotating from round to round, with `sync` and a dropped page cache
# before each measurement; nothing is deleted before a workload that
# creates (see docs/BENCHMARKS.md, ext4's recently_deleted()), the trees
# are removed in a timed `rm -rf` at the end of each round. Prints a
# Markdown table (medians, and every sample) and, with BENCH_JSON=FILE,
# the shared JSON result format.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${BUILD_DIR:-$repo/build}
new=${NEW:-$build/fs/envelopefs}
old=${OLD:-}
rounds=${ROUNDS:-3}
files=${FILES:-3000}
files_sync=${FILES_SYNC:-1000}
ceiling=${CEILING:-}

work=$(mktemp -d /var/tmp/envelopefs-ab.XXXXXX)
keyd_pid=""
cleanup() {
  for m in "$work"/*/mnt; do mountpoint -q "$m" && fusermount3 -u "$m" 2>/dev/null || true; done
  [[ -n $keyd_pid ]] && kill "$keyd_pid" 2>/dev/null || true
  for p in "$work"/*.pid; do [[ -f $p ]] && kill "$(cat "$p")" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

if [[ -z $ceiling && -x $repo/../shared/ceiling/build.sh ]]; then
  bash "$repo/../shared/ceiling/build.sh" "$work/ceiling-bin" >/dev/null
  ceiling=$work/ceiling-bin/passthrough_hp
fi
tarfile=${TAR:-}
if [[ -z $tarfile ]]; then
  tarfile=$work/fs.tar
  mkdir "$work/src"
  xz -dc /usr/src/linux-source-6.1.tar.xz | tar -C "$work/src" -xf - --wildcards 'linux-source-6.1/fs/*'
  tar -C "$work/src/linux-source-6.1" -cf "$tarfile" fs
  rm -rf "$work/src"
fi
entries=$(tar -tf "$tarfile" | wc -l)

"$build/keyservice/envelope-keyd" --data-dir "$work/keyd" --socket "$work/kms.sock" \
  --foreground >"$work/keyd.log" 2>&1 &
keyd_pid=$!
for _ in $(seq 100); do [[ -S $work/kms.sock ]] && break; sleep 0.1; done
key=$("$build/tools/envelopectl" --endpoint "unix:$work/kms.sock" key create)

filesystems=()
mount_envelopefs() {  # NAME BINARY
  mkdir -p "$work/$1/mnt"
  "$2" init "$work/$1/cipher" --key "$key" --kms "unix:$work/kms.sock" >/dev/null
  "$2" mount "$work/$1/cipher" "$work/$1/mnt" -o "kms=unix:$work/kms.sock,key=$key"
  filesystems+=("$1")
}
[[ -n $old ]] && mount_envelopefs old "$old"
mount_envelopefs new "$new"
if [[ -n $ceiling ]]; then
  mkdir -p "$work/ceiling/cipher" "$work/ceiling/mnt"
  # passthrough_hp holds a descriptor per inode: the tree must fit the limit.
  (ulimit -n "$(ulimit -Hn)"; "$ceiling" "$work/ceiling/cipher" "$work/ceiling/mnt" \
     >"$work/ceiling.log" 2>&1 & echo $! >"$work/ceiling.pid")
  for _ in $(seq 100); do mountpoint -q "$work/ceiling/mnt" && break; sleep 0.1; done
  filesystems+=(ceiling)
fi
if [[ ${GOCRYPTFS:-0} == 1 ]]; then
  mkdir -p "$work/gocryptfs/cipher" "$work/gocryptfs/mnt"
  gocryptfs -init -q -extpass "echo bench-password" "$work/gocryptfs/cipher" >/dev/null
  gocryptfs -q -extpass "echo bench-password" "$work/gocryptfs/cipher" "$work/gocryptfs/mnt"
  filesystems+=(gocryptfs)
fi

settle() { sync; echo 3 >/proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
declare -A S
add() { S[$1,$2]+=" $3"; }  # FS WORKLOAD VALUE

fsmark() {  # FS DIR N SYNC: prints files/s
  local d=$work/$1/mnt
  mkdir -p "$d/$2"
  (cd "$d" && fs_mark -d "$2" -s 4096 -n "$3" -S "$4" -L 1) >"$work/fsmark.log" 2>&1 ||
    { cat "$work/fsmark.log" >&2; exit 1; }
  awk '/^ *[0-9]+ +[0-9]+ +4096/ {print $4}' "$work/fsmark.log" | tail -1
}

for round in $(seq "$rounds"); do
  k=$(((round - 1) % ${#filesystems[@]}))
  turn=("${filesystems[@]:k}" "${filesystems[@]:0:k}")
  for fs in "${turn[@]}"; do
    settle
    add "$fs" fsmark0 "$(fsmark "$fs" "m0.$round" "$files" 0)"
  done
  for fs in "${turn[@]}"; do
    settle
    add "$fs" fsmark1 "$(fsmark "$fs" "m1.$round" "$files_sync" 1)"
  done
  for fs in "${turn[@]}"; do
    settle
    mkdir "$work/$fs/mnt/t.$round"
    # The ceiling as built by ../shared/ceiling/build.sh has no utimensat
    # (tar's utime fails there after one round trip): its errors are ignored.
    t0=$(now)
    if [[ $fs == ceiling ]]; then
      tar -C "$work/$fs/mnt/t.$round" -xf "$tarfile" 2>/dev/null || true
    else
      tar -C "$work/$fs/mnt/t.$round" -xf "$tarfile"
    fi
    sync; t1=$(now)
    add "$fs" untar "$(echo "$t1 - $t0" | bc)"
  done
  for fs in "${turn[@]}"; do
    settle
    t0=$(now); rm -rf "$work/$fs/mnt/t.$round" "$work/$fs/mnt/m0.$round" "$work/$fs/mnt/m1.$round"; sync; t1=$(now)
    add "$fs" rmrf "$(echo "$t1 - $t0" | bc)"
  done
done

/usr/bin/python3 - "$entries" "$files" "$files_sync" "${BENCH_JSON:-}" \
    "$(git -C "$repo" rev-parse --short HEAD)" "${filesystems[@]}" <<PY
import json, statistics, sys, datetime
entries, files, files_sync, out, commit = sys.argv[1:6]
fss = sys.argv[6:]
S = {}
$(for k in "${!S[@]}"; do echo "S['$k'] = [float(x) for x in '${S[$k]}'.split()]"; done)
rows = [("fsmark0", f"fs_mark {files} x 4 KiB, no fsync (files/s)", "files/s", True),
        ("fsmark1", f"fs_mark {files_sync} x 4 KiB, fsync each (files/s)", "files/s", True),
        ("untar", f"untar of {entries} entries (s)", "s", False),
        ("rmrf", "rm -rf of both (s)", "s", False)]
med = {k: statistics.median(v) for k, v in S.items()}
cols = fss + [f"{a}/{b}" for a, b in (("new", "old"), ("new", "ceiling"), ("new", "gocryptfs"))
              if a in fss and b in fss]
print("| workload | " + " | ".join(cols) + " |")
print("|---|" + "---|" * len(cols))
table = []
for key, label, unit, higher in rows:
    cells = []
    for c in cols:
        if "/" in c:
            a, b = c.split("/")
            x, y = med[f"{a},{key}"], med[f"{b},{key}"]
            cells.append(f"{(x / y if higher else y / x):.2f}")
        else:
            cells.append(f"{med[f'{c},{key}']:.2f}")
    print(f"| {label} | " + " | ".join(cells) + " |")
    table.append({"workload": label, "unit": unit, "higher_is_better": higher,
                  "samples": {f: S[f"{f},{key}"] for f in fss},
                  "median": {f: med[f"{f},{key}"] for f in fss}})
print()
for key, label, _, _ in rows:
    for f in fss:
        print(f"    {label}, {f}: " + " ".join(f"{x:g}" for x in S[f"{f},{key}"]))
if out:
    with open(out, "w") as fh:
        json.dump({"bench": "fs", "date": datetime.datetime.utcnow().isoformat() + "Z",
                   "commit": commit, "series": [], "table": table}, fh, indent=1)
PY
