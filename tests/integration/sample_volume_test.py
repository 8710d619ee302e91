"""The checked-in sample volumes (tests/samples/): bytes written by older
envelopefs versions must keep mounting and reading, and take new writes."""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
import unittest

from fs_harness import ENVELOPEFS, run
from harness import Keyd

SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "samples")
MIB = 1 << 20


def header_versions(cipherdir):
    """The format version of every envelopefs file in the cipherdir."""
    versions = []
    for root, _, files in os.walk(cipherdir):
        for name in files:
            if os.path.islink(os.path.join(root, name)):
                continue
            with open(os.path.join(root, name), "rb") as f:
                head = f.read(10)
            if head[:8] == b"\x89ENVFS\r\n":
                versions.append(struct.unpack("<H", head[8:10])[0])
    return versions


class SampleVolumeV1Test(unittest.TestCase):
    SAMPLE = "volume-v1"

    def setUp(self):
        src = os.path.join(SAMPLES, self.SAMPLE)
        self.tmp = tempfile.mkdtemp(prefix="envelopefs-sample-")
        os.chmod(self.tmp, 0o700)
        self.cipherdir = os.path.join(self.tmp, "cipher")
        shutil.copytree(os.path.join(src, "cipher"), self.cipherdir, symlinks=True)
        os.chmod(self.cipherdir, 0o700)
        data = os.path.join(self.tmp, "keyd")
        shutil.copytree(os.path.join(src, "keyd"), data)
        os.chmod(data, 0o700)
        for f in os.listdir(data):
            os.chmod(os.path.join(data, f), 0o600)
        with open(os.path.join(src, "KEY")) as f:
            self.key = f.read().strip()
        with open(os.path.join(src, "MANIFEST.json")) as f:
            self.manifest = json.load(f)
        self.keyd = Keyd(data_dir=data).start()
        self.endpoint = "unix:" + self.keyd.socket
        self.mnt = os.path.join(self.tmp, "mnt")
        os.mkdir(self.mnt)
        self.mounted = False

    def tearDown(self):
        self.unmount()
        self.keyd.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def mount(self):
        run(ENVELOPEFS, "mount", self.cipherdir, self.mnt, "-o", "kms=" + self.endpoint,
            "-o", "key=" + self.key)
        self.mounted = True

    def unmount(self):
        if self.mounted:
            run("fusermount3", "-u", self.mnt)
            self.mounted = False

    def check_manifest(self):
        seen = set()
        for root, dirs, files in os.walk(self.mnt):
            for n in dirs + files:
                seen.add(os.path.relpath(os.path.join(root, n), self.mnt))
        self.assertEqual(seen, set(self.manifest))
        for path, want in self.manifest.items():
            p = os.path.join(self.mnt, path)
            if "symlink" in want:
                target = os.readlink(p)
                self.assertEqual(len(target), want["length"], path)
                self.assertEqual(hashlib.sha256(target.encode()).hexdigest(), want["symlink"], path)
            elif "dir" in want:
                self.assertTrue(os.path.isdir(p), path)
            else:
                with open(p, "rb") as f:
                    data = f.read()
                self.assertEqual(len(data), want["size"], path)
                self.assertEqual(hashlib.sha256(data).hexdigest(), want["sha256"], path)

    def test_mounts_reads_and_passes_deep_fsck(self):
        self.assertEqual(set(header_versions(self.cipherdir)), {1})
        self.mount()
        self.check_manifest()
        self.unmount()
        r = subprocess.run([ENVELOPEFS, "fsck", self.cipherdir, "--kms", self.endpoint,
                            "--key", self.key, "--deep"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_old_files_take_new_writes_and_holes(self):
        self.mount()
        gap = os.path.join(self.mnt, "gap.bin")
        with open(gap, "r+b") as f:
            old = f.read()
            f.truncate(64 * MIB)  # a hole: this file becomes version 2
            f.seek(32 * MIB)
            f.write(b"appended by a newer envelopefs")
        hello = os.path.join(self.mnt, "hello.txt")
        with open(hello, "ab") as f:
            f.write(b"more\n")  # no hole: stays version 1
        self.unmount()
        self.assertEqual(sorted(set(header_versions(self.cipherdir))), [1, 2])
        self.mount()
        with open(gap, "rb") as f:
            self.assertEqual(f.read(len(old)), old)
            f.seek(32 * MIB)
            self.assertEqual(f.read(30), b"appended by a newer envelopefs")
        self.assertEqual(os.stat(gap).st_size, 64 * MIB)
        with open(hello, "rb") as f:
            self.assertEqual(f.read(), b"hello, version 1\nmore\n")


if __name__ == "__main__":
    unittest.main()
