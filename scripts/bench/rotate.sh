#!/usr/bin/env bash
# How `envelopefs rotate` scales: rotation of 1,000, 10,000, 100,000 and
# 1,000,000 files of 1 KiB (time, files/s), and whether unrelated dirty data
# on the same filesystem slows it down.
#
#   scripts/bench/rotate.sh              1k, 10k, 100k, 1M files (~4 GiB of
#                                        backing blocks at 1M; each tree is
#                                        deleted after use), then the dirty row
#   QUICK=1 scripts/bench/rotate.sh      1k and 10k files, 1 GiB dirty (a smoke run)
#   SIZES="1000 50000" ...               other tree sizes
#   NO_BUILD=1 ...                       use the binaries in build/ as they are
#   BIN=DIR ...                          use DIR/{envelopefs,envelope-keyd,envelopectl}
#                                        instead of build/ (an A/B run of another build)
#   THREADS=N ...                        envelopefs rotate --threads N (default: its own, 8)
#   WRITERS=N ...                        processes creating the files (default 8)
#   DIRTY_MIB=N ...                      unrelated dirty data for the last row (default 2048)
#   ROUNDS=N ...                         rounds of the dirty row (default 3; 0: no dirty row)
#   WARM=1 ...                           do not drop the page cache before each rotation
#   BENCH_JSON=FILE ...                  also write the results as JSON (group "rotate")
#
# Per tree size: a fresh volume is mounted and the files are written through
# the mount by WRITERS processes at once (1,000 files a directory; the time
# is reported separately), then unmounted and synced. A new key version is
# made (`envelopectl key rotate`), the page cache dropped (unless WARM=1),
# and `envelopefs rotate --json` timed: "rotate s" is the run's own
# `seconds`, "wall s" the whole command. Every file must be re-wrapped to
# the new version, and a second rotation must find every file current (10k
# files and fewer: `envelopefs fsck` must also find the volume clean).
#
# The dirty row: on the 10,000-file volume, ROUNDS times, rotate once with
# nothing else dirty and once right after another process has written
# DIRTY_MIB MiB (not synced) to a file on the same filesystem, the volume's
# files in the page cache both times (no drop_caches). A rotation
# that ended with syncfs waited for all of it; one that syncs only its own
# writes does not (docs/ROTATION.md, "Durability").
#
# Needs root (drop_caches) and FUSE. Prints a Markdown table.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export LC_ALL=C  # $EPOCHREALTIME and printf use the locale's decimal point

quick=${QUICK:-0}
if [[ -n ${SIZES:-} ]]; then
  read -r -a sizes <<<"$SIZES"
elif [[ $quick == 1 ]]; then
  sizes=(1000 10000)
else
  sizes=(1000 10000 100000 1000000)
fi
writers=${WRITERS:-8}
threads=${THREADS:-}
dirty_mib=${DIRTY_MIB:-$([[ $quick == 1 ]] && echo 1024 || echo 2048)}
rounds=${ROUNDS:-3}
warm=${WARM:-0}

if [[ -z ${BIN:-} ]]; then
  bash "$repo/scripts/setup.sh" >/dev/null
  [[ ${NO_BUILD:-0} == 1 ]] || BUILD_DIR="$repo/build" bash "$repo/scripts/build.sh" \
    --target envelopefs envelope-keyd envelopectl >/dev/null
fi

work=$(mktemp -d /var/tmp/envelopefs-rotate.XXXXXX)
keyd_pid=
cleanup() {
  for m in "$work"/*/mnt; do mountpoint -q "$m" 2>/dev/null && fusermount3 -u "$m" 2>/dev/null || true; done
  [[ -n $keyd_pid ]] && kill "$keyd_pid" 2>/dev/null && wait "$keyd_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The binaries are copied first: a run takes minutes, and all its figures
# must come from one build even if build/ is rebuilt meanwhile.
bin="$work/bin"
mkdir "$bin"
if [[ -n ${BIN:-} ]]; then
  cp "$BIN/envelopefs" "$BIN/envelope-keyd" "$BIN/envelopectl" "$bin/"
else
  cp "$repo/build/fs/envelopefs" "$repo/build/keyservice/envelope-keyd" \
     "$repo/build/tools/envelopectl" "$bin/"
fi

note() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
cold() {  # nothing dirty left to flush, nothing cached to read from
  sync
  [[ $warm == 1 ]] || echo 3 > /proc/sys/vm/drop_caches
}

commit=$(git -C "$repo" rev-parse --short HEAD)
note "revision $commit$(git -C "$repo" diff --quiet HEAD -- core fs kms keyservice tools 2>/dev/null || echo ' (+ uncommitted changes)')${BIN:+ (binaries from $BIN)}, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(findmnt -no FSTYPE -T "$work") under $work"

"$bin/envelope-keyd" -f --data-dir "$work/keyd" --socket "$work/kms.sock" >"$work/keyd.log" 2>&1 &
keyd_pid=$!
for _ in $(seq 100); do [[ -S $work/kms.sock ]] && break; sleep 0.1; done
kms="unix:$work/kms.sock"
key=$("$bin/envelopectl" --endpoint "$kms" key create)

write_tree() {  # MOUNT FILES WRITERS: 1 KiB files, 1,000 a directory, WRITERS processes
  /usr/bin/python3 - "$@" <<'PY'
import os, sys
from multiprocessing import Pool
root, n, writers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = os.urandom(1024)
def one_dir(d):
    path = os.path.join(root, f"d{d:04d}")
    os.mkdir(path)
    for i in range(d * 1000, min(n, (d + 1) * 1000)):
        fd = os.open(os.path.join(path, f"f{i:07d}"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
with Pool(writers) as pool:
    pool.map(one_dir, range((n + 999) // 1000), chunksize=1)
PY
}

# rotate VOLUME FILES [warm]: a new key version, then a timed rotation;
# prints "SECONDS WALL WALK SYNC DURABILITY".
rotate() {
  local dir=$1 files=$2 version json t0 t1
  version=$("$bin/envelopectl" --endpoint "$kms" key rotate "$key")
  [[ ${3:-} == warm ]] || cold
  t0=$EPOCHREALTIME
  json=$("$bin/envelopefs" rotate "$dir/cipher" --kms "$kms" --key "$key" --json ${threads:+--threads "$threads"})
  t1=$EPOCHREALTIME
  /usr/bin/python3 -c '
import json, sys
j, files, version, wall = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if (j["files"], j["rewrapped"], j["failed"], j["key_version"]) != (files, files, 0, version):
    sys.exit(f"rotate: expected {files} files re-wrapped to version {version}: {sys.argv[1][:2000]}")
print(j["seconds"], wall, j.get("walk_seconds", 0), j.get("sync_seconds", 0), j.get("durability", "?"))
' "$json" "$files" "$version" "$(elapsed "$t0" "$t1")"
}

declare -A R
for n in "${sizes[@]}"; do
  t="$work/t$n"
  mkdir -p "$t/mnt"
  "$bin/envelopefs" init "$t/cipher" --key "$key" --kms "$kms" >/dev/null
  "$bin/envelopefs" mount "$t/cipher" "$t/mnt" -o "kms=$kms,key=$key"
  note "$n files: writing through the mount with $writers writers"
  t0=$EPOCHREALTIME
  write_tree "$t/mnt" "$n" "$writers"
  fusermount3 -u "$t/mnt"
  sync
  R[$n,create]=$(elapsed "$t0" "$EPOCHREALTIME")
  note "$n files: written and synced in ${R[$n,create]} s"

  out=$(rotate "$t" "$n")
  read -r "R[$n,seconds]" "R[$n,wall]" "R[$n,walk]" "R[$n,sync]" "R[$n,durability]" <<<"$out"
  note "$n files: rotate ${R[$n,seconds]} s (wall ${R[$n,wall]} s; walk ${R[$n,walk]} s, final sync ${R[$n,sync]} s, ${R[$n,durability]})"

  # Resumable: a second run finds every file current and writes nothing.
  "$bin/envelopefs" rotate "$t/cipher" --kms "$kms" --key "$key" --json | /usr/bin/python3 -c '
import json, sys
j, files = json.load(sys.stdin), int(sys.argv[1])
if (j["rewrapped"], j["already_current"], j["failed"]) != (0, files, 0):
    sys.exit(f"a second rotation should find all {files} files current: {json.dumps(j)[:2000]}")
' "$n"
  if ((n <= 10000)); then
    "$bin/envelopefs" fsck "$t/cipher" --kms "$kms" --key "$key" --json | /usr/bin/python3 -c '
import json, sys
j, files = json.load(sys.stdin), int(sys.argv[1])
if not j["clean"] or j["files"] != files:
    sys.exit(f"fsck: expected a clean volume of {files} files: {json.dumps(j)[:2000]}")
' "$n"
    note "$n files: rerun writes nothing, fsck clean"
  else
    note "$n files: rerun writes nothing"
  fi

  if ((rounds > 0)) && { ((n == 10000)) || [[ $n == "${sizes[-1]}" && -z ${R[dirty_done]:-} ]]; }; then
    # The dirty row, on this volume, its files in the page cache both times.
    R[dirty_files]=$n
    for r in $(seq "$rounds"); do
      sync
      out=$(rotate "$t" "$n" warm)
      read -r s _ <<<"$out"
      R[clean,$r]=$s
      # Another writer: DIRTY_MIB MiB into the page cache, not synced.
      dd if=/dev/zero of="$work/unrelated" bs=1M count="$dirty_mib" status=none
      version=$("$bin/envelopectl" --endpoint "$kms" key rotate "$key")
      dirty=$(awk '/^Dirty:/ {print int($2 / 1024)}' /proc/meminfo)
      t0=$EPOCHREALTIME
      "$bin/envelopefs" rotate "$t/cipher" --kms "$kms" --key "$key" --json ${threads:+--threads "$threads"} >"$work/dirty.json"
      t1=$EPOCHREALTIME
      R[dirty,$r]=$(/usr/bin/python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["rewrapped"] == int(sys.argv[2]), j; print(j["seconds"])' "$work/dirty.json" "$n")
      R[dirty_mib,$r]=$dirty
      note "dirty row, round $r: rotate $n files ${R[clean,$r]} s clean, ${R[dirty,$r]} s with $dirty MiB dirty in the page cache"
      rm -f "$work/unrelated"
      sync
    done
    R[dirty_done]=1
  fi
  # Free the disk for the next tree.
  rm -rf "$t"
done

/usr/bin/python3 - "$quick" "$rounds" "$dirty_mib" "$commit" "${BENCH_JSON:-}" "${sizes[@]}" <<PY
import datetime, json, statistics, sys
R = {}
$(for k in "${!R[@]}"; do echo "R['$k'] = '${R[$k]}'"; done)
quick, rounds, dirty_mib, commit, out = sys.argv[1] == "1", int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
sizes = [int(n) for n in sys.argv[6:]]

print("| files of 1 KiB | create through the mount s | rotate s | rotate wall s | files/s | walk s | final sync s |")
print("|---|---|---|---|---|---|---|")
for n in sizes:
    s = float(R[f"{n},seconds"])
    print(f"| {n:,} | {float(R[f'{n},create']):.1f} | {s:.3f} | {float(R[f'{n},wall']):.3f} | {n / s:,.0f} "
          f"| {float(R[f'{n},walk']):.3f} | {float(R[f'{n},sync']):.3f} |")
print(f"\nDurability: {R[f'{sizes[0]},durability']}.")
table = []
if "dirty_done" in R:
    files = int(R["dirty_files"])
    clean = [float(R[f"clean,{r}"]) for r in range(1, rounds + 1)]
    dirty = [float(R[f"dirty,{r}"]) for r in range(1, rounds + 1)]
    mib = [int(R[f"dirty_mib,{r}"]) for r in range(1, rounds + 1)]
    print(f"\n| rotate {files:,} files of 1 KiB (s) | rounds | median |")
    print("|---|---|---|")
    print(f"| nothing else dirty | {', '.join(f'{x:.3f}' for x in clean)} | {statistics.median(clean):.3f} |")
    print(f"| right after {dirty_mib} MiB of unrelated writes (Dirty: {', '.join(map(str, mib))} MiB) "
          f"| {', '.join(f'{x:.3f}' for x in dirty)} | {statistics.median(dirty):.3f} |")
    table.append({"workload": f"rotate {files:,} × 1 KiB: clean vs {dirty_mib} MiB unrelated dirty data",
                  "unit": "s", "higher_is_better": False,
                  "samples": {"clean": clean, "dirty": dirty},
                  "median": {"clean": statistics.median(clean), "dirty": statistics.median(dirty)}})
if 1000000 in sizes:
    s = float(R["1000000,seconds"])
    print(f"\nTarget 1,000,000 files in at most 60 s: {'met' if s <= 60 else 'NOT met'} ({s:.1f} s).")
if quick:
    print("(QUICK=1: reduced sizes, not for the docs.)")
if out:
    series = [{"group": "rotate", "title": "rotate, 1 KiB files", "x": "files", "y": "seconds",
               "log_x": True, "points": [[n, float(R[f"{n},seconds"])] for n in sizes]},
              {"group": "rotate", "title": "create through the mount", "x": "files", "y": "seconds",
               "log_x": True, "points": [[n, float(R[f"{n},create"])] for n in sizes]}]
    with open(out, "w") as f:
        json.dump({"bench": "rotate", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                   "commit": commit, "series": series, "table": table}, f, indent=1)
PY
