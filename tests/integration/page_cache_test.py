"""What a program sees through the kernel's caches of a mount (the page
cache, the attribute and entry caches; docs/ARCHITECTURE.md, "Caches"):
timestamps, sizes, O_APPEND, mmap, fsync durability, SEEK_DATA and ENOSPC
must be what a local filesystem gives, whoever (the kernel or the daemon)
owns them. Every check is made without sleeping: times are compared
against values set on purpose, never against the clock."""
import errno
import mmap
import os
import shutil
import subprocess
import unittest

from fs_harness import Mount, run

HEADER_SIZE = 1088    # DEK in the header (docs/FORMAT.md §3)
CHUNK = 4096
BACKING_CHUNK = 4096 + 28
OLD_NS = 1_000_000_000  # 1 s after the epoch, in ns


def backing_size(plaintext):
    full, rest = divmod(plaintext, CHUNK)
    return HEADER_SIZE + full * BACKING_CHUNK + (rest + 28 if rest or plaintext == 0 else 0)


class PageCacheTest(unittest.TestCase):
    options = ()  # the mount's -o options

    def setUp(self):
        self.m = Mount().mount(*self.options)
        self.addCleanup(self.m.cleanup)

    def remount(self):
        self.m.unmount()
        self.m.mount(*self.options)

    def backing_of(self, plaintext_size):
        """The one backing file of that plaintext size (names are encrypted)."""
        found = [p for p in self.m.backing_files()
                 if os.path.getsize(p) == backing_size(plaintext_size)]
        self.assertEqual(len(found), 1, found)
        return found[0]

    def test_write_and_close_set_mtime_and_ctime_and_they_persist(self):
        p = self.m.path("f")
        with open(p, "wb") as f:
            f.write(b"x" * 100)
        os.utime(p, ns=(OLD_NS, OLD_NS))
        before = os.stat(p)
        self.assertEqual(before.st_mtime_ns, OLD_NS)
        with open(p, "r+b") as f:
            f.seek(50)
            f.write(b"y" * 10)
        after = os.stat(p)
        self.assertGreater(after.st_mtime_ns, OLD_NS)
        self.assertGreaterEqual(after.st_ctime_ns, before.st_ctime_ns)
        self.assertGreaterEqual(after.st_ctime_ns, after.st_mtime_ns)
        # A read changes neither.
        with open(p, "rb") as f:
            self.assertEqual(f.read(), b"x" * 50 + b"y" * 10 + b"x" * 40)
        self.assertEqual(os.stat(p).st_mtime_ns, after.st_mtime_ns)
        # What the mount showed is what the backing file holds: after a
        # remount (no kernel cache left) the mtime is the same.
        self.remount()
        self.assertEqual(os.stat(p).st_mtime_ns, after.st_mtime_ns)
        self.assertEqual(os.stat(p).st_size, 100)

    def test_utime_after_write_on_an_open_file_wins(self):
        # tar, cp -p and rsync write, then set the times, maybe before close:
        # no write still in a cache may set the mtime after that.
        p = self.m.path("f")
        fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"z" * 20000)
            os.utime(fd, ns=(OLD_NS, OLD_NS + 5))
        finally:
            os.close(fd)
        self.assertEqual(os.stat(p).st_mtime_ns, OLD_NS + 5)
        self.remount()
        st = os.stat(p)
        self.assertEqual((st.st_atime_ns, st.st_mtime_ns, st.st_size), (OLD_NS, OLD_NS + 5, 20000))

    def test_truncate_sets_size_and_mtime(self):
        p = self.m.path("f")
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"a" * 10000)
            os.utime(fd, ns=(OLD_NS, OLD_NS))
            os.ftruncate(fd, 3000)
            st = os.fstat(fd)
            self.assertEqual(st.st_size, 3000)
            self.assertGreater(st.st_mtime_ns, OLD_NS)
            os.ftruncate(fd, 7000)  # extends with zeros
            self.assertEqual(os.pread(fd, 10000, 0), b"a" * 3000 + b"\0" * 4000)
        finally:
            os.close(fd)
        self.remount()
        with open(p, "rb") as f:
            self.assertEqual(f.read(), b"a" * 3000 + b"\0" * 4000)

    def test_o_append_from_two_descriptors(self):
        p = self.m.path("log")
        a = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        b = os.open(p, os.O_WRONLY | os.O_APPEND)
        try:
            expected = b""
            for i in range(200):
                line = f"{i:04d} {'ab'[i % 2] * (i % 37)}\n".encode()
                os.write(a if i % 2 == 0 else b, line)
                expected += line
                # Every write landed at the end the other descriptor made.
                self.assertEqual(os.fstat(b).st_size, len(expected))
        finally:
            os.close(a)
            os.close(b)
        with open(p, "rb") as f:
            self.assertEqual(f.read(), expected)
        self.remount()
        with open(p, "rb") as f:
            self.assertEqual(f.read(), expected)

    def test_mmap_write_is_read_through_another_descriptor_and_persists(self):
        p = self.m.path("m")
        with open(p, "wb") as f:
            f.write(b"." * 3 * CHUNK)
        with open(p, "r+b") as f:
            mm = mmap.mmap(f.fileno(), 0)
            mm[CHUNK - 2:CHUNK + 3] = b"HELLO"  # across a chunk boundary
            with open(p, "rb") as g:  # no msync: the same pages
                self.assertEqual(g.read()[CHUNK - 2:CHUNK + 3], b"HELLO")
            mm.flush()
            mm.close()
        self.remount()
        with open(p, "rb") as f:
            data = f.read()
        self.assertEqual(data, b"." * (CHUNK - 2) + b"HELLO" + b"." * (2 * CHUNK - 3))

    def test_size_after_extending_writes_is_seen_before_close(self):
        p = self.m.path("grow")
        fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, b"q" * 10000, 5000)
            self.assertEqual(os.fstat(fd).st_size, 15000)
            self.assertEqual(os.stat(p).st_size, 15000)
            self.assertEqual(os.path.getsize(p), 15000)
            with open(p, "rb") as g:  # another descriptor, O_RDONLY
                self.assertEqual(g.read(), b"\0" * 5000 + b"q" * 10000)
        finally:
            os.close(fd)

    def test_fsync_puts_data_and_mtime_in_the_backing_file_before_close(self):
        p = self.m.path("durable")
        size = 3 * CHUNK + 123
        fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"d" * size)
            os.fsync(fd)
            # Still open, nothing else flushed it: the backing file already
            # holds every chunk (its length says so), and the time the
            # mount shows.
            backing = self.backing_of(size)
            self.assertEqual(os.stat(backing).st_mtime_ns, os.fstat(fd).st_mtime_ns)
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def test_seek_data_and_hole_see_writes_not_yet_flushed(self):
        # Holes are found at chunk granularity or coarser, so the answers
        # may be conservative, but SEEK_DATA must never skip data and
        # SEEK_HOLE never put a hole inside it (cp --sparse would lose it).
        p = self.m.path("sparse")
        off = 64 * 1024 * 1024
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, b"s" * 100, off)
            self.assertLessEqual(os.lseek(fd, CHUNK, os.SEEK_DATA), off)
            self.assertEqual(os.lseek(fd, off, os.SEEK_DATA), off)
            self.assertEqual(os.lseek(fd, off, os.SEEK_HOLE), off + 100)
            with self.assertRaises(OSError) as cm:
                os.lseek(fd, off + 100, os.SEEK_DATA)
            self.assertEqual(cm.exception.errno, errno.ENXIO)
        finally:
            os.close(fd)

    def test_enospc_reaches_the_writer_by_fsync_or_close(self):
        small = self.m.cipherdir + ".small"
        self.m.unmount()
        run("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", small)
        self.addCleanup(run, "umount", small)
        for name in os.listdir(self.m.cipherdir):
            shutil.move(os.path.join(self.m.cipherdir, name), os.path.join(small, name))
        os.rmdir(self.m.cipherdir)
        os.symlink(small, self.m.cipherdir)
        self.m.mount(*self.options)
        try:
            fd = os.open(self.m.path("fill"), os.O_WRONLY | os.O_CREAT, 0o644)
            err = None
            try:
                for _ in range(2000):
                    os.write(fd, b"f" * 4096)
                os.fsync(fd)
            except OSError as e:
                err = e.errno
            try:
                os.close(fd)
            except OSError as e:
                err = err or e.errno
            # 8 MiB do not fit in 4 MiB: write, fsync or close says so.
            self.assertEqual(err, errno.ENOSPC)
        finally:
            self.m.unmount()


class WritebackPageCacheTest(PageCacheTest):
    """The same with -o writeback_cache: the kernel owns size and times and
    writes data back when it likes."""
    options = ("writeback_cache",)

    def test_sharedstorage_refuses_it(self):
        self.m.unmount()
        with self.assertRaises(subprocess.CalledProcessError) as cm:
            self.m.mount("writeback_cache", "sharedstorage")
        self.assertIn("exclude each other", cm.exception.stderr)


if __name__ == "__main__":
    unittest.main()
