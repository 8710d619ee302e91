"""Tampering with the cipherdir under a real mount: an attacker who can write
backing files but holds no key must get EIO and a log line, never a file
that reads cleanly as something else, and plain `fsck` must name the file."""
import errno
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
import unittest

from fs_harness import ENVELOPEFS, Mount
from harness import ENVELOPECTL, KEYD

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
        r = subprocess.run([ENVELOPEFS, "fsck", self.m.cipherdir, "--json", "--kms", self.m.endpoint],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 1, (r.stdout, r.stderr))
        report = json.loads(r.stdout)
        self.assertEqual(len(report["damaged"]), 1, report)
        self.assertRegex(report["damaged"][0], r"^/(victim|bystander): .*final chunk 0")


if __name__ == "__main__":
    unittest.main()


NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


class ProcessHygieneTest(unittest.TestCase):
    """Key-holding processes are not dumpable and have no core limit, and a
    non-root mount still works without a readable /proc/self for others."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="envelopefs-hygiene-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        os.chmod(self.tmp, 0o755)
        nobody = pwd.getpwnam("nobody")
        for d in ("data", "cipher", "mnt", "run", "run2", "victim"):
            os.mkdir(os.path.join(self.tmp, d), 0o700)
            os.chown(os.path.join(self.tmp, d), nobody.pw_uid, nobody.pw_gid)
        self.sock = os.path.join(self.tmp, "data", "kms.sock")
        self.keyd = subprocess.Popen(
            NOBODY + [KEYD, "--data-dir", os.path.join(self.tmp, "data"), "--socket",
                      self.sock, "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(self.keyd.wait, 20)
        self.addCleanup(self.keyd.terminate)
        deadline = time.time() + 20
        while not os.path.exists(self.sock) and time.time() < deadline:
            time.sleep(0.05)
        self.mnt = os.path.join(self.tmp, "mnt")

    def as_nobody(self, *cmd):
        return subprocess.run(NOBODY + list(cmd), check=True, capture_output=True, text=True,
                              timeout=120).stdout.strip()

    def assertHardened(self, pid):
        with open(f"/proc/{pid}/limits") as f:
            core = [line for line in f if line.startswith("Max core file size")][0]
        self.assertEqual(core.split()[4], "0", core)
        # Non-dumpable: the kernel gives its /proc files to root, so the
        # same user can neither read its memory or environment nor ptrace it.
        self.assertEqual(os.stat(f"/proc/{pid}/environ").st_uid, 0)
        self.assertEqual(os.stat(f"/proc/{pid}/mem").st_uid, 0)
        with open(f"/proc/{pid}/status") as f:
            uid = [line for line in f if line.startswith("Uid:")][0].split()[1]
        self.assertEqual(int(uid), pwd.getpwnam("nobody").pw_uid)

    def test_keyd_and_a_non_root_mount(self):
        endpoint = "unix:" + self.sock
        key = self.as_nobody(ENVELOPECTL, "--endpoint", endpoint, "key", "create")
        cipher = os.path.join(self.tmp, "cipher")
        self.as_nobody(ENVELOPEFS, "init", cipher, "--key", key, "--kms", endpoint)
        self.assertHardened(self.keyd.pid)  # setpriv execs keyd: same pid
        # A user mount needs /dev/fuse open to its user (0666 on a stock
        # system, maybe not in a container): give it one in a private mount
        # namespace, where the mount itself lives too. Inside: mount as
        # nobody, exercise what goes through /proc/self/fd in the daemon
        # (xattrs, chmod and access(2) of the mount's root), report the
        # daemon's pid, unmount.
        script = f"""
set -e
mknod {self.tmp}/fuse c 10 229 && chmod 666 {self.tmp}/fuse
mount --bind {self.tmp}/fuse /dev/fuse
if XDG_RUNTIME_DIR={self.tmp}/run2 {' '.join(NOBODY)} {ENVELOPEFS} mount {cipher} {self.mnt} -o kms={endpoint} \
     2> {self.tmp}/planted.err; then exit 3; fi
XDG_RUNTIME_DIR={self.tmp}/run {' '.join(NOBODY)} {ENVELOPEFS} mount {cipher} {self.mnt} -o kms={endpoint}
{' '.join(NOBODY)} /usr/bin/python3 -c '
import os
p = os.path.join("{self.mnt}", "f")
with open(p, "wb") as f:
    f.write(b"hello")
os.setxattr(p, "user.k", b"v")
assert os.getxattr(p, "user.k") == b"v"
os.chmod("{self.mnt}", 0o700)
assert os.access("{self.mnt}", os.W_OK)
assert open(p, "rb").read() == b"hello"
'
pgrep -u nobody -f "envelopefs mount {cipher} " > {self.tmp}/fs.pid
cat /proc/$(cat {self.tmp}/fs.pid)/limits > {self.tmp}/fs.limits
stat -c %u /proc/$(cat {self.tmp}/fs.pid)/environ /proc/$(cat {self.tmp}/fs.pid)/mem > {self.tmp}/fs.owners
{' '.join(NOBODY)} fusermount3 -u {self.mnt}
"""
        # The fallback log (no /dev/log here) goes to $XDG_RUNTIME_DIR/envelopefs;
        # where that is a planted symlink, the mount refuses to start.
        os.chmod(os.path.join(self.tmp, "victim"), 0o755)
        os.symlink(os.path.join(self.tmp, "victim"), os.path.join(self.tmp, "run2", "envelopefs"))
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(self.tmp, "fs.limits")) as f:
            core = [line for line in f if line.startswith("Max core file size")][0]
        self.assertEqual(core.split()[4], "0", core)
        with open(os.path.join(self.tmp, "fs.owners")) as f:
            self.assertEqual(f.read().split(), ["0", "0"])
        with open(os.path.join(self.tmp, "planted.err")) as f:
            self.assertIn("a symlink or not a directory", f.read())
        self.assertEqual(os.listdir(os.path.join(self.tmp, "victim")), [])
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.tmp, "victim")).st_mode), 0o755)
        log = os.path.join(self.tmp, "run", "envelopefs", "envelopefs.log")
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(log)).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(log).st_mode), 0o600)
