"""Holes through a real mount (docs/FORMAT.md §6): sparse files stay sparse
on the backing disk, the fallocate family, SEEK_DATA/SEEK_HOLE, huge sizes,
and statfs in plaintext terms."""
import errno
import os
import subprocess
import unittest

from fs_test import (FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_KEEP_SIZE,
                     FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, MountTestCase, fallocate)
from fs_harness import run

MIB = 1 << 20
GIB = 1 << 30
TIB = 1 << 40
CHUNK = 4096


class SparseTest(MountTestCase):
    def cipherdir_bytes(self):
        """Disk space the cipherdir occupies, as du counts it."""
        return int(run("du", "-s", "--block-size=1", self.m.cipherdir).stdout.split()[0])

    def require_sparse(self):
        """Fails before a test makes a huge file if holes cost disk: the disk
        is shared, and a regression must not fill it (holes written as data
        made a 100 GiB truncate write until ENOSPC)."""
        p = self.m.path("probe")
        before = self.cipherdir_bytes()
        with open(p, "wb") as f:
            f.truncate(64 * MIB)
        used = self.cipherdir_bytes() - before
        os.unlink(p)
        self.assertLess(used, MIB, "a 64 MiB truncate allocated backing space: not sparse")

    def test_truncate_to_100g_costs_less_than_a_mebibyte(self):
        self.require_sparse()
        before = self.cipherdir_bytes()
        p = self.m.path("big")
        with open(p, "wb") as f:
            f.write(b"head")
            f.truncate(100 * GIB)
        self.assertEqual(os.stat(p).st_size, 100 * GIB)
        self.assertLess(self.cipherdir_bytes() - before, MIB)
        self.assertLess(os.stat(p).st_blocks * 512, MIB)  # st_blocks says what is allocated
        fd = os.open(p, os.O_RDONLY)
        try:
            self.assertEqual(os.pread(fd, 8, 0), b"head\0\0\0\0")
            self.assertEqual(os.pread(fd, 100, 50 * GIB), b"\0" * 100)
            self.assertEqual(os.pread(fd, 100, 100 * GIB - 10), b"\0" * 10)
        finally:
            os.close(fd)
        # And after a remount, from the disk alone.
        self.m.unmount()
        self.m.mount()
        self.assertEqual(os.stat(p).st_size, 100 * GIB)
        with open(p, "rb") as f:
            self.assertEqual(f.read(4), b"head")

    def test_write_at_one_tebibyte_then_seek_data_and_hole(self):
        self.require_sparse()
        p = self.m.path("far")
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, b"a" * 100, 0)
            os.pwrite(fd, b"z" * 4096, TIB)
            self.assertEqual(os.fstat(fd).st_size, TIB + 4096)
            self.assertEqual(os.lseek(fd, 0, os.SEEK_DATA), 0)
            self.assertEqual(os.lseek(fd, 0, os.SEEK_HOLE), CHUNK)
            self.assertEqual(os.lseek(fd, CHUNK, os.SEEK_DATA), TIB)
            self.assertEqual(os.lseek(fd, GIB + 5, os.SEEK_HOLE), GIB + 5)
            self.assertEqual(os.lseek(fd, TIB, os.SEEK_HOLE), TIB + 4096)
            with self.assertRaises(OSError) as e:
                os.lseek(fd, TIB + 4096, os.SEEK_DATA)
            self.assertEqual(e.exception.errno, errno.ENXIO)
            self.assertEqual(os.pread(fd, 4096, TIB), b"z" * 4096)
        finally:
            os.close(fd)
        self.assertLess(self.cipherdir_bytes(), 2 * MIB)

    def test_punch_hole_frees_blocks_and_reads_zeros(self):
        p = self.m.path("punch")
        data = os.urandom(8 * MIB)
        with open(p, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        before = os.stat(p).st_blocks * 512
        fd = os.open(p, os.O_RDWR)
        try:
            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, MIB + 10, 4 * MIB)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.assertEqual(os.stat(p).st_size, 8 * MIB)
        self.assertLess(os.stat(p).st_blocks * 512, before - 3 * MIB)
        with open(p, "rb") as f:
            got = f.read()
        want = data[:MIB + 10] + b"\0" * (4 * MIB) + data[5 * MIB + 10:]
        self.assertEqual(got, want)

    def test_cp_sparse_always_and_fallocate_dig_keep_files_sparse(self):
        self.require_sparse()
        src = self.m.path("src")
        with open(src, "wb") as f:
            f.write(b"x" * 1000)
            f.seek(64 * MIB)
            f.write(b"y" * 1000)
        dst = self.m.path("dst")
        run("cp", "--sparse=always", src, dst)
        self.assertLess(os.stat(dst).st_blocks * 512, MIB)
        with open(src, "rb") as a, open(dst, "rb") as b:
            self.assertEqual(a.read(), b.read())
        # A file written densely with zeros: fallocate -d digs its holes.
        dense = self.m.path("dense")
        with open(dense, "wb") as f:
            f.write(b"d" * 5000 + b"\0" * (16 * MIB) + b"e" * 5000)
            f.flush()
            os.fsync(f.fileno())
        self.assertGreater(os.stat(dense).st_blocks * 512, 16 * MIB)
        run("fallocate", "-d", dense)
        self.assertLess(os.stat(dense).st_blocks * 512, MIB)
        with open(dense, "rb") as f:
            self.assertEqual(f.read(), b"d" * 5000 + b"\0" * (16 * MIB) + b"e" * 5000)

    def test_fallocate_modes(self):
        p = self.m.path("modes")
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"q" * 10000)
            fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4 * MIB)
            self.assertEqual(os.fstat(fd).st_size, 10000)
            self.assertGreaterEqual(os.fstat(fd).st_blocks * 512, 4 * MIB)
            os.posix_fallocate(fd, 0, 2 * MIB)
            self.assertEqual(os.fstat(fd).st_size, 2 * MIB)
            fallocate(fd, FALLOC_FL_ZERO_RANGE, 100, 300)
            self.assertEqual(os.pread(fd, 500, 0), b"q" * 100 + b"\0" * 300 + b"q" * 100)
            fallocate(fd, FALLOC_FL_ZERO_RANGE, 2 * MIB - 10, 20)
            self.assertEqual(os.fstat(fd).st_size, 2 * MIB + 10)
            for mode in (FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_PUNCH_HOLE):
                with self.assertRaises(OSError) as e:
                    fallocate(fd, mode, 0, CHUNK)
                self.assertEqual(e.exception.errno, errno.EOPNOTSUPP, hex(mode))
        finally:
            os.close(fd)

    def test_huge_sizes_are_efbig_never_enospc(self):
        self.require_sparse()
        p = self.m.path("huge")
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # generic/308: a 4 KiB write at 16 TiB either works or is EFBIG,
            # and never fills the disk on the way.
            try:
                os.pwrite(fd, b"w" * 4096, 16 * TIB)
                self.assertEqual(os.fstat(fd).st_size, 16 * TIB + 4096)
            except OSError as e:
                self.assertEqual(e.errno, errno.EFBIG)
            self.assertLess(self.cipherdir_bytes(), 2 * MIB)
            for size in (999_999_999_999_999, 1 << 62, (1 << 63) - 1):
                try:
                    os.ftruncate(fd, size)
                    self.assertEqual(os.fstat(fd).st_size, size)
                except OSError as e:
                    self.assertEqual(e.errno, errno.EFBIG, size)
            self.assertLess(self.cipherdir_bytes(), 2 * MIB)
        finally:
            os.close(fd)

    def test_statfs_is_in_plaintext_terms(self):
        mnt = os.statvfs(self.m.mnt)
        back = os.statvfs(self.m.cipherdir)
        self.assertEqual(mnt.f_frsize, back.f_frsize)
        self.assertEqual(mnt.f_blocks, back.f_blocks * CHUNK // (CHUNK + 28))
        self.assertLess(mnt.f_bavail, back.f_bavail)


class SparseXattrTest(SparseTest):
    dek_in = "xattr"


if __name__ == "__main__":
    unittest.main()
