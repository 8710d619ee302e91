"""A real envelopefs mount for integration tests: the real envelope-keyd, a
volume made with `envelopefs init`, mounted through /dev/fuse."""
import os
import shutil
import subprocess
import tempfile
import time

from harness import BUILD_DIR, ENVELOPECTL, Keyd

ENVELOPEFS = os.path.join(BUILD_DIR, "fs", "envelopefs")


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120, **kw)


# Whether the suites run with -o writeback_cache (ENVELOPE_TEST_MOUNT_OPTIONS,
# below): then write errors come at fsync or close, and the kernel owns a
# file's times.
WRITEBACK = "writeback_cache" in os.environ.get("ENVELOPE_TEST_MOUNT_OPTIONS", "").split(",")


class Mount:
    def __init__(self, dek_in="header", extra_init=()):
        self.keyd = Keyd().start()
        self.tmp = tempfile.mkdtemp(prefix="envelopefs-test-")
        self.cipherdir = os.path.join(self.tmp, "cipher")
        self.mnt = os.path.join(self.tmp, "mnt")
        os.mkdir(self.mnt)
        os.mkdir(os.path.join(self.tmp, "cipher.small"))
        self.endpoint = "unix:" + self.keyd.socket
        self.key = run(ENVELOPECTL, "--endpoint", self.endpoint, "key", "create",
                       "--description", "fs test").stdout.strip()
        run(ENVELOPEFS, "init", self.cipherdir, "--key", self.key, "--kms", self.endpoint,
            "--dek-in", dek_in, *extra_init)
        self.mounted = False

    def mount(self, *opts, prefix=()):
        args = list(prefix) + [ENVELOPEFS, "mount", self.cipherdir, self.mnt]
        # The key service comes from the command line, never from the
        # volume config (docs/FORMAT.md §8.1).
        if not any(o.startswith("kms=") for o in opts):
            opts = ("kms=" + self.endpoint,) + tuple(opts)
        # ENVELOPE_TEST_MOUNT_OPTIONS=writeback_cache runs a suite with the
        # kernel's writeback cache (never beside sharedstorage, which
        # refuses it).
        extra = [o for o in os.environ.get("ENVELOPE_TEST_MOUNT_OPTIONS", "").split(",") if o]
        if not any("sharedstorage" in o for o in opts):
            opts = tuple(opts) + tuple(o for o in extra if o not in opts)
        for o in opts:
            args += ["-o", o]
        run(*args)
        self.mounted = True
        return self

    def unmount(self):
        if not self.mounted:
            return
        for _ in range(50):
            r = subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        # Wait for the daemon to exit so that its state is flushed.
        for _ in range(100):
            if subprocess.run(["pgrep", "-f", f"envelopefs mount {self.cipherdir} "],
                              capture_output=True).returncode != 0:
                break
            time.sleep(0.05)
        self.mounted = False

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)

    def backing_files(self):
        for root, dirs, files in os.walk(self.cipherdir):
            for f in files:
                yield os.path.join(root, f)

    def cleanup(self):
        self.unmount()
        self.keyd.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)
