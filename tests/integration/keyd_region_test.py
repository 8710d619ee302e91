"""Multi-Region keys with two real envelope-keyd daemons (issue 16): each a
"region" with its own TLS listener, store and access keys, each reaching
the other over TLS with an access key the other gives its replication
principal. A ciphertext made in one region decrypts in the other, a
rotation on the primary reaches the replica, UpdatePrimaryRegion moves the
primary, and the AWS errors hold."""
import os
import unittest

from botocore.exceptions import ClientError

from harness import KmsError
from keyd_tls_test import PkiOnlyTestCase, TlsKeyd

REPLICATOR_ID = "AKIAENVELOPEREPLIC01"
REPLICATOR_SECRET = "envelope/test/replicator/secret/0001/abcd"


class MultiRegionTest(PkiOnlyTestCase):
    def region(self, name):
        peers = os.path.join(self.pki_dir, f"peers-{name}-{id(self)}")
        keyd = TlsKeyd(self.pki, extra_args=["--region", name, "--peers", peers,
                                             "--replication-principal", "key:replicator"])
        with open(keyd.access_keys, "a") as f:
            f.write(f"{REPLICATOR_ID} {REPLICATOR_SECRET} replicator\n")
        keyd.peers = peers
        return keyd.start()

    def setUp(self):
        self.a = self.region("region-a")
        self.b = self.region("region-b")
        # Each region names the other (the file is read at each use).
        for here, there, name in [(self.a, self.b, "region-b"), (self.b, self.a, "region-a")]:
            with open(here.peers, "w") as f:
                f.write(f"{name} https://127.0.0.1:{there.port} {REPLICATOR_ID} "
                        f"{REPLICATOR_SECRET} {self.pki.ca}\n")
            os.chmod(here.peers, 0o600)
        self.ka = self.a.boto3_client()
        self.kb = self.b.boto3_client()

    def tearDown(self):
        self.a.cleanup()
        self.b.cleanup()

    def assertError(self, code, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        self.assertEqual(cm.exception.response["Error"]["Code"], code,
                         cm.exception.response["Error"].get("Message"))

    def encrypt(self, client, key_id, text):
        return client.encrypt(KeyId=key_id, Plaintext=text,
                              EncryptionContext={"app": "mr"})["CiphertextBlob"]

    def decrypt(self, client, blob):
        return client.decrypt(CiphertextBlob=blob, EncryptionContext={"app": "mr"})["Plaintext"]

    def test_replicate_rotate_and_move_the_primary(self):
        meta = self.ka.create_key(MultiRegion=True, Description="mr")["KeyMetadata"]
        key_id = meta["KeyId"]
        self.assertTrue(meta["MultiRegion"])
        self.assertEqual(meta["MultiRegionConfiguration"]["MultiRegionKeyType"], "PRIMARY")
        blob1 = self.encrypt(self.ka, key_id, b"made in a")
        self.assertError("NotFoundException", self.kb.describe_key, KeyId=key_id)

        out = self.ka.replicate_key(KeyId=key_id, ReplicaRegion="region-b",
                                    Description="replica in b")
        self.assertIn(":region-b:", out["ReplicaKeyMetadata"]["Arn"])
        # A ciphertext made in one region decrypts in the other.
        self.assertEqual(self.decrypt(self.kb, blob1), b"made in a")
        b_meta = self.kb.describe_key(KeyId=key_id)["KeyMetadata"]
        self.assertEqual(b_meta["Description"], "replica in b")
        cfg = b_meta["MultiRegionConfiguration"]
        self.assertEqual(cfg["MultiRegionKeyType"], "REPLICA")
        self.assertEqual(cfg["PrimaryKey"]["Region"], "region-a")
        self.assertEqual([r["Region"] for r in cfg["ReplicaKeys"]], ["region-b"])
        self.assertEqual([r["Region"] for r in self.ka.describe_key(KeyId=key_id)
                          ["KeyMetadata"]["MultiRegionConfiguration"]["ReplicaKeys"]],
                         ["region-b"])

        # A rotation on the primary reaches the replica: a ciphertext under
        # the new version decrypts there.
        self.a.call("RotateKeyOnDemand", {"KeyId": key_id})
        blob2 = self.encrypt(self.ka, key_id, b"version 2")
        self.assertEqual(self.decrypt(self.kb, blob2), b"version 2")
        with self.assertRaises(KmsError) as cm:
            self.b.call("RotateKeyOnDemand", {"KeyId": key_id})
        self.assertEqual(cm.exception.type, "UnsupportedOperationException")

        # The errors of ReplicateKey and deletion.
        self.assertError("AlreadyExistsException", self.ka.replicate_key, KeyId=key_id,
                         ReplicaRegion="region-b")
        self.assertError("ValidationException", self.ka.replicate_key, KeyId=key_id,
                         ReplicaRegion="region-z")
        self.assertError("KMSInvalidStateException", self.ka.schedule_key_deletion,
                         KeyId=key_id, PendingWindowInDays=7)
        single = self.ka.create_key()["KeyMetadata"]["KeyId"]
        self.assertError("UnsupportedOperationException", self.ka.replicate_key, KeyId=single,
                         ReplicaRegion="region-b")
        # Only a replication principal may push keys into a region.
        with self.assertRaises(KmsError) as cm:
            self.b.call("ReplicaSync", {"Record": "{}", "Materials": []},
                        prefix="EnvelopeKeyService")
        self.assertEqual(cm.exception.type, "AccessDeniedException")

        # The primary moves to b: b rotates now, and a follows.
        self.ka.update_primary_region(KeyId=key_id, PrimaryRegion="region-b")
        self.assertEqual(self.kb.describe_key(KeyId=key_id)["KeyMetadata"]
                         ["MultiRegionConfiguration"]["MultiRegionKeyType"], "PRIMARY")
        self.assertEqual(self.ka.describe_key(KeyId=key_id)["KeyMetadata"]
                         ["MultiRegionConfiguration"]["MultiRegionKeyType"], "REPLICA")
        self.b.call("RotateKeyOnDemand", {"KeyId": key_id})
        blob3 = self.encrypt(self.kb, key_id, b"version 3, made in b")
        self.assertEqual(self.decrypt(self.ka, blob3), b"version 3, made in b")
        self.assertEqual(self.decrypt(self.ka, blob1), b"made in a")
        self.assertError("NotFoundException", self.kb.update_primary_region, KeyId=key_id,
                         PrimaryRegion="region-z")

    def test_replica_keeps_its_own_policy_and_state(self):
        key_id = self.ka.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
        self.ka.replicate_key(KeyId=key_id, ReplicaRegion="region-b")
        blob = self.encrypt(self.ka, key_id, b"x")
        self.kb.disable_key(KeyId=key_id)
        self.assertError("DisabledException", self.kb.decrypt, CiphertextBlob=blob,
                         EncryptionContext={"app": "mr"})
        self.assertEqual(self.decrypt(self.ka, blob), b"x")  # the primary is not disabled
        # A later push (a rotation) leaves the replica's own state alone.
        self.a.call("RotateKeyOnDemand", {"KeyId": key_id})
        self.assertEqual(self.kb.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"],
                         "Disabled")


if __name__ == "__main__":
    unittest.main()
