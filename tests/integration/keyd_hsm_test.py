"""Custom key stores: KMS keys whose material is generated on a PKCS#11
token and never leaves it. The real envelope-keyd, the real SoftHSM2
module, boto3 for the key operations, a real mount and a real secrets file.

The stores are managed over the Unix socket as root (only root may: AWS
governs these operations with IAM alone), in AWS's JSON protocol and field
names; the keys are made and used by an access-key principal through boto3.
"""
import base64
import errno
import os
import shutil
import subprocess
import tempfile
import unittest

from botocore.exceptions import ClientError

from fs_harness import ENVELOPEFS, run
from harness import ENVELOPECTL, KmsError, Keyd
from softhsm import MODULE, SoftHsm

CLUSTER = "cluster-envelope0001"
OTHER_CLUSTER = "cluster-envelope0002"
PIN = "kmsuser-pin-1"


def b64(data):
    return base64.b64encode(data).decode()


class CustomKeyStoreTest(unittest.TestCase):
    def setUp(self):
        self.hsm = SoftHsm()
        self.hsm.init_token("hsm-a", PIN)
        self.hsm.init_token("hsm-b", PIN)
        self.keyd = Keyd(tcp=True, extra_args=[
            "--hsm-cluster", f"{CLUSTER}=pkcs11:token=hsm-a?module-path={MODULE}",
            "--hsm-cluster", f"{OTHER_CLUSTER}=pkcs11:token=hsm-b?module-path={MODULE}"])
        self.keyd.start()
        self.kms = self.keyd.boto3_client()
        self.tmp = tempfile.mkdtemp(prefix="hsm-test-")
        os.chmod(self.tmp, 0o755)
        self.mnt = None

    def tearDown(self):
        if self.mnt:
            subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True)
        self.keyd.cleanup()
        self.hsm.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def error(self, op, body):
        with self.assertRaises(KmsError) as cm:
            self.keyd.call(op, body)
        return cm.exception.type

    def create_store(self, name="hsm-a-store", cluster=CLUSTER, pin=PIN):
        return self.keyd.call("CreateCustomKeyStore", {
            "CustomKeyStoreName": name, "CloudHsmClusterId": cluster,
            "KeyStorePassword": pin,
            "TrustAnchorCertificate": "-----BEGIN CERTIFICATE-----\n...\n"})["CustomKeyStoreId"]

    def describe(self, store_id):
        stores = self.keyd.call("DescribeCustomKeyStores",
                                {"CustomKeyStoreId": store_id})["CustomKeyStores"]
        self.assertEqual(len(stores), 1)
        return stores[0]

    def connected_store(self):
        store_id = self.create_store()
        self.keyd.call("ConnectCustomKeyStore", {"CustomKeyStoreId": store_id})
        self.assertEqual(self.describe(store_id)["ConnectionState"], "CONNECTED")
        return store_id

    def hsm_key(self, store_id):
        meta = self.kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id,
                                   Description="on the token")["KeyMetadata"]
        return meta

    def test_store_lifecycle_with_aws_errors(self):
        self.assertEqual(self.error("CreateCustomKeyStore", {
            "CustomKeyStoreName": "x", "CloudHsmClusterId": "cluster-notattached1",
            "KeyStorePassword": PIN}), "CloudHsmClusterNotFoundException")
        self.assertEqual(self.error("CreateCustomKeyStore", {
            "CustomKeyStoreName": "x", "CloudHsmClusterId": CLUSTER,
            "KeyStorePassword": "short"}), "ValidationException")
        self.assertEqual(self.error("CreateCustomKeyStore", {
            "CustomKeyStoreName": "x", "CustomKeyStoreType": "EXTERNAL_KEY_STORE"}),
            "UnsupportedOperationException")
        store_id = self.create_store()
        self.assertRegex(store_id, r"^cks-[0-9a-f]{17}$")
        self.assertEqual(self.error("CreateCustomKeyStore", {
            "CustomKeyStoreName": "hsm-a-store", "CloudHsmClusterId": OTHER_CLUSTER,
            "KeyStorePassword": PIN}), "CustomKeyStoreNameInUseException")
        self.assertEqual(self.error("CreateCustomKeyStore", {
            "CustomKeyStoreName": "another", "CloudHsmClusterId": CLUSTER,
            "KeyStorePassword": PIN}), "CloudHsmClusterInUseException")
        entry = self.describe(store_id)
        self.assertEqual(entry["ConnectionState"], "DISCONNECTED")
        self.assertEqual(entry["CloudHsmClusterId"], CLUSTER)
        self.assertEqual(entry["CustomKeyStoreType"], "AWS_CLOUDHSM")
        self.assertNotIn("KeyStorePassword", entry)
        self.assertEqual(self.error("DescribeCustomKeyStores", {"CustomKeyStoreId": "cks-0"}),
                         "CustomKeyStoreNotFoundException")
        # Not for anyone but root.
        with self.assertRaises(ClientError) as cm:
            self.kms.describe_custom_key_stores()
        self.assertEqual(cm.exception.response["Error"]["Code"], "AccessDeniedException")

        # A key needs a connected store.
        with self.assertRaises(ClientError) as cm:
            self.hsm_key(store_id)
        self.assertEqual(cm.exception.response["Error"]["Code"],
                         "CustomKeyStoreInvalidStateException")
        self.keyd.call("ConnectCustomKeyStore", {"CustomKeyStoreId": store_id})
        self.assertEqual(self.describe(store_id)["ConnectionState"], "CONNECTED")
        meta = self.hsm_key(store_id)
        self.assertEqual(meta["Origin"], "AWS_CLOUDHSM")
        self.assertEqual(meta["CustomKeyStoreId"], store_id)
        self.assertEqual(meta["CloudHsmClusterId"], CLUSTER)

        # Updating and deleting want it disconnected, and deleting wants it empty.
        self.assertEqual(self.error("UpdateCustomKeyStore", {
            "CustomKeyStoreId": store_id, "NewCustomKeyStoreName": "renamed"}),
            "CustomKeyStoreInvalidStateException")
        self.assertEqual(self.error("DeleteCustomKeyStore", {"CustomKeyStoreId": store_id}),
                         "CustomKeyStoreInvalidStateException")
        self.keyd.call("DisconnectCustomKeyStore", {"CustomKeyStoreId": store_id})
        self.assertEqual(self.describe(store_id)["ConnectionState"], "DISCONNECTED")
        self.assertEqual(self.kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"],
                         "Unavailable")
        self.assertEqual(self.error("DeleteCustomKeyStore", {"CustomKeyStoreId": store_id}),
                         "CustomKeyStoreHasCMKsException")
        self.keyd.call("UpdateCustomKeyStore", {"CustomKeyStoreId": store_id,
                                                "NewCustomKeyStoreName": "renamed"})
        self.assertEqual(self.describe(store_id)["CustomKeyStoreName"], "renamed")

        # An empty disconnected store goes.
        empty = self.create_store("empty", OTHER_CLUSTER)
        self.keyd.call("DeleteCustomKeyStore", {"CustomKeyStoreId": empty})
        self.assertEqual(self.error("DescribeCustomKeyStores", {"CustomKeyStoreId": empty}),
                         "CustomKeyStoreNotFoundException")

    def test_cryptographic_operations_run_on_the_token(self):
        store_id = self.connected_store()
        key_id = self.hsm_key(store_id)["KeyId"]
        soft_id = self.kms.create_key()["KeyMetadata"]["KeyId"]
        ctx = {"purpose": "test"}
        blob = self.kms.encrypt(KeyId=key_id, Plaintext=b"on the token",
                                EncryptionContext=ctx)["CiphertextBlob"]
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"],
                         b"on the token")
        with self.assertRaises(ClientError) as cm:
            self.kms.decrypt(CiphertextBlob=blob, EncryptionContext={"purpose": "other"})
        self.assertEqual(cm.exception.response["Error"]["Code"], "InvalidCiphertextException")
        dk = self.kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
        self.assertEqual(self.kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"],
                         dk["Plaintext"])
        # ReEncrypt both ways between the token key and a software key.
        soft = self.kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=ctx,
                                   DestinationKeyId=soft_id)["CiphertextBlob"]
        back = self.kms.re_encrypt(CiphertextBlob=soft, DestinationKeyId=key_id,
                                   DestinationEncryptionContext=ctx)["CiphertextBlob"]
        self.assertEqual(self.kms.decrypt(CiphertextBlob=back, EncryptionContext=ctx)["Plaintext"],
                         b"on the token")

        # Rotation makes a second token key; the first still opens old blobs.
        # (Debian's boto3 1.26 predates RotateKeyOnDemand: signed by hand.)
        status, _ = self.keyd.signed_request("RotateKeyOnDemand", {"KeyId": key_id})
        self.assertEqual(status, 200)
        rotated = self.kms.encrypt(KeyId=key_id, Plaintext=b"v2")["CiphertextBlob"]
        self.assertEqual(int.from_bytes(rotated[19:23], "little"), 2)
        self.assertEqual(int.from_bytes(blob[19:23], "little"), 1)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=rotated)["Plaintext"], b"v2")
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"],
                         b"on the token")

        # The material is on the token only: without the token nothing opens,
        # although the store (and its LMDB) is all there.
        self.keyd.stop()
        tokens = os.path.join(self.hsm.dir, "tokens")
        shutil.move(tokens, tokens + ".away")
        os.mkdir(tokens)
        self.keyd.start()
        self.assertEqual(self.describe(store_id)["ConnectionState"], "FAILED")
        self.assertEqual(self.describe(store_id)["ConnectionErrorCode"], "CLUSTER_NOT_FOUND")
        with self.assertRaises(ClientError) as cm:
            self.keyd.boto3_client().decrypt(CiphertextBlob=blob, EncryptionContext=ctx)
        self.assertEqual(cm.exception.response["Error"]["Code"], "KMSInvalidStateException")
        self.assertEqual(
            self.keyd.boto3_client().decrypt(CiphertextBlob=soft)["Plaintext"], b"on the token")

        # The token back: disconnect the FAILED store, connect, and it opens again.
        self.keyd.stop()
        shutil.rmtree(tokens)
        shutil.move(tokens + ".away", tokens)
        self.keyd.start()
        self.assertEqual(self.describe(store_id)["ConnectionState"], "CONNECTED")  # reconnected
        self.assertEqual(self.keyd.boto3_client().decrypt(
            CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"], b"on the token")

    def token_objects(self):
        # SoftHSM2's file store: one file per object on the token.
        found = []
        for root, _, files in os.walk(os.path.join(self.hsm.dir, "tokens")):
            found += [f for f in files if f.endswith(".object")]
        return len(found)

    def test_retired_versions_and_deleted_keys_leave_the_token(self):
        store_id = self.connected_store()
        key_id = self.keyd.call("CreateKey", {"Origin": "AWS_CLOUDHSM",
                                              "CustomKeyStoreId": store_id})["KeyMetadata"]["KeyId"]
        old = self.keyd.call("Encrypt", {"KeyId": key_id, "Plaintext": b64(b"v1")})
        before = self.token_objects()
        self.keyd.call("RotateKeyOnDemand", {"KeyId": key_id})
        self.assertEqual(self.token_objects(), before + 1)
        self.keyd.call("RetireKeyVersions", {"KeyId": key_id, "BelowVersion": 2},
                       prefix="EnvelopeKeyService")
        self.assertEqual(self.token_objects(), before)
        with self.assertRaises(KmsError) as cm:
            self.keyd.call("Decrypt", {"CiphertextBlob": old["CiphertextBlob"]})
        self.assertEqual(cm.exception.type, "KMSInvalidStateException")
        # Deletion, once due (the clock moved past the window), takes the rest.
        self.keyd.call("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": 7})
        self.keyd.stop()
        self.keyd.start(["--clock-offset-seconds", str(8 * 86400)])
        self.assertEqual(self.error("DescribeKey", {"KeyId": key_id}), "NotFoundException")
        self.assertEqual(self.token_objects(), before - 1)
        self.keyd.call("DisconnectCustomKeyStore", {"CustomKeyStoreId": store_id})
        self.keyd.call("DeleteCustomKeyStore", {"CustomKeyStoreId": store_id})

    def test_a_wrong_password_fails_until_updated(self):
        store_id = self.create_store(pin="not-the-pin")
        self.keyd.call("ConnectCustomKeyStore", {"CustomKeyStoreId": store_id})
        entry = self.describe(store_id)
        self.assertEqual(entry["ConnectionState"], "FAILED")
        self.assertEqual(entry["ConnectionErrorCode"], "INVALID_CREDENTIALS")
        self.assertEqual(self.error("ConnectCustomKeyStore", {"CustomKeyStoreId": store_id}),
                         "CustomKeyStoreInvalidStateException")
        self.keyd.call("DisconnectCustomKeyStore", {"CustomKeyStoreId": store_id})
        self.keyd.call("UpdateCustomKeyStore", {"CustomKeyStoreId": store_id,
                                                "KeyStorePassword": PIN})
        self.keyd.call("ConnectCustomKeyStore", {"CustomKeyStoreId": store_id})
        self.assertEqual(self.describe(store_id)["ConnectionState"], "CONNECTED")
        # The password is in the audit trail of neither request.
        with open(os.path.join(self.keyd.data_dir, "audit.log")) as f:
            audit = f.read()
        self.assertIn("UpdateCustomKeyStore", audit)
        self.assertNotIn(PIN, audit)
        self.assertNotIn("not-the-pin", audit)
        # A disconnected store stays so across a restart.
        self.keyd.call("DisconnectCustomKeyStore", {"CustomKeyStoreId": store_id})
        self.keyd.stop()
        self.keyd.start()
        self.assertEqual(self.describe(store_id)["ConnectionState"], "DISCONNECTED")

    def test_a_backup_names_token_keys_and_the_token_keeps_their_material(self):
        store_id = self.connected_store()
        key_id = self.hsm_key(store_id)["KeyId"]
        blob = self.kms.encrypt(KeyId=key_id, Plaintext=b"kept on the token")["CiphertextBlob"]
        backup = os.path.join(self.tmp, "keys.ekb")
        out = self.keyd.envelopectl("backup", "--to", backup).stdout
        shares = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("share ")]
        with open(backup, "rb") as f:
            self.assertNotIn(PIN.encode(), f.read())
        self.keyd.stop()
        shutil.rmtree(self.keyd.data_dir)
        r, w = os.pipe()
        os.write(w, "".join(x + "\n" for x in shares[:3]).encode())
        os.close(w)
        try:
            self.keyd.start(["--restore", backup, "--shares-fd", str(r)], pass_fds=(r,))
        finally:
            os.close(r)
        # The store was connected: the restored service connects it, and the
        # key's material, never in the backup, is found on the token.
        self.assertEqual(self.describe(store_id)["ConnectionState"], "CONNECTED")
        kms = self.keyd.boto3_client()
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"kept on the token")
        self.assertEqual(kms.describe_key(KeyId=key_id)["KeyMetadata"]["Origin"], "AWS_CLOUDHSM")

    def test_a_volume_and_a_secrets_file_on_a_token_key(self):
        # Made with envelopectl, the PIN on standard input.
        store_id = self.keyd.envelopectl("key-store", "create", "vol-store", "--cluster", CLUSTER,
                                         input=PIN + "\n").stdout.strip()
        self.assertRegex(store_id, r"^cks-[0-9a-f]{17}$")
        self.keyd.envelopectl("key-store", "connect", store_id)
        listing = self.keyd.envelopectl("key-store", "list").stdout
        self.assertRegex(listing, store_id + r"\s+vol-store\s+" + CLUSTER + r"\s+CONNECTED")
        # A key root owns, for the mount and envelopectl on the Unix socket.
        key = self.keyd.envelopectl("key", "create", "--custom-key-store",
                                    store_id).stdout.strip()
        endpoint = "unix:" + self.keyd.socket
        cipher = os.path.join(self.tmp, "cipher")
        self.mnt = os.path.join(self.tmp, "mnt")
        log = os.path.join(self.tmp, "mount.log")
        os.mkdir(self.mnt)
        run(ENVELOPEFS, "init", cipher, "--key", key, "--kms", endpoint)
        mount = [ENVELOPEFS, "mount", cipher, self.mnt, "-o", f"kms={endpoint}", "-o", f"log={log}"]
        run(*mount)
        files = {f"f{i}": os.urandom(5000 + i) for i in range(6)}
        for name, data in files.items():
            with open(os.path.join(self.mnt, name), "wb") as f:
                f.write(data)
        secrets = os.path.join(self.tmp, "app.env")
        ctl = [ENVELOPECTL, "--endpoint", endpoint]
        subprocess.run(ctl + ["secrets", "--file", secrets, "set", "app", "DB_PASSWORD",
                              "--key", key], input=b"hunter2", check=True, capture_output=True)
        # A fresh mount: no file key is cached.
        subprocess.run(["fusermount3", "-u", self.mnt], check=True)
        run(*mount)
        with open(os.path.join(self.mnt, "f0"), "rb") as f:
            self.assertEqual(f.read(), files["f0"])

        self.keyd.envelopectl("key-store", "disconnect", store_id)
        self.assertIn("DISCONNECTED", self.keyd.envelopectl("key-store", "list").stdout)
        # New opens fail with EIO, and the mount's log says why.
        with self.assertRaises(OSError) as cm:
            with open(os.path.join(self.mnt, "f1"), "rb") as f:
                f.read()
        self.assertEqual(cm.exception.errno, errno.EIO)
        with open(log) as f:
            text = f.read()
        self.assertIn("KMSInvalidStateException", text)
        self.assertIn(f"custom key store {store_id} is DISCONNECTED", text)
        r = subprocess.run(ctl + ["secrets", "--file", secrets, "get", "app", "DB_PASSWORD"],
                           capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("KMSInvalidStateException", r.stderr)

        # Connected again, everything opens.
        self.keyd.envelopectl("key-store", "connect", store_id)
        for name, data in files.items():
            with open(os.path.join(self.mnt, name), "rb") as f:
                self.assertEqual(f.read(), data, name)
        r = subprocess.run(ctl + ["secrets", "--file", secrets, "get", "app", "DB_PASSWORD"],
                           capture_output=True, text=True, check=True)
        self.assertEqual(r.stdout.strip(), "hunter2")


if __name__ == "__main__":
    unittest.main()
