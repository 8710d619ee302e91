"""Trust comes from outside the cipherdir (docs/FORMAT.md §8.1): the real
attacks on a volume config and a secrets file, run against the real
envelope-keyd and a real mount. The attacker is `nobody` (setpriv) with
keys of their own on the real key service, or a second key service of
their own."""
import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from fs_harness import ENVELOPEFS, Mount, run
from harness import ENVELOPECTL, Keyd

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
CONFIG = "envelopefs.conf"


def call_as_nobody(keyd, op, body):
    """One KMS call over the real socket as `nobody`; the decoded reply."""
    r = subprocess.run(AS_NOBODY + [
        "curl", "-sS", "--unix-socket", keyd.socket, "http://localhost/",
        "-H", "Content-Type: application/x-amz-json-1.1",
        "-H", f"X-Amz-Target: TrentService.{op}", "-d", json.dumps(body)],
        capture_output=True, text=True, timeout=60)
    return json.loads(r.stdout)


def hkdf_sha256(ikm, info, length=32):
    prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


def seal_config(fields, volume_key):
    """A volume config with a valid MAC under `volume_key` (FORMAT.md §8.1)."""
    body = {k: v for k, v in fields.items() if k != "mac"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    mac_key = hkdf_sha256(volume_key, b"envelopefs/v1/config-mac")
    body["mac"] = hmac.new(mac_key, canonical, hashlib.sha256).hexdigest()
    return json.dumps(body, indent=2) + "\n"


def label_key_id(blob):
    """The key id in an envelope-keyd blob's clear label."""
    raw = blob[3:19].hex()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def replace_as_nobody(path, text):
    """Replace `path` the way a user with write access to its directory can:
    a new file renamed over it."""
    subprocess.run(AS_NOBODY + ["/usr/bin/python3", "-c",
                                "import os, sys; p = sys.argv[1]; open(p + '.new', 'w').write(sys.argv[2]);"
                                " os.rename(p + '.new', p)", path, text],
                   check=True, timeout=60)


class VolumeCase(unittest.TestCase):
    def setUp(self):
        self.m = Mount()
        self.m.mount()
        with open(self.m.path("before.txt"), "w") as f:
            f.write("written before the attack")
        self.m.unmount()
        self.config_path = os.path.join(self.m.cipherdir, CONFIG)
        with open(self.config_path) as f:
            self.config = json.load(f)
        self.key_arn = self.config["key_id"]
        self.env = dict(os.environ, ENVELOPE_KMS_ENDPOINT=self.m.endpoint)

    def tearDown(self):
        self.m.cleanup()

    def mount_cmd(self, *opts, env=None):
        """`envelopefs mount` as fstab would run it, with the key service
        from the environment (no kms= option) unless `opts` give one."""
        args = [ENVELOPEFS, "mount", self.m.cipherdir, self.m.mnt]
        for o in opts:
            args += ["-o", o]
        r = subprocess.run(args, capture_output=True, text=True, timeout=120,
                           env=env or self.env)
        if r.returncode == 0:
            self.m.mounted = True
        return r

    def new_file_labels(self):
        """After a mount that (wrongly) succeeded: the key ids of the file
        keys of a file made through it."""
        with open(self.m.path("made-after.txt"), "w") as f:
            f.write("made through the attacked mount")
        self.m.unmount()
        ids = set()
        for p in self.m.backing_files():
            with open(p, "rb") as f:
                head = f.read(2048)
            i = head.find(b"EK\x01")
            if i >= 0:
                ids.add(label_key_id(head[i:]))
        return ids


class RogueEndpointTest(VolumeCase):
    """Attack 1: envelopefs.conf rewritten to name a key service of the
    attacker's, with a whole config made there (so its MAC is valid under the
    volume key that service hands out)."""

    def setUp(self):
        super().setUp()
        self.rogue = Keyd().start()
        rogue_endpoint = "unix:" + self.rogue.socket
        rogue_key = run(ENVELOPECTL, "--endpoint", rogue_endpoint, "key", "create").stdout.strip()
        scratch = tempfile.mkdtemp(prefix="rogue-volume-")
        self.addCleanup(shutil.rmtree, scratch, True)
        run(ENVELOPEFS, "init", os.path.join(scratch, "c"), "--key", rogue_key, "--kms", rogue_endpoint)
        shutil.copyfile(os.path.join(scratch, "c", CONFIG), self.config_path)
        self.audit = os.path.join(self.rogue.data_dir, "audit.log")
        self.rogue_calls_before = self.rogue_unwraps()

    def tearDown(self):
        super().tearDown()
        self.rogue.cleanup()

    def rogue_unwraps(self):
        with open(self.audit) as f:
            return sum(1 for line in f if '"Decrypt"' in line or "GenerateDataKey" in line)

    def test_mount_never_asks_the_recorded_endpoint(self):
        r = self.mount_cmd()  # the key service from $ENVELOPE_KMS_ENDPOINT
        if r.returncode == 0:
            self.new_file_labels()
        self.assertNotEqual(r.returncode, 0, "a config naming a rogue key service mounted")
        self.assertEqual(self.rogue_unwraps(), self.rogue_calls_before,
                         "the rogue key service was asked for a key")

    def test_pinned_mount_refuses(self):
        r = self.mount_cmd("kms=" + self.m.endpoint, "key=" + self.key_arn)
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.rogue_unwraps(), self.rogue_calls_before)

    def test_commands_never_ask_the_recorded_endpoint(self):
        for cmd in ("info", "fsck"):
            r = subprocess.run([ENVELOPEFS, cmd, self.m.cipherdir], capture_output=True, text=True,
                               timeout=120, env=self.env)
            self.assertNotEqual(r.returncode, 0, f"{cmd}: {r.stdout}")
        self.assertEqual(self.rogue_unwraps(), self.rogue_calls_before)


class KeySwapTest(VolumeCase):
    """Attack 2: `nobody`, who can write the cipherdir, points key_id and
    wrapped_volume_key at a volume key they made under a key they own on the
    real key service, with a valid MAC under it. Root may use that key (its
    default policy names root), so without a pin nothing would notice."""

    def setUp(self):
        super().setUp()
        os.chmod(self.m.tmp, 0o755)  # the attacker can reach the cipherdir
        os.chmod(self.m.cipherdir, 0o777)  # and write it
        created = call_as_nobody(self.m.keyd, "CreateKey", {"Description": "attacker"})
        self.attacker_key = created["KeyMetadata"]["KeyId"]
        dk = call_as_nobody(self.m.keyd, "GenerateDataKey", {
            "KeyId": self.attacker_key, "NumberOfBytes": 32,
            "EncryptionContext": {"envelopefs": "volume", "volume": self.config["volume_id"]}})
        forged = dict(self.config, key_id=created["KeyMetadata"]["Arn"],
                      wrapped_volume_key=dk["CiphertextBlob"])
        replace_as_nobody(self.config_path, seal_config(forged, base64.b64decode(dk["Plaintext"])))

    def test_unpinned_mount_refuses_a_config_others_can_write(self):
        r = self.mount_cmd("kms=" + self.m.endpoint)
        if r.returncode == 0:
            ids = self.new_file_labels()
            self.fail(f"mounted the forged config; new file keys under {ids}, "
                      f"attacker's key {self.attacker_key}")
        self.assertIn("key=", r.stderr)  # it says how to pin

    def test_pinned_mount_refuses_a_volume_key_under_another_key(self):
        os.chmod(self.m.cipherdir, 0o755)  # even where the config is private
        r = self.mount_cmd("kms=" + self.m.endpoint, "key=" + self.key_arn)
        self.assertNotEqual(r.returncode, 0, "mounted a volume key under the attacker's key")
        self.assertIn("not under a trusted key", r.stderr)

    def test_rotate_and_fsck_refuse(self):
        for cmd in ("rotate", "fsck"):
            r = subprocess.run([ENVELOPEFS, cmd, self.m.cipherdir, "--kms", self.m.endpoint,
                                "--key", self.key_arn], capture_output=True, text=True, timeout=120)
            self.assertNotEqual(r.returncode, 0, f"{cmd}: {r.stdout}")
            self.assertIn("not under a trusted key", r.stderr)

    def test_private_config_naming_another_users_key_warns(self):
        # Root itself wrote such a config (the cipherdir is private again):
        # trusted, since only root could have, but said out loud.
        os.chmod(self.m.cipherdir, 0o755)
        os.chown(self.config_path, 0, 0)
        r = self.mount_cmd("kms=" + self.m.endpoint)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("was created by user:nobody", r.stderr)
        self.m.unmount()


class PinTest(VolumeCase):
    """The pin and the ownership rule on an intact volume."""

    def test_pinned_and_private_mounts_work(self):
        r = self.mount_cmd("kms=" + self.m.endpoint, "key=" + self.key_arn)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(self.m.path("before.txt")) as f:
            self.assertEqual(f.read(), "written before the attack")
        self.m.unmount()
        os.chmod(self.m.cipherdir, 0o777)
        r = self.mount_cmd("kms=" + self.m.endpoint)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("writable by group or others", r.stderr)
        r = self.mount_cmd("kms=" + self.m.endpoint, "key=" + self.key_arn)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.m.unmount()

    def test_wrong_pin_refuses(self):
        other = run(ENVELOPECTL, "--endpoint", self.m.endpoint, "key", "create").stdout.strip()
        r = self.mount_cmd("kms=" + self.m.endpoint, "key=" + other)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not under a trusted key", r.stderr)


class DescribeDeniedTest(unittest.TestCase):
    """A user whose key policy allows Decrypt and GenerateDataKey but not
    DescribeKey can still pin the key by its ARN (not by an alias)."""

    def test_arn_pin_needs_no_describe_key(self):
        keyd = Keyd().start()
        self.addCleanup(keyd.cleanup)
        endpoint = "unix:" + keyd.socket
        tmp = tempfile.mkdtemp(prefix="trust-describe-")
        self.addCleanup(shutil.rmtree, tmp, True)
        os.chmod(tmp, 0o755)
        key = keyd.call("CreateKey", {})["KeyMetadata"]
        policy = json.loads(keyd.call("GetKeyPolicy", {"KeyId": key["KeyId"]})["Policy"])
        policy["Statement"].append({"Effect": "Allow", "Principal": {"Local": "user:nobody"},
                                    "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                                    "Resource": "*"})
        keyd.call("PutKeyPolicy", {"KeyId": key["KeyId"], "Policy": json.dumps(policy)})
        keyd.call("CreateAlias", {"AliasName": "alias/nodescribe", "TargetKeyId": key["KeyId"]})
        cipher = os.path.join(tmp, "cipher")
        os.mkdir(cipher)
        os.chown(cipher, 65534, 65534)
        r = subprocess.run(AS_NOBODY + [ENVELOPEFS, "init", cipher, "--key", key["Arn"],
                                        "--kms", endpoint], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        info = subprocess.run(AS_NOBODY + [ENVELOPEFS, "info", cipher, "--kms", endpoint,
                                           "--key", key["Arn"]], capture_output=True, text=True,
                              timeout=60)
        self.assertEqual(info.returncode, 0, info.stderr)
        self.assertIn(key["Arn"], info.stdout)
        info = subprocess.run(AS_NOBODY + [ENVELOPEFS, "info", cipher, "--kms", endpoint,
                                           "--key", "alias/nodescribe"], capture_output=True,
                              text=True, timeout=60)
        self.assertNotEqual(info.returncode, 0)
        # Aliases are per principal: root's alias is not in nobody's
        # namespace (and nobody may not DescribeKey either way).
        self.assertIn("NotFoundException", info.stderr)


class RotateToKeyTest(VolumeCase):
    """`rotate --to-key` and pins: the new key is trusted because the user
    named it; a mount pinned to the old key must be given the new one."""

    def test_pins_follow_the_move(self):
        new = run(ENVELOPECTL, "--endpoint", self.m.endpoint, "key", "create").stdout.strip()
        r = run(ENVELOPEFS, "rotate", self.m.cipherdir, "--kms", self.m.endpoint,
                "--key", self.key_arn, "--to-key", new, "--json")
        self.assertIn("must name this key", r.stderr)
        new_arn = json.loads(r.stdout)["key_arn"]
        r = self.mount_cmd("kms=" + self.m.endpoint, "key=" + self.key_arn)
        self.assertNotEqual(r.returncode, 0, "the old pin still mounted the moved volume")
        r = self.mount_cmd("kms=" + self.m.endpoint, "key=" + new_arn)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(self.m.path("before.txt")) as f:
            self.assertEqual(f.read(), "written before the attack")
        self.m.unmount()
        # Running it again with both pins finds nothing left to do.
        r = run(ENVELOPEFS, "rotate", self.m.cipherdir, "--kms", self.m.endpoint,
                "--key", self.key_arn, "--to-key", new_arn, "--json")
        self.assertEqual(json.loads(r.stdout)["rewrapped"], 0)


class SecretsKeySwapTest(unittest.TestCase):
    """Attack 3: a secrets file whose values are swapped for values under a
    key `nobody` made (root may use it: the default policy names root)."""

    def setUp(self):
        self.keyd = Keyd().start()
        self.endpoint = "unix:" + self.keyd.socket
        self.tmp = tempfile.mkdtemp(prefix="trust-secrets-")
        os.chmod(self.tmp, 0o777)  # the attacker can write the file's directory
        self.file = os.path.join(self.tmp, "app.env")
        self.key = self.ctl("key", "create").stdout.strip()
        self.ctl("secrets", "--file", self.file, "--key", self.key, "set", "app", "DB_PASSWORD",
                 input="root's password")
        self.attacker = call_as_nobody(self.keyd, "CreateKey", {})["KeyMetadata"]

    def tearDown(self):
        self.keyd.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def ctl(self, *args, input="", check=True):
        r = subprocess.run([ENVELOPECTL, "--endpoint", self.endpoint, *args], input=input,
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"{args}: {r.stderr}")
        return r

    def attacker_blob(self, name, value):
        return call_as_nobody(self.keyd, "Encrypt", {
            "KeyId": self.attacker["KeyId"], "Plaintext": base64.b64encode(b"\x01" + value).decode(),
            "EncryptionContext": {"envelope:secrets": "v1", "app": "app", "name": name}})["CiphertextBlob"]

    def test_one_value_swapped_is_refused(self):
        with open(self.file) as f:
            header = f.readline()
        replace_as_nobody(self.file, header + "DB_PASSWORD=enc:v1:" +
                          self.attacker_blob("DB_PASSWORD", b"attacker's value") + "\n")
        r = self.ctl("secrets", "--file", self.file, "get", "app", "DB_PASSWORD", check=False)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("IncorrectKeyException", r.stderr)

    def test_whole_file_under_another_users_key_is_warned_about_or_refused(self):
        replace_as_nobody(self.file, f"# envelope-secrets v1 app=app key={self.attacker['Arn']}\n" +
                          "DB_PASSWORD=enc:v1:" + self.attacker_blob("DB_PASSWORD", b"attacker's value") + "\n")
        r = self.ctl("secrets", "--file", self.file, "get", "app", "DB_PASSWORD", check=False)
        self.assertIn("was created by user:nobody", r.stderr)
        # A value set there would go to the attacker's key: warned first.
        r = self.ctl("secrets", "--file", self.file, "set", "app", "API_TOKEN", input="new secret",
                     check=False)
        self.assertIn("was created by user:nobody", r.stderr)
        # Pinned, the file is refused outright.
        r = self.ctl("secrets", "--file", self.file, "--key", self.key, "get", "app", "DB_PASSWORD",
                     check=False)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertNotIn("attacker", r.stdout)

    def test_alias_to_another_users_key_is_warned_about(self):
        r = subprocess.run(AS_NOBODY + [ENVELOPECTL, "--endpoint", self.endpoint, "key", "alias",
                                        "create", "alias/shared", self.attacker["KeyId"]],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            self.skipTest(f"the key service does not let nobody make this alias: {r.stderr}")
        other = os.path.join(self.tmp, "other.env")
        r = self.ctl("secrets", "--file", other, "--key", "alias/shared", "set", "app", "X",
                     input="v", check=False)
        # Either the alias is nobody's own name and does not reach root
        # (a per-user alias namespace), or it does and root is told.
        if "NotFoundException" not in r.stderr:
            self.assertIn("was created by user:nobody", r.stderr)


if __name__ == "__main__":
    unittest.main()
