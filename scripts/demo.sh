#!/usr/bin/env bash
# The README's main command: the on-disk format at work (files sealed and
# opened again, the backing bytes shown to be ciphertext, tampering
# refused), the key service (a key created, rotated, old versions retired,
# the audit chain verified), and an encrypted volume mounted, written,
# remounted and verified. Volume rotation joins when it lands.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

bash scripts/setup.sh >/dev/null
BUILD_DIR="$repo/build" bash scripts/build.sh >/dev/null
tool="$repo/build/tools/envelope-format-tool"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
marker="envelopefs-demo-marker-$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')"

echo "== sealing files through format v1 (4 KiB chunks, DEK in the header)"
for size in 0 1 4096 100000 3000000; do
  f="$work/plain-$size"
  head -c "$size" /dev/urandom > "$f"
  # Plant a recognisable plaintext marker in every file large enough for it.
  if ((size >= 4096)); then printf '%s' "$marker" | dd of="$f" bs=1 seek=100 conv=notrunc status=none; fi
  if ((size >= ${#marker})); then printf '%s' "$marker" | dd of="$f" conv=notrunc status=none; fi
  "$tool" roundtrip "$f" "$work/cipher-$size" "$work/back-$size" >/dev/null
  cmp "$f" "$work/back-$size"
  printf '   %8d plaintext bytes -> %8d backing bytes, round trip identical\n' \
    "$size" "$(stat -c %s "$work/cipher-$size")"
done

echo "== header of the 100000-byte file (no key needed to read it)"
"$tool" inspect "$work/cipher-100000" | sed 's/^/   /'

echo "== first 96 backing bytes: magic, version, flags, chunk size, file id, commitment"
xxd -l 96 "$work/cipher-100000" | sed 's/^/   /'

echo "== is the plaintext marker anywhere in the backing files?"
grep -q -a -F "$marker" "$work/plain-100000"  # it is in the plaintext
if grep -l -a -F "$marker" "$work"/cipher-* >/dev/null; then
  echo "   FOUND: plaintext leaked into a backing file" >&2
  exit 1
fi
echo "   no: '$marker' appears in the plaintext files only"

echo "== flipping one byte of a chunk makes the read fail, never return other data"
if "$tool" roundtrip "$work/plain-100000" "$work/tampered" "$work/tampered-out" --tamper 5000; then
  echo "   tampering went unnoticed" >&2
  exit 1
fi

echo
echo "== the key service: envelope-keyd on a fresh data directory"
keyd="$repo/build/keyservice/envelope-keyd"
ctl="$repo/build/tools/envelopectl"
"$keyd" --data-dir "$work/keyd" --socket "$work/kms.sock"   # returns once it serves
trap 'pkill -f "envelope-keyd --data-dir $work/keyd" || true; rm -rf "$work"' EXIT
export ENVELOPE_KMS_ENDPOINT="unix:$work/kms.sock"
key=$("$ctl" key create --description "demo master key")
"$ctl" key alias create alias/demo "$key"
echo "   created key $key (alias/demo)"
echo "== rotating it twice: versions count from 1, the newest encrypts"
"$ctl" key rotate "$key" | sed 's/^/   /'
"$ctl" key rotate "$key" | sed 's/^/   /'
"$ctl" key rotations "$key" | sed 's/^/   /'
echo "== retiring versions below 3 destroys their material for good"
"$ctl" key retire "$key" --below 3 | sed 's/^/   /'
"$ctl" key list | sed 's/^/   /'
echo "== every request is in the HMAC-chained audit log"
"$ctl" audit tail -n 2 | cut -c1-150 | sed 's/^/   /'
"$ctl" audit verify | sed 's/^/   /'

echo
echo "== an encrypted volume: envelopefs init + mount, files of several sizes"
fs="$repo/build/fs/envelopefs"
mkdir -p "$work/mnt"
trap 'fusermount3 -u "$work/mnt" 2>/dev/null || true; pkill -f "envelope-keyd --data-dir $work/keyd" || true; rm -rf "$work"' EXIT
"$fs" init "$work/cipher" --key alias/demo --kms "$ENVELOPE_KMS_ENDPOINT" | sed 's/^/   /'
"$fs" mount "$work/cipher" "$work/mnt"
mkdir -p "$work/mnt/projects/notes"
for size in 0 1 4096 100000 3000000; do
  cp "$work/plain-$size" "$work/mnt/projects/file-$size"
done
printf '%s\n' "$marker" > "$work/mnt/projects/notes/secret-plan.txt"
ln -s ../file-4096 "$work/mnt/projects/notes/link"
(cd "$work/mnt" && find . -type f -exec sha256sum {} + | sort -k2) > "$work/sums"
echo "   through the mount:"
(cd "$work/mnt" && find . | sort | sed 's/^/     /')
echo "   in the cipherdir (names, link targets and content are encrypted):"
(cd "$work/cipher" && find . | sort | sed 's/^/     /')
if grep -r -l -a -F "$marker" "$work/cipher" >/dev/null; then
  echo "   FOUND the marker in the cipherdir" >&2
  exit 1
fi
echo "   the marker is nowhere in the cipherdir"
echo "== unmount, mount again: every file reads back identical"
fusermount3 -u "$work/mnt"
"$fs" mount "$work/cipher" "$work/mnt"
(cd "$work/mnt" && sha256sum --quiet -c "$work/sums") && echo "   all $(wc -l <"$work/sums") files verified"

echo
echo "== rotation: a new master-key version, then re-wrap the volume's file keys"
# Everything past each file's 1088-byte header, before the rotation: the
# chunks, which a rotation must never rewrite.
chunk_sums() {
  (cd "$work/cipher" && find . -type f ! -name '*.name' ! -name envelopefs.conf ! -name .envelopefs.dirid |
     sort | while read -r f; do printf '%s %s\n' "$(tail -c +1089 "$f" | sha256sum | cut -c1-16)" "$f"; done)
}
chunk_sums > "$work/chunks-before"
current=$("$ctl" key rotate "$key")
echo "   new version of the master key: $current"
echo "   envelopefs rotate, on the mounted volume:"
"$fs" rotate "$work/cipher" | sed 's/^/     /'
echo "== the content is unchanged, through the mount and in the backing chunks"
(cd "$work/mnt" && sha256sum --quiet -c "$work/sums") && echo "   all $(wc -l <"$work/sums") files read back identical"
chunk_sums > "$work/chunks-after"
cmp -s "$work/chunks-before" "$work/chunks-after" &&
  echo "   every byte past the headers of $(wc -l <"$work/chunks-after") backing files is unchanged"
fusermount3 -u "$work/mnt"
echo "== retire every version below the current one: the old versions' material is destroyed"
"$ctl" key retire "$key" --below "$current" | sed 's/^/   /'
echo "== fsck --deep: every header unwraps under a live version, every chunk authenticates"
"$fs" fsck "$work/cipher" --deep | sed 's/^/   /'
"$fs" mount "$work/cipher" "$work/mnt"
(cd "$work/mnt" && sha256sum --quiet -c "$work/sums") && echo "   all $(wc -l <"$work/sums") files still read back identical after the retirement"
fusermount3 -u "$work/mnt"
echo "demo: OK"
