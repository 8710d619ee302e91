#!/usr/bin/env bash
# Runs fstests (xfstests) on envelopefs and gocryptfs, the same test list on
# both, in FUSE mode as the fstests tree's README.fuse describes (FSTYP=fuse,
# FUSE_SUBTYP=.NAME, a mount.fuse.NAME helper), and prints pass / fail /
# not run per filesystem. docs/CONFORMANCE.md holds the results.
#
#   scripts/conformance/xfstests.sh                  generic/quick on both (about an hour)
#   scripts/conformance/xfstests.sh generic/014 generic/308     these tests only
#   FSTESTS_LIST=smoke scripts/conformance/xfstests.sh    the subset scripts/test.sh runs
#   FSTESTS_DIR=~/src/xfstests-dev scripts/...       any fstests tree instead of the pinned one
#   FSTESTS_FS="envelopefs" scripts/...              one filesystem only
#   FSTESTS_ENVELOPEFS_OPTIONS=writeback_cache ...   more -o options for envelopefs
#
# Exit status: 1 if a test failed on envelopefs (gocryptfs is the bar, not a
# gate), 0 otherwise; 2 for a setup problem.
#
# The pinned source is ../shared/fstests/fstests-*.tar.gz beside the repo
# (unpacked and built once under build-fstests/). Two harness details are
# handled here rather than by hand: fstests's _fs_type must see a mounted
# fuse.NAME as "fuse" (common/rc is patched in the tree used, idempotently),
# and each mount helper puts the device string into /proc/mounts
# (fsname=), which is how fstests finds its mounts.
#
# Runs as root. The backing directories live on an ext4 image of
# FSTESTS_DISK_GIB (default 8) GiB, loop-mounted under a temporary
# directory: several tests fill the filesystem or preallocate "all free
# space" (generic/103), and on a FUSE mount that is the backing disk's, so
# the image bounds what a run can take from a shared disk. Every mount, the
# image and the key service are gone when it exits.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work_root=${FSTESTS_WORK:-$repo/build-fstests}
build_dir=${ENVELOPE_BUILD_DIR:-$repo/build}
filesystems=(${FSTESTS_FS:-envelopefs gocryptfs})

# The smoke list that scripts/test.sh runs (about a minute): quick tests
# that passed in the last full run and cover holes, fallocate, fsx with
# punch/zero/collapse-free ops, seeking, renames (whiteout too), setgid
# (inherited, and dropped by writes, fallocate and direct I/O of other
# users), rewinddir, directories, links and times (docs/CONFORMANCE.md).
smoke=(generic/001 generic/002 generic/005 generic/006 generic/007 generic/011 generic/013
       generic/014 generic/023 generic/024 generic/028 generic/035 generic/071 generic/075
       generic/078 generic/080 generic/091 generic/103 generic/112 generic/221 generic/236
       generic/245 generic/246 generic/263 generic/308 generic/314 generic/469 generic/471
       generic/490 generic/567 generic/568 generic/355 generic/683 generic/684 generic/685)
if (($#)); then
  tests=("$@")
elif [[ ${FSTESTS_LIST:-quick} == smoke ]]; then
  tests=("${smoke[@]}")
else
  tests=(-g generic/quick)
fi

log() { echo "xfstests: $*" >&2; }

# ---- dependencies and the fstests tree -----------------------------------
bash "$repo/scripts/setup.sh" >/dev/null
fst_packages=(autoconf automake libtool make gcc xfslibs-dev uuid-dev libattr1-dev libacl1-dev
              libaio-dev libgdbm-dev liburing-dev libcap-dev gawk bc dump psmisc acl xfsprogs
              attr quota)
missing=()
for p in "${fst_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$work_root"
if [[ -n ${FSTESTS_DIR:-} ]]; then
  fst=$(cd "$FSTESTS_DIR" && pwd)
else
  fst=$work_root/fstests
  if [[ ! -d $fst ]]; then
    tarball=$(ls "$repo"/../shared/fstests/fstests-*.tar.gz 2>/dev/null | head -n 1 || true)
    [[ -n $tarball ]] || { log "no fstests tree: set FSTESTS_DIR or provide ../shared/fstests/"; exit 2; }
    log "unpacking $(basename "$tarball")"
    tar -C "$work_root" -xzf "$tarball"
  fi
fi
if [[ ! -x $fst/ltp/fsx ]]; then
  log "building fstests in $fst"
  make -C "$fst" -j"$(nproc)" >"$work_root/fstests-build.log" 2>&1 ||
    { tail -n 30 "$work_root/fstests-build.log" >&2; exit 1; }
fi
# _fs_type reports what df -T says, "fuse.NAME": fstests compares it with
# FSTYP=fuse.
if ! grep -q "s/fuse\\\\.\\[^ \\]\\*/fuse/" "$fst/common/rc"; then
  sed -i "s|-e 's/fuse.ceph-fuse/ceph-fuse/'|-e 's/fuse.ceph-fuse/ceph-fuse/' -e 's/fuse\\\\.[^ ]*/fuse/'|" \
    "$fst/common/rc"
fi
# The users some tests switch to (they are skipped without them).
# With home directories: su warns about a missing one, and the warning
# lands in the output that fstests compares.
for u in fsgqa fsgqa2 123456-fsgqa; do
  id "$u" >/dev/null 2>&1 || useradd -m -s /bin/sh "$u" 2>/dev/null || true
  home=$(getent passwd "$u" | cut -d: -f6)
  if [[ -n $home && ! -d $home ]]; then mkdir -p "$home" && chown "$u:" "$home"; fi
done

[[ -x $build_dir/fs/envelopefs ]] || BUILD_DIR=$build_dir bash "$repo/scripts/build.sh" release >/dev/null

# ---- one run directory, cleaned up on exit --------------------------------
run=$(mktemp -d /tmp/envelopefs-xfstests-XXXXXX)
chmod 755 "$run"  # the tests' other users must reach the mount points
helpers=()
keyd_pid=
cleanup() {
  for m in "$run"/*/test "$run"/*/scratch; do
    mountpoint -q "$m" 2>/dev/null && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m" || true; }
  done
  [[ -n $keyd_pid ]] && kill "$keyd_pid" 2>/dev/null || true
  for h in "${helpers[@]}"; do rm -f "$h"; done
  mountpoint -q "$run/disk" 2>/dev/null && umount "$run/disk"
  rm -rf "$run"
}
trap cleanup EXIT

# The bounded backing disk (see the top of this file).
truncate -s "${FSTESTS_DISK_GIB:-8}G" "$run/disk.img"
mkfs.ext4 -q -F "$run/disk.img"
mkdir "$run/disk"
mount -o loop "$run/disk.img" "$run/disk"

# The key service for envelopefs.
"$build_dir/keyservice/envelope-keyd" --data-dir "$run/keyd" --socket "$run/kms.sock" -f \
  >"$run/keyd.log" 2>&1 &
keyd_pid=$!
for _ in $(seq 100); do [[ -S $run/kms.sock ]] && break; sleep 0.1; done
endpoint=unix:$run/kms.sock
key=$("$build_dir/tools/envelopectl" --endpoint "$endpoint" key create --description xfstests)
printf 'xfstests passphrase\n' >"$run/gocryptfs.pw"
chmod 600 "$run/gocryptfs.pw"

# Mount helpers: mount(8) runs /sbin/mount.fuse.NAME DEVICE MOUNTPOINT -o
# OPTIONS; the backing directory comes as source=DIR (README.fuse). A
# directory not yet a volume is made one (fstests's mkfs is a no-op for
# fuse).
helper_marker='# written by scripts/conformance/xfstests.sh for one run'
write_helper() {
  local name=$1 body=$2 path=/sbin/mount.fuse.$1
  # A helper of ours left by a run that was killed is replaced; anything
  # else at that path is someone's own and stays.
  if [[ -e $path ]] && ! grep -q "^$helper_marker\$" "$path"; then
    log "$path exists already and is not ours; not replacing it"
    exit 2
  fi
  printf '#!/bin/bash\n%s\n%s\n' "$helper_marker" "$body" >"$path"
  chmod 755 "$path"
  helpers+=("$path")
}
parse_opts='dev=$1; mnt=$2; shift 2; src=; rest=()
while (($#)); do
  if [[ $1 == -o ]]; then IFS=, read -ra os <<<"$2"; shift
    for o in "${os[@]}"; do case $o in source=*) src=${o#source=};; "") ;; *) rest+=("$o");; esac; done
  fi; shift
done'
write_helper envelopefs "$parse_opts
if [[ ! -e \$src/envelopefs.conf ]]; then
  \"$build_dir/fs/envelopefs\" init \"\$src\" --key \"$key\" --kms \"$endpoint\" >/dev/null
  chmod 755 \"\$src\"  # the mount's root, 0755 like a fresh mkfs (init makes it 0700)
fi
opts=\"fsname=\$dev,kms=$endpoint,key=$key${FSTESTS_ENVELOPEFS_OPTIONS:+,$FSTESTS_ENVELOPEFS_OPTIONS}\"
for o in \"\${rest[@]}\"; do opts+=\",\$o\"; done
exec \"$build_dir/fs/envelopefs\" \"\$src\" \"\$mnt\" -o \"\$opts\""
write_helper gocryptfs "$parse_opts
[[ -e \$src/gocryptfs.conf ]] || gocryptfs -init -q -passfile \"$run/gocryptfs.pw\" \"\$src\" >/dev/null
args=(-q -passfile \"$run/gocryptfs.pw\" -fsname \"\$dev\")
for o in \"\${rest[@]}\"; do case \$o in
  ro) args+=(-ro);; allow_other) args+=(-allow_other);; rw) ;; *) args+=(-ko \"\$o\");; esac; done
# Its diagnostics (\"SwitchToSyslog: ...\" where there is no syslog) would
# land in the output fstests compares: they go to a log instead.
exec gocryptfs \"\${args[@]}\" \"\$src\" \"\$mnt\" >>\"$run/gocryptfs.log\" 2>&1"

# ---- one fstests run per filesystem --------------------------------------
declare -A status  # "fs test" -> pass | fail | notrun
for fs in "${filesystems[@]}"; do
  d=$run/$fs
  b=$run/disk/$fs  # backing directories on the bounded disk
  mkdir -p "$d/test" "$d/scratch" "$b/test.cipher" "$b/scratch.cipher" "$d/results"
  chmod 755 "$d" "$d/test" "$d/scratch" "$b/test.cipher" "$b/scratch.cipher"
  cat >"$fst/local.config" <<EOF
export TEST_DEV=$fs-test
export TEST_DIR=$d/test
export SCRATCH_DEV=$fs-scratch
export SCRATCH_MNT=$d/scratch
export FSTYP=fuse
export FUSE_SUBTYP=.$fs
export MOUNT_OPTIONS="-osource=$b/scratch.cipher,allow_other,default_permissions"
export TEST_FS_MOUNT_OPTS="-osource=$b/test.cipher,allow_other,default_permissions"
export RESULT_BASE=$d/results
EOF
  log "$fs: running ${tests[*]}"
  start=$SECONDS
  (cd "$fst" && ./check "${tests[@]}") >"$d/check.out" 2>&1 || true
  log "$fs: done in $((SECONDS - start)) s"
  mountpoint -q "$d/test" && { fusermount3 -u "$d/test" || umount -l "$d/test"; }
  mountpoint -q "$d/scratch" && { fusermount3 -u "$d/scratch" || umount -l "$d/scratch"; }
  # Per test: "generic/001 1s ...  1s" (pass), "[not run] ...", "- output
  # mismatch" / "[failed, ...]" (fail).
  while read -r t rest; do
    [[ $t =~ ^[a-z0-9]+/[0-9]+$ ]] || continue
    case $rest in
      *"[not run]"*) status["$fs $t"]=notrun ;;
      *"[failed"*|*"output mismatch"*|*"[expunged]"*) status["$fs $t"]=fail ;;
      *) [[ -n ${status["$fs $t"]:-} ]] || status["$fs $t"]=pass ;;
    esac
  done <"$d/check.out"
  # A failure named on the summary line wins over a first line that looked fine.
  for t in $(sed -n 's/^Failures: //p' "$d/check.out"); do status["$fs $t"]=fail; done
  cp "$d/check.out" "$work_root/$fs.check.out"
  [[ -d $d/results ]] && rm -rf "$work_root/$fs.results" && cp -r "$d/results" "$work_root/$fs.results"
done

# ---- the table ------------------------------------------------------------
all=$(for k in "${!status[@]}"; do echo "${k#* }"; done | sort -u)
out=$work_root/results.tsv
{
  printf 'test'; for fs in "${filesystems[@]}"; do printf '\t%s' "$fs"; done; echo
  for t in $all; do
    printf '%s' "$t"
    for fs in "${filesystems[@]}"; do printf '\t%s' "${status["$fs $t"]:-missing}"; done
    echo
  done
} >"$out"
for fs in "${filesystems[@]}"; do
  p=0 f=0 n=0 failed=()
  for t in $all; do
    case ${status["$fs $t"]:-} in
      pass) p=$((p + 1)) ;; fail) f=$((f + 1)); failed+=("$t") ;; notrun) n=$((n + 1)) ;;
    esac
  done
  echo "xfstests: $fs: $p passed, $f failed, $n not run"
  ((f == 0)) || echo "xfstests: $fs failed: ${failed[*]}"
  [[ $fs == envelopefs && $f -gt 0 ]] && rc=1
  [[ $fs == envelopefs && $((p + f)) -eq 0 ]] && { echo "xfstests: no test ran on envelopefs" >&2; rc=1; }
done
echo "xfstests: per-test table in $out; fstests output in $work_root/*.check.out"
exit "${rc:-0}"
