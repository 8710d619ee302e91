"""envelopefs share / unshare / cat (issue 16, part 8) with the real key
service and a real mount: root owns a volume and shares one file with
nobody, who has no policy access to the key. nobody reads exactly that file
with `envelopefs cat`, no other, until the grant is revoked or expires;
every access is in the audit log."""
import json
import os
import re
import subprocess
import unittest

from fs_harness import ENVELOPEFS, Mount, run
from harness import ENVELOPECTL

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


class ShareTest(unittest.TestCase):
    def setUp(self):
        self.m = Mount().mount()
        self.files = {"/a.txt": os.urandom(100_000), "/sub/b.txt": b"b" * 5000,
                      "/c.txt": b"c" * 10}
        os.mkdir(self.m.path("sub"))
        for name, data in self.files.items():
            with open(self.m.path(name.lstrip("/")), "wb") as f:
                f.write(data)
        self.m.unmount()
        # What a reader needs from the cipherdir: read access to the shared
        # backing file and to envelopefs.conf above it.
        subprocess.run(["chmod", "-R", "o+rX", self.m.tmp], check=True)

    def tearDown(self):
        self.m.cleanup()

    def envelopefs(self, *args, user=None, check=True):
        cmd = [ENVELOPEFS] + list(args)
        if user == "nobody":
            cmd = NOBODY + cmd
        r = subprocess.run(cmd, capture_output=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"{cmd} failed {r.returncode}: {r.stderr.decode()}")
        return r

    def share(self, path, *extra):
        out = self.envelopefs("share", self.m.cipherdir, path, "--with", "user:nobody",
                              "--kms", self.m.endpoint, *extra).stdout.decode()
        m = re.search(r"envelopefs cat --key (\S+) (\S+)", out)
        self.assertIsNotNone(m, out)
        grant = re.search(r"\(grant ([0-9a-f]{64})\)", out).group(1)
        return m.group(1), m.group(2), grant

    def cat(self, key, backing):
        return self.envelopefs("cat", "--key", key, "--kms", self.m.endpoint, backing,
                               user="nobody", check=False)

    def audit(self):
        with open(os.path.join(self.m.keyd.data_dir, "audit.log")) as f:
            return [json.loads(line) for line in f if line.strip()]

    def test_the_reader_gets_exactly_the_shared_file_until_unshared(self):
        key, backing, grant = self.share("/a.txt")
        r = self.cat(key, backing)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(r.stdout, self.files["/a.txt"])
        # Sharing again is the same grant (CreateGrant's Name).
        self.assertEqual(self.share("/a.txt")[2], grant)
        # Every other file of the volume: refused by the key service.
        others = [p for p in self.m.backing_files()
                  if p != backing and not os.path.basename(p).startswith(".envelopefs")
                  and os.path.basename(p) != "envelopefs.conf"]
        self.assertEqual(len(others), 2, others)
        for p in others:
            r = self.cat(key, p)
            self.assertNotEqual(r.returncode, 0)
            self.assertEqual(r.stdout, b"")
            self.assertIn("AccessDeniedException", r.stderr.decode())
        # Nor the volume key (names, xattrs, a mount): opening the volume
        # needs it, and its Decrypt is refused.
        r = self.envelopefs("info", self.m.cipherdir, "--key", key, "--kms", self.m.endpoint,
                            user="nobody", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("AccessDeniedException", r.stderr.decode())
        # Every access is audited: the reads through the grant name it.
        reads = [a for a in self.audit() if a["operation"] == "Decrypt"
                 and a["principal"].get("name") == "user:nobody"]
        ok = [a for a in reads if a["result"] == "ok"]
        self.assertEqual(len(ok), 1)
        self.assertEqual(ok[0]["grant_ids"], [grant])
        self.assertEqual(ok[0]["encryption_context"]["envelopefs"], "file")
        self.assertEqual(len([a for a in reads if a["result"] == "error"]), 3)
        # Unshared: refused from the next request on.
        out = self.envelopefs("unshare", self.m.cipherdir, "/a.txt", "--kms",
                              self.m.endpoint).stdout.decode()
        self.assertIn("1 grant revoked", out)
        r = self.cat(key, backing)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("AccessDeniedException", r.stderr.decode())

    def test_a_share_with_until_ends_by_itself(self):
        key, backing, grant = self.share("/sub/b.txt", "--until", "+1h")
        self.assertEqual(self.cat(key, backing).stdout, self.files["/sub/b.txt"])
        listed = self.m.keyd.call("ListGrants", {"KeyId": key})["Grants"]
        self.assertEqual([g["GrantId"] for g in listed], [grant])
        self.assertGreater(listed[0]["Expiry"], 0)
        # Two hours later (the daemon's testing clock): the grant allows
        # nothing, and the start-up catch-up removed it.
        self.m.keyd.stop()
        self.m.keyd.start(extra_args=["--clock-offset-seconds", "7200"])
        r = self.cat(key, backing)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("AccessDeniedException", r.stderr.decode())
        self.assertEqual(self.m.keyd.call("ListGrants", {"KeyId": key})["Grants"], [])
        self.assertIn("ExpireGrants", [a["operation"] for a in self.audit()])

    def test_a_tampered_file_is_an_error_not_other_plaintext(self):
        key, backing, _ = self.share("/a.txt")
        with open(backing, "r+b") as f:
            f.seek(os.path.getsize(backing) - 100)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 1]))
        r = self.cat(key, backing)
        self.assertNotEqual(r.returncode, 0)
        self.assertNotEqual(r.stdout, self.files["/a.txt"])
        # A pin that is not the file's key: refused, never trusted.
        other = run(ENVELOPECTL, "--endpoint", self.m.endpoint, "key", "create").stdout.strip()
        with open(backing, "r+b") as f:  # undo the damage: only the pin is wrong now
            f.seek(os.path.getsize(backing) - 100)
            f.write(byte)
        self.assertEqual(self.cat(key, backing).stdout, self.files["/a.txt"])
        r = self.cat(other, backing)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("IncorrectKeyException", r.stderr.decode())

    def test_bad_arguments_are_clear_errors(self):
        r = self.envelopefs("share", self.m.cipherdir, "/missing", "--with", "user:nobody",
                            "--kms", self.m.endpoint, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no regular file /missing", r.stderr.decode())
        r = self.envelopefs("share", self.m.cipherdir, "/a.txt", "--with", "*",
                            "--kms", self.m.endpoint, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("ValidationException", r.stderr.decode())
        r = self.envelopefs("share", self.m.cipherdir, "/a.txt", "--with", "user:nobody",
                            "--until", "yesterday", "--kms", self.m.endpoint, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--until", r.stderr.decode())


if __name__ == "__main__":
    unittest.main()
