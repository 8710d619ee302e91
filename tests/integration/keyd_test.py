"""Integration tests of envelope-keyd: the real daemon, real LMDB store,
driven by the project's envelopectl, by Debian's boto3 over TCP + SigV4, by
curl over the Unix socket, and by raw HTTP for malformed input."""
import base64
import datetime
import json
import os
import random
import subprocess
import threading
import time
import unittest

from harness import Keyd, KmsError, ENVELOPECTL, KEYD


def b64(b):
    return base64.b64encode(b).decode()


class KeydTestCase(unittest.TestCase):
    tcp = False

    def setUp(self):
        self.keyd = Keyd(tcp=self.tcp).start()

    def tearDown(self):
        self.keyd.cleanup()

    def create_key(self, **kw):
        return self.keyd.call("CreateKey", kw)["KeyMetadata"]["KeyId"]

    def assertKmsError(self, type_, fn, *args, **kw):
        with self.assertRaises(KmsError) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.type, type_, cm.exception.message)
        return cm.exception


class Boto3Test(KeydTestCase):
    """Debian's boto3 (1.26) over loopback TCP with SigV4."""
    tcp = True

    def test_update_key_description_and_list_key_policies(self):
        kms = self.keyd.boto3_client()
        key_id = kms.create_key(Description="before")["KeyMetadata"]["KeyId"]
        kms.update_key_description(KeyId=key_id, Description="after")
        self.assertEqual(kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"], "after")
        kms.update_key_description(KeyId=key_id, Description="")  # AWS allows empty
        self.assertEqual(kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"], "")
        with self.assertRaises(kms.exceptions.NotFoundException):
            kms.update_key_description(KeyId="00000000-0000-4000-8000-000000000000",
                                       Description="x")
        with self.assertRaises(kms.exceptions.NotFoundException):  # no aliases here, as AWS
            kms.create_alias(AliasName="alias/desc", TargetKeyId=key_id)
            kms.update_key_description(KeyId="alias/desc", Description="x")
        page = kms.list_key_policies(KeyId=key_id)
        self.assertEqual(page["PolicyNames"], ["default"])
        self.assertFalse(page["Truncated"])
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        with self.assertRaises(kms.exceptions.KMSInvalidStateException):
            kms.update_key_description(KeyId=key_id, Description="too late")

    def test_get_key_last_usage(self):
        # Newer than Debian's boto3: hand-signed requests.
        kms = self.keyd.boto3_client()
        a = kms.create_key()["KeyMetadata"]
        b = kms.create_key()["KeyMetadata"]["KeyId"]

        def last(key_id):
            status, out = self.keyd.signed_request("GetKeyLastUsage", {"KeyId": key_id})
            self.assertEqual(status, 200, out)
            return out

        out = last(a["KeyId"])
        self.assertEqual(out["KeyLastUsage"], {})
        self.assertLessEqual(out["TrackingStartDate"], out["KeyCreationDate"])
        blob = kms.encrypt(KeyId=a["KeyId"], Plaintext=b"x")["CiphertextBlob"]
        self.assertEqual(last(a["KeyId"])["KeyLastUsage"]["Operation"], "Encrypt")
        kms.describe_key(KeyId=a["KeyId"])  # not a cryptographic use
        kms.decrypt(CiphertextBlob=blob)
        used = last(a["KeyId"])["KeyLastUsage"]
        self.assertEqual(used["Operation"], "Decrypt")
        self.assertGreater(used["Timestamp"], 0)
        kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=b)
        self.assertEqual(last(a["KeyId"])["KeyLastUsage"]["Operation"], "ReEncrypt")
        self.assertEqual(last(b)["KeyLastUsage"]["Operation"], "ReEncrypt")
        # Kept across a restart (written at shutdown).
        self.keyd.stop()
        self.keyd.start()
        self.assertEqual(last(b)["KeyLastUsage"]["Operation"], "ReEncrypt")
        status, out = self.keyd.signed_request("GetKeyLastUsage", {"KeyId": "alias/x"})
        self.assertEqual((status, out["__type"]), (400, "NotFoundException"))

    def test_boto3_end_to_end(self):
        kms = self.keyd.boto3_client()
        key = kms.create_key(Description="boto3 key")["KeyMetadata"]
        key_id = key["KeyId"]
        self.assertEqual(key["KeyState"], "Enabled")
        self.assertTrue(key["Arn"].endswith(key_id))
        kms.create_alias(AliasName="alias/boto", TargetKeyId=key_id)

        ctx = {"volume": "v1", "file": "f1"}
        enc = kms.encrypt(KeyId="alias/boto", Plaintext=b"top secret", EncryptionContext=ctx)
        dec = kms.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionContext=ctx)
        self.assertEqual(dec["Plaintext"], b"top secret")
        self.assertEqual(dec["KeyId"], key["Arn"])
        with self.assertRaises(kms.exceptions.InvalidCiphertextException):
            kms.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionContext={"volume": "v2"})

        dk = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=ctx)
        self.assertEqual(len(dk["Plaintext"]), 32)
        self.assertEqual(kms.decrypt(CiphertextBlob=dk["CiphertextBlob"],
                                     EncryptionContext=ctx)["Plaintext"], dk["Plaintext"])
        nop = kms.generate_data_key_without_plaintext(KeyId=key_id, NumberOfBytes=64)
        self.assertNotIn("Plaintext", nop)

        # Rotate on demand (not in boto3 1.26: a hand-signed request), then a
        # blob made before rotation still decrypts, and new ones use v2.
        status, out = self.keyd.signed_request("RotateKeyOnDemand", {"KeyId": key_id})
        self.assertEqual(status, 200, out)
        status, rot = self.keyd.signed_request("ListKeyRotations", {"KeyId": key_id})
        self.assertEqual(status, 200, rot)
        self.assertEqual([r["RotationType"] for r in rot["Rotations"]], ["ON_DEMAND"])
        self.assertEqual(kms.decrypt(CiphertextBlob=enc["CiphertextBlob"],
                                     EncryptionContext=ctx)["Plaintext"], b"top secret")

        other = kms.create_key()["KeyMetadata"]["KeyId"]
        re = kms.re_encrypt(CiphertextBlob=enc["CiphertextBlob"], SourceEncryptionContext=ctx,
                            DestinationKeyId=other, DestinationEncryptionContext={"x": "y"})
        self.assertTrue(re["KeyId"].endswith(other))
        self.assertEqual(kms.decrypt(CiphertextBlob=re["CiphertextBlob"],
                                     EncryptionContext={"x": "y"})["Plaintext"], b"top secret")

        sched = kms.schedule_key_deletion(KeyId=other, PendingWindowInDays=7)
        self.assertEqual(sched["KeyState"], "PendingDeletion")
        with self.assertRaises(kms.exceptions.KMSInvalidStateException):
            kms.encrypt(KeyId=other, Plaintext=b"x")
        kms.cancel_key_deletion(KeyId=other)
        self.assertEqual(kms.describe_key(KeyId=other)["KeyMetadata"]["KeyState"], "Disabled")

        for _ in range(5):
            kms.create_key()
        seen, marker = [], None
        while True:
            page = kms.list_keys(Limit=3, **({"Marker": marker} if marker else {}))
            seen += [k["KeyId"] for k in page["Keys"]]
            self.assertLessEqual(len(page["Keys"]), 3)
            if not page["Truncated"]:
                break
            marker = page["NextMarker"]
        self.assertEqual(len(seen), 7)
        self.assertEqual(len(set(seen)), 7)
        aliases = kms.list_aliases(KeyId=key_id)["Aliases"]
        self.assertEqual([a["AliasName"] for a in aliases], ["alias/boto"])
        kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "team", "TagValue": "storage"}])
        self.assertEqual(kms.list_resource_tags(KeyId=key_id)["Tags"],
                         [{"TagKey": "team", "TagValue": "storage"}])
        self.assertEqual(len(kms.generate_random(NumberOfBytes=17)["Plaintext"]), 17)

    def test_bad_missing_or_stale_signatures_are_rejected(self):
        status, out = self.keyd.signed_request("ListKeys", {}, sign=False)
        self.assertEqual(out["__type"], "MissingAuthenticationTokenException")
        status, out = self.keyd.signed_request("ListKeys", {}, secret="wrong-secret")
        self.assertEqual(status, 400)
        self.assertEqual(out["__type"], "InvalidSignatureException")
        stale = datetime.datetime.utcnow() - datetime.timedelta(minutes=20)
        status, out = self.keyd.signed_request("ListKeys", {}, date=stale)
        self.assertEqual(out["__type"], "InvalidSignatureException")
        self.assertIn("stale", out["message"])
        status, out = self.keyd.signed_request("ListKeys", {})
        self.assertEqual(status, 200, out)


class UnixSocketTest(KeydTestCase):
    def test_curl_raw_request(self):
        key_id = self.create_key(Description="curl")
        r = subprocess.run(
            ["curl", "-sS", "--unix-socket", self.keyd.socket, "http://localhost/",
             "-H", "Content-Type: application/x-amz-json-1.1",
             "-H", "X-Amz-Target: TrentService.DescribeKey",
             "-d", json.dumps({"KeyId": key_id})],
            capture_output=True, text=True, check=True)
        meta = json.loads(r.stdout)["KeyMetadata"]
        self.assertEqual(meta["KeyId"], key_id)
        self.assertEqual(meta["Description"], "curl")

    def test_context_encoding_is_unambiguous(self):
        key_id = self.create_key()
        blob = self.keyd.call("Encrypt", {"KeyId": key_id, "Plaintext": b64(b"x"),
                                          "EncryptionContext": {"a": "bc"}})["CiphertextBlob"]
        self.assertKmsError("InvalidCiphertextException", self.keyd.call, "Decrypt",
                            {"CiphertextBlob": blob, "EncryptionContext": {"ab": "c"}})
        self.keyd.call("Decrypt", {"CiphertextBlob": blob, "EncryptionContext": {"a": "bc"}})

    def test_disabled_key_refuses_every_cryptographic_operation(self):
        key_id = self.create_key()
        blob = self.keyd.call("Encrypt", {"KeyId": key_id, "Plaintext": b64(b"x")})["CiphertextBlob"]
        self.keyd.call("DisableKey", {"KeyId": key_id})
        for op, body in [
                ("Encrypt", {"KeyId": key_id, "Plaintext": b64(b"x")}),
                ("Decrypt", {"CiphertextBlob": blob}),
                ("ReEncrypt", {"CiphertextBlob": blob, "DestinationKeyId": key_id}),
                ("GenerateDataKey", {"KeyId": key_id, "KeySpec": "AES_256"}),
                ("GenerateDataKeyWithoutPlaintext", {"KeyId": key_id, "KeySpec": "AES_256"})]:
            self.assertKmsError("DisabledException", self.keyd.call, op, body)
        self.keyd.call("EnableKey", {"KeyId": key_id})
        self.keyd.call("Decrypt", {"CiphertextBlob": blob})

    def test_retired_version_cannot_decrypt(self):
        key_id = self.create_key()
        old = self.keyd.call("Encrypt", {"KeyId": key_id, "Plaintext": b64(b"v1")})["CiphertextBlob"]
        self.keyd.call("RotateKeyOnDemand", {"KeyId": key_id})
        new = self.keyd.call("Encrypt", {"KeyId": key_id, "Plaintext": b64(b"v2")})["CiphertextBlob"]
        # ReEncrypt moves the old blob to version 2 before the retirement.
        moved = self.keyd.call("ReEncrypt", {"CiphertextBlob": old,
                                             "DestinationKeyId": key_id})["CiphertextBlob"]
        out = self.keyd.call("RetireKeyVersions", {"KeyId": key_id, "BelowVersion": 2},
                             prefix="EnvelopeKeyService")
        self.assertEqual(out["RetiredVersions"], [1])
        err = self.assertKmsError("KMSInvalidStateException", self.keyd.call, "Decrypt",
                                  {"CiphertextBlob": old})
        self.assertIn("retired", err.message)
        for blob, want in ((new, b"v2"), (moved, b"v1")):
            got = self.keyd.call("Decrypt", {"CiphertextBlob": blob})["Plaintext"]
            self.assertEqual(base64.b64decode(got), want)
        # And it stays retired across a restart: the material is gone.
        self.keyd.stop()
        self.keyd.start()
        self.assertKmsError("KMSInvalidStateException", self.keyd.call, "Decrypt",
                            {"CiphertextBlob": old})

    def test_malformed_requests_get_aws_errors_and_the_daemon_keeps_serving(self):
        key_id = self.create_key()
        cases = [
            ("TrentService.Encrypt", "{not json", "SerializationException"),
            ("TrentService.Encrypt", "[1,2]", "SerializationException"),
            ("TrentService.Encrypt", json.dumps({"KeyId": 42, "Plaintext": b64(b"x")}),
             "SerializationException"),
            ("TrentService.Encrypt", json.dumps({"KeyId": key_id, "Plaintext": "%%%not base64"}),
             "SerializationException"),
            ("TrentService.Encrypt", json.dumps({"KeyId": key_id, "Plaintext": b64(b"x" * 4097)}),
             "ValidationException"),
            ("TrentService.Encrypt", json.dumps({"KeyId": key_id}), "ValidationException"),
            ("TrentService.Encrypt", json.dumps({"KeyId": key_id, "Plaintext": b64(b"x"),
                                                 "EncryptionContext": {"a": 1}}),
             "SerializationException"),
            ("TrentService.NoSuchThing", "{}", "UnknownOperationException"),
            ("TrentService.CreateAlias", json.dumps({"AliasName": "alias/aws/reserved",
                                                     "TargetKeyId": key_id}), "ValidationException"),
            ("TrentService.CreateAlias", json.dumps({"AliasName": "alias/has space",
                                                     "TargetKeyId": key_id}), "ValidationException"),
            ("TrentService.CreateAlias", json.dumps({"AliasName": "noprefix",
                                                     "TargetKeyId": key_id}), "ValidationException"),
            ("", "{}", "UnknownOperationException"),
            ("TrentService.DescribeKey", json.dumps({"KeyId": "alias/missing"}), "NotFoundException"),
            ("TrentService.Decrypt", json.dumps({"CiphertextBlob": b64(b"garbage" * 10)}),
             "InvalidCiphertextException"),
        ]
        for target, body, want in cases:
            status, out = self.keyd.raw(target, body)
            self.assertEqual(status, 400, (target, body, out))
            self.assertEqual(out["__type"], want, (target, body, out))
        status, out = self.keyd.raw("TrentService.Encrypt", "x" * (200 * 1024))
        self.assertEqual(status, 413)
        self.assertEqual(out["__type"], "ValidationException")
        # Still serving, and the key still works.
        self.keyd.call("Encrypt", {"KeyId": key_id, "Plaintext": b64(b"ok")})
        self.assertIsNone(self.keyd.proc.poll())

    def test_second_daemon_on_the_same_data_dir_is_refused(self):
        r = subprocess.run([os.path.join(os.path.dirname(ENVELOPECTL), "..", "keyservice",
                                         "envelope-keyd"),
                            "--data-dir", self.keyd.data_dir,
                            "--socket", self.keyd.socket + "2", "-f"],
                           capture_output=True, text=True, timeout=20)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("already running", r.stderr)

    def test_malformed_listen_port_is_an_error_not_a_crash(self):
        # std::stoi used to throw here: the daemon died of an uncaught
        # exception (SIGABRT) instead of saying what was wrong.
        for port in ["abc", "70000", "", "12x"]:
            other = os.path.join(self.keyd.tmp, "other-" + (port or "empty"))
            r = subprocess.run([KEYD, "--data-dir", os.path.join(other, "data"),
                                "--socket", os.path.join(other, "kms.sock"), "-f",
                                "--listen", "127.0.0.1:" + port,
                                "--access-keys", self.keyd.access_keys],
                               capture_output=True, text=True, timeout=20)
            self.assertEqual(r.returncode, 1, (port, r.returncode, r.stderr))
            self.assertIn("--listen wants HOST:PORT with PORT from 0 to 65535", r.stderr)

    def test_sigterm_shuts_down_cleanly(self):
        self.assertEqual(self.keyd.stop(), 0)
        self.assertFalse(os.path.exists(self.keyd.socket))

    def test_other_user_needs_the_policy(self):
        key_id = self.create_key()
        blob = self.keyd.call("Encrypt", {"KeyId": key_id, "Plaintext": b64(b"hi")})["CiphertextBlob"]
        as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                     "curl", "-sS", "--unix-socket", self.keyd.socket, "http://localhost/",
                     "-H", "Content-Type: application/x-amz-json-1.1",
                     "-H", "X-Amz-Target: TrentService.Decrypt",
                     "-d", json.dumps({"CiphertextBlob": blob})]
        out = json.loads(subprocess.run(as_nobody, capture_output=True, text=True).stdout)
        self.assertEqual(out.get("__type"), "AccessDeniedException", out)
        policy = json.loads(self.keyd.call("GetKeyPolicy", {"KeyId": key_id})["Policy"])
        policy["Statement"].append({"Effect": "Allow", "Principal": {"Local": "user:nobody"},
                                    "Action": "kms:Decrypt", "Resource": "*"})
        self.keyd.call("PutKeyPolicy", {"KeyId": key_id, "Policy": json.dumps(policy)})
        out = json.loads(subprocess.run(as_nobody, capture_output=True, text=True).stdout)
        self.assertEqual(base64.b64decode(out["Plaintext"]), b"hi")
        # The policy let nobody decrypt, nothing else.
        as_nobody[as_nobody.index("X-Amz-Target: TrentService.Decrypt")] = \
            "X-Amz-Target: TrentService.DisableKey"
        as_nobody[-1] = json.dumps({"KeyId": key_id})
        out = json.loads(subprocess.run(as_nobody, capture_output=True, text=True).stdout)
        self.assertEqual(out.get("__type"), "AccessDeniedException", out)

    def test_put_key_policy_refuses_to_lock_out_its_caller(self):
        key_id = self.create_key()
        lockout = json.dumps({"Statement": [{"Effect": "Allow", "Principal": {"Local": "user:nobody"},
                                             "Action": "kms:*", "Resource": "*"}]})
        self.assertKmsError("MalformedPolicyDocumentException", self.keyd.call, "PutKeyPolicy",
                            {"KeyId": key_id, "Policy": lockout})
        self.keyd.call("PutKeyPolicy", {"KeyId": key_id, "Policy": lockout,
                                        "BypassPolicyLockoutSafetyCheck": True})
        self.assertKmsError("AccessDeniedException", self.keyd.call, "DescribeKey", {"KeyId": key_id})


class GenerateDataKeysTest(KeydTestCase):
    """The EnvelopeKeyService.GenerateDataKeys extension: GenerateDataKey for
    many encryption contexts in one request."""

    def batch(self, body):
        return self.keyd.call("GenerateDataKeys", body, prefix="EnvelopeKeyService")

    def test_one_key_per_context_each_bound_to_its_context(self):
        key_id = self.create_key()
        contexts = [{"volume": "v", "file": f"{i:032x}"} for i in range(5)]
        out = self.batch({"KeyId": key_id, "NumberOfBytes": 32, "EncryptionContexts": contexts})
        self.assertTrue(out["KeyId"].endswith(":key/" + key_id), out["KeyId"])
        keys = out["DataKeys"]
        self.assertEqual(len(keys), len(contexts))
        self.assertEqual(len({k["Plaintext"] for k in keys}), len(keys))  # all different
        for i, (key, context) in enumerate(zip(keys, contexts)):
            self.assertEqual(len(base64.b64decode(key["Plaintext"])), 32)
            got = self.keyd.call("Decrypt", {"CiphertextBlob": key["CiphertextBlob"],
                                             "EncryptionContext": context})
            self.assertEqual(got["Plaintext"], key["Plaintext"])
            other = contexts[(i + 1) % len(contexts)]
            self.assertKmsError("InvalidCiphertextException", self.keyd.call, "Decrypt",
                                {"CiphertextBlob": key["CiphertextBlob"],
                                 "EncryptionContext": other})
        # KeySpec works as for GenerateDataKey, and so does an alias.
        self.keyd.call("CreateAlias", {"AliasName": "alias/batch", "TargetKeyId": key_id})
        out = self.batch({"KeyId": "alias/batch", "KeySpec": "AES_128",
                          "EncryptionContexts": [{}]})
        self.assertEqual(len(base64.b64decode(out["DataKeys"][0]["Plaintext"])), 16)

    def test_bad_batches_get_aws_errors(self):
        key_id = self.create_key()
        good = {"KeyId": key_id, "NumberOfBytes": 32, "EncryptionContexts": [{"a": "b"}]}
        for change, want in [
                ({"EncryptionContexts": None}, "ValidationException"),
                ({"EncryptionContexts": []}, "ValidationException"),
                ({"EncryptionContexts": [{}] * 257}, "ValidationException"),
                ({"EncryptionContexts": {"a": "b"}}, "SerializationException"),
                ({"EncryptionContexts": ["a"]}, "SerializationException"),
                ({"EncryptionContexts": [{"a": 1}]}, "SerializationException"),
                ({"NumberOfBytes": None}, "ValidationException"),
                ({"NumberOfBytes": 0}, "ValidationException"),
                ({"KeySpec": "AES_256"}, "ValidationException"),  # both
                ({"KeyId": "alias/missing"}, "NotFoundException")]:
            body = dict(good, **change)
            body = {k: v for k, v in body.items() if v is not None}
            self.assertKmsError(want, self.batch, body)
        self.assertEqual(len(self.batch(dict(good, EncryptionContexts=[{}] * 256))["DataKeys"]),
                         256)
        self.keyd.call("DisableKey", {"KeyId": key_id})
        self.assertKmsError("DisabledException", self.batch, good)

    def test_the_policy_governs_it_as_kms_generate_data_key(self):
        key_id = self.create_key()
        policy = json.loads(self.keyd.call("GetKeyPolicy", {"KeyId": key_id})["Policy"])
        policy["Statement"].append({"Effect": "Deny", "Principal": {"Local": f"uid:{os.getuid()}"},
                                    "Action": "kms:GenerateDataKey", "Resource": "*"})
        self.keyd.call("PutKeyPolicy", {"KeyId": key_id, "Policy": json.dumps(policy)})
        self.assertKmsError("AccessDeniedException", self.keyd.call, "GenerateDataKey",
                            {"KeyId": key_id, "KeySpec": "AES_256"})
        self.assertKmsError("AccessDeniedException", self.batch,
                            {"KeyId": key_id, "KeySpec": "AES_256",
                             "EncryptionContexts": [{}]})

    def test_one_audit_record_names_every_context_and_no_secret(self):
        key_id = self.create_key()
        contexts = [{"file": str(i)} for i in range(3)]
        out = self.batch({"KeyId": key_id, "KeySpec": "AES_256", "EncryptionContexts": contexts})
        with open(os.path.join(self.keyd.data_dir, "audit.log")) as f:
            raw = f.read()
        lines = [json.loads(l) for l in raw.splitlines()]
        self.assertEqual([l["operation"] for l in lines],
                         ["CreateKey", "EnvelopeKeyService.GenerateDataKeys"])
        self.assertEqual(lines[1]["encryption_contexts"], contexts)
        self.assertEqual(lines[1]["key_id"], key_id)
        self.assertEqual(lines[1]["key_version"], 1)
        for key in out["DataKeys"]:
            self.assertNotIn(key["Plaintext"], raw)
            self.assertNotIn(key["CiphertextBlob"], raw)


class ReEncryptBatchTest(KeydTestCase):
    """The EnvelopeKeyService.ReEncryptBatch extension: ReEncrypt for many
    blobs in one request, each item pinned, authorised, answered and audited
    on its own; a malformed request fails whole."""

    def batch(self, body):
        return self.keyd.call("ReEncryptBatch", body, prefix="EnvelopeKeyService")

    def encrypt(self, key_id, context, plaintext=b"a data key of 32 bytes, exactly!"):
        return self.keyd.call("Encrypt", {"KeyId": key_id, "Plaintext": b64(plaintext),
                                          "EncryptionContext": context})["CiphertextBlob"]

    def item(self, blob, source, context, dest_context=None):
        return {"CiphertextBlob": blob, "SourceKeyId": source,
                "SourceEncryptionContext": context,
                "DestinationEncryptionContext": context if dest_context is None else dest_context}

    def audit(self):
        with open(os.path.join(self.keyd.data_dir, "audit.log")) as f:
            raw = f.read()
        return raw, [json.loads(l) for l in raw.splitlines()]

    def test_each_item_is_a_reencrypt_of_its_own(self):
        a, b, dest = self.create_key(), self.create_key(), self.create_key()
        contexts = [{"volume": "v", "file": f"{i:032x}"} for i in range(6)]
        plaintexts = [os.urandom(32) for _ in contexts]
        blobs = [self.encrypt(a if i % 2 == 0 else b, c, p)
                 for i, (c, p) in enumerate(zip(contexts, plaintexts))]
        # Mixed source keys, each item pinned to its own, and one item moved
        # to another context on the way.
        items = [self.item(blob, a if i % 2 == 0 else b, c)
                 for i, (blob, c) in enumerate(zip(blobs, contexts))]
        items[5]["DestinationEncryptionContext"] = {"moved": "yes"}
        out = self.batch({"DestinationKeyId": dest, "Items": items})
        self.assertTrue(out["KeyId"].endswith(":key/" + dest), out["KeyId"])
        results = out["Results"]
        self.assertEqual(len(results), len(items))
        for i, r in enumerate(results):
            self.assertNotIn("ErrorType", r, r)
            self.assertTrue(r["SourceKeyId"].endswith(":key/" + (a if i % 2 == 0 else b)))
            context = {"moved": "yes"} if i == 5 else contexts[i]
            got = self.keyd.call("Decrypt", {"CiphertextBlob": r["CiphertextBlob"], "KeyId": dest,
                                             "EncryptionContext": context})
            self.assertEqual(base64.b64decode(got["Plaintext"]), plaintexts[i])
        # An alias names the destination as it would for ReEncrypt.
        self.keyd.call("CreateAlias", {"AliasName": "alias/dest", "TargetKeyId": dest})
        out = self.batch({"DestinationKeyId": "alias/dest", "Items": items[:1]})
        self.assertIn("CiphertextBlob", out["Results"][0])

    def test_a_bad_item_fails_alone(self):
        a, other, dest = self.create_key(), self.create_key(), self.create_key()
        ctx = {"file": "1"}
        good = self.encrypt(a, ctx)
        under_other = self.encrypt(other, ctx)
        items = [
            self.item(good, a, ctx),
            self.item(under_other, a, ctx),                  # mixed keys: not under its pin
            self.item(good, a, {"file": "2"}),               # wrong context
            self.item(b64(b"EK\x01" + bytes(60)), a, ctx),   # not a blob of a known key
            self.item(b64(b"garbage"), a, ctx),              # not a blob at all
            self.item(good, "alias/missing", ctx),           # a pin that names nothing
            self.item(good, a, ctx),
        ]
        results = self.batch({"DestinationKeyId": dest, "Items": items})["Results"]
        self.assertEqual([r.get("ErrorType") for r in results],
                         [None, "IncorrectKeyException", "InvalidCiphertextException",
                          "NotFoundException", "InvalidCiphertextException",
                          "NotFoundException", None])
        for r in results:
            if "ErrorType" in r:
                self.assertTrue(r["ErrorMessage"], r)
                self.assertNotIn("CiphertextBlob", r)

    def test_a_retired_version_fails_its_item(self):
        a, dest = self.create_key(), self.create_key()
        old = self.encrypt(a, {})
        self.keyd.call("RotateKeyOnDemand", {"KeyId": a})
        new = self.encrypt(a, {})
        self.keyd.call("RetireKeyVersions", {"KeyId": a, "BelowVersion": 2},
                       prefix="EnvelopeKeyService")
        results = self.batch({"DestinationKeyId": dest,
                              "Items": [self.item(old, a, {}), self.item(new, a, {})]})["Results"]
        self.assertEqual(results[0]["ErrorType"], "KMSInvalidStateException")
        self.assertIn("retired", results[0]["ErrorMessage"])
        self.assertIn("CiphertextBlob", results[1])

    def test_malformed_batches_fail_whole(self):
        a, dest = self.create_key(), self.create_key()
        blob = self.encrypt(a, {})
        one = self.item(blob, a, {})
        good = {"DestinationKeyId": dest, "Items": [one]}
        for change, want in [
                ({"Items": None}, "ValidationException"),
                ({"Items": []}, "ValidationException"),
                ({"Items": [one] * 129}, "ValidationException"),
                ({"Items": one}, "SerializationException"),
                ({"Items": ["x"]}, "SerializationException"),
                ({"Items": [one, dict(one, CiphertextBlob=None)]}, "ValidationException"),
                ({"Items": [dict(one, SourceKeyId=None)]}, "ValidationException"),
                ({"Items": [dict(one, SourceKeyId="")]}, "ValidationException"),
                ({"Items": [dict(one, SourceKeyId=7)]}, "SerializationException"),
                ({"Items": [dict(one, CiphertextBlob="!!not base64")]}, "SerializationException"),
                ({"Items": [dict(one, CiphertextBlob=b64(bytes(6145)))]}, "ValidationException"),
                ({"Items": [dict(one, SourceEncryptionContext={"a": 1})]},
                 "SerializationException"),
                ({"Items": [dict(one, DestinationEncryptionContext=["a"])]},
                 "SerializationException"),
                ({"DestinationKeyId": None}, "ValidationException"),
                ({"DestinationKeyId": "alias/missing"}, "NotFoundException")]:
            body = dict(good, **change)
            body = {k: v for k, v in body.items() if v is not None}
            for item in body.get("Items", []) if isinstance(body.get("Items"), list) else []:
                if isinstance(item, dict):
                    for k in [k for k, v in item.items() if v is None]:
                        del item[k]
            with self.subTest(change=str(change)[:80]):
                self.assertKmsError(want, self.batch, body)
        # A malformed item names its place in the batch.
        e = self.assertKmsError("ValidationException", self.batch,
                                dict(good, Items=[one, {"CiphertextBlob": blob}]))
        self.assertIn("Items[1]", e.message)
        # 128 items is the limit, not past it; a body over 64 KiB is refused
        # before it is parsed.
        self.assertEqual(len(self.batch(dict(good, Items=[one] * 128))["Results"]), 128)
        status, out = self.keyd.raw("EnvelopeKeyService.ReEncryptBatch",
                                    dict(good, Items=[dict(one, Pad="x" * 70000)]))
        self.assertEqual(status, 413, out)
        # Nothing was re-wrapped by a malformed request: one error record each,
        # no item records.
        _, lines = self.audit()
        batch_lines = [l for l in lines if l["operation"] == "EnvelopeKeyService.ReEncryptBatch"]
        self.assertTrue(all("batch_item" not in l for l in batch_lines
                            if l["result"] == "error"), batch_lines)

    def test_the_destination_is_checked_once_and_fails_the_request(self):
        a, dest = self.create_key(), self.create_key()
        blob = self.encrypt(a, {})
        self.keyd.call("DisableKey", {"KeyId": dest})
        self.assertKmsError("DisabledException", self.batch,
                            {"DestinationKeyId": dest, "Items": [self.item(blob, a, {})]})
        self.keyd.call("EnableKey", {"KeyId": dest})
        self.deny(dest, "kms:ReEncryptTo")
        self.assertKmsError("AccessDeniedException", self.batch,
                            {"DestinationKeyId": dest, "Items": [self.item(blob, a, {})]})

    def deny(self, key_id, action):
        policy = json.loads(self.keyd.call("GetKeyPolicy", {"KeyId": key_id})["Policy"])
        policy["Statement"].append({"Effect": "Deny", "Principal": {"Local": f"uid:{os.getuid()}"},
                                    "Action": action, "Resource": "*"})
        self.keyd.call("PutKeyPolicy", {"KeyId": key_id, "Policy": json.dumps(policy)})

    def test_the_policy_is_checked_per_item(self):
        allowed, denied, no_decrypt, dest = (self.create_key() for _ in range(4))
        self.deny(denied, "kms:ReEncryptFrom")
        # ReEncrypt from a key is refused when kms:Decrypt on it is denied
        # (docs/KEYSERVICE.md): so is its batch item.
        self.deny(no_decrypt, "kms:Decrypt")
        items = [self.item(self.encrypt(k, {}), k, {}) for k in (allowed, denied, no_decrypt, allowed)]
        results = self.batch({"DestinationKeyId": dest, "Items": items})["Results"]
        self.assertEqual([r.get("ErrorType") for r in results],
                         [None, "AccessDeniedException", "AccessDeniedException", None])
        self.assertIn("kms:ReEncryptFrom", results[1]["ErrorMessage"])
        self.assertIn("kms:Decrypt", results[2]["ErrorMessage"])

    def test_one_audit_record_per_item_and_no_secret(self):
        a, other, dest = self.create_key(), self.create_key(), self.create_key()
        contexts = [{"file": str(i)} for i in range(3)]
        items = [self.item(self.encrypt(a, c), a, c) for c in contexts]
        items[1] = self.item(self.encrypt(other, contexts[1]), a, contexts[1])
        _, before = self.audit()
        out = self.batch({"DestinationKeyId": dest, "Items": items})
        raw, lines = self.audit()
        new = lines[len(before):]
        self.assertEqual([l["operation"] for l in new], ["EnvelopeKeyService.ReEncryptBatch"] * 3)
        self.assertEqual([l["batch_item"] for l in new], [0, 1, 2])
        self.assertEqual({l["batch_size"] for l in new}, {3})
        self.assertEqual([l["result"] for l in new], ["ok", "error", "ok"])
        self.assertEqual(new[1]["error_type"], "IncorrectKeyException")
        for i in (0, 2):
            self.assertEqual(new[i]["key_id"], dest)
            self.assertEqual(new[i]["key_version"], 1)
            self.assertEqual(new[i]["source_key_id"], a)
            self.assertEqual(new[i]["source_key_version"], 1)
            self.assertEqual(new[i]["encryption_context"], contexts[i])
            self.assertEqual(new[i]["source_encryption_context"], contexts[i])
        for item in items:
            self.assertNotIn(item["CiphertextBlob"], raw)
        for r in out["Results"]:
            if "CiphertextBlob" in r:
                self.assertNotIn(r["CiphertextBlob"], raw)
        # The chain holds across the lines one write appended.
        v = self.keyd.call("VerifyAudit", {}, prefix="EnvelopeKeyService")
        self.assertTrue(v["Ok"], v)


class EnvelopectlTest(KeydTestCase):
    """The project's own client end to end: envelopectl over KmsClient."""

    def ctl(self, *args, **kw):
        return self.keyd.envelopectl(*args, **kw)

    def describe(self, key):
        out = json.loads(self.ctl("--json", "key", "describe", key).stdout)
        return out.get("KeyMetadata", out)

    def test_key_lifecycle(self):
        key_id = self.ctl("key", "create", "--description", "ctl key").stdout.strip()
        self.assertRegex(key_id, r"^[0-9a-f-]{36}$")
        meta = self.describe(key_id)
        self.assertEqual(meta["Description"], "ctl key")
        self.ctl("key", "alias", "create", "alias/ctl", key_id)
        self.assertIn("alias/ctl", self.ctl("key", "alias", "list").stdout)
        self.assertIn(key_id, self.ctl("key", "describe", "alias/ctl").stdout)
        # Versions count from 1; rotate prints the new one.
        self.assertIn("2", self.ctl("key", "rotate", key_id).stdout)
        self.assertIn("3", self.ctl("key", "rotate", key_id).stdout)
        rotations = self.ctl("key", "rotations", key_id).stdout
        self.assertIn("ON_DEMAND", rotations)
        retired = self.ctl("key", "retire", key_id, "--below", "3").stdout
        self.assertIn("1", retired)
        self.assertIn("2", retired)
        meta = self.describe(key_id)
        self.assertEqual((meta["CurrentKeyVersion"], meta["MinKeyVersion"]), (3, 3))
        self.ctl("key", "auto-rotation", "enable", key_id, "--period-days", "90")
        self.assertIn("90", self.ctl("key", "auto-rotation", "status", key_id).stdout)
        listing = self.ctl("key", "list").stdout
        self.assertIn(key_id, listing)
        self.assertIn("Enabled", listing)
        self.ctl("key", "disable", key_id)
        self.assertKmsError("DisabledException", self.keyd.call, "Encrypt",
                            {"KeyId": key_id, "Plaintext": b64(b"x")})
        self.ctl("key", "enable", key_id)
        self.ctl("key", "schedule-deletion", key_id, "--days", "7")
        self.assertIn("PendingDeletion", self.ctl("key", "describe", key_id).stdout)
        self.ctl("key", "cancel-deletion", key_id)
        self.assertIn("Disabled", self.ctl("key", "describe", key_id).stdout)
        policy = json.loads(self.ctl("key", "policy", "get", key_id).stdout)
        self.assertEqual(policy["Statement"][0]["Action"], "kms:*")

    def test_errors_are_one_line_and_exit_1(self):
        r = self.ctl("key", "describe", "alias/none", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("NotFoundException", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)
        r = self.ctl("key", "frobnicate", check=False)
        self.assertEqual(r.returncode, 2)

    def test_service_down_is_a_clear_error(self):
        self.keyd.stop()
        r = self.ctl("key", "list", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot reach the key service", r.stderr)

    def test_endpoint_from_environment(self):
        key_id = self.create_key()
        env = dict(os.environ, ENVELOPE_KMS_ENDPOINT="unix:" + self.keyd.socket)
        r = subprocess.run([ENVELOPECTL, "key", "describe", key_id], capture_output=True,
                           text=True, env=env, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(key_id, r.stdout)


class AuditTest(KeydTestCase):
    def audit_lines(self):
        with open(os.path.join(self.keyd.data_dir, "audit.log")) as f:
            return f.read().splitlines()

    def test_every_request_is_recorded_without_secrets(self):
        key_id = self.create_key()
        out = self.keyd.call("GenerateDataKey", {"KeyId": key_id, "KeySpec": "AES_256",
                                                 "EncryptionContext": {"app": "billing"}})
        self.assertKmsError("NotFoundException", self.keyd.call, "DescribeKey",
                            {"KeyId": "alias/nope"})
        lines = [json.loads(l) for l in self.audit_lines()]
        ops = [l["operation"] for l in lines]
        self.assertEqual(ops, ["CreateKey", "GenerateDataKey", "DescribeKey"])
        gdk = lines[1]
        self.assertEqual(gdk["key_id"], key_id)
        self.assertEqual(gdk["key_version"], 1)
        self.assertEqual(gdk["encryption_context"], {"app": "billing"})
        self.assertEqual(gdk["principal"]["uid"], os.getuid())
        self.assertEqual(gdk["principal"]["pid"], os.getpid())
        self.assertEqual(lines[2]["result"], "error")
        self.assertEqual(lines[2]["error_type"], "NotFoundException")
        raw = "\n".join(self.audit_lines())
        self.assertNotIn(out["Plaintext"], raw)
        self.assertNotIn(out["CiphertextBlob"], raw)

    def test_envelopectl_audit_verify_names_an_edited_or_deleted_line(self):
        key_id = self.create_key()
        for _ in range(5):
            self.keyd.call("Encrypt", {"KeyId": key_id, "Plaintext": b64(b"x")})
        r = self.keyd.envelopectl("audit", "verify")
        self.assertIn("OK", r.stdout)
        path = os.path.join(self.keyd.data_dir, "audit.log")
        lines = self.audit_lines()
        edited = list(lines)
        edited[3] = edited[3].replace('"Encrypt"', '"Decrypt"')
        with open(path, "w") as f:
            f.write("\n".join(edited) + "\n")
        r = self.keyd.envelopectl("audit", "verify", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("line 4", r.stdout + r.stderr)
        with open(path, "w") as f:
            f.write("\n".join(lines[:2] + lines[3:]) + "\n")
        r = self.keyd.envelopectl("audit", "verify", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("line 3", r.stdout + r.stderr)
        with open(path, "w") as f:
            f.write("\n".join(lines[:-1]) + "\n")
        r = self.keyd.envelopectl("audit", "verify", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("deleted", r.stdout + r.stderr)

    def test_unwritable_audit_log_fails_closed(self):
        key_id = self.create_key()
        # Make the log unwritable under the running daemon by replacing it
        # with a full device: every request must now fail.
        path = os.path.join(self.keyd.data_dir, "audit.log")
        self.keyd.stop()
        os.remove(path)
        os.symlink("/dev/full", path)
        try:
            self.keyd.start()
        except RuntimeError:
            self.skipTest("daemon refuses /dev/full as audit log")
        status, out = self.keyd.raw("TrentService.Encrypt",
                                    {"KeyId": key_id, "Plaintext": b64(b"x")})
        self.assertEqual(status, 500)
        self.assertEqual(out["__type"], "KMSInternalException")
        self.assertKmsError("KMSInternalException", self.keyd.call, "CreateKey", {})


class ScheduleTest(KeydTestCase):
    DAY = 86400

    def test_automatic_rotation_catches_up_at_start_and_fires_while_running(self):
        key_id = self.create_key()
        self.keyd.call("EnableKeyRotation", {"KeyId": key_id, "RotationPeriodInDays": 90})
        self.keyd.stop()
        # 91 days later: the rotation that fell due is made at start.
        self.keyd.start(["--clock-offset-seconds", str(91 * self.DAY)])
        meta = self.keyd.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]
        self.assertEqual(meta["CurrentKeyVersion"], 2)
        self.keyd.stop()
        # 3 s before the next one: it fires while the daemon runs.
        self.keyd.start(["--clock-offset-seconds", str(91 * self.DAY + 90 * self.DAY - 3),
                         "--scheduler-interval-seconds", "1"])
        self.assertEqual(self.keyd.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]
                         ["CurrentKeyVersion"], 2)
        deadline = time.time() + 15
        while time.time() < deadline:
            meta = self.keyd.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]
            if meta["CurrentKeyVersion"] == 3:
                break
            time.sleep(0.5)
        self.assertEqual(meta["CurrentKeyVersion"], 3)
        types = [r["RotationType"] for r in
                 self.keyd.call("ListKeyRotations", {"KeyId": key_id})["Rotations"]]
        self.assertEqual(types, ["AUTOMATIC", "AUTOMATIC"])

    def test_scheduled_deletion_takes_effect_when_the_window_passes(self):
        key_id = self.create_key()
        keep = self.create_key()
        self.keyd.call("CreateAlias", {"AliasName": "alias/doomed", "TargetKeyId": key_id})
        self.keyd.call("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": 7})
        self.keyd.stop()
        self.keyd.start(["--clock-offset-seconds", str(7 * self.DAY - 6),
                         "--scheduler-interval-seconds", "1"])
        self.keyd.call("DescribeKey", {"KeyId": key_id})
        # Due 6 s after the start: poll (a loaded machine may be late).
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                self.keyd.call("DescribeKey", {"KeyId": key_id})
            except KmsError:
                break
            time.sleep(0.5)
        self.assertKmsError("NotFoundException", self.keyd.call, "DescribeKey", {"KeyId": key_id})
        self.assertKmsError("NotFoundException", self.keyd.call, "DescribeKey",
                            {"KeyId": "alias/doomed"})
        self.keyd.call("DescribeKey", {"KeyId": keep})


class RootKeyTest(unittest.TestCase):
    """The root key from a passphrase (scrypt), read from a file descriptor."""

    def start_with_passphrase(self, keyd, passphrase):
        r, w = os.pipe()
        os.write(w, passphrase + b"\n")
        os.close(w)
        try:
            return keyd.start(["--passphrase-fd", str(r)], pass_fds=(r,))
        finally:
            os.close(r)

    def test_passphrase_root_key(self):
        keyd = Keyd()
        try:
            self.start_with_passphrase(keyd, b"correct horse battery staple")
            key_id = keyd.call("CreateKey", {})["KeyMetadata"]["KeyId"]
            blob = keyd.call("Encrypt", {"KeyId": key_id, "Plaintext": b64(b"p")})["CiphertextBlob"]
            keyd.stop()
            self.assertFalse(os.path.exists(os.path.join(keyd.data_dir, "root.key")))
            with self.assertRaises(RuntimeError) as cm:
                self.start_with_passphrase(keyd, b"wrong passphrase")
            self.assertIn("does not open this data directory", str(cm.exception))
            # A key file is refused for a passphrase data directory.
            with self.assertRaises(RuntimeError) as cm:
                keyd.start()
            self.assertIn("passphrase", str(cm.exception))
            self.start_with_passphrase(keyd, b"correct horse battery staple")
            out = keyd.call("Decrypt", {"CiphertextBlob": blob})
            self.assertEqual(base64.b64decode(out["Plaintext"]), b"p")
        finally:
            keyd.cleanup()

    def test_passphrase_prompt_without_foreground(self):
        # Without -f the daemon leaves its terminal: the passphrase is asked
        # for before that, and a second start with another one is refused.
        keyd = Keyd()
        try:
            shown, code = keyd.start_detached(["--passphrase-prompt"],
                                              [("passphrase:", "correct horse")])
            self.assertEqual(code, 0, shown)
            self.assertNotIn("correct horse", shown)  # echo was off
            keyd.envelopectl("key", "create")
            keyd.stop_detached()
            shown, code = keyd.start_detached(["--passphrase-prompt"],
                                              [("passphrase:", "wrong horse")])
            self.assertNotEqual(code, 0)
            self.assertIn("does not open this data directory", shown)
            shown, code = keyd.start_detached(["--passphrase-prompt"],
                                              [("passphrase:", "correct horse")])
            self.assertEqual(code, 0, shown)
            self.assertEqual(len(keyd.call("ListKeys", {})["Keys"]), 1)
        finally:
            keyd.cleanup()

    def test_root_key_file_must_be_private(self):
        keyd = Keyd()
        try:
            keyd.start()
            keyd.stop()
            os.chmod(os.path.join(keyd.data_dir, "root.key"), 0o644)
            with self.assertRaises(RuntimeError) as cm:
                keyd.start()
            self.assertIn("chmod 600", str(cm.exception))
        finally:
            keyd.cleanup()


class CrashTest(KeydTestCase):
    def test_kill9_during_creates_and_rotations_loses_nothing_acknowledged(self):
        acked = {}  # key id -> highest acknowledged version
        stop = threading.Event()
        errors = []

        def worker(seed):
            rng = random.Random(seed)
            while not stop.is_set():
                try:
                    if not acked or rng.random() < 0.4:
                        kid = self.keyd.call("CreateKey", {})["KeyMetadata"]["KeyId"]
                        acked[kid] = max(acked.get(kid, 0), 1)
                    else:
                        kid = rng.choice(list(acked))
                        self.keyd.call("RotateKeyOnDemand", {"KeyId": kid})
                        # The version this rotation made is at least this:
                        acked[kid] = acked[kid] + 1
                except Exception as e:  # the daemon died mid-request
                    errors.append(e)
                    return

        for round_ in range(3):
            stop.clear()
            errors.clear()
            before = {k: v for k, v in acked.items()}
            threads = [threading.Thread(target=worker, args=(round_ * 10 + i,)) for i in range(2)]
            for t in threads:
                t.start()
            time.sleep(1.0 + random.random())
            self.keyd.kill9()
            stop.set()
            for t in threads:
                t.join()
            self.assertGreater(len(acked), len(before) - 1)
            self.keyd.start()
            for kid, version in acked.items():
                meta = self.keyd.call("DescribeKey", {"KeyId": kid})["KeyMetadata"]
                self.assertGreaterEqual(meta["CurrentKeyVersion"], version, kid)
                # Every retained version has its material: encrypt with the
                # newest, decrypt works; the store loaded without complaint.
                blob = self.keyd.call("Encrypt", {"KeyId": kid, "Plaintext": b64(b"x")})
                self.keyd.call("Decrypt", {"CiphertextBlob": blob["CiphertextBlob"]})
        self.assertGreater(len(acked), 3)


if __name__ == "__main__":
    unittest.main()
