"""A SoftHSM2 token directory for tests: the real PKCS#11 module (Debian's
softhsm2), with its tokens in a temporary directory of their own.

SoftHSM2 finds its configuration through SOFTHSM2_CONF, which this sets in
os.environ (so that every process the test starts inherits it) and puts
back on cleanup.
"""
import os
import shutil
import subprocess
import tempfile

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
SO_PIN = "so-pin-5678"


class SoftHsm:
    def __init__(self):
        if not os.path.exists(MODULE):
            raise RuntimeError(f"SoftHSM2 is not installed ({MODULE}): run scripts/setup.sh")
        self.dir = tempfile.mkdtemp(prefix="softhsm-test-")
        os.mkdir(os.path.join(self.dir, "tokens"))
        self.conf = os.path.join(self.dir, "softhsm2.conf")
        with open(self.conf, "w") as f:
            f.write(f"directories.tokendir = {self.dir}/tokens\n"
                    "objectstore.backend = file\nlog.level = ERROR\n")
        self._saved = os.environ.get("SOFTHSM2_CONF")
        os.environ["SOFTHSM2_CONF"] = self.conf

    def init_token(self, label, pin):
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label,
                        "--so-pin", SO_PIN, "--pin", pin],
                       check=True, stdout=subprocess.DEVNULL)

    @staticmethod
    def uri(token, key):
        return f"pkcs11:token={token};object={key}?module-path={MODULE}"

    def cleanup(self):
        if self._saved is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = self._saved
        shutil.rmtree(self.dir, ignore_errors=True)
