"""envelope-keyd with its root key under a key on a PKCS#11 token: the real
daemon, the real SoftHSM2 module, keys created and used through the KMS API.
"""
import base64
import os
import unittest

from harness import Keyd
from softhsm import SoftHsm


def b64(data):
    return base64.b64encode(data).decode()


class TokenRootKeyTest(unittest.TestCase):
    """--root-key pkcs11:..., with the PIN on a file descriptor."""

    def setUp(self):
        self.hsm = SoftHsm()
        self.hsm.init_token("keyd-a", "1234")
        self.uri = SoftHsm.uri("keyd-a", "keyd-root")
        self.keyd = Keyd()

    def tearDown(self):
        self.keyd.cleanup()
        self.hsm.cleanup()

    def start(self, pin=b"1234", uri=None, keyd=None):
        keyd = keyd or self.keyd
        r, w = os.pipe()
        os.write(w, pin + b"\n")
        os.close(w)
        try:
            return keyd.start(["--root-key", uri or self.uri, "--pin-fd", str(r)], pass_fds=(r,))
        finally:
            os.close(r)

    def log(self):
        with open(self.keyd.log_path, errors="replace") as f:
            return f.read()

    def test_keys_survive_a_restart_through_the_token(self):
        self.start()
        self.assertIn("generated a new AES-256 key on the token keyd-a, key keyd-root", self.log())
        key_id = self.keyd.call("CreateKey", {})["KeyMetadata"]["KeyId"]
        blob = self.keyd.call("Encrypt", {"KeyId": key_id, "Plaintext": b64(b"on the token")})
        self.assertEqual(self.keyd.stop(), 0)
        # No root key file: the root key exists on disk only sealed by the token.
        self.assertFalse(os.path.exists(os.path.join(self.keyd.data_dir, "root.key")))
        self.start()
        self.assertIn("root key opened by the token keyd-a, key keyd-root", self.log())
        out = self.keyd.call("Decrypt", {"CiphertextBlob": blob["CiphertextBlob"]})
        self.assertEqual(base64.b64decode(out["Plaintext"]), b"on the token")

    def test_pin_prompt_without_foreground(self):
        # Without -f the daemon leaves its terminal: the PIN is asked for
        # before that.
        shown, code = self.keyd.start_detached(["--root-key", self.uri],
                                               [("PIN:", "1234")])
        self.assertEqual(code, 0, shown)
        self.assertNotIn("1234", shown)
        self.keyd.envelopectl("key", "create")
        self.keyd.stop_detached()
        shown, code = self.keyd.start_detached(["--root-key", self.uri],
                                               [("PIN:", "4321")])
        self.assertNotEqual(code, 0)
        self.assertIn("CKR_PIN_INCORRECT", shown)

    def test_a_wrong_pin_is_refused(self):
        self.start()
        self.keyd.stop()
        with self.assertRaises(RuntimeError) as cm:
            self.start(pin=b"9999")
        self.assertIn("CKR_PIN_INCORRECT", str(cm.exception))

    def test_another_tokens_key_does_not_open_the_store(self):
        self.start()
        self.keyd.call("CreateKey", {})
        self.keyd.stop()
        # A second token with a key of the same label: not the key that
        # sealed this data directory's root key.
        self.hsm.init_token("keyd-b", "1234")
        other = SoftHsm.uri("keyd-b", "keyd-root")
        b = Keyd()
        try:
            self.start(uri=other, keyd=b)  # a fresh data directory: its own root key
            b.stop()
        finally:
            b.cleanup()
        with self.assertRaises(RuntimeError) as cm:
            self.start(uri=other)
        self.assertIn("does not open", str(cm.exception))
        self.start()  # the right token still does
        self.assertEqual(len(self.keyd.call("ListKeys", {})["Keys"]), 1)

    def test_the_root_key_kind_is_remembered(self):
        self.keyd.start()  # a key-file data directory
        self.keyd.stop()
        with self.assertRaises(RuntimeError) as cm:
            self.start()
        self.assertIn("set up with a key-file root key", str(cm.exception))
        b = Keyd()
        try:
            self.start(keyd=b)
            b.stop()
            with self.assertRaises(RuntimeError) as cm:
                b.start()
            self.assertIn("set up with a pkcs11 root key", str(cm.exception))
        finally:
            b.cleanup()

    def test_a_pin_in_the_uri_is_refused(self):
        for query in ("&pin-value=1234", "&pin-source=file:/etc/passwd"):
            with self.assertRaises(RuntimeError) as cm:
                self.start(uri=self.uri + query)
            self.assertIn("carries a PIN", str(cm.exception))

    def test_a_missing_token_or_module_is_named(self):
        with self.assertRaises(RuntimeError) as cm:
            self.start(uri=SoftHsm.uri("no-such-token", "keyd-root"))
        self.assertIn("no PKCS#11 token matches the URI", str(cm.exception))
        with self.assertRaises(RuntimeError) as cm:
            self.start(uri="pkcs11:token=keyd-a;object=keyd-root?module-path=/nonexistent.so")
        self.assertIn("cannot load the PKCS#11 module", str(cm.exception))
        with self.assertRaises(RuntimeError) as cm:
            self.start(uri="pkcs11:token=keyd-a;object=keyd-root")
        self.assertIn("module-path", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
