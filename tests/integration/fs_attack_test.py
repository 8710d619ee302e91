"""Attacks on a root allow_other mount by a local user (nobody) who owns
backing objects in the cipherdir: planted symlinks, FIFOs and references.

Every attack runs for real, as nobody via setpriv, against a real mount over
the real key service. The test's temporary directories are opened up so that
nobody can reach the cipherdir: exactly the situation `envelopefs init`'s
0700 cipherdir prevents, and which the mount must survive anyway."""
import json
import errno
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


# A script prelude for as_nobody: make(kind, path, content, target) makes a
# file (with `content`), a directory, a symlink (to `target`) or a FIFO.
MAKE_OBJECT = """import os
def make(kind, path, content, target):
    if kind == "file":
        with open(path, "wb") as f:
            f.write(content)
    elif kind == "dir":
        os.mkdir(path)
    elif kind == "symlink":
        os.symlink(target, path)
    else:
        os.mkfifo(path)
"""


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

    # The kinds of object a backing inode number can pass between. A
    # directory's number cannot be reused while the mount knows it (its
    # inode holds a descriptor of it), so directories appear only as the new
    # object.
    REUSE_KINDS = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK,
                   "fifo": stat.S_IFIFO}
    REUSE_CONTENT = b"the planted file's own bytes"
    REUSE_TARGET = "planted/target"

    def test_a_backing_inode_number_reused_with_another_type_is_a_new_object(self):
        # nobody removes one of their backing objects while the kernel still
        # knows it (root holds an O_PATH descriptor of it, as any process
        # holding a reference would) and makes an object of another type that
        # takes its backing inode number, under a valid backing name learnt
        # through the mount. The mount must show the new object as what it
        # is, with its own content, and never show it through a reference to
        # the old one.
        for old in ("file", "symlink", "fifo"):
            for new in ("dir", "file", "symlink", "fifo"):
                if new != old:
                    with self.subTest(old=old, new=new):
                        self.check_inode_number_reuse(old, new)

    def check_inode_number_reuse(self, old, new):
        # All in a new directory of nobody's: the backing filesystem puts its
        # files and subdirectories in one place (ext4: the block group of
        # the directory), so a file's number can go to a directory.
        where = self.m.path("home", f"{old}-{new}")
        self.as_nobody(f"import os; os.mkdir({where!r})")
        backing_dir = backing_path_of(self.m.cipherdir, where)
        old_path = os.path.join(where, "old")
        new_path = os.path.join(where, "new")
        # Through the mount: the backing name and a valid backing form of the
        # new object (made and removed again), then the old object.
        r = self.as_nobody(MAKE_OBJECT + textwrap.dedent(f"""
            import json
            directory = {backing_dir!r}
            before = set(os.listdir(directory))
            make({new!r}, {new_path!r}, {self.REUSE_CONTENT!r}, {self.REUSE_TARGET!r})
            (new_backing,) = set(os.listdir(directory)) - before
            payload = ""
            if {new!r} == "file":
                with open(os.path.join(directory, new_backing), "rb") as f:
                    payload = f.read().hex()
            elif {new!r} == "symlink":
                payload = os.readlink(os.path.join(directory, new_backing))
            (os.rmdir if {new!r} == "dir" else os.unlink)({new_path!r})
            before = set(os.listdir(directory))
            make({old!r}, {old_path!r}, b"the old file", "old/target")
            (old_backing,) = set(os.listdir(directory)) - before
            print(json.dumps([new_backing, old_backing, payload]))
        """))
        new_backing, old_backing, payload = json.loads(r.stdout)
        held = os.open(old_path, os.O_PATH | os.O_NOFOLLOW)
        try:
            self.assertEqual(stat.S_IFMT(os.fstat(held).st_mode), self.REUSE_KINDS[old])
            # In the backing directory: the old object goes, and objects of
            # the new kind are made (at names the mount ignores) until one
            # gets its number; that one is renamed to the new backing name.
            r = self.as_nobody(MAKE_OBJECT + textwrap.dedent(f"""
                directory = {backing_dir!r}
                new_kind = {new!r}
                payload = {payload!r}
                content = bytes.fromhex(payload) if new_kind == "file" else b""
                target = payload if new_kind == "symlink" else "x"
                old = os.path.join(directory, {old_backing!r})
                planted = os.path.join(directory, {new_backing!r})
                number = os.lstat(old).st_ino
                os.unlink(old)
                fillers = []
                for i in range(2000):
                    filler = os.path.join(directory, "filler." + str(i))
                    make(new_kind, filler, content, target)
                    if os.lstat(filler).st_ino == number:
                        os.rename(filler, planted)
                        break
                    fillers.append(filler)
                else:
                    print("not reused")
                for filler in fillers:
                    (os.rmdir if new_kind == "dir" else os.unlink)(filler)
                if new_kind == "dir" and os.path.isdir(planted):
                    with open(os.path.join(planted, ".envelopefs.dirid"), "wb") as f:
                        f.write(os.urandom(16))
            """))
            if "not reused" in r.stdout:
                self.skipTest("the backing filesystem did not reuse the inode number")
            # The new object is what it is, with its own content.
            st = os.lstat(new_path)
            self.assertEqual(stat.S_IFMT(st.st_mode), self.REUSE_KINDS[new])
            if new == "dir":
                self.assertEqual(os.listdir(new_path), [])
                with open(os.path.join(new_path, "inside"), "w") as f:
                    f.write("made inside")
                self.assertEqual(os.listdir(new_path), ["inside"])
                with open(os.path.join(new_path, "inside")) as f:
                    self.assertEqual(f.read(), "made inside")
                # ... and lands in the planted directory, nowhere else.
                self.assertEqual(len(os.listdir(os.path.join(backing_dir, new_backing))), 2)
            elif new == "file":
                with open(new_path, "rb") as f:
                    self.assertEqual(f.read(), self.REUSE_CONTENT)
                os.chmod(new_path, 0o640)
                self.assertEqual(stat.S_IMODE(os.lstat(new_path).st_mode), 0o640)
                os.truncate(new_path, 3)
                with open(new_path, "rb") as f:
                    self.assertEqual(f.read(), self.REUSE_CONTENT[:3])
            elif new == "symlink":
                self.assertEqual(os.readlink(new_path), self.REUSE_TARGET)
                self.assertEqual(st.st_size, len(self.REUSE_TARGET))
            # The old object's references never show the new one: they show
            # the old object (from the kernel's caches) or fail.
            for look in (lambda: os.fstat(held), lambda: os.lstat(old_path)):
                try:
                    self.assertEqual(stat.S_IFMT(look().st_mode), self.REUSE_KINDS[old])
                except OSError:
                    pass
            # The mount still serves the rest.
            self.assertEqual(os.listdir(where), ["new"])
            self.assertTrue(os.path.ismount(self.m.mnt))
        finally:
            os.close(held)

    def test_a_number_freed_by_the_mounts_own_unlink_is_a_new_object_when_reused(self):
        # No attacker: the kernel still holds a removed FIFO (a process keeps
        # a reference to it), so the mount still knows its backing number, and
        # the next mkdir through the mount gets that number from the backing
        # filesystem. The new directory must be a working directory.
        where = self.m.path("own")
        os.mkdir(where)  # a new directory: see check_inode_number_reuse
        fifo = os.path.join(where, "fifo")
        os.mkfifo(fifo)
        number = os.lstat(fifo).st_ino  # the backing inode number
        held = os.open(fifo, os.O_PATH)
        try:
            os.unlink(fifo)
            for i in range(20):  # ext4 hands out the lowest free number: the first try
                d = os.path.join(where, f"d{i}")
                os.mkdir(d)
                if os.lstat(d).st_ino == number:
                    break
            else:
                self.skipTest("the backing filesystem did not reuse the inode number")
            self.assertTrue(stat.S_ISDIR(os.lstat(d).st_mode))
            with open(os.path.join(d, "inside"), "w") as f:
                f.write("made inside")
            self.assertEqual(os.listdir(d), ["inside"])
        finally:
            os.close(held)


class XattrAttackTest(AttackTestCase):
    def test_an_xattr_set_through_a_swapped_backing_name_never_reaches_the_swapper(self):
        # root keeps a file open in nobody's directory; nobody swaps its
        # backing name for a backing file of their own, then swaps back and
        # reads that file's xattrs through the mount. Values are sealed
        # bound to the attribute's name, not to the file, so a value that
        # landed on nobody's object would read back in the clear.
        bait = self.m.path("home", "bait")
        r = self.as_nobody(f"""
            import os
            fd = os.open({bait!r}, os.O_RDWR | os.O_CREAT, 0o644)
            print(os.fstat(fd).st_ino)
        """)
        bait_ino = int(r.stdout.split()[0])
        victim = self.m.path("home", "victim")
        fd = os.open(victim, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            self.swap_and_set_xattr(fd, bait, bait_ino, victim)
        finally:
            os.close(fd)  # before tearDown's unmount, which it would hold up

    def swap_and_set_xattr(self, fd, bait, bait_ino, victim):
        victim_ino = os.fstat(fd).st_ino

        def backing_name(ino):
            for n in os.listdir(self.home_backing):
                if os.lstat(os.path.join(self.home_backing, n)).st_ino == ino:
                    return n
            raise AssertionError(f"no backing name with inode {ino}")
        b, v = backing_name(bait_ino), backing_name(victim_ino)
        home = self.home_backing
        self.as_nobody(f"""
            import os
            os.rename(os.path.join({home!r}, {v!r}), os.path.join({home!r}, "kept"))
            os.rename(os.path.join({home!r}, {b!r}), os.path.join({home!r}, {v!r}))
        """)
        with self.assertRaises(OSError) as refused:
            os.setxattr(fd, "user.secret", b"root's value")
        self.assertEqual(refused.exception.errno, errno.ESTALE)
        self.as_nobody(f"""
            import os
            os.rename(os.path.join({home!r}, {v!r}), os.path.join({home!r}, {b!r}))
            os.rename(os.path.join({home!r}, "kept"), os.path.join({home!r}, {v!r}))
        """)
        r = self.as_nobody(f"""
            import errno, os
            try:
                print("LEAK", os.getxattr({bait!r}, "user.secret"))
            except OSError as e:
                print("no value", errno.errorcode[e.errno])
        """)
        self.assertNotIn("LEAK", r.stdout)
        # With its name back, the victim's own file takes the value.
        os.setxattr(fd, "user.secret", b"root's value")
        self.assertEqual(os.getxattr(victim, "user.secret"), b"root's value")


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
        # Two of nobody's files in a subdirectory they own. Whichever is
        # opened first (the walk's order, or inode order for rotate) is
        # still inside the volume; the other is opened after the swap.
        sub = self.m.path("home", "sub")
        self.as_nobody(f"""
            import os
            os.mkdir({sub!r})
            for name in ("f", "g"):
                with open(os.path.join({sub!r}, name), "w") as f:
                    f.write("nobody's file " + name)
        """)
        self.sub_backing = backing_path_of(self.m.cipherdir, sub)
        # Outside: a root-only copy of each file under the same backing
        # name, valid envelopefs files that rotate could rewrite.
        self.elsewhere = os.path.join(self.outside, "elsewhere")
        os.mkdir(self.elsewhere)
        self.copies = {}
        for name in ("f", "g"):
            backing = backing_path_of(self.m.cipherdir, os.path.join(sub, name))
            copy = os.path.join(self.elsewhere, os.path.basename(backing))
            shutil.copyfile(backing, copy)
            os.chmod(copy, 0o600)
            with open(copy, "rb") as f:
                self.copies[copy] = f.read()
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
        # One file a batch (a lone re-wrap is a plain ReEncrypt): the first
        # file's (held) comes after the walk and before the second file is
        # opened.
        rc, out, err = self.run_with_swap(
            [ENVELOPEFS, "rotate", self.m.cipherdir, "--to-key", to_key, "--files-per-batch", "1"],
            "TrentService.ReEncrypt")
        for copy, before in self.copies.items():
            with open(copy, "rb") as f:
                self.assertEqual(f.read(), before, "rotate rewrote a file outside the volume")
        self.assertEqual(rc, 1, out + err)
        summary = json.loads(out)
        self.assertEqual(summary["rewrapped"], 1)  # the file opened before the swap
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
        # The mount takes FUSE_HANDLE_KILLPRIV_V2, so each of these is
        # the daemon's to do (fs/fuse_channel.h), not the kernel's.
        for op in ("os.pwrite(fd, b'y', 10)", "os.ftruncate(fd, 50)",
                   "os.posix_fallocate(fd, 0, 200)", "os.truncate(p, 20)",
                   "os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))",
                   "os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC))"):
            for mode in (0o6777, 0o6666):
                p = self.m.path("shared")
                with open(p, "wb") as f:
                    f.write(b"x" * 100)
                os.chmod(p, mode)
                self.as_nobody(f"""
                    import os
                    p = {p!r}
                    fd = os.open(p, os.O_WRONLY)
                    {op}
                    os.close(fd)
                """)
                got = stat.S_IMODE(os.stat(p).st_mode)
                self.assertFalse(got & stat.S_ISUID, f"{op}: {oct(got)}")
                # S_ISGID goes too: the file is group-executable, or (0o6666)
                # the writer is not in its group (root), as on ext4.
                self.assertFalse(got & stat.S_ISGID, f"{op}: {oct(got)}")
                os.unlink(p)
        # A writer in the file's group keeps S_ISGID of a file that is not
        # group-executable (a locking mark), and still drops S_ISUID.
        p = self.m.path("shared")
        with open(p, "wb") as f:
            f.write(b"x" * 100)
        os.chown(p, 0, NOGROUP)
        os.chmod(p, 0o6666)
        self.as_nobody(f"""
            import os
            fd = os.open({p!r}, os.O_WRONLY)
            os.pwrite(fd, b'y', 10)
            os.close(fd)
        """)
        self.assertEqual(stat.S_IMODE(os.stat(p).st_mode), 0o2666)
        os.unlink(p)

    def test_root_keeps_setuid_on_write_and_a_chown_drops_it(self):
        # Root (CAP_FSETID) writes and truncates without dropping S_ISUID or
        # S_ISGID; a chown drops them whoever makes it, as on ext4.
        p = self.m.path("root-suid")
        with open(p, "wb") as f:
            f.write(b"x" * 100)
        os.chmod(p, 0o6755)
        fd = os.open(p, os.O_WRONLY)
        os.pwrite(fd, b"y", 10)
        os.ftruncate(fd, 50)
        os.close(fd)
        os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))
        self.assertEqual(stat.S_IMODE(os.stat(p).st_mode), 0o6755)
        os.chown(p, NOBODY, -1)
        self.assertEqual(stat.S_IMODE(os.stat(p).st_mode), 0o0755)
        # A file that is not group-executable keeps S_ISGID (a locking mark).
        os.chmod(p, 0o6744)
        os.chown(p, 0, -1)
        self.assertEqual(stat.S_IMODE(os.stat(p).st_mode), 0o2744)


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
