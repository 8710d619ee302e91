"""Two mounts of one cipherdir with -o sharedstorage (docs/SHARED_STORAGE.md):
two envelopefs processes, two mountpoints, the real key service. What one
mount does, the other sees at its next system call: the entry and
attribute timeouts are 0, so every assertion is immediate (no sleep)."""
import ctypes
import errno
import fcntl
import json
import mmap
import os
import struct
import subprocess
import threading
import time
import unittest

from fs_harness import ENVELOPEFS, Mount, run

libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

CHUNK = 4096  # the volume's chunk size (the default)
F_OFD_SETLK = 37  # linux/fcntl.h; Python's fcntl module lacks it


def ofd_lock(fd, kind):
    """fcntl(F_OFD_SETLK) over the whole file; struct flock on x86_64."""
    fcntl.fcntl(fd, F_OFD_SETLK, struct.pack("hhqqi4x", kind, os.SEEK_SET, 0, 0, 0))


def punch_hole(fd, off, length):
    if libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


VERSION_CHUNKS = 64  # 256 KiB: one write request (max_write is 1 MiB), one read


def version(v, blocks=VERSION_CHUNKS):
    """256 KiB whose every chunk names the version and its own index."""
    return b"".join((f"v{v:06d} block {j:02d} ".encode() * 300)[:CHUNK] for j in range(blocks))


RECORDS = 200  # 200 appends of 4196 bytes: under 1 MiB, one read request
MAX_VERSIONS = 1000000  # a bound on the writer; the reader's READS end it
READS = 3000


def record(i):
    """An append of one chunk and a bit, so that appends cross chunk edges."""
    return (f"record {i:05d} ".encode() * 400)[:CHUNK + 100]


class OtherMount:
    """The second mount of the harness mount's cipherdir, at its own mountpoint."""

    def __init__(self, m, *opts):
        self.m = m
        self.mnt = os.path.join(m.tmp, "mnt-b")
        os.mkdir(self.mnt)
        self.log = os.path.join(m.tmp, "b.log")
        args = [ENVELOPEFS, "mount", m.cipherdir, self.mnt, "-o", "kms=" + m.endpoint,
                "-o", "log=" + self.log]
        for o in opts:
            args += ["-o", o]
        run(*args)
        self.mounted = True

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)

    def unmount(self):
        if not self.mounted:
            return
        for _ in range(50):
            if subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        for _ in range(100):
            if subprocess.run(["pgrep", "-f", f"envelopefs mount {self.m.cipherdir} {self.mnt} "],
                              capture_output=True).returncode != 0:
                break
            time.sleep(0.05)
        self.mounted = False


class SharedStorageTestCase(unittest.TestCase):
    def setUp(self):
        self.m = Mount()
        try:
            self.log_a = os.path.join(self.m.tmp, "a.log")
            self.m.mount("sharedstorage", "log=" + self.log_a)
            self.b = OtherMount(self.m, "sharedstorage")
        except BaseException:
            self.m.cleanup()
            raise

    def tearDown(self):
        # B first: A's unmount waits for every daemon of the cipherdir.
        self.b.unmount()
        self.m.cleanup()

    def a(self, *parts):
        return self.m.path(*parts)

    def write(self, path, data):
        with open(path, "wb") as f:
            f.write(data)

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def assertNoEntry(self, path):
        with self.assertRaises(OSError) as cm:
            os.lstat(path)
        self.assertEqual(cm.exception.errno, errno.ENOENT)


class SharedStorageTest(SharedStorageTestCase):
    def test_create_is_seen_by_the_other_mount(self):
        data = os.urandom(3 * CHUNK + 123)
        self.assertNoEntry(self.b.path("f"))  # a negative entry B must not keep
        self.write(self.a("f"), data)
        os.mkdir(self.a("d"))
        self.write(self.a("d", "g"), b"in a directory")
        long_name = "L" * 200  # a long name: its side file travels too
        self.write(self.a(long_name), b"long")
        os.symlink("../some/target", self.a("ln"))
        self.assertEqual(os.stat(self.b.path("f")).st_size, len(data))
        self.assertEqual(sorted(os.listdir(self.b.mnt)), sorted(["f", "d", long_name, "ln"]))
        self.assertEqual(self.read(self.b.path("f")), data)
        self.assertTrue(os.path.isdir(self.b.path("d")))
        self.assertEqual(os.listdir(self.b.path("d")), ["g"])
        self.assertEqual(self.read(self.b.path("d", "g")), b"in a directory")
        self.assertEqual(self.read(self.b.path(long_name)), b"long")
        self.assertEqual(os.readlink(self.b.path("ln")), "../some/target")
        # And the other way round.
        self.write(self.b.path("from-b"), b"written on B")
        self.assertEqual(self.read(self.a("from-b")), b"written on B")

    def test_rename_is_seen_by_the_other_mount(self):
        self.write(self.a("old"), b"moved")
        self.write(self.a("x"), b"X")
        self.write(self.a("y"), b"Y")
        os.mkdir(self.a("sub"))
        for n in ("old", "x", "y"):
            os.stat(self.b.path(n))  # B knows them all by their old names
        held = os.open(self.b.path("old"), os.O_RDONLY)
        try:
            os.rename(self.a("old"), self.a("new"))
            self.assertNoEntry(self.b.path("old"))
            self.assertEqual(self.read(self.b.path("new")), b"moved")
            self.assertEqual(os.fstat(held).st_size, 5)  # an open file follows its object
            self.assertEqual(os.pread(held, 10, 0), b"moved")
            os.rename(self.a("new"), self.a("sub", "deeper"))
            self.assertNoEntry(self.b.path("new"))
            self.assertEqual(self.read(self.b.path("sub", "deeper")), b"moved")
            # Renamed over an object B knows: B sees the new object there.
            os.rename(self.a("x"), self.a("y"))
            self.assertNoEntry(self.b.path("x"))
            self.assertEqual(self.read(self.b.path("y")), b"X")
            self.assertEqual(sorted(os.listdir(self.b.mnt)), ["sub", "y"])
            # A name B knew, now another object: B acts on the new one.
            self.write(self.a("old"), b"another file")
            self.assertEqual(self.read(self.b.path("old")), b"another file")
            os.setxattr(self.b.path("old"), "user.tag", b"on the new file")
            self.assertEqual(os.getxattr(self.a("old"), "user.tag"), b"on the new file")
            with self.assertRaises(OSError) as cm:
                os.getxattr(self.a("sub", "deeper"), "user.tag")
            self.assertEqual(cm.exception.errno, errno.ENODATA)
        finally:
            os.close(held)

    def test_unlink_gives_enoent_on_the_other_mount(self):
        self.write(self.a("gone"), b"soon gone")
        self.write(self.a("open"), b"still readable")
        os.mkdir(self.a("dir"))
        for n in ("gone", "open", "dir"):
            os.stat(self.b.path(n))
        held = os.open(self.b.path("open"), os.O_RDONLY)
        try:
            os.unlink(self.a("gone"))
            os.unlink(self.a("open"))
            os.rmdir(self.a("dir"))
            for n in ("gone", "open", "dir"):
                self.assertNoEntry(self.b.path(n))
                with self.assertRaises(FileNotFoundError):
                    os.open(self.b.path(n), os.O_RDONLY)
            self.assertEqual(os.listdir(self.b.mnt), [])
            # An open file stays readable after its last name is gone (POSIX).
            self.assertEqual(os.pread(held, 100, 0), b"still readable")
        finally:
            os.close(held)

    def test_append_and_overwrite_are_read_by_a_holder_on_the_other_mount(self):
        expected = b"start "
        self.write(self.a("log"), expected)
        reader = os.open(self.b.path("log"), os.O_RDONLY)
        writer = os.open(self.a("log"), os.O_WRONLY | os.O_APPEND)
        try:
            self.assertEqual(os.pread(reader, 100, 0), expected)
            for i in range(12):
                piece = os.urandom(700 + 911 * i)  # ends land inside and across chunks
                old_size = len(expected)
                self.assertEqual(os.write(writer, piece), len(piece))
                expected += piece
                self.assertEqual(os.fstat(reader).st_size, len(expected))
                self.assertEqual(os.stat(self.b.path("log")).st_size, len(expected))
                self.assertEqual(os.pread(reader, len(piece) + 10, old_size), piece)
                self.assertEqual(os.pread(reader, len(expected) + 10, 0), expected)
            # Rewritten in place, same size: nothing B read before may stay.
            patch = os.urandom(CHUNK + 10)
            fd = os.open(self.a("log"), os.O_WRONLY)
            os.pwrite(fd, patch, 100)
            os.close(fd)
            expected = expected[:100] + patch + expected[100 + len(patch):]
            self.assertEqual(os.pread(reader, len(expected) + 10, 0), expected)
            self.assertEqual(self.read(self.b.path("log")), expected)
        finally:
            os.close(writer)
            os.close(reader)

    def test_truncate_and_holes_are_seen_by_the_other_mount(self):
        data = os.urandom(10000)
        self.write(self.a("t"), data)
        reader = os.open(self.b.path("t"), os.O_RDONLY)
        try:
            self.assertEqual(os.pread(reader, 20000, 0), data)
            os.truncate(self.a("t"), 3000)
            self.assertEqual(os.fstat(reader).st_size, 3000)
            self.assertEqual(os.stat(self.b.path("t")).st_size, 3000)
            self.assertEqual(os.pread(reader, 20000, 0), data[:3000])
            # Up, past whole chunks: the file gets holes (format version 2)
            # while B holds the version-1 state it opened.
            os.truncate(self.a("t"), 40000)
            self.assertEqual(os.fstat(reader).st_size, 40000)
            self.assertEqual(os.pread(reader, 50000, 0), data[:3000] + b"\0" * 37000)
            # A hole punched at the same size.
            fd = os.open(self.a("t"), os.O_RDWR)
            os.pwrite(fd, b"\x5a" * 40000, 0)
            self.assertEqual(os.pread(reader, 50000, 0), b"\x5a" * 40000)
            punch_hole(fd, CHUNK, 3 * CHUNK)
            os.close(fd)
            self.assertEqual(os.pread(reader, 50000, 0),
                             b"\x5a" * CHUNK + b"\0" * 3 * CHUNK + b"\x5a" * (40000 - 4 * CHUNK))
            # O_TRUNC on A; B's next read sees an empty file.
            os.close(os.open(self.a("t"), os.O_WRONLY | os.O_TRUNC))
            self.assertEqual(os.fstat(reader).st_size, 0)
            self.assertEqual(os.pread(reader, 100, 0), b"")
        finally:
            os.close(reader)

    def test_a_stale_name_is_never_acted_on(self):
        # B holds a file open; A renames it and makes another file under its
        # old name. A call B makes through its descriptor that acts on the
        # backing name (xattrs) must not reach the new file: ESTALE.
        self.write(self.a("doc"), b"the first file")
        held = os.open(self.b.path("doc"), os.O_RDONLY)
        try:
            os.rename(self.a("doc"), self.a("doc2"))
            self.write(self.a("doc"), b"the second file")
            for call in (lambda: os.setxattr(held, "user.k", b"v"),
                         lambda: os.getxattr(held, "user.k")):
                with self.assertRaises(OSError) as cm:
                    call()
                self.assertEqual(cm.exception.errno, errno.ESTALE)
            self.assertEqual(os.listxattr(self.a("doc")), [])
            self.assertEqual(os.fstat(held).st_size, len(b"the first file"))
            self.assertEqual(os.pread(held, 100, 0), b"the first file")
            # Through a path the kernel looks the name up again: no ESTALE.
            os.setxattr(self.b.path("doc2"), "user.k", b"v")
            self.assertEqual(os.getxattr(self.a("doc2"), "user.k"), b"v")
            self.assertEqual(os.getxattr(held, "user.k"), b"v")  # its name is known again
        finally:
            os.close(held)

    def test_long_symlink_targets_go_with_their_last_link(self):
        store = os.path.join(self.m.cipherdir, ".envelopefs.targets")
        target = "t" * 4000  # past what a backing symlink holds
        os.symlink(target, self.a("long1"))
        os.symlink(target, self.a("long2"))
        self.assertEqual(os.readlink(self.b.path("long1")), target)
        self.assertEqual(len(os.listdir(store)), 2)
        os.unlink(self.b.path("long1"))
        self.write(self.a("plain"), b"x")
        os.rename(self.b.path("plain"), self.b.path("long2"))  # over the symlink
        self.assertEqual(os.listdir(store), [])
        self.assertEqual(self.read(self.a("long2")), b"x")

    def test_a_lock_held_elsewhere_fails_a_request_after_a_bound(self):
        # Someone with access to the cipherdir holds a backing file's lock:
        # B's read waits, then fails with EIO and a log line (10 s,
        # shared::kLockWait), never hangs; it works again once released.
        before = set(os.listdir(self.m.cipherdir))
        self.write(self.a("held"), b"locked out")
        (entry,) = set(os.listdir(self.m.cipherdir)) - before
        reader = os.open(self.b.path("held"), os.O_RDONLY)
        backing = os.open(os.path.join(self.m.cipherdir, entry), os.O_RDWR)
        try:
            ofd_lock(backing, fcntl.F_WRLCK)
            start = time.monotonic()
            with self.assertRaises(OSError) as cm:
                os.pread(reader, 100, 0)
            elapsed = time.monotonic() - start
            self.assertEqual(cm.exception.errno, errno.EIO)
            self.assertGreaterEqual(elapsed, 9.5)
            self.assertLess(elapsed, 60)
            with open(self.b.log) as f:
                self.assertIn("stayed locked by another process", f.read())
            ofd_lock(backing, fcntl.F_UNLCK)
            self.assertEqual(os.pread(reader, 100, 0), b"locked out")
        finally:
            os.close(backing)
            os.close(reader)

    def test_hard_links_are_refused(self):
        self.write(self.a("f"), b"one name only")
        for path in (self.a, self.b.path, self.a):
            with self.assertRaises(OSError) as cm:
                os.link(path("f"), path("g"))
            self.assertEqual(cm.exception.errno, errno.EPERM)
        self.assertNoEntry(self.a("g"))
        self.assertNoEntry(self.b.path("g"))
        self.assertEqual(os.stat(self.a("f")).st_nlink, 1)
        with open(self.log_a) as f:
            self.assertEqual(f.read().count("hard links are refused"), 1)  # once per mount
        with open(self.b.log) as f:
            self.assertEqual(f.read().count("hard links are refused"), 1)

    def test_inode_number_reused_by_the_other_mount(self):
        # B holds a reference to a regular file (the kernel keeps its inode);
        # A removes the file and makes a directory that reuses its backing
        # inode number. B must treat the directory as a directory.
        before = set(os.listdir(self.m.cipherdir))
        self.write(self.a("victim"), b"a file")
        (entry,) = set(os.listdir(self.m.cipherdir)) - before
        victim_ino = os.lstat(os.path.join(self.m.cipherdir, entry)).st_ino
        held = os.open(self.b.path("victim"), os.O_PATH)
        try:
            os.unlink(self.a("victim"))
            reused = None
            for i in range(20):  # ext4 hands out the lowest free number: the first try
                before = set(os.listdir(self.m.cipherdir))
                os.mkdir(self.a(f"dir{i}"))
                (entry,) = set(os.listdir(self.m.cipherdir)) - before
                if os.lstat(os.path.join(self.m.cipherdir, entry)).st_ino == victim_ino:
                    reused = f"dir{i}"
                    break
            if reused is None:
                self.skipTest("the backing filesystem did not reuse the inode number")
            self.assertTrue(os.path.isdir(self.b.path(reused)))
            self.assertEqual(os.listdir(self.b.path(reused)), [])
            self.write(self.b.path(reused, "inside"), b"made on B")
            self.assertEqual(os.listdir(self.a(reused)), ["inside"])
            self.assertEqual(self.read(self.a(reused, "inside")), b"made on B")
            self.assertNoEntry(self.b.path("victim"))
        finally:
            os.close(held)

    def test_no_kernel_data_cache(self):
        # Data is never cached in the kernel (direct I/O), so a shared
        # mapping has nothing to be coherent with: refused. A private one
        # is a copy taken when it is made.
        self.write(self.a("m"), b"mapped bytes")
        with open(self.b.path("m"), "rb") as f:
            with self.assertRaises(OSError) as cm:
                mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
            self.assertEqual(cm.exception.errno, errno.ENODEV)
            with mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ) as mm:
                self.assertEqual(mm[:], b"mapped bytes")


class ConcurrencyTest(SharedStorageTestCase):
    """One mount writes while the other reads (the supported case), and two
    mounts write one file (unsupported, but it must damage nothing)."""

    def run_writer(self, work):
        errors = []

        def body():
            try:
                work()
            except BaseException as e:  # reported by the test thread
                errors.append(e)

        t = threading.Thread(target=body)
        t.start()
        return t, errors

    def test_reader_sees_only_whole_versions_while_the_other_mount_writes(self):
        self.write(self.a("v"), version(0))
        stop = threading.Event()
        last = [0]

        def rewrite():
            fd = os.open(self.a("v"), os.O_WRONLY)
            try:
                for v in range(1, MAX_VERSIONS):
                    self.assertEqual(os.pwrite(fd, version(v), 0), VERSION_CHUNKS * CHUNK)
                    last[0] = v
                    if stop.is_set():
                        break
            finally:
                os.close(fd)

        reader = os.open(self.b.path("v"), os.O_RDONLY)
        try:
            t, errors = self.run_writer(rewrite)
            seen = 0
            try:
                for _ in range(READS):
                    data = os.pread(reader, VERSION_CHUNKS * CHUNK, 0)  # EIO would raise here
                    v = int(data[1:7])
                    # Exactly one version, whole, and never an older one
                    # than a read before it returned.
                    self.assertEqual(data, version(v))
                    self.assertGreaterEqual(v, seen)
                    seen = v
            finally:
                stop.set()
                t.join()
            self.assertEqual(errors, [])
            self.assertGreater(seen, 0)  # the reads did overlap the writes
            self.assertEqual(os.pread(reader, VERSION_CHUNKS * CHUNK, 0), version(last[0]))
        finally:
            os.close(reader)

    def test_reader_sees_only_whole_appends_while_the_other_mount_appends(self):
        self.write(self.a("grow"), b"")
        expected = b"".join(record(i) for i in range(RECORDS))
        stop = threading.Event()
        final = [0]

        def append():
            # Appends RECORDS records, cuts the file back to nothing, again.
            fd = os.open(self.a("grow"), os.O_WRONLY | os.O_APPEND)
            try:
                while not stop.is_set():
                    os.ftruncate(fd, 0)
                    final[0] = 0
                    for i in range(RECORDS):
                        os.write(fd, record(i))
                        final[0] += len(record(i))
            finally:
                os.close(fd)

        reader = os.open(self.b.path("grow"), os.O_RDONLY)
        try:
            t, errors = self.run_writer(append)
            longest = 0
            try:
                for _ in range(READS):
                    data = os.pread(reader, 1 << 20, 0)
                    self.assertEqual(data, expected[:len(data)])  # the right bytes, no zeros
                    self.assertEqual(len(data) % len(record(0)), 0)  # whole appends only
                    longest = max(longest, len(data))
            finally:
                stop.set()
                t.join()
            self.assertEqual(errors, [])
            self.assertGreater(longest, 0)
            self.assertEqual(os.pread(reader, 1 << 20, 0), expected[:final[0]])
            self.assertEqual(os.fstat(reader).st_size, final[0])
        finally:
            os.close(reader)

    def test_two_writers_of_one_file_damage_nothing(self):
        others = {f"other{i}": os.urandom(5000 + 1000 * i) for i in range(3)}
        for n, d in others.items():
            self.write(self.a(n), d)
        blocks = 32
        self.write(self.a("both"), b"\0" * blocks * CHUNK)

        def block(who, seq, j):
            b = (f"{who} {seq:04d} {j:02d} ".encode() * 500)[:CHUNK]
            assert len(b) == CHUNK
            return b

        def scribble(path, who):
            def work():
                fd = os.open(path, os.O_WRONLY)
                try:
                    for seq in range(150):
                        j = (seq * 7 + (3 if who == "B" else 0)) % blocks
                        os.pwrite(fd, block(who, seq, j), j * CHUNK)
                        if seq % 50 == 49:  # and now and then past the end
                            os.pwrite(fd, block(who, seq, blocks), blocks * CHUNK)
                finally:
                    os.close(fd)
            return work

        ta, ea = self.run_writer(scribble(self.a("both"), "A"))
        tb, eb = self.run_writer(scribble(self.b.path("both"), "B"))
        ta.join()
        tb.join()
        self.assertEqual(ea + eb, [])
        # Every request was whole: each chunk is one that some writer wrote
        # there (or the initial zeros), read alike on both mounts.
        data = self.read(self.a("both"))
        self.assertEqual(self.read(self.b.path("both")), data)
        self.assertEqual(len(data), (blocks + 1) * CHUNK)
        for j in range(blocks + 1):
            got = data[j * CHUNK:(j + 1) * CHUNK]
            if got == b"\0" * CHUNK:
                continue
            who, seq, idx = got[:10].decode().split()
            self.assertEqual(got, block(who, int(seq), int(idx)))
            self.assertEqual(int(idx), j)
        for n, d in others.items():
            self.assertEqual(self.read(self.b.path(n)), d)
            self.assertEqual(self.read(self.a(n)), d)
        r = subprocess.run([ENVELOPEFS, "fsck", self.m.cipherdir, "--kms", self.m.endpoint,
                            "--deep", "--json"], capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(json.loads(r.stdout)["clean"])


if __name__ == "__main__":
    unittest.main()
