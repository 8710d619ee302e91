#!/usr/bin/env bash
# Filesystem benchmarks: envelopefs against gocryptfs (Debian) and the FUSE
# ceiling (libfuse's passthrough_hp: the same kernel path without crypto),
# also built without its writeback cache (ceiling-nowb: the bound for a
# filesystem that, like envelopefs by default, does without it), with the
# plain backing filesystem for reference, in one run on this machine.
#
#   scripts/bench/fs.sh                    all workloads (about 10 min)
#   QUICK=1 scripts/bench/fs.sh            smaller sizes (a smoke run, not for the docs)
#   BENCH_JSON=FILE scripts/bench/fs.sh    also write the results as JSON (for plot.py)
#
# Other knobs: BUILD_DIR (envelopefs build, default build/), CEILING_SRC (a
# libfuse example/ tree to build passthrough_hp from; default
# ../shared/ceiling), TREE=full|subtree (default: the whole Linux tree only
# if this process may raise the descriptor limit for the ceiling),
# TREE_DIRS (the subtree's top-level directories, default "fs include"),
# ENVELOPEFS_OPTS (further envelopefs mount options, e.g. writeback_cache).
#
# Workloads, each three rounds on every filesystem in turn, median kept:
# fio sequential write of 1 GiB (end_fsync, no fallocate: see
# docs/BENCHMARKS.md) and cold read of it, fio 4 KiB random read and random
# write, dd write of 512 MiB + fsync and cold dd read of it, fs_mark 3,000
# 4 KiB files without fsync and 1,000 with fsync each, and untar, ls -lR
# (cold) and rm -rf of Linux 6.1 source (Debian's linux-source-6.1).
# Prints every round's samples on stderr and, on stdout, two Markdown
# tables: the medians with envelopefs's ratio to gocryptfs and to both
# ceilings (> 1 means envelopefs is faster), and where the time went in the
# median round: each filesystem's daemon CPU seconds (envelopefs's with
# envelope-keyd's) and the read requests the backing disk completed.
set -Eeuo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export DEBIAN_FRONTEND=noninteractive
dpkg-query -W -f='${Status}' linux-source-6.1 2>/dev/null | grep -q "install ok installed" ||
  { apt-get update -qq && apt-get install -y -qq linux-source-6.1 >/dev/null; }

work=$(mktemp -d /var/tmp/envelopefs-bench.XXXXXX)
# shellcheck source=scripts/bench/lib.sh
source "$repo/scripts/bench/lib.sh"
trap bench_cleanup EXIT
workload="setup"
trap 'echo "fs.sh: FAILED in workload \"$workload\" (line $LINENO): see above" >&2' ERR
start=$(now)
bench_build

quick=${QUICK:-0}
if [[ $quick == 1 ]]; then
  seq_size=128m; rand_size=64m; rand_time=3; dd_mib=128; files0=500; files1=200
else
  seq_size=1g; rand_size=256m; rand_time=10; dd_mib=512; files0=3000; files1=1000
fi
tarballs=(/usr/src/linux-source-6.1*.tar.xz)
tarball=${tarballs[0]}

# The source tree, uncompressed once so that untar measures the filesystem.
# passthrough_hp holds a descriptor for every inode the kernel knows, so the
# whole tree (83,731 entries) fits only where the hard limit can be raised;
# elsewhere a subtree is used (each round's tree is walked and removed on its
# own, and dropping the caches makes the kernel forget the earlier rounds').
# QUICK=1 takes one small directory.
tree=${TREE:-auto}
if [[ $tree == auto ]]; then
  tree=subtree
  [[ $CEILING_NOFILE == unlimited || $CEILING_NOFILE -ge 200000 ]] && tree=full
fi
if [[ $quick == 1 ]]; then
  patterns=('*/fs/ext4/*')
elif [[ $tree == full ]]; then
  patterns=()
else
  read -r -a dirs <<<"${TREE_DIRS:-fs include}"
  patterns=()
  for d in "${dirs[@]}"; do patterns+=("*/$d/*"); done
fi
if ((${#patterns[@]})); then
  mkdir "$work/src" && xz -dc "$tarball" | tar -C "$work/src" -xf - --wildcards "${patterns[@]}"
  tar -C "$work/src" -cf "$work/linux.tar" . && rm -rf "$work/src"
  tree_label="Linux 6.1 $([[ $quick == 1 ]] && echo fs/ext4 || echo "${dirs[*]/%//}")"
else
  xz -dc "$tarball" > "$work/linux.tar"
  tree_label="Linux 6.1"
fi
entries=$(tar -tf "$work/linux.tar" | wc -l)
# The ceiling needs a descriptor per entry of one round's tree, besides its own.
if [[ $CEILING_NOFILE != unlimited ]] && ((entries + 1000 > CEILING_NOFILE)); then
  die "the tree has $entries entries, the ceiling may hold only $CEILING_NOFILE descriptors: set TREE=subtree or TREE_DIRS"
fi

filesystems=(envelopefs gocryptfs ceiling ceiling-nowb plain)
setup_keyd
for fs in "${filesystems[@]}"; do "setup_${fs//-/_}"; done
# Let the writeback of linux.tar finish before the first measurement: it
# once landed on whichever filesystem the rotation put first.
cold

# Workload by workload, each on every filesystem in turn, the one going
# first rotating from step to step: the disk's speed drifts over a run (its
# sync latency varies by a factor of two within minutes here), and
# measuring one filesystem's whole series before the next one's put that
# drift on whichever filesystem ran at a bad moment. Before every
# measurement the script syncs and drops the page cache (cold), so no
# workload flushes what the previous one left dirty. Every workload runs
# three rounds in turn and the median counts: a slow moment of the disk
# then weighs on one sample.
step=0
next_turn() {  # sets turn: the filesystems, starting at a different one each step
  local k=$((step % ${#filesystems[@]}))
  step=$((step + 1))
  turn=("${filesystems[@]:k}" "${filesystems[@]:0:k}")
}

# Results: for each workload (in order) its label, unit, direction, and
# every filesystem's samples; beside each sample, where the time went: the
# CPU seconds its daemons used (envelopefs's include envelope-keyd's) and
# the read requests the backing disk completed.
declare -a KEYS=()
declare -A LABEL UNIT HIGHER SAMPLES CPU READS

# The processes whose CPU time counts for a filesystem.
declare -A DAEMONS=([envelopefs]="$PID_envelopefs $PID_keyd" [gocryptfs]=$PID_gocryptfs
                    [ceiling]=$PID_ceiling [ceiling-nowb]=$PID_ceiling_nowb [plain]="")
cpu_ticks() {  # PID...: user + system clock ticks of all their threads
  local p t=0 f
  for p in "$@"; do
    f=$(cat "/proc/$p/stat") || die "process $p (a daemon of the run) is gone"
    read -r -a f <<<"${f##*) }"  # fields from the state on: utime, stime are 12, 13
    t=$((t + f[11] + f[12]))
  done
  echo "$t"
}
clk_tck=$(getconf CLK_TCK)
# The backing disk: the block device holding the work directory (none on
# an overlay or other device-less filesystem: the reads then show as 0).
read -r disk_major disk_minor < <(stat -c '%Hd %Ld' "$work")
disk_reads() {
  awk -v a="$disk_major" -v b="$disk_minor" '$1 == a && $2 == b {print $4; f = 1}
    END {if (!f) print 0}' /proc/diskstats
}

fio_json() {  # FIO-ARGS...: runs fio, prints MiB/s and IOPS of its one job
  fio --output-format=json "$@" >"$work/fio.json"
  /usr/bin/python3 - "$work/fio.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
rw = j["write"] if j["write"]["io_bytes"] else j["read"]
if j["error"] or not rw["io_bytes"]:
    sys.exit(f"fio: job error {j['error']}, {rw['io_bytes']} bytes")
print(f"{rw['bw_bytes'] / 2**20:.1f} {rw['iops']:.0f}")
PY
}

# The measurements: each takes the filesystem's mount point, runs on cold
# caches (the caller drops them) and sets VAL. A failing command stops the
# whole run (set -e, the ERR trap names the workload).
m_seqwrite() {
  read -r VAL _ < <(fio_json --name=seq --filename="$1/seq.dat" --rw=write --bs=1m \
    --size="$seq_size" --ioengine=psync --fallocate=none --end_fsync=1)
}
m_seqread() {
  read -r VAL _ < <(fio_json --name=seq --filename="$1/seq.dat" --rw=read --bs=1m \
    --size="$seq_size" --ioengine=psync)
}
m_randread() {
  read -r _ VAL < <(fio_json --name=rand --filename="$1/rand.dat" --rw=randread --bs=4k \
    --size="$rand_size" --ioengine=psync --time_based --runtime="$rand_time")
}
m_randwrite() {
  read -r _ VAL < <(fio_json --name=rand --filename="$1/rand.dat" --rw=randwrite --bs=4k \
    --size="$rand_size" --ioengine=psync --time_based --runtime="$rand_time" --fallocate=none)
}
m_ddwrite() {
  local t0; t0=$(now)
  dd if=/dev/zero of="$1/dd.dat" bs=1M count="$dd_mib" conv=fsync status=none
  VAL=$(elapsed "$t0" "$(now)")
}
m_ddread() {
  local t0; t0=$(now)
  dd if="$1/dd.dat" of=/dev/null bs=1M status=none
  VAL=$(elapsed "$t0" "$(now)")
}
m_untar() {
  mkdir "$1/tree.$round"
  local t0; t0=$(now)
  tar -C "$1/tree.$round" -xf "$work/linux.tar"
  sync
  VAL=$(elapsed "$t0" "$(now)")
}
m_lslr() {
  local t0; t0=$(now)
  ls -lR "$1/tree.$round" >/dev/null
  VAL=$(elapsed "$t0" "$(now)")
}
m_fsmark() {  # SYNC FILES
  local d="$1" n
  mkdir "$d/fsmark$2.$round"
  # fs_mark wants a directory path under 40 bytes: run it from inside.
  if ! (cd "$d" && fs_mark -d "fsmark$2.$round" -s 4096 -n "$3" -S "$2" -L 1) \
      >"$work/fsmark.log" 2>&1; then
    cat "$work/fsmark.log" >&2
    return 1
  fi
  n=$(awk '/^ *[0-9]+ +[0-9]+ +4096/ {print $4}' "$work/fsmark.log" | tail -1)
  is_number "$n" || { cat "$work/fsmark.log" >&2; return 1; }
  VAL=$n
}
m_fsmark0() { m_fsmark "$1" 0 "$files0"; }
m_fsmark1() { m_fsmark "$1" 1 "$files1"; }
m_rmrf() {
  local t0; t0=$(now)
  rm -rf "$1/tree.$round"
  sync
  VAL=$(elapsed "$t0" "$(now)")
}

# run KEY UNIT HIGHER LABEL [PREP]: three rounds of m_KEY, in turn; PREP FS
# (untimed, before the caches are dropped) readies a filesystem for a round.
run() {
  local key=$1 prep=${5:-}
  KEYS+=("$key"); UNIT[$key]=$2; HIGHER[$key]=$3; LABEL[$key]=$4
  workload=$4
  for round in 1 2 3; do
    next_turn
    for fs in "${turn[@]}"; do
      [[ -n $prep ]] && "$prep" "$(mnt "$fs")"
      cold
      VAL=
      local c0 r0
      # shellcheck disable=SC2086  # DAEMONS: a list of process ids
      c0=$(cpu_ticks ${DAEMONS[$fs]})
      r0=$(disk_reads)
      "m_$key" "$(mnt "$fs")"
      is_number "$VAL" || die "$workload on $fs: no result (got '$VAL')"
      SAMPLES[$fs,$key]+="${SAMPLES[$fs,$key]:+ }$VAL"
      # shellcheck disable=SC2086
      CPU[$fs,$key]+="${CPU[$fs,$key]:+ }$(awk -v a="$c0" -v b="$(cpu_ticks ${DAEMONS[$fs]})" \
        -v t="$clk_tck" 'BEGIN {printf "%.2f", (b - a) / t}')"
      READS[$fs,$key]+="${READS[$fs,$key]:+ }$(($(disk_reads) - r0))"
    done
  done
  for fs in "${filesystems[@]}"; do
    # shellcheck disable=SC2086  # the list of samples
    echo "$4, $fs: ${SAMPLES[$fs,$key]} (median $(median ${SAMPLES[$fs,$key]}));" \
      "daemon CPU s: ${CPU[$fs,$key]}; disk reads: ${READS[$fs,$key]}" >&2
  done
}
rm_seq() { rm -f "$1/seq.dat"; }
rm_dd() { rm -f "$1/dd.dat"; }

run seqwrite MiB/s 1 "fio sequential write $seq_size, 1 MiB, end_fsync" rm_seq
run seqread MiB/s 1 "fio cold sequential read $seq_size"
for fs in "${filesystems[@]}"; do rm -f "$(mnt "$fs")/seq.dat"; done
# The random workloads' file is written once, untimed, before their rounds.
workload="fio random layout"
for fs in "${filesystems[@]}"; do
  fio --name=layout --filename="$(mnt "$fs")/rand.dat" --rw=write --bs=1m \
    --size="$rand_size" --ioengine=psync --fallocate=none >/dev/null
done
run randread IOPS 1 "fio 4 KiB random read, ${rand_time} s"
run randwrite IOPS 1 "fio 4 KiB random write, ${rand_time} s"
for fs in "${filesystems[@]}"; do rm -f "$(mnt "$fs")/rand.dat"; done
run ddwrite s 0 "dd write ${dd_mib} MiB + fsync" rm_dd
run ddread s 0 "dd cold read ${dd_mib} MiB"
for fs in "${filesystems[@]}"; do rm -f "$(mnt "$fs")/dd.dat"; done
# No mass deletion before a workload that creates files: on ext4 without a
# journal (this machine's disk) the inode allocator checks every recently
# deleted inode of a block group (recently_deleted()) on each create for
# about 30 s afterwards, which taxes whichever filesystem's directories land
# in those groups. So the trees are untarred first, fs_mark's files stay
# until the end, and the timed rm -rf comes last.
run untar s 0 "untar $tree_label, $entries entries"
run lslr s 0 "ls -lR, cold, $entries entries"
run fsmark0 files/s 1 "fs_mark $files0 × 4 KiB, no fsync"
run fsmark1 files/s 1 "fs_mark $files1 × 4 KiB, fsync each"
run rmrf s 0 "rm -rf, $entries entries"
workload="teardown"
for fs in "${filesystems[@]}"; do rm -rf "$(mnt "$fs")"/fsmark*; done
minutes=$(awk -v s="$(elapsed "$start" "$(now)")" 'BEGIN {printf "%.1f", s / 60}')
echo "fs.sh: whole run $minutes min${ENVELOPEFS_OPTS:+, envelopefs mounted with -o $ENVELOPEFS_OPTS}" >&2

# The table (stdout) and BENCH_JSON, from every sample: one line per
# workload and filesystem.
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
for key in "${KEYS[@]}"; do
  for fs in "${filesystems[@]}"; do
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$key" "${LABEL[$key]}" "${UNIT[$key]}" \
      "${HIGHER[$key]}" "$fs" "${SAMPLES[$fs,$key]}" "${CPU[$fs,$key]}" "${READS[$fs,$key]}"
  done
done >"$work/samples.tsv"
/usr/bin/python3 - "$work/samples.tsv" "${BENCH_JSON:-}" "$commit" "${filesystems[*]}" <<'PY'
import json, os, statistics, sys, time
samples_tsv, bench_json, commit, fss = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split()
rows = {}
for line in open(samples_tsv):
    key, label, unit, higher, fs, samples, cpu, reads = line.rstrip("\n").split("\t")
    r = rows.setdefault(key, {"workload": label, "unit": unit,
                              "higher_is_better": higher == "1",
                              "samples": {}, "median": {},
                              "cpu_s": {}, "disk_reads": {}})
    s = [float(x) for x in samples.split()]
    r["samples"][fs] = s
    r["median"][fs] = statistics.median_low(s)
    # The CPU time and disk reads of the round whose sample is the median.
    i = s.index(r["median"][fs])
    r["cpu_s"][fs] = [float(x) for x in cpu.split()][i]
    r["disk_reads"][fs] = [int(x) for x in reads.split()][i]

def ratio(r, peer):  # > 1: envelopefs is faster
    e, p = r["median"]["envelopefs"], r["median"][peer]
    if not e or not p:
        return "n/a"
    return f"{(e / p if r['higher_is_better'] else p / e):.2f}"

peers = ["gocryptfs", "ceiling", "ceiling-nowb"]
print("| workload | " + " | ".join(fss) + " | " + " | ".join(f"vs {p}" for p in peers) + " |")
print("|---" * (len(fss) + len(peers) + 1) + "|")
for r in rows.values():
    cells = " | ".join(f"{r['median'][fs]:g}" for fs in fss)
    print(f"| {r['workload']} ({r['unit']}) | {cells} | " +
          " | ".join(ratio(r, p) for p in peers) + " |")
# Where the time went, in the median round of each filesystem: its
# daemons' CPU seconds and the backing disk's completed reads.
daemons = [fs for fs in fss if fs != "plain"]
print()
print("| workload (median round) | " +
      " | ".join(f"{fs} CPU s" for fs in daemons) + " | " +
      " | ".join(f"{fs} disk reads" for fs in fss) + " |")
print("|---" * (len(daemons) + len(fss) + 1) + "|")
for r in rows.values():
    print(f"| {r['workload']} | " +
          " | ".join(f"{r['cpu_s'][fs]:.2f}" for fs in daemons) + " | " +
          " | ".join(str(r["disk_reads"][fs]) for fs in fss) + " |")
if bench_json:
    with open(bench_json, "w") as f:
        json.dump({"bench": "fs", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "commit": commit, "envelopefs_opts": os.environ.get("ENVELOPEFS_OPTS", ""),
                   "series": [], "table": list(rows.values())},
                  f, indent=1, ensure_ascii=False)
PY
