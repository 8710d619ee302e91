"""Backup and restore of envelope-keyd: a backup made while a mounted volume
is being written, the data directory wiped, and a restore from 3 of 5
shares; the real daemon, the real mount, the real envelopectl.
"""
import base64
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from fs_harness import Mount, run
from harness import ENVELOPECTL, Keyd, KmsError
from softhsm import SoftHsm


class BackupRestoreTest(unittest.TestCase):
    def setUp(self):
        self.m = Mount()
        self.m.mount()
        self.endpoint = self.m.endpoint
        self.backup = os.path.join(self.m.tmp, "keys.ekb")
        self.secrets = os.path.join(self.m.tmp, "app.env")

    def tearDown(self):
        self.m.cleanup()

    def ctl(self, *args, input=b"", check=True):
        r = subprocess.run([ENVELOPECTL, "--endpoint", self.endpoint, *args], input=input,
                           capture_output=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"envelopectl {args} failed: {r.stderr.decode()}")
        return r

    def restore(self, shares):
        keyd = self.m.keyd
        r, w = os.pipe()
        os.write(w, "".join(s + "\n" for s in shares).encode())
        os.close(w)
        try:
            return keyd.start(["--restore", self.backup, "--shares-fd", str(r)], pass_fds=(r,))
        finally:
            os.close(r)

    def test_a_backup_taken_while_writing_restores_from_three_of_five_shares(self):
        self.ctl("secrets", "--file", self.secrets, "set", "app", "DB_PASSWORD", "--key",
                 self.m.key, input=b"hunter2")
        # Two versions of the volume's key: files under both.
        with open(self.m.path("before-rotation"), "wb") as f:
            f.write(b"v1" * 5000)
        self.ctl("key", "rotate", self.m.key)

        written = {}
        lock = threading.Lock()
        started = threading.Event()
        stop = threading.Event()

        def writer():
            i = 0
            while not stop.is_set():
                name = f"f{i:05d}"
                data = os.urandom(1000 + i % 9000)
                with open(self.m.path(name), "wb") as f:
                    f.write(data)
                with lock:
                    written[name] = data
                i += 1
                if i == 20:
                    started.set()

        t = threading.Thread(target=writer)
        t.start()
        try:
            self.assertTrue(started.wait(60), "the writer made no files")
            out = self.ctl("backup", "--to", self.backup).stdout.decode()
        finally:
            stop.set()
            t.join()
        shares = [line.split(": ", 1)[1] for line in out.splitlines()
                  if line.startswith("share ")]
        self.assertEqual(len(shares), 5)
        self.assertIn("The recovery key is split 3 of 5", out)
        self.assertEqual(os.stat(self.backup).st_mode & 0o777, 0o600)
        # The shares are not in the backup file.
        with open(self.backup, "rb") as f:
            blob = f.read()
        for s in shares:
            self.assertNotIn(s.split("-")[6].encode(), blob)

        self.m.unmount()
        self.m.keyd.stop()
        shutil.rmtree(self.m.keyd.data_dir)

        # Two shares are refused, and leave no store behind.
        with self.assertRaises(RuntimeError) as cm:
            self.restore(shares[:2])
        self.assertIn("this backup needs 3 shares; 2 given", str(cm.exception))
        self.assertFalse(os.path.exists(os.path.join(self.m.keyd.data_dir, "data.mdb")))
        # A share of another split (here: mistyped) is refused by name.
        bad = shares[0][:-1] + ("0" if shares[0][-1] != "0" else "1")
        with self.assertRaises(RuntimeError) as cm:
            self.restore([bad] + shares[1:3])
        self.assertIn("check digits", str(cm.exception))

        self.restore([shares[0], shares[2], shares[4]])
        with open(self.m.keyd.log_path) as f:
            self.assertIn("from 3 shares", f.read())
        # Every key and version is back: the volume mounts and every file,
        # written before or after the backup, reads back.
        self.m.mount()
        with open(self.m.path("before-rotation"), "rb") as f:
            self.assertEqual(f.read(), b"v1" * 5000)
        self.assertGreater(len(written), 20)
        for name, data in written.items():
            with open(self.m.path(name), "rb") as f:
                self.assertEqual(f.read(), data, name)
        got = self.ctl("secrets", "--file", self.secrets, "get", "app", "DB_PASSWORD")
        self.assertEqual(got.stdout.strip(), b"hunter2")
        # The restored directory refuses a second restore.
        self.m.unmount()
        self.m.keyd.stop()
        with self.assertRaises(RuntimeError) as cm:
            self.restore([shares[0], shares[1], shares[3]])
        self.assertIn("already holds a store", str(cm.exception))

    def test_shares_typed_at_the_prompt_without_foreground(self):
        out = self.ctl("backup", "--to", self.backup, "--threshold", "2",
                       "--shares", "3").stdout.decode()
        shares = [line.split(": ", 1)[1] for line in out.splitlines()
                  if line.startswith("share ")]
        self.m.unmount()
        keyd = self.m.keyd
        keyd.stop()
        shutil.rmtree(keyd.data_dir)
        shown, code = keyd.start_detached(
            ["--restore", self.backup],
            [("share 1 of 2:", shares[2]), ("share 2 of 2:", shares[0])])
        self.assertEqual(code, 0, shown)
        self.assertNotIn(shares[0], shown)  # echo was off
        self.m.mount()
        self.assertEqual(os.listdir(self.m.mnt), [])
        self.m.unmount()
        keyd.stop_detached()

    def test_only_root_may_back_up(self):
        r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            ENVELOPECTL, "--endpoint", self.endpoint, "backup", "--to",
                            "/tmp/never-" + str(os.getpid()) + ".ekb"],
                           capture_output=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"AccessDeniedException", r.stderr)
        self.assertFalse(os.path.exists("/tmp/never-" + str(os.getpid()) + ".ekb"))


def wait_reached(test, latch, step):
    """Until the daemon stops at `step` of a rotation (it then waits for
    STEP.go: no timing involved, only a bound on a hung daemon)."""
    reached = os.path.join(latch, step + ".reached")
    deadline = time.time() + 30
    while not os.path.exists(reached):
        test.assertLess(time.time(), deadline, f"rotate-root never reached {step}")
        time.sleep(0.01)


class RootRotationTest(unittest.TestCase):
    """envelopectl admin rotate-root on a key-file data directory, online,
    and kill -9 at each of its steps."""

    def setUp(self):
        self.keyd = Keyd().start()
        self.root_file = os.path.join(self.keyd.data_dir, "root.key")
        self.blobs = []
        for i in range(5):
            key = self.keyd.call("CreateKey", {})["KeyMetadata"]["KeyId"]
            self.keyd.call("RotateKeyOnDemand", {"KeyId": key})
            blob = self.keyd.call("Encrypt", {"KeyId": key, "Plaintext": base64.b64encode(
                f"secret {i}".encode()).decode()})["CiphertextBlob"]
            self.blobs.append((blob, f"secret {i}".encode()))

    def tearDown(self):
        os.environ.pop("ENVELOPE_TEST_ROTATE_ROOT_LATCH", None)
        self.keyd.cleanup()

    def root(self):
        with open(self.root_file, "rb") as f:
            return f.read()

    def check_everything(self):
        for blob, plain in self.blobs:
            out = self.keyd.call("Decrypt", {"CiphertextBlob": blob})
            self.assertEqual(base64.b64decode(out["Plaintext"]), plain)
        verify = self.keyd.envelopectl("audit", "verify")
        self.assertIn("audit log OK", verify.stdout)
        self.assertFalse(os.path.exists(self.root_file + ".next"))

    def test_rotate_root_online_then_restart(self):
        before = self.root()
        out = self.keyd.envelopectl("admin", "rotate-root").stdout
        self.assertIn("root key rotated", out)
        self.assertNotEqual(self.root(), before)
        self.assertEqual(os.stat(self.root_file).st_mode & 0o777, 0o600)
        self.check_everything()  # online, no restart
        self.keyd.stop()
        self.keyd.start()
        self.check_everything()
        self.keyd.stop()
        # The old root key no longer opens the store.
        with open(self.root_file, "wb") as f:
            f.write(before)
        with self.assertRaises(RuntimeError) as cm:
            self.keyd.start()
        self.assertIn("does not open this data directory", str(cm.exception))

    def test_twenty_kills_during_rotate_root_lose_nothing(self):
        latch = tempfile.mkdtemp(prefix="rotate-latch-")
        os.environ["ENVELOPE_TEST_ROTATE_ROOT_LATCH"] = latch
        try:
            self.keyd.stop()
            self.keyd.start()
            outcomes = []
            for i in range(20):
                step = "written" if i % 2 == 0 else "committed"
                for name in os.listdir(latch):
                    os.unlink(os.path.join(latch, name))
                # The other step lets the rotation through.
                open(os.path.join(latch, ("committed" if step == "written" else "written")
                                  + ".go"), "w").close()
                before = self.root()
                ctl = subprocess.Popen([ENVELOPECTL, "--endpoint", "unix:" + self.keyd.socket,
                                        "admin", "rotate-root"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                wait_reached(self, latch, step)
                self.keyd.kill9()
                ctl.wait(timeout=30)
                self.assertNotEqual(ctl.returncode, 0)
                self.keyd.start()
                self.check_everything()
                outcomes.append((step, self.root() != before))
            # Killed before the commit: the old root key stays; after it:
            # the new one is in place once the daemon is back.
            self.assertEqual(outcomes, [("written", False), ("committed", True)] * 10)
        finally:
            shutil.rmtree(latch, ignore_errors=True)


class KeptBlobMixin:
    """A daemon started with its secret on a pipe, and a blob that must keep
    decrypting across rotations. Needs self.keyd."""

    def start_with(self, args, secret):
        r, w = os.pipe()
        os.write(w, secret + b"\n")
        os.close(w)
        try:
            return self.keyd.start(args + [str(r)], pass_fds=(r,))
        finally:
            os.close(r)

    def fill(self):
        key = self.keyd.call("CreateKey", {})["KeyMetadata"]["KeyId"]
        return self.keyd.call("Encrypt", {"KeyId": key, "Plaintext": base64.b64encode(
            b"kept").decode()})["CiphertextBlob"]

    def decrypts(self, blob):
        out = self.keyd.call("Decrypt", {"CiphertextBlob": blob})
        self.assertEqual(base64.b64decode(out["Plaintext"]), b"kept")

    def kill_during_rotation(self, step, restart, cmd, answer):
        """Restarts the daemon (restart()) with the rotation latch on, runs
        `cmd` (an envelopectl admin rotate-root) with `answer` on its
        standard input, and kill -9s the daemon once the rotation has
        reached `step` ("written": before its commit; "committed": after)."""
        latch = tempfile.mkdtemp(prefix="rotate-latch-")
        other = "committed" if step == "written" else "written"
        open(os.path.join(latch, other + ".go"), "w").close()
        os.environ["ENVELOPE_TEST_ROTATE_ROOT_LATCH"] = latch
        try:
            self.keyd.stop()
            restart()
            ctl = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            ctl.stdin.write(answer)
            ctl.stdin.close()
            wait_reached(self, latch, step)
            self.keyd.kill9()
            ctl.wait(timeout=30)
        finally:
            os.environ.pop("ENVELOPE_TEST_ROTATE_ROOT_LATCH", None)
            shutil.rmtree(latch, ignore_errors=True)


class RootRotationOtherKindsTest(KeptBlobMixin, unittest.TestCase):
    """rotate-root of a passphrase data directory (a new passphrase) and of
    a token data directory (a new root key sealed by the same token key),
    online; and kill -9 just before and just after each one's commit."""

    def tearDown(self):
        os.environ.pop("ENVELOPE_TEST_ROTATE_ROOT_LATCH", None)
        self.keyd.cleanup()
        if getattr(self, "hsm", None):
            self.hsm.cleanup()

    def start(self, args, secret):
        return self.start_with(args, secret)

    def rotate(self, flag, secret):
        return subprocess.run([ENVELOPECTL, "--endpoint", "unix:" + self.keyd.socket, "admin",
                               "rotate-root", flag, "0"], input=secret + b"\n",
                              capture_output=True, timeout=60)

    def test_passphrase(self):
        self.keyd = Keyd()
        start = ["--passphrase-fd"]
        self.start(start, b"old passphrase")
        blob = self.fill()
        r = self.rotate("--new-passphrase-fd", b"new passphrase")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"root key rotated: passphrase", r.stdout)
        self.decrypts(blob)  # online
        self.keyd.stop()
        with self.assertRaises(RuntimeError) as cm:
            self.start(start, b"old passphrase")
        self.assertIn("does not open this data directory", str(cm.exception))
        self.start(start, b"new passphrase")
        self.decrypts(blob)
        self.assertIn("audit log OK", self.keyd.envelopectl("audit", "verify").stdout)
        # kill -9 before the commit: the old passphrase; after it: the new one.
        self.check_kills(start, "--new-passphrase-fd",
                         [b"new passphrase", b"third passphrase", b"fourth passphrase"], blob)

    def test_token(self):
        self.hsm = SoftHsm()
        self.hsm.init_token("root-tok", "1234")
        self.keyd = Keyd()
        start = ["--root-key", SoftHsm.uri("root-tok", "keyd-root"), "--pin-fd"]
        self.start(start, b"1234")
        blob = self.fill()
        r = self.rotate("--pin-fd", b"4321")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"CKR_PIN_INCORRECT", r.stderr)
        r = self.rotate("--pin-fd", b"1234")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"root key rotated: token root-tok, key keyd-root", r.stdout)
        self.decrypts(blob)
        self.keyd.stop()
        self.start(start, b"1234")
        self.decrypts(blob)
        self.check_kills(start, "--pin-fd", [b"1234", b"1234", b"1234"], blob)

    def check_kills(self, start, flag, secrets, blob):
        """secrets: the one the daemon starts with now, then the new one of
        each of two rotations (a passphrase changes, a PIN does not)."""
        current = secrets[0]
        for step, new in (("written", secrets[1]), ("committed", secrets[2])):
            self.kill_during_rotation(
                step, lambda: self.start(start, current),
                [ENVELOPECTL, "--endpoint", "unix:" + self.keyd.socket, "admin", "rotate-root",
                 flag, "0"], new + b"\n")
            # Before the commit the store opens with what it had; after it,
            # only with the new secret.
            if step == "written" and new != current:
                with self.assertRaises(RuntimeError):
                    self.start(start, new)
            current = current if step == "written" else new
            self.start(start, current)
            self.decrypts(blob)


class RootKeyKindChangeTest(KeptBlobMixin, unittest.TestCase):
    """rotate-root --to: a key file moved under a token, the token's root key
    replaced by a passphrase, the passphrase by a key file again. Each change
    is online; after it the daemon starts only the new way; a key file left
    behind goes. And kill -9 just before and just after each change's
    commit: the data directory then opens the old way or the new way."""

    def setUp(self):
        self.hsm = SoftHsm()
        self.hsm.init_token("root-tok", "1234")
        self.keyd = Keyd()
        self.root_file = os.path.join(self.keyd.data_dir, "root.key")
        uri = SoftHsm.uri("root-tok", "keyd-root")
        # name: (start arguments, the secret for them, rotate-root's --to,
        # its secret flag)
        self.ways = {
            "key-file": ([], None, "key-file", None),
            "token": (["--root-key", uri, "--pin-fd"], b"1234", uri, "--pin-fd"),
            "passphrase": (["--passphrase-fd"], b"a passphrase", "passphrase",
                           "--new-passphrase-fd"),
        }
        self.chain = [("key-file", "token"), ("token", "passphrase"), ("passphrase", "key-file")]

    def tearDown(self):
        os.environ.pop("ENVELOPE_TEST_ROTATE_ROOT_LATCH", None)
        self.keyd.cleanup()
        self.hsm.cleanup()

    def start(self, way):
        args, secret, _, _ = self.ways[way]
        return self.keyd.start(args) if secret is None else self.start_with(args, secret)

    def rotate_command(self, way):
        _, secret, to, flag = self.ways[way]
        cmd = [ENVELOPECTL, "--endpoint", "unix:" + self.keyd.socket, "admin", "rotate-root",
               "--to", to] + ([flag, "0"] if flag else [])
        return cmd, (secret or b"") + b"\n"

    def refused(self, way):
        with self.assertRaises(RuntimeError) as cm:
            self.start(way)
        return str(cm.exception)

    def test_changes_of_kind_online_then_restart(self):
        self.start("key-file")
        blob = self.fill()
        ctl = [ENVELOPECTL, "--endpoint", "unix:" + self.keyd.socket, "admin", "rotate-root"]
        for bad, why in ((["--to", "usb-stick"], b"RootKeyKind must be"),
                         (["--to", "passphrase"], b"NewPassphrase is required")):
            r = subprocess.run(ctl + bad, input=b"", capture_output=True, timeout=60)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(b"ValidationException", r.stderr)
            self.assertIn(why, r.stderr)
        # A URI belongs to a token only.
        with self.assertRaises(KmsError) as cm:
            self.keyd.call("RotateRootKey", {"RootKeyKind": "key-file",
                                             "RootKeyUri": "pkcs11:token=x"},
                           prefix="EnvelopeKeyService")
        self.assertEqual(cm.exception.type, "ValidationException")
        self.assertTrue(os.path.exists(self.root_file))
        for old, new in self.chain:
            cmd, answer = self.rotate_command(new)
            r = subprocess.run(cmd, input=answer, capture_output=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(b"from now on, start envelope-keyd", r.stdout)
            self.decrypts(blob)  # online
            # The daemon rotates the new kind from now on, without a restart.
            cmd, answer = self.rotate_command(new)
            r = subprocess.run(cmd, input=answer, capture_output=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.decrypts(blob)
            self.keyd.stop()
            self.assertIn("set up with a", self.refused(old))
            self.start(new)
            self.decrypts(blob)
            self.assertIn("audit log OK", self.keyd.envelopectl("audit", "verify").stdout)
            # A key file is there exactly while the root key is one.
            self.assertEqual(os.path.exists(self.root_file), new == "key-file")
            self.assertFalse(os.path.exists(self.root_file + ".next"))

    def test_kills_before_and_after_each_change_lose_nothing(self):
        self.start("key-file")
        blob = self.fill()
        current = "key-file"
        for old, new in self.chain:
            for step in ("written", "committed"):
                cmd, answer = self.rotate_command(new)
                self.kill_during_rotation(step, lambda: self.start(current), cmd, answer)
                # Before the commit only the old way opens it; after it,
                # only the new way.
                expected = old if step == "written" else new
                self.assertIn("set up with a", self.refused(new if expected == old else old))
                self.start(expected)
                self.decrypts(blob)
                self.assertIn("audit log OK",
                              self.keyd.envelopectl("audit", "verify").stdout)
                self.assertEqual(os.path.exists(self.root_file), expected == "key-file")
                self.assertFalse(os.path.exists(self.root_file + ".next"))
                current = expected


if __name__ == "__main__":
    unittest.main()
