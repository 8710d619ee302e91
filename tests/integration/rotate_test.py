"""Integration tests of volume rotation, fsck and retiring key versions:
the real key service, real volumes, real mounts, and an independent reading
of the on-disk headers (docs/FORMAT.md §3) to check what rotate wrote."""
import hashlib
import json
import os
import random
import shutil
import signal
import stat
import struct
import subprocess
import threading
import time
import unittest

from fs_harness import ENVELOPEFS, Mount, run
from harness import ENVELOPECTL

HEADER_PREFIX = 64
SLOT_SIZE = 512
HEADER_SIZE = HEADER_PREFIX + 2 * SLOT_SIZE
DEK_XATTR = "user.envelopefs.dek"
# .envelopefs.rotating: the marker of a rotation in progress (or killed).
INTERNAL = {"envelopefs.conf", "envelopefs.conf.tmp", ".envelopefs.dirid", ".envelopefs.rotating"}
MARKER = ".envelopefs.rotating"


def content_files(cipherdir):
    """Every backing regular file that holds file content."""
    for root, _, files in os.walk(cipherdir):
        for f in files:
            p = os.path.join(root, f)
            # .envelopefs.tmp.*: a side file or config being replaced when
            # the process was killed; never read (docs/FORMAT.md §8.2).
            if (f in INTERNAL or f.endswith(".name") or f.startswith(".envelopefs.tmp.")
                    or not stat.S_ISREG(os.lstat(p).st_mode)):
                continue
            yield p


def blob_label(blob):
    """(key id, key version) from a key service blob (docs/KEYSERVICE.md)."""
    assert blob[:3] == b"EK\x01", blob[:3]
    raw = blob[3:19].hex()
    key_id = f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
    return key_id, struct.unpack("<I", blob[19:23])[0]


def active_blob(path, dek_in):
    """The wrapped DEK in force, read as docs/FORMAT.md §3.2/3.3 says."""
    if dek_in == "xattr":
        value = os.getxattr(path, DEK_XATTR)
        assert value[0] == 1
        return value[1:]
    with open(path, "rb") as f:
        header = f.read(HEADER_SIZE)
    best = None
    for i in range(2):
        slot = header[HEADER_PREFIX + i * SLOT_SIZE:HEADER_PREFIX + (i + 1) * SLOT_SIZE]
        digest = hashlib.sha256(b"envelopefs/v1/dek-slot" + slot[:496]).digest()[:16]
        if slot == bytes(SLOT_SIZE) or digest != slot[496:]:
            continue
        generation, length = struct.unpack("<QH", slot[:10])
        if best is None or generation > best[0]:
            best = (generation, slot[10:10 + length])
    assert best is not None, f"no valid slot in {path}"
    return best[1]


def sha(data):
    return hashlib.sha256(data).hexdigest()


class Volume:
    """A Mount plus the commands of this issue."""

    def __init__(self, dek_in="header"):
        self.dek_in = dek_in
        self.m = Mount(dek_in=dek_in)

    def ctl(self, *args):
        return run(ENVELOPECTL, "--endpoint", self.m.endpoint, *args).stdout.strip()

    def rotate(self, *args, check=True):
        r = subprocess.run([ENVELOPEFS, "rotate", self.m.cipherdir, "--kms", self.m.endpoint, "--json", *args],
                           capture_output=True, text=True, timeout=300)
        if check and r.returncode != 0:
            raise AssertionError(f"rotate failed {r.returncode}: {r.stdout} {r.stderr}")
        return r

    def fsck(self, *args):
        r = subprocess.run([ENVELOPEFS, "fsck", self.m.cipherdir, "--kms", self.m.endpoint, "--json", *args],
                           capture_output=True, text=True, timeout=300)
        report = json.loads(r.stdout) if r.stdout.strip() else None
        return r.returncode, report, r.stderr

    def labels(self):
        return {p: blob_label(active_blob(p, self.dek_in)) for p in content_files(self.m.cipherdir)}

    def tree_hashes(self):
        """sha256 of every regular file through the mount, by path."""
        out = {}
        for root, _, files in os.walk(self.m.mnt):
            for f in files:
                p = os.path.join(root, f)
                if stat.S_ISREG(os.lstat(p).st_mode):
                    with open(p, "rb") as fh:
                        out[os.path.relpath(p, self.m.mnt)] = sha(fh.read())
        return out

    def cleanup(self):
        self.m.cleanup()


def fill(mnt, rng, sizes=(0, 1, 100, 4095, 4096, 4097, 65536, 1 << 20)):
    os.makedirs(os.path.join(mnt, "dir", "sub"), exist_ok=True)
    for i, size in enumerate(sizes):
        with open(os.path.join(mnt, "dir" if i % 2 else "dir/sub", f"file{i}"), "wb") as f:
            f.write(rng.randbytes(size))
    with open(os.path.join(mnt, "L" * 200), "wb") as f:  # a long name
        f.write(b"long name content")
    os.link(os.path.join(mnt, "dir", "file1"), os.path.join(mnt, "hardlink"))
    os.symlink("dir/file1", os.path.join(mnt, "symlink"))
    os.setxattr(os.path.join(mnt, "dir", "file3"), "user.note", b"kept")


class RotateTest(unittest.TestCase):
    dek_in = "header"

    def setUp(self):
        self.v = Volume(self.dek_in)
        self.v.m.mount()
        fill(self.v.m.mnt, random.Random(5))
        self.hashes = self.v.tree_hashes()
        self.v.m.unmount()

    def tearDown(self):
        self.v.cleanup()

    def snapshot(self):
        """What rotation must not change, by backing path: the header prefix,
        and everything past the slots (all of the file in xattr mode)."""
        skip = 0 if self.dek_in == "xattr" else HEADER_SIZE
        out = {}
        for p in content_files(self.v.m.cipherdir):
            with open(p, "rb") as f:
                data = f.read()
            out[p] = (data[:HEADER_PREFIX], sha(data[skip:]))
        return out

    def distinct_files(self, paths):
        return len({os.stat(p).st_ino for p in paths})

    def test_offline_rotation_rewraps_headers_only(self):
        key = self.v.m.key
        before = self.snapshot()
        mtimes = {p: os.stat(p).st_mtime_ns for p in before}
        labels = self.v.labels()
        self.assertEqual({v for v in labels.values()}, {(key, 1)})
        self.assertEqual(self.v.ctl("key", "rotate", key), "2")
        summary = json.loads(self.v.rotate().stdout)
        files = self.distinct_files(before)  # the hard link is one file
        self.assertEqual(summary["files"], files)
        self.assertEqual(summary["rewrapped"], files)
        self.assertEqual(summary["key_version"], 2)
        self.assertTrue(summary["volume_key_rewrapped"])
        self.assertEqual(summary["from_versions"], {key: {"1": files}})
        # Every header names the new version; nothing past it changed.
        self.assertEqual(set(self.v.labels().values()), {(key, 2)})
        after = self.snapshot()
        self.assertEqual(set(after), set(before))
        for p in before:
            self.assertEqual(before[p][0], after[p][0], f"header prefix of {p} changed")
            self.assertEqual(before[p][1], after[p][1], f"content of {p} changed")
            # Same content, same mtime: rsync and make must see no change.
            # (atime is not compared: this test's own reads move it.)
            self.assertEqual(mtimes[p], os.stat(p).st_mtime_ns, p)
        # The volume key moved too.
        with open(os.path.join(self.v.m.cipherdir, "envelopefs.conf")) as f:
            conf = json.load(f)
        self.assertEqual(blob_label(__import__("base64").b64decode(conf["wrapped_volume_key"])),
                         (key, 2))
        # Content unchanged through a fresh mount (no cached DEK anywhere).
        self.v.m.mount()
        self.assertEqual(self.v.tree_hashes(), self.hashes)
        with open(self.v.m.path("dir", "file1"), "rb") as a, open(self.v.m.path("hardlink"), "rb") as b:
            self.assertEqual(a.read(), b.read())
        self.assertEqual(os.getxattr(self.v.m.path("dir", "file3"), "user.note"), b"kept")
        self.assertEqual(os.readlink(self.v.m.path("symlink")), "dir/file1")
        self.v.m.unmount()
        # Idempotent: a second run finds nothing to do.
        again = json.loads(self.v.rotate().stdout)
        self.assertEqual((again["rewrapped"], again["already_current"]), (0, files))
        self.assertFalse(again["volume_key_rewrapped"])
        code, report, _ = self.v.fsck("--deep")
        self.assertEqual(code, 0, report)
        self.assertEqual(report["key_versions"], {key: {"2": files}})

    def test_rotation_of_a_mounted_volume_in_use(self):
        """A writer keeps appending and creating files while rotate runs; the
        mount never writes a header, so nothing stale comes back."""
        key = self.v.m.key
        self.v.m.mount()
        stop = threading.Event()
        written = []

        def writer():
            i = 0
            with open(self.v.m.path("growing"), "ab") as g:
                while not stop.is_set():
                    chunk = bytes([i % 251]) * 3000
                    g.write(chunk)
                    g.flush()
                    written.append(chunk)
                    with open(self.v.m.path(f"new{i}"), "wb") as f:
                        f.write(b"x" * (i % 9000))
                    i += 1
        t = threading.Thread(target=writer)
        t.start()
        time.sleep(0.5)
        self.v.ctl("key", "rotate", key)
        summary = json.loads(self.v.rotate().stdout)
        self.assertGreater(summary["mount_wait_seconds"], 0)
        # Files created after rotate finished its wait are born under v2.
        time.sleep(0.5)
        stop.set()
        t.join()
        self.assertEqual(summary["failed"], 0, summary)
        with open(self.v.m.path("growing"), "rb") as f:
            self.assertEqual(f.read(), b"".join(written))
        self.v.m.unmount()
        self.assertEqual(set(self.v.labels().values()), {(key, 2)})
        code, report, _ = self.v.fsck("--deep")
        self.assertEqual(code, 0, report)
        self.v.m.mount()
        with open(self.v.m.path("growing"), "rb") as f:
            self.assertEqual(sha(f.read()), sha(b"".join(written)))
        for name, h in self.hashes.items():
            with open(self.v.m.path(name), "rb") as f:
                self.assertEqual(sha(f.read()), h, name)

    def test_to_another_key_and_the_mount_follows(self):
        old = self.v.m.key
        new = self.v.ctl("key", "create", "--description", "second key")
        self.v.m.mount()
        summary = json.loads(self.v.rotate("--to-key", new).stdout)
        self.assertEqual(summary["failed"], 0, summary)
        # The running mount re-read the config: new files use the new key.
        with open(self.v.m.path("after"), "wb") as f:
            f.write(b"made after the move")
        self.v.m.unmount()
        labels = self.v.labels()
        self.assertEqual({k for k, _ in labels.values()}, {new})
        info = run(ENVELOPEFS, "info", self.v.m.cipherdir, "--kms", self.v.m.endpoint).stdout
        self.assertIn(new, info)
        self.assertNotIn(old, info)
        # The old key can go entirely: the volume no longer needs it.
        self.v.ctl("key", "disable", old)
        self.v.m.mount()
        self.assertEqual(open(self.v.m.path("after"), "rb").read(), b"made after the move")
        hashes = self.v.tree_hashes()
        del hashes["after"]
        self.assertEqual(hashes, self.hashes)


class XattrRotateTest(RotateTest):
    dek_in = "xattr"


class CrashTest(unittest.TestCase):
    """kill -9 at random moments of a rotation: every file stays readable,
    under the old or the new version, and a rerun finishes the job."""
    files = 3000
    kills = 24

    def test_kill_nine_at_random_moments(self):
        v = Volume()
        self.addCleanup(v.cleanup)
        key = v.m.key
        v.m.mount()
        rng = random.Random(9)
        expected = {}
        for i in range(self.files):
            data = rng.randbytes(rng.choice((10, 3000, 5000, 9000)))
            name = f"d{i % 10}/f{i}"
            os.makedirs(v.m.path(f"d{i % 10}"), exist_ok=True)
            with open(v.m.path(name), "wb") as f:
                f.write(data)
            expected[name] = sha(data)
        v.m.unmount()
        # How long an uninterrupted rotation takes here, to aim the kills.
        v.ctl("key", "rotate", key)
        t0 = time.monotonic()
        v.rotate()
        full = time.monotonic() - t0
        mid_run = 0
        for n in range(self.kills):
            version = int(v.ctl("key", "rotate", key))
            p = subprocess.Popen([ENVELOPEFS, "rotate", v.m.cipherdir, "--kms", v.m.endpoint, "--json"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.0, full * 1.1))
            p.send_signal(signal.SIGKILL)
            p.wait()
            labels = v.labels()
            versions = {ver for _, ver in labels.values()}
            self.assertTrue(versions <= {version - 1, version}, versions)
            if len(versions) == 2:
                mid_run += 1
            # Every file opens and authenticates through the key service...
            code, report, err = v.fsck("--deep")
            self.assertEqual(code, 0, (n, report, err))
            self.assertEqual(report["files"], self.files)
            # ...and reads back exactly, through a fresh mount, every few kills.
            if n % 5 == 4:
                v.m.mount()
                for name, h in expected.items():
                    with open(v.m.path(name), "rb") as f:
                        self.assertEqual(sha(f.read()), h, name)
                v.m.unmount()
            # A rerun completes the job; if the kill left the run's marker,
            # the rerun syncs what the killed run wrote first, and says so.
            interrupted = os.path.exists(os.path.join(v.m.cipherdir, MARKER))
            summary = json.loads(v.rotate().stdout)
            self.assertEqual(summary["failed"], 0)
            self.assertEqual(set(ver for _, ver in v.labels().values()), {version})
            self.assertEqual(any("interrupted" in n for n in summary["notes"]), interrupted,
                             summary["notes"])
            self.assertFalse(os.path.exists(os.path.join(v.m.cipherdir, MARKER)))
        # The kills must really have landed inside the walk most of the time.
        self.assertGreaterEqual(mid_run, self.kills // 4,
                                f"only {mid_run} of {self.kills} kills interrupted a walk")
        print(f"\n{mid_run} of {self.kills} kills interrupted a rotation mid-walk "
              f"(full rotation of {self.files} files: {full:.2f} s)")


class RetireTest(unittest.TestCase):
    """rotate then retire is crypto-erase: a file still under a retired
    version (here: restored from a backup taken before the rotation) can
    never be opened again, the mount says why, and fsck names it."""

    def test_file_left_under_a_retired_version(self):
        v = Volume()
        self.addCleanup(v.cleanup)
        key = v.m.key
        v.m.mount()
        os.mkdir(v.m.path("docs"))
        with open(v.m.path("docs", "old-secret"), "wb") as f:
            f.write(b"before the rotation")
        with open(v.m.path("kept"), "wb") as f:
            f.write(b"rotated with the volume")
        v.m.unmount()
        # The only backing subdirectory is docs/; its one content file is
        # old-secret. Keep a copy, as a backup taken before rotation would.
        (docs,) = [e.path for e in os.scandir(v.m.cipherdir) if e.is_dir()]
        (secret,) = content_files(docs)
        with open(secret, "rb") as f:
            backup = f.read()
        v.ctl("key", "rotate", key)
        v.rotate()
        self.assertEqual(blob_label(active_blob(secret, "header")), (key, 2))
        v.ctl("key", "retire", key, "--below", "2")
        code, report, _ = v.fsck()
        self.assertEqual(code, 0, report)  # rotate then retire: nothing lost
        # Restore the backup: its file key is wrapped under retired version 1.
        with open(secret, "wb") as f:
            f.write(backup)
        self.assertEqual(blob_label(active_blob(secret, "header")), (key, 1))
        code, report, _ = v.fsck()
        self.assertEqual(code, 1)
        self.assertEqual(len(report["damaged"]), 1, report)
        self.assertTrue(report["damaged"][0].startswith("/docs/old-secret: crypto-erased"),
                        report["damaged"][0])
        self.assertIn("retired", report["damaged"][0])
        self.assertEqual(report["key_versions"], {key: {"1": 1, "2": 1}})
        # A rotation cannot rescue it either: the material is gone.
        r = v.rotate(check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("retired", json.loads(r.stdout)["failures"][0])
        log = os.path.join(v.m.tmp, "mount.log")
        v.m.mount(f"log={log}")
        with self.assertRaises(OSError) as cm:
            open(v.m.path("docs", "old-secret"), "rb").read()
        self.assertEqual(cm.exception.errno, 5)  # EIO
        self.assertEqual(open(v.m.path("kept"), "rb").read(), b"rotated with the volume")
        v.m.unmount()
        with open(log) as f:
            text = f.read()
        self.assertIn("version 1", text)
        self.assertIn("retired", text)


class FsckTest(unittest.TestCase):
    def setUp(self):
        self.v = Volume()
        self.addCleanup(self.v.cleanup)
        self.v.m.mount()
        fill(self.v.m.mnt, random.Random(3))
        self.v.m.unmount()

    def backing_of(self, size):
        """The backing file of the one plaintext file with `size` bytes."""
        want = HEADER_SIZE + size + ((size + 4095) // 4096 or 1) * 28
        found = [p for p in content_files(self.v.m.cipherdir) if os.path.getsize(p) == want]
        self.assertEqual(len(found), 1, found)
        return found[0]

    def test_clean_volume(self):
        code, report, _ = self.v.fsck("--deep")
        self.assertEqual(code, 0, report)
        self.assertTrue(report["clean"])
        self.assertEqual(report["files"], 9)       # 8 sized files + the long name
        self.assertEqual(report["symlinks"], 1)
        self.assertEqual(report["directories"], 3)
        self.assertEqual(report["key_versions"], {self.v.m.key: {"1": 9}})
        # Chunks of 0, 1, 100, 4095, 4096, 4097, 64 Ki, 1 Mi bytes and the long name's.
        self.assertEqual(report["chunks_verified"], 1 + 1 + 1 + 1 + 1 + 2 + 16 + 256 + 1)

    def test_flipped_chunk_byte_is_found_by_deep_and_named(self):
        p = self.backing_of(65536)
        with open(p, "r+b") as f:
            f.seek(HEADER_SIZE + 5 * 4124 + 100)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 1]))
        code, _, _ = self.v.fsck()
        self.assertEqual(code, 0)  # headers and keys are fine
        code, report, _ = self.v.fsck("--deep")
        self.assertEqual(code, 1)
        self.assertEqual(len(report["damaged"]), 1, report)
        self.assertRegex(report["damaged"][0], r"^/dir/sub/file6: .*chunk 5")

    def test_damaged_header_and_torn_spare_slot(self):
        p = self.backing_of(4097)
        with open(p, "r+b") as f:
            f.seek(20)  # file id: the key commitment no longer holds
            f.write(b"\xff")
        q = self.backing_of(100)
        with open(q, "r+b") as f:  # spare slot torn: harmless
            f.seek(HEADER_PREFIX + SLOT_SIZE + 3)
            f.write(b"\x55" * 40)
        code, report, _ = self.v.fsck()
        self.assertEqual(code, 1)
        self.assertEqual(len(report["damaged"]), 1, report)
        self.assertTrue(report["damaged"][0].startswith("/dir/file5: "), report)
        self.assertEqual(report["torn_spare_slots"], 1)

    def test_unreachable_key_service_is_not_a_verdict(self):
        # The volume key unwraps first; then the service goes away.
        self.v.m.keyd.stop()
        code, report, err = self.v.fsck()
        self.assertEqual(code, 2, (report, err))
        self.assertIn("key service", err)


if __name__ == "__main__":
    unittest.main()
