"""Attacks on a root allow_other mount by a local user (nobody) who owns
backing objects in the cipherdir: planted symlinks, FIFOs and references.

Every attack runs for real, as nobody via setpriv, against a real mount over
the real key service. The test's temporary directories are opened up so that
nobody can reach the cipherdir: exactly the situation `envelopefs init`'s
0700 cipherdir prevents, and which the mount must survive anyway."""
import json
import os
import pwd
import grp
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

from fs_harness import ENVELOPECTL, ENVELOPEFS, Mount, run

NOBODY = pwd.getpwnam("nobody").pw_uid
NOGROUP = grp.getgrnam("nogroup").gr_gid
# Generous: on a loaded 2-core machine an answer takes well under a second;
# a hang is forever.
PROMPT_SECONDS = 20


def backing_path_of(cipherdir, mount_path):
    """The backing object of a plaintext path: the mount reports the backing
    inode number."""
    ino = os.lstat(mount_path).st_ino
    for root, dirs, files in os.walk(cipherdir):
        for n in dirs + files:
            p = os.path.join(root, n)
            if os.lstat(p).st_ino == ino:
                return p
    raise AssertionError(f"no backing object for {mount_path}")


class AttackTestCase(unittest.TestCase):
    def setUp(self):
        self.m = Mount()
        self.fifos = []
        self.procs = []
        self.m.mount("allow_other")
        # Let nobody reach the cipherdir (init made it private, and with it
        # the mount's root).
        os.chmod(self.m.tmp, 0o755)
        os.chmod(self.m.mnt, 0o755)
        self.assertEqual(stat.S_IMODE(os.stat(self.m.cipherdir).st_mode), 0o755)
        # nobody's home in the volume: they own its backing directory.
        os.mkdir(self.m.path("home"))
        os.chown(self.m.path("home"), NOBODY, NOGROUP)
        self.home_backing = backing_path_of(self.m.cipherdir, self.m.path("home"))
        self.assertEqual(os.stat(self.home_backing).st_uid, NOBODY)
        # A root-only file outside the volume.
        self.outside = tempfile.mkdtemp(prefix="envelopefs-outside-")
        os.chmod(self.outside, 0o755)
        self.secret = os.path.join(self.outside, "secret")
        with open(self.secret, "w") as f:
            f.write("root only\n")
        os.chmod(self.secret, 0o600)

    def tearDown(self):
        self.release_fifos()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        self.m.cleanup()
        shutil.rmtree(self.outside, ignore_errors=True)

    def release_fifos(self):
        # A mount that opened a planted FIFO waits for a writer: be one, so
        # that its worker thread and the caller come back.
        for path in self.fifos:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                os.close(fd)
            except OSError:
                pass

    def as_nobody(self, script, check=True):
        """Runs a Python script as nobody; returns its completed process."""
        r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            sys.executable, "-c", textwrap.dedent(script)],
                           capture_output=True, text=True, timeout=120)
        if check:
            self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def prompt(self, argv, user="nobody"):
        """Runs argv (as nobody) and returns (returncode, seconds); a command
        that hangs is reported as None after PROMPT_SECONDS, then released."""
        if user == "nobody":
            argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + argv
        start = time.monotonic()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(p)
        try:
            p.communicate(timeout=PROMPT_SECONDS)
            return p.returncode, time.monotonic() - start
        except subprocess.TimeoutExpired:
            self.release_fifos()
            p.kill()
            p.communicate(timeout=60)
            return None, PROMPT_SECONDS

    def plant_fifo(self, path):
        """As nobody: replaces `path` (in a backing directory nobody owns)
        with a FIFO."""
        self.as_nobody(f"""
            import os
            os.unlink({path!r})
            os.mkfifo({path!r}, 0o666)
        """)
        self.fifos.append(path)

    def assertSecretUntouched(self):
        st = os.stat(self.secret)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(st.st_uid, 0)
        with open(self.secret) as f:
            self.assertEqual(f.read(), "root only\n")


class SymlinkAttackTest(AttackTestCase):
    def test_chmod_through_a_swapped_backing_name_never_reaches_the_symlink_target(self):
        # nobody opens their own file through the mount, swaps its backing
        # name for a symlink to a root-only file, then fchmods the handle.
        mine = self.m.path("home", "mine")
        r = self.as_nobody(f"""
            import os, sys
            fd = os.open({mine!r}, os.O_RDWR | os.O_CREAT, 0o600)
            ino = os.fstat(fd).st_ino
            home = {self.home_backing!r}
            name = [n for n in os.listdir(home) if os.lstat(os.path.join(home, n)).st_ino == ino][0]
            os.rename(os.path.join(home, name), os.path.join(home, "kept"))
            os.symlink({self.secret!r}, os.path.join(home, name))
            for call in (lambda: os.fchmod(fd, 0o666), lambda: os.chmod({mine!r}, 0o666),
                         lambda: os.fchown(fd, {NOBODY}, {NOGROUP})):
                try:
                    call()
                    print("changed")
                except OSError as e:
                    print("refused", e.errno)
        """)
        self.assertSecretUntouched()
        self.assertNotIn("changed", r.stdout)

    def test_planted_symlink_at_a_long_names_side_file_is_not_written_through(self):
        # Name encryption is deterministic: nobody learns the side file's
        # name by creating the long name once, then plants a symlink there.
        long_name = self.m.path("home", "L" * 200)
        self.as_nobody(f"""
            import os
            home = {self.home_backing!r}
            before = set(os.listdir(home))
            open({long_name!r}, "w").close()
            side = [n for n in set(os.listdir(home)) - before if n.endswith(".name")][0]
            os.unlink({long_name!r})
            assert not os.path.exists(os.path.join(home, side))
            os.symlink({self.secret!r}, os.path.join(home, side))
        """)
        # Someone (root here, as a cron job would) creates that name.
        with open(long_name, "w") as f:
            f.write("data")
        self.assertSecretUntouched()
        with open(long_name) as f:
            self.assertEqual(f.read(), "data")
        self.assertIn("L" * 200, os.listdir(self.m.path("home")))

    def test_a_planted_reference_cannot_delete_another_users_long_symlink_target(self):
        # root's symlink with a long target: its target lives in the store.
        target = "/" + "t" * 3500
        os.symlink(target, self.m.path("rootlink"))
        root_backing = backing_path_of(self.m.cipherdir, self.m.path("rootlink"))
        # nobody reads the reference (backing symlinks are world-readable),
        # plants it as the target of their own symlink and unlinks that.
        mine = self.m.path("home", "s")
        self.as_nobody(f"""
            import os
            reference = os.readlink({root_backing!r})
            assert reference.startswith("envelopefs.target."), reference
            os.symlink("short", {mine!r})
            ino = os.lstat({mine!r}).st_ino
            home = {self.home_backing!r}
            name = [n for n in os.listdir(home) if os.lstat(os.path.join(home, n)).st_ino == ino][0]
            os.unlink(os.path.join(home, name))
            os.symlink(reference, os.path.join(home, name))
            os.unlink({mine!r})
        """)
        self.assertEqual(os.readlink(self.m.path("rootlink")), target)
        # The owner's own unlink still removes the target file.
        store = os.path.join(self.m.cipherdir, ".envelopefs.targets")
        self.assertEqual(len(os.listdir(store)), 1)
        os.unlink(self.m.path("rootlink"))
        self.assertEqual(os.listdir(store), [])

    def test_long_symlink_targets_of_users_follow_their_symlinks(self):
        # A user's long symlink: its target file is theirs, and unlinking the
        # symlink through the mount removes it.
        mine = self.m.path("home", "long")
        target = "/" + "u" * 3500
        self.as_nobody(f"""
            import os
            os.symlink({target!r}, {mine!r})
            assert os.readlink({mine!r}) == {target!r}
        """)
        store = os.path.join(self.m.cipherdir, ".envelopefs.targets")
        (name,) = os.listdir(store)
        self.assertEqual(os.stat(os.path.join(store, name)).st_uid, NOBODY)
        self.as_nobody(f"import os; os.unlink({mine!r})")
        self.assertEqual(os.listdir(store), [])


class FifoAttackTest(AttackTestCase):
    def test_fifo_as_a_directory_id_fails_promptly(self):
        sub = self.m.path("home", "sub")
        self.as_nobody(f"import os; os.mkdir({sub!r})")
        sub_backing = backing_path_of(self.m.cipherdir, sub)
        self.plant_fifo(os.path.join(sub_backing, ".envelopefs.dirid"))
        rc, _ = self.prompt(["ls", sub])
        self.assertIsNotNone(rc, "ls hung on a FIFO planted as a directory id")
        self.assertNotEqual(rc, 0)

    def test_fifo_as_a_long_name_side_file_fails_promptly(self):
        long_name = self.m.path("home", "N" * 200)
        self.as_nobody(f"open({long_name!r}, 'w').close()")
        side = [n for n in os.listdir(self.home_backing) if n.endswith(".name")][0]
        self.plant_fifo(os.path.join(self.home_backing, side))
        rc, _ = self.prompt(["ls", self.m.path("home")])
        self.assertIsNotNone(rc, "ls hung on a FIFO planted as a long-name side file")
        # The entry whose name cannot be read is left out; the rest lists.
        self.assertEqual(rc, 0)

    def test_fifo_as_a_long_symlink_target_fails_promptly(self):
        # The volume's root is shared (root made it world-writable), so
        # nobody can create the long-target store before the mount does.
        os.chmod(self.m.mnt, 0o1777)
        store = os.path.join(self.m.cipherdir, ".envelopefs.targets")
        self.as_nobody(f"import os; os.mkdir({store!r}, 0o777); os.chmod({store!r}, 0o777)")
        link = self.m.path("rootlink")
        try:
            os.symlink("/" + "t" * 3500, link)
        except OSError:
            return  # refused to use a store someone else controls: fail closed
        (name,) = os.listdir(store)
        self.plant_fifo(os.path.join(store, name))
        rc, _ = self.prompt(["readlink", link], user="root")
        self.assertIsNotNone(rc, "readlink hung on a FIFO planted as a long symlink target")
        self.assertNotEqual(rc, 0)



class StallingProxy:
    """A byte pipe in front of the key service's socket that holds back the
    `nth` request naming `operation` until release() is called: a latch that
    stops rotate or fsck between its walk and a file's open, with no timing
    assumption."""

    def __init__(self, upstream, path, operation, nth):
        self.upstream = upstream
        self.operation = operation.encode()
        self.nth = nth
        self.count = 0
        self.lock = threading.Lock()
        self.stalled = threading.Event()
        self.released = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def release(self):
        self.released.set()

    def close(self):
        self.released.set()
        self.listener.close()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(self.upstream)
            threading.Thread(target=self._pipe, args=(client, up, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, client, False), daemon=True).start()

    def _pipe(self, src, dst, requests):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if requests and self.operation in data:
                    with self.lock:
                        self.count += data.count(self.operation)
                        hold = self.count == self.nth
                    if hold:
                        self.stalled.set()
                        self.released.wait(120)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class WalkAttackTest(AttackTestCase):
    """rotate and fsck open files by their path under the cipherdir after
    walking it. nobody swaps one of their directories for a symlink to a
    directory outside in between: nothing outside may be opened."""

    def setUp(self):
        super().setUp()
        # Root's file first in the walk (the root directory is listed
        # first), nobody's file in a subdirectory they own.
        with open(self.m.path("a"), "w") as f:
            f.write("root's file")
        sub = self.m.path("home", "sub")
        self.as_nobody(f"""
            import os
            os.mkdir({sub!r})
            with open(os.path.join({sub!r}, "f"), "w") as f:
                f.write("nobody's file")
        """)
        self.sub_backing = backing_path_of(self.m.cipherdir, sub)
        f_backing = backing_path_of(self.m.cipherdir, os.path.join(sub, "f"))
        # Outside: a root-only copy of that file under the same backing
        # name, a valid envelopefs file that rotate could rewrite.
        self.elsewhere = os.path.join(self.outside, "elsewhere")
        os.mkdir(self.elsewhere)
        self.copy = os.path.join(self.elsewhere, os.path.basename(f_backing))
        shutil.copyfile(f_backing, self.copy)
        os.chmod(self.copy, 0o600)
        with open(self.copy, "rb") as f:
            self.copy_bytes = f.read()
        self.m.unmount()
        self.proxy = None

    def tearDown(self):
        if self.proxy:
            self.proxy.close()
        super().tearDown()

    def run_with_swap(self, argv, operation):
        """Runs argv against the stalling proxy; while the second `operation`
        request (the first is the volume key's) is held, swaps nobody's
        directory for a symlink to `elsewhere`."""
        sock = os.path.join(self.m.tmp, "proxy.sock")
        self.proxy = StallingProxy(self.m.keyd.socket, sock, operation, nth=2)
        p = subprocess.Popen(argv + ["--kms", "unix:" + sock, "--threads", "1", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        # nobody's swap, started beforehand so that the request is held
        # for milliseconds, far from the client's timeout.
        swap = subprocess.Popen(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
             "-c", textwrap.dedent(f"""
                import os, sys
                sys.stdin.readline()
                os.rename({self.sub_backing!r}, {self.sub_backing!r} + ".kept")
                os.symlink({self.elsewhere!r}, {self.sub_backing!r})
                print("swapped", flush=True)
             """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.procs.append(swap)
        deadline = time.monotonic() + 120
        while not self.proxy.stalled.wait(0.05):
            if p.poll() is not None or time.monotonic() > deadline:
                out, err = p.communicate()
                self.fail(f"{argv[1]} never reached its second {operation}: {out} {err}")
        swap.stdin.write("go\n")
        swap.stdin.flush()
        self.assertEqual(swap.stdout.readline().strip(), "swapped")
        self.proxy.release()
        out, err = p.communicate(timeout=120)
        return p.returncode, out, err

    def test_rotate_does_not_follow_a_symlinked_directory(self):
        to_key = run(ENVELOPECTL, "--endpoint", self.m.endpoint, "key", "create").stdout.strip()
        rc, out, err = self.run_with_swap(
            [ENVELOPEFS, "rotate", self.m.cipherdir, "--to-key", to_key], "TrentService.ReEncrypt")
        with open(self.copy, "rb") as f:
            self.assertEqual(f.read(), self.copy_bytes, "rotate rewrote a file outside the volume")
        self.assertEqual(rc, 1, out + err)
        summary = json.loads(out)
        self.assertEqual(summary["rewrapped"], 1)  # root's file only
        self.assertEqual(len(summary["failures"]), 1, summary)
        self.assertIn("symlink", summary["failures"][0])

    def test_fsck_does_not_follow_a_symlinked_directory(self):
        rc, out, err = self.run_with_swap([ENVELOPEFS, "fsck", self.m.cipherdir],
                                          "TrentService.Decrypt")
        report = json.loads(out)
        # The file outside would have checked clean: it is a valid copy.
        self.assertFalse(report["clean"], report)
        self.assertEqual(rc, 1, out + err)
        self.assertTrue(any("symlink" in d for d in report["damaged"]), report)

class SetgidTest(AttackTestCase):
    def test_setgid_directories_pass_on_their_group(self):
        users = grp.getgrnam("users").gr_gid
        shared = self.m.path("shared")
        os.mkdir(shared)
        os.chown(shared, 0, users)
        os.chmod(shared, 0o2777)
        self.as_nobody(f"""
            import os
            open(os.path.join({shared!r}, "f"), "w").close()
            os.mkdir(os.path.join({shared!r}, "d"))
            os.mkfifo(os.path.join({shared!r}, "p"))
            os.symlink("x", os.path.join({shared!r}, "l"))
        """)
        for n in ("f", "d", "p", "l"):
            st = os.lstat(os.path.join(shared, n))
            self.assertEqual(st.st_uid, NOBODY, n)
            self.assertEqual(st.st_gid, users, n)
        self.assertTrue(os.stat(os.path.join(shared, "d")).st_mode & stat.S_ISGID)
        self.assertFalse(os.stat(os.path.join(shared, "f")).st_mode & stat.S_ISGID)
        # Outside a setgid directory the caller's group, as before.
        self.as_nobody(f"open({self.m.path('home', 'g')!r}, 'w').close()")
        self.assertEqual(os.stat(self.m.path("home", "g")).st_gid, NOGROUP)

    def test_writes_by_another_user_clear_setuid_and_setgid(self):
        # A write, truncate or fallocate by anyone but root drops S_ISUID,
        # and S_ISGID of a group-executable file, so a shared setuid file
        # cannot be made to run other code (fstests generic/683-685).
        for op in ("os.pwrite(fd, b'y', 10)", "os.ftruncate(fd, 50)",
                   "os.posix_fallocate(fd, 0, 200)"):
            for mode in (0o6777, 0o6666):
                p = self.m.path("shared")
                with open(p, "wb") as f:
                    f.write(b"x" * 100)
                os.chmod(p, mode)
                self.as_nobody(f"""
                    import os
                    fd = os.open({p!r}, os.O_WRONLY)
                    {op}
                    os.close(fd)
                """)
                got = stat.S_IMODE(os.stat(p).st_mode)
                self.assertFalse(got & stat.S_ISUID, f"{op}: {oct(got)}")
                if mode & 0o010:  # group-executable: setgid goes too
                    self.assertFalse(got & stat.S_ISGID, f"{op}: {oct(got)}")
                # (ext4 also drops S_ISGID of a file that is not
                # group-executable when the writer is not in its group; the
                # kernel's FUSE code keeps it: docs/CONFORMANCE.md.)
                os.unlink(p)


class InitTest(unittest.TestCase):
    def test_init_makes_the_cipherdir_private(self):
        m = Mount()
        try:
            self.assertEqual(stat.S_IMODE(os.stat(m.cipherdir).st_mode), 0o700)
            # A cipherdir another user owns is refused.
            theirs = os.path.join(m.tmp, "theirs")
            os.mkdir(theirs)
            os.chown(theirs, NOBODY, NOGROUP)
            r = subprocess.run([ENVELOPEFS, "init", theirs, "--key", m.key, "--kms", m.endpoint],
                               capture_output=True, text=True, timeout=60)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("belongs to uid", r.stderr)
            self.assertEqual(os.listdir(theirs), [])
        finally:
            m.cleanup()


if __name__ == "__main__":
    unittest.main()
