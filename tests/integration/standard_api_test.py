"""The filesystem and the tools over a key service that speaks only AWS
KMS's published API (--kms-api standard): envelope-keyd with its extensions
switched off (--standard-only) stands in for AWS KMS. Blobs are then opaque
to the client, so rotation is resumable through its journal
(docs/ROTATION.md, "Resumable and idempotent")."""
import json
import os
import subprocess
import unittest

from fs_harness import ENVELOPEFS, Mount, run
from harness import ENVELOPECTL, Keyd


class StandardMount(Mount):
    """A volume made and mounted with --kms-api standard over a keyd with
    --standard-only."""

    def __init__(self):
        self.keyd = Keyd(extra_args=["--standard-only"]).start()
        import tempfile
        self.tmp = tempfile.mkdtemp(prefix="envelopefs-std-")
        self.cipherdir = os.path.join(self.tmp, "cipher")
        self.mnt = os.path.join(self.tmp, "mnt")
        os.mkdir(self.mnt)
        self.endpoint = "unix:" + self.keyd.socket
        self.key = self.ctl("key", "create", "--description", "standard").stdout.strip()
        run(ENVELOPEFS, "init", self.cipherdir, "--key", self.key, "--kms", self.endpoint,
            "--kms-api", "standard")
        self.mounted = False

    def ctl(self, *args, input=None, check=True):
        r = subprocess.run([ENVELOPECTL, "--endpoint", self.endpoint, "--kms-api", "standard",
                            *args], capture_output=True, text=True, input=input, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"envelopectl {args} failed {r.returncode}: {r.stderr}")
        return r

    def tool(self, *args, check=True):
        r = subprocess.run([ENVELOPEFS, *args, "--kms", self.endpoint, "--kms-api", "standard"],
                           capture_output=True, text=True, timeout=300)
        if check and r.returncode != 0:
            raise AssertionError(f"envelopefs {args} failed {r.returncode}: {r.stdout}{r.stderr}")
        return r

    def rotate(self, *args):
        return json.loads(self.tool("rotate", self.cipherdir, "--json", *args).stdout)


class StandardApiTest(unittest.TestCase):
    def setUp(self):
        self.m = StandardMount()
        self.addCleanup(self.m.cleanup)

    def write_files(self, n, prefix="f"):
        for i in range(n):
            with open(self.m.path(f"{prefix}{i}"), "w") as f:
                f.write(f"content {prefix}{i}\n" * 100)

    def check_files(self, n, prefix="f"):
        for i in range(n):
            with open(self.m.path(f"{prefix}{i}")) as f:
                self.assertEqual(f.read(), f"content {prefix}{i}\n" * 100)

    def test_the_service_has_no_extensions(self):
        status, out = self.m.keyd.raw("EnvelopeKeyService.GenerateDataKeys",
                                      {"KeyId": self.m.key, "EncryptionContexts": [{}]})
        self.assertEqual(status, 400)
        self.assertEqual(out.get("__type"), "UnknownOperationException")
        meta = self.m.keyd.call("DescribeKey", {"KeyId": self.m.key})["KeyMetadata"]
        for field in ("CurrentKeyVersion", "MinKeyVersion", "Creator"):
            self.assertNotIn(field, meta)

    def test_mount_create_read_rotate_fsck(self):
        self.m.mount("kms_api=standard")
        self.write_files(30)
        os.mkdir(self.m.path("dir"))
        with open(self.m.path("dir", "inner"), "w") as f:
            f.write("inner")
        self.check_files(30)
        self.m.unmount()

        # Nothing to say about versions before a rotation: the first run
        # re-wraps everything (it cannot tell), a rerun nothing.
        self.m.ctl("key", "rotate", self.m.key)
        first = self.m.rotate()
        self.assertEqual(first["failed"], 0, first)
        self.assertEqual(first["rewrapped"], 31)
        self.assertEqual(first["key_version"], 0)  # no version numbers in the standard API
        self.assertTrue(first["version_marker"].startswith("rotated:"), first)
        self.assertTrue(os.path.exists(os.path.join(self.m.cipherdir, ".envelopefs.rotation")))
        second = self.m.rotate()
        self.assertEqual(second["rewrapped"], 0, second)
        self.assertEqual(second["already_current"], 31)
        self.assertFalse(second["volume_key_rewrapped"])

        # Another key version: a new journal, every file again.
        self.m.ctl("key", "rotate", self.m.key)
        third = self.m.rotate()
        self.assertEqual(third["rewrapped"], 31, third)
        self.assertEqual(third["journal_resumed"], 0)

        fsck = json.loads(self.m.tool("fsck", self.m.cipherdir, "--deep", "--json").stdout)
        self.assertEqual(fsck["damaged"], [], fsck)
        self.assertEqual(fsck["files"], 31)

        self.m.mount("kms_api=standard")
        self.check_files(30)
        with open(self.m.path("dir", "inner")) as f:
            self.assertEqual(f.read(), "inner")

    def test_rotate_to_another_key_moves_the_volume(self):
        self.m.mount("kms_api=standard")
        self.write_files(10)
        self.m.unmount()
        other = self.m.ctl("key", "create", "--description", "second").stdout.strip()
        moved = self.m.rotate("--to-key", other, "--key", self.m.key)
        self.assertEqual(moved["failed"], 0, moved)
        self.assertEqual(moved["rewrapped"], 10)
        self.assertTrue(moved["volume_key_rewrapped"])
        # The old key can go: everything is under the new one.
        self.m.ctl("key", "disable", self.m.key)
        self.m.mount("kms_api=standard", "key=" + other)
        self.check_files(10)

    def test_secrets_round_trip_and_rotate(self):
        path = os.path.join(self.m.tmp, "app.env.enc")
        base = ["secrets", "--file", path, "--key", self.m.key]
        self.m.ctl(*base, "set", "billing", "DB_PASSWORD", input="hunter2\n")
        self.m.ctl(*base, "set", "billing", "API_TOKEN", input="t0ken\n")
        got = self.m.ctl(*base, "get", "billing", "DB_PASSWORD", "--raw").stdout
        self.assertEqual(got, "hunter2")
        with open(path) as f:
            before = f.read()
        self.m.ctl("key", "rotate", self.m.key)
        self.m.ctl(*base, "rotate", "billing")
        with open(path) as f:
            after = f.read()
        self.assertNotEqual(before, after)  # opaque blobs: every value re-encrypted
        got = self.m.ctl(*base, "get", "billing", "API_TOKEN", "--raw").stdout
        self.assertEqual(got, "t0ken")
        env = self.m.ctl(*base, "exec", "billing", "--", "/usr/bin/env").stdout
        self.assertIn("DB_PASSWORD=hunter2", env.splitlines())


if __name__ == "__main__":
    unittest.main()
