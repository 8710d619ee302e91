#!/usr/bin/env bash
# Small FUSE workloads (seconds each), for A/B comparisons of mount options
# and builds: several envelopefs builds side by side with the FUSE ceiling
# (libfuse's passthrough_hp) and gocryptfs, interleaved in one run.
#
#   scripts/bench/fuse_options.sh
#   VARIANTS="old:envelopefs:/path/to/old/envelopefs new:envelopefs:build/fs/envelopefs \
#             wb:envelopefs::writeback_cache ceiling gocryptfs" ROUNDS=5 \
#     scripts/bench/fuse_options.sh
#
# VARIANTS: space-separated NAME[:KIND[:BINARY[:OPTIONS]]]. KIND is
# envelopefs, ceiling or gocryptfs (NAME itself when left out); BINARY the
# envelopefs to mount (default build/fs/envelopefs); OPTIONS more -o
# options for it (e.g. writeback_cache). The ceiling is built with ../shared/ceiling/build.sh
# or taken from CEILING=PATH (passthrough_hp).
# Workloads, each ROUNDS times (default 3) on every variant in turn, the
# one going first rotating; the median counts:
#   untar   the fs/ subtree of Debian's linux-source-6.1, then sync (s)
#   fsmark0 fs_mark -s 4096 -n 3000 -S 0 -L 1 (s for the run)
#   fsmark1 fs_mark -s 4096 -n 1000 -S 1 -L 1 (s for the run)
#   ddwrite dd of 512 MiB of zeros, bs=1M, conv=fsync (s)
#   ddread  dd of that file after sync and drop_caches, bs=1M (s)
# Before every measurement: sync and drop_caches. Prints a Markdown table
# (times in s, lower is better, ratios as other/this so > 1 is faster than
# the peer); BENCH_JSON=FILE also writes the results as JSON.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rounds=${ROUNDS:-3}
variants=(${VARIANTS:-envelopefs ceiling gocryptfs})
build="$repo/build"
export DEBIAN_FRONTEND=noninteractive
dpkg-query -W -f='${Status}' linux-source-6.1 2>/dev/null | grep -q "install ok installed" ||
  { apt-get update -qq && apt-get install -y -qq linux-source-6.1 >/dev/null; }
tarballs=(/usr/src/linux-source-6.1*.tar.xz)

work=$(mktemp -d /var/tmp/envelopefs-fuseopts.XXXXXX)
keyd_pid=
cleanup() {
  for m in "$work"/*/mnt; do mountpoint -q "$m" && fusermount3 -u "$m" 2>/dev/null || true; done
  [[ -n $keyd_pid ]] && kill "$keyd_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/src"
xz -dc "${tarballs[0]}" | tar -C "$work/src" -xf - --wildcards '*/fs/*'
tar -C "$work/src" -cf "$work/fs.tar" . && rm -rf "$work/src"
entries=$(tar -tf "$work/fs.tar" | wc -l)

ceiling=${CEILING:-}
needs_keyd=0
for v in "${variants[@]}"; do
  IFS=: read -r name kind _ <<<"$v"
  kind=${kind:-$name}
  [[ $kind == envelopefs ]] && needs_keyd=1
  if [[ $kind == ceiling && -z $ceiling ]]; then
    ceiling=$(bash "$repo/../shared/ceiling/build.sh" "$work/bin" | tail -1)
  fi
done
if [[ $needs_keyd == 1 ]]; then
  "$build/keyservice/envelope-keyd" -f --data-dir "$work/keyd" --socket "$work/kms.sock" \
    2>"$work/keyd.log" &
  keyd_pid=$!
  for _ in $(seq 100); do [[ -S $work/kms.sock ]] && break; sleep 0.1; done
  key=$("$build/tools/envelopectl" --endpoint "unix:$work/kms.sock" key create)
fi

names=()
declare -A KIND
for v in "${variants[@]}"; do
  IFS=: read -r name kind bin extra <<<"$v"
  kind=${kind:-$name}
  names+=("$name")
  KIND[$name]=$kind
  d="$work/$name"
  mkdir -p "$d/cipher" "$d/mnt"
  case $kind in
    envelopefs)
      bin=${bin:-$build/fs/envelopefs}
      "$bin" init "$d/cipher" --key "$key" --kms "unix:$work/kms.sock" >/dev/null
      "$bin" mount "$d/cipher" "$d/mnt" -o "kms=unix:$work/kms.sock,key=$key${extra:+,$extra}"
      ;;
    ceiling) "$ceiling" "$d/cipher" "$d/mnt" ;;
    gocryptfs)
      gocryptfs -init -q -extpass "echo bench-password" "$d/cipher" >/dev/null
      gocryptfs -q -extpass "echo bench-password" "$d/cipher" "$d/mnt"
      ;;
    *) echo "unknown kind $kind" >&2; exit 2 ;;
  esac
done
for n in "${names[@]}"; do
  for _ in $(seq 100); do mountpoint -q "$work/$n/mnt" && break; sleep 0.1; done
  mountpoint -q "$work/$n/mnt" || { echo "$n did not mount" >&2; exit 1; }
done

cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
declare -A S
step=0
timed() {  # NAME KEY COMMAND...: appends the command's wall time to S[NAME,KEY]
  local n=$1 k=$2; shift 2
  local t0 t1
  t0=$(now); "$@" >"$work/out.log" 2>&1 || { echo "$n $k failed:" >&2; tail -5 "$work/out.log" >&2; exit 1; }
  t1=$(now)
  S[$n,$k]+=" $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')"
}
# passthrough_hp (libfuse 3.14) cannot set times (utimensat on its O_PATH
# descriptors fails with EOPNOTSUPP, and so does the syncfs that flushes
# them): tar still asks, so the work is the same, but neither exit status
# is the ceiling's verdict.
untar() {
  tar -C "$2" -xf "$work/fs.tar" || [[ ${KIND[$1]} == ceiling ]]
  sync -f "$2" || [[ ${KIND[$1]} == ceiling ]]
}
fsmark() { (cd "$1" && fs_mark -d "$2" -s 4096 -n "$3" -S "$4" -L 1); }
ddwrite() { dd if=/dev/zero of="$1" bs=1M count=512 conv=fsync status=none; }
ddread() { dd if="$1" of=/dev/null bs=1M status=none; }

# No deletion between rounds: on ext4 creates are slower for a while
# after mass deletions, which would tax whichever variant came next.
for round in $(seq "$rounds"); do
  for key in untar fsmark0 fsmark1 dd; do
    k=$((step % ${#names[@]})); step=$((step + 1))
    for n in "${names[@]:k}" "${names[@]:0:k}"; do
      m="$work/$n/mnt"
      cold
      case $key in
        untar) mkdir "$m/untar$round"; timed "$n" untar untar "$n" "$m/untar$round" ;;
        fsmark0) mkdir "$m/fsm0.$round"; timed "$n" fsmark0 fsmark "$m" "fsm0.$round" 3000 0 ;;
        fsmark1) mkdir "$m/fsm1.$round"; timed "$n" fsmark1 fsmark "$m" "fsm1.$round" 1000 1 ;;
        dd)
          timed "$n" ddwrite ddwrite "$m/dd"
          cold
          timed "$n" ddread ddread "$m/dd"
          cmp -n 1048576 "$m/dd" /dev/zero >/dev/null || { echo "$n: dd read back wrong" >&2; exit 1; }
          rm -f "$m/dd"
          ;;
      esac
    done
  done
done

/usr/bin/python3 - "$entries" "$rounds" "${BENCH_JSON:-}" "$(git -C "$repo" rev-parse --short HEAD)" \
  "${names[@]}" <<PY
import json, statistics, sys, time
entries, rounds, out, commit, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
S = {}
$(for k in "${!S[@]}"; do echo "S['$k'] = [float(x) for x in '${S[$k]}'.split()]"; done)
rows = [("untar", f"untar of linux 6.1 fs/, {entries} entries, + sync"),
        ("fsmark0", "fs_mark 3,000 x 4 KiB, no fsync"),
        ("fsmark1", "fs_mark 1,000 x 4 KiB, fsync each"),
        ("ddwrite", "dd 512 MiB write + fsync"),
        ("ddread", "dd 512 MiB cold read")]
first = names[0]
peers = names[1:]
print(f"Seconds, median of {rounds} interleaved rounds (all samples in brackets); "
      f"ratios are peer time / {first} time (> 1: {first} is faster).\n")
print("| workload | " + " | ".join(names) + " | " + " | ".join(f"{first} vs {p}" for p in peers) + " |")
print("|---|" + "---|" * (len(names) + len(peers)))
table = []
for key, label in rows:
    med = {n: statistics.median(S[f"{n},{key}"]) for n in names}
    cells = [f"{med[n]:.2f} [{' '.join(f'{x:.2f}' for x in S[f'{n},{key}'])}]" for n in names]
    ratios = [f"{med[p] / med[first]:.2f}" if med[first] else "n/a" for p in peers]
    print(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    table.append({"workload": label, "unit": "s", "higher_is_better": False,
                  "samples": {n: S[f"{n},{key}"] for n in names}, "median": med})
if out:
    with open(out, "w") as f:
        json.dump({"bench": "fs", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "commit": commit, "series": [], "table": table}, f, indent=1)
PY
