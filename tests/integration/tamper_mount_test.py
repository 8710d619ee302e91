"""Tampering with the cipherdir under a real mount: an attacker who can write
backing files but holds no key must get EIO and a log line, never a file
that reads cleanly as something else, and plain `fsck` must name the file."""
import errno
import json
import os
import subprocess
import unittest

from fs_harness import ENVELOPEFS, Mount

HEADER_SIZE = 1088   # DEK in the header (docs/FORMAT.md §3)
CHUNK_OVERHEAD = 28  # nonce + tag


class TruncationTest(unittest.TestCase):
    def setUp(self):
        self.m = Mount()
        self.addCleanup(self.m.cleanup)
        self.m.mount()
        with open(self.m.path("victim"), "wb") as f:
            f.write(b"v" * 10000)
        with open(self.m.path("bystander"), "wb") as f:
            f.write(b"b" * 10000)
        self.m.unmount()
        big = [p for p in self.m.backing_files() if os.path.getsize(p) > 10000]
        self.assertEqual(len(big), 2)
        os.truncate(big[0], HEADER_SIZE + CHUNK_OVERHEAD)  # the empty file's length

    def test_cut_to_header_and_one_chunk_is_eio_and_logged(self):
        log = os.path.join(self.m.tmp, "mount.log")
        self.m.mount(f"log={log}")
        results = {}
        for name in ("victim", "bystander"):
            try:
                with open(self.m.path(name), "rb") as f:
                    results[name] = len(f.read())
            except OSError as e:
                results[name] = e.errno
        # The cut file stats as empty (size comes from the backing length,
        # no key needed) but does not open; the other one is untouched.
        self.assertEqual(sorted(results.values()), sorted([errno.EIO, 10000]), results)
        damaged = [n for n, r in results.items() if r == errno.EIO][0]
        self.assertEqual(os.stat(self.m.path(damaged)).st_size, 0)
        self.m.unmount()
        with open(log) as f:
            text = f.read()
        self.assertRegex(text, rf"cannot open /{damaged}: .*final chunk 0")

    def test_plain_fsck_reports_the_cut_file(self):
        r = subprocess.run([ENVELOPEFS, "fsck", self.m.cipherdir, "--json"],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 1, (r.stdout, r.stderr))
        report = json.loads(r.stdout)
        self.assertEqual(len(report["damaged"]), 1, report)
        self.assertRegex(report["damaged"][0], r"^/(victim|bystander): .*final chunk 0")


if __name__ == "__main__":
    unittest.main()
