"""envelopefs rekey: new DEKs and re-encrypted content for every file, with
the real key service, the real mount and the real tool; and 20 kill -9s at
the three moments of a file's re-key, after each of which every file reads
back.
"""
import errno
import hashlib
import os
import re
import subprocess
import threading
import unittest

from fs_harness import ENVELOPEFS, Mount


def backing_digests(m):
    """SHA-256 of every backing file's bytes, by path (side files and the
    config excluded: names with a dot are internal)."""
    out = {}
    for root, _, files in os.walk(m.cipherdir):
        for f in files:
            if "." in f:
                continue
            p = os.path.join(root, f)
            if os.path.islink(p):
                continue
            with open(p, "rb") as fh:
                out[p] = hashlib.sha256(fh.read()).hexdigest()
    return out


class RekeyTest(unittest.TestCase):
    def setUp(self):
        self.m = Mount()
        self.m.mount()

    def tearDown(self):
        self.m.cleanup()

    def rekey(self, *args, env=None, check=True):
        r = subprocess.run([ENVELOPEFS, "rekey", self.m.cipherdir, "--kms", self.m.endpoint,
                            *args], capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, **(env or {})))
        if check and r.returncode != 0:
            raise AssertionError(f"rekey failed {r.returncode}: {r.stdout}{r.stderr}")
        return r

    def test_every_file_gets_new_keys_and_keeps_its_content_and_metadata(self):
        p = self.m.path
        os.makedirs(p("a", "b"))
        files = {"a/b/small": os.urandom(100), "a/big": os.urandom(3 * 1024 * 1024 + 5),
                 "empty": b"", "x" * 200: os.urandom(7000)}
        for name, data in files.items():
            with open(p(name), "wb") as f:
                f.write(data)
        # A sparse file: 1 GiB with data at the start and in the middle.
        with open(p("sparse"), "wb") as f:
            f.write(b"head")
            f.seek(512 << 20)
            f.write(b"middle")
            f.truncate(1 << 30)
        os.chmod(p("a/b/small"), 0o640)
        os.chown(p("a/b/small"), 65534, 65534)
        os.utime(p("a/big"), (1_000_000_000, 1_100_000_000))
        os.setxattr(p("empty"), "user.note", b"kept")
        with open(p("linked"), "wb") as f:
            f.write(b"two names")
        os.link(p("linked"), p("linked2"))
        os.symlink("a/big", p("link"))
        before = {name: os.stat(p(name)) for name in files}
        self.m.unmount()
        digests = backing_digests(self.m)

        out = self.rekey().stdout
        self.assertRegex(out, r"re-keyed 5 of 7 files")  # 4 + sparse; the hard-linked pair not
        self.assertIn("skipped 2 hard-linked files", out)
        after = backing_digests(self.m)
        linked = {p for p in digests if os.stat(p).st_nlink > 1}
        self.assertEqual(len(linked), 2)  # one backing inode, two names: not re-keyed
        for path, d in after.items():
            if path in linked:
                self.assertEqual(d, digests[path])
            else:
                self.assertNotIn(d, digests.values(), "a file's bytes did not change")
        # No temporary is left behind.
        for root, _, names in os.walk(self.m.cipherdir):
            self.assertFalse([n for n in names if n.startswith(".envelopefs.tmp.rekey.")])
        self.assertFalse(os.path.exists(os.path.join(self.m.cipherdir, ".envelopefs.rekey")))

        self.m.mount()
        for name, data in files.items():
            with open(p(name), "rb") as f:
                self.assertEqual(f.read(), data, name)
            st = os.stat(p(name))
            self.assertEqual((st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns),
                             (before[name].st_mode, before[name].st_uid, before[name].st_gid,
                              before[name].st_size, before[name].st_mtime_ns), name)
        self.assertEqual(os.getxattr(p("empty"), "user.note"), b"kept")
        with open(p("sparse"), "rb") as f:
            self.assertEqual(f.read(4), b"head")
            f.seek(512 << 20)
            self.assertEqual(f.read(6), b"middle")
        self.assertEqual(os.stat(p("sparse")).st_size, 1 << 30)
        # Still sparse: the copy kept the holes (a few chunks, not 1 GiB).
        self.assertLess(os.stat(p("sparse")).st_blocks * 512, 1 << 20)
        with open(p("linked2"), "rb") as f:
            self.assertEqual(f.read(), b"two names")
        self.assertEqual(os.readlink(p("link")), "a/big")

        # --files: only those.
        self.m.unmount()
        digests = backing_digests(self.m)
        out = self.rekey("--files", "/a/b/small").stdout
        self.assertRegex(out, r"re-keyed 1 of 1 files")
        changed = [k for k, v in backing_digests(self.m).items() if digests.get(k) != v]
        self.assertEqual(len(changed), 1)
        r = self.rekey("--files", "/nope", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no regular file /nope", r.stderr)


class XattrDekRekeyTest(unittest.TestCase):
    """A volume whose DEKs live in an xattr: the new file's DEK xattr is its
    own, the user's xattrs are copied, online and offline."""

    def test_online_then_offline(self):
        m = Mount(dek_in="xattr")
        try:
            m.mount()
            files = {f"f{i}": os.urandom(3000 + i) for i in range(5)}
            for name, data in files.items():
                with open(m.path(name), "wb") as f:
                    f.write(data)
            os.setxattr(m.path("f0"), "user.a", b"b")
            digests = backing_digests(m)
            for online in (True, False):
                if not online:
                    m.unmount()
                out = subprocess.run([ENVELOPEFS, "rekey", m.cipherdir, "--kms", m.endpoint],
                                     capture_output=True, text=True, timeout=300,
                                     check=True).stdout
                self.assertRegex(out, r"re-keyed 5 of 5 files")
            now = backing_digests(m)
            self.assertFalse(set(now.values()) & set(digests.values()))
            m.mount()
            for name, data in files.items():
                with open(m.path(name), "rb") as f:
                    self.assertEqual(f.read(), data, name)
            self.assertEqual(os.listxattr(m.path("f0")), ["user.a"])
            self.assertEqual(os.getxattr(m.path("f0"), "user.a"), b"b")
        finally:
            m.cleanup()


class OnlineRekeyTest(unittest.TestCase):
    """rekey on a mounted volume: the mount re-keys each file while it is in
    use, open handles included."""

    def setUp(self):
        self.m = Mount()
        self.m.mount()

    def tearDown(self):
        self.m.cleanup()

    def test_files_in_use_are_rekeyed_and_keep_every_write(self):
        files = {f"f{i}": os.urandom(20000 + i) for i in range(30)}
        for name, data in files.items():
            with open(self.m.path(name), "wb") as f:
                f.write(data)
        os.setxattr(self.m.path("f0"), "user.k", b"v")
        ino_before = os.stat(self.m.path("f1")).st_ino
        digests = backing_digests(self.m)
        # A handle open across the rekey, and a writer appending all along.
        held = open(self.m.path("f1"), "r+b")
        stop = threading.Event()
        appended = bytearray()

        def writer():
            with open(self.m.path("log"), "ab") as f:
                i = 0
                while not stop.is_set() or i < 50:
                    chunk = b"%06d\n" % i
                    f.write(chunk)
                    f.flush()
                    appended.extend(chunk)
                    i += 1

        t = threading.Thread(target=writer)
        t.start()
        try:
            out = subprocess.run([ENVELOPEFS, "rekey", self.m.cipherdir, "--kms", self.m.endpoint],
                                 capture_output=True, text=True, timeout=300, check=True).stdout
        finally:
            stop.set()
            t.join()
        self.assertRegex(out, r"re-keyed 31 of 31 files")
        # The handle opened before goes on with the new object.
        held.seek(0)
        self.assertEqual(held.read(), files["f1"])
        held.seek(5)
        held.write(b"after")
        held.close()
        files["f1"] = files["f1"][:5] + b"after" + files["f1"][10:]
        self.assertNotEqual(os.stat(self.m.path("f1")).st_ino, ino_before)
        self.assertEqual(os.getxattr(self.m.path("f0"), "user.k"), b"v")
        self.m.unmount()
        now = backing_digests(self.m)
        self.assertFalse(set(now.values()) & set(digests.values()))
        self.m.mount()
        for name, data in files.items():
            with open(self.m.path(name), "rb") as f:
                self.assertEqual(f.read(), data, name)
        with open(self.m.path("log"), "rb") as f:
            self.assertEqual(f.read(), bytes(appended))

    def test_a_mount_killed_mid_rekey_leaves_every_file_readable(self):
        files = {f"f{i}": os.urandom(5000 + i) for i in range(10)}
        for name, data in files.items():
            with open(self.m.path(name), "wb") as f:
                f.write(data)
        for i, stage in enumerate(["copied", "exchanged", "removed"] * 2):
            self.m.unmount()
            # The mount dies (SIGKILL) when its (i+1)th re-key reaches `stage`.
            os.environ["ENVELOPE_TEST_REKEY_KILL"] = f"{i % 3 + 1}:{stage}"
            try:
                self.m.mount()
            finally:
                del os.environ["ENVELOPE_TEST_REKEY_KILL"]
            r = subprocess.run([ENVELOPEFS, "rekey", self.m.cipherdir, "--kms", self.m.endpoint],
                               capture_output=True, text=True, timeout=300)
            self.assertNotEqual(r.returncode, 0, r.stdout)
            with self.assertRaises(OSError) as cm:  # the mount's daemon is gone
                os.listdir(self.m.mnt)
            self.assertEqual(cm.exception.errno, errno.ENOTCONN)
            subprocess.run(["fusermount3", "-uz", self.m.mnt], capture_output=True)
            self.m.mounted = False
            self.m.mount()
            for name, data in files.items():
                with open(self.m.path(name), "rb") as f:
                    self.assertEqual(f.read(), data, name)
        out = subprocess.run([ENVELOPEFS, "rekey", self.m.cipherdir, "--kms", self.m.endpoint],
                             capture_output=True, text=True, timeout=300, check=True).stdout
        self.assertRegex(out, r"re-keyed \d+ of 10 files")


class RekeyCrashTest(unittest.TestCase):
    """20 runs killed (SIGKILL, by the test hook ENVELOPE_TEST_REKEY_KILL)
    at a file's three moments: its copy complete, names swapped, old copy
    removed; after each, every file reads back through a mount. Then one
    run finishes, resuming from the journal."""

    def setUp(self):
        self.m = Mount()
        self.m.mount()
        self.files = {f"d{i % 4}/f{i:03d}": os.urandom(1000 + 37 * i) for i in range(100)}
        self.files["big"] = os.urandom(2 * 1024 * 1024)
        for d in range(4):
            os.mkdir(self.m.path(f"d{d}"))
        for name, data in self.files.items():
            with open(self.m.path(name), "wb") as f:
                f.write(data)
        self.m.unmount()

    def tearDown(self):
        self.m.cleanup()

    def check_all(self):
        self.m.mount()
        try:
            for name, data in self.files.items():
                with open(self.m.path(name), "rb") as f:
                    self.assertEqual(f.read(), data, name)
            self.assertEqual(sorted(os.listdir(self.m.path("d0")))[:2], ["f000", "f004"])
        finally:
            self.m.unmount()

    def test_twenty_kills_lose_nothing_and_a_rerun_resumes(self):
        original = backing_digests(self.m)
        stages = ["copied", "exchanged", "removed"]
        resumed = []
        for i in range(20):
            # The second run dies past the first journal batch (64 files),
            # so that every later run resumes with 37 left; the others die
            # among those.
            n = 70 if i == 1 else [3, 1, 20, 2, 36][i % 5]
            r = subprocess.run(
                [ENVELOPEFS, "rekey", self.m.cipherdir, "--kms", self.m.endpoint],
                capture_output=True, text=True, timeout=300,
                env=dict(os.environ, ENVELOPE_TEST_REKEY_KILL=f"{n}:{stages[i % 3]}"))
            self.assertEqual(r.returncode, -9, f"run {i} was not killed: {r.stdout}{r.stderr}")
            self.check_all()
        r = subprocess.run([ENVELOPEFS, "rekey", self.m.cipherdir, "--kms", self.m.endpoint],
                           capture_output=True, text=True, timeout=300, check=True)
        m = re.search(r"resumed: (\d+) files", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        self.assertGreaterEqual(int(m.group(1)), 64)
        self.assertIn("removed", r.stdout)  # temporaries of the killed runs
        self.check_all()
        # Every file has new keys: no backing file is byte for byte as before.
        now = backing_digests(self.m)
        self.assertEqual(len(now), len(original))
        self.assertFalse(set(now.values()) & set(original.values()))


if __name__ == "__main__":
    unittest.main()
