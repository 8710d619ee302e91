"""Grants against the real envelope-keyd (issue 16): two principals, each a
boto3 client with its own access key over SigV4 (Debian's boto3 knows every
grant operation). The owner creates a key and grants; the reader has no
policy access and gets exactly what the grant gives, until it is retired
or revoked, which takes effect with the next request."""
import base64
import contextlib
import json
import os
import unittest

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from harness import Keyd

READER_KEY_ID = "AKIAENVELOPEREADER01"
READER_SECRET = "envelope/test/reader/secret/0001/abcdefg"


class GrantTest(unittest.TestCase):
    def setUp(self):
        self.keyd = Keyd(tcp=True)
        with open(self.keyd.access_keys, "a") as f:
            f.write(f"{READER_KEY_ID} {READER_SECRET} reader\n")
        self.start()
        self.key_id = self.owner.create_key(Description="grants")["KeyMetadata"]["KeyId"]
        self.blob = {f: self.owner.encrypt(KeyId=self.key_id, Plaintext=f"secret {f}".encode(),
                                           EncryptionContext={"file": f})["CiphertextBlob"]
                     for f in ("a", "b")}

    def start(self):
        self.keyd.start()
        self.owner = self.keyd.boto3_client()
        self.reader = boto3.client(
            "kms", endpoint_url=f"http://127.0.0.1:{self.keyd.port}", region_name="us-east-1",
            aws_access_key_id=READER_KEY_ID, aws_secret_access_key=READER_SECRET,
            config=Config(retries={"max_attempts": 1}))

    def tearDown(self):
        self.keyd.cleanup()

    @contextlib.contextmanager
    def raises(self, code):
        """The block fails with AWS error type `code` (boto3 models only
        some as exception classes; AccessDeniedException is not one)."""
        with self.assertRaises(ClientError) as cm:
            yield
        self.assertEqual(cm.exception.response["Error"]["Code"], code,
                         cm.exception.response["Error"].get("Message"))

    def decrypt(self, client, f, context=None, **kw):
        return client.decrypt(CiphertextBlob=self.blob[f],
                              EncryptionContext=context or {"file": f}, **kw)["Plaintext"]

    def audit(self):
        with open(os.path.join(self.keyd.data_dir, "audit.log")) as f:
            return [json.loads(line) for line in f if line.strip()]

    def test_constrained_grant_opens_exactly_one_context_until_retired(self):
        r, o = self.reader, self.owner
        with self.raises("AccessDeniedException"):
            self.decrypt(r, "a")
        g = o.create_grant(KeyId=self.key_id, GranteePrincipal="key:reader",
                           RetiringPrincipal="key:reader", Name="share-a",
                           Operations=["Decrypt", "DescribeKey"],
                           Constraints={"EncryptionContextEquals": {"FILE": "a"}})
        self.assertRegex(g["GrantId"], "^[0-9a-f]{64}$")
        # Effective at once, for the constrained context only (keys of a
        # constraint ignore case, values do not).
        self.assertEqual(self.decrypt(r, "a"), b"secret a")
        with self.raises("AccessDeniedException"):
            self.decrypt(r, "b")
        with self.raises("AccessDeniedException"):
            r.encrypt(KeyId=self.key_id, Plaintext=b"x", EncryptionContext={"file": "a"})
        with self.raises("AccessDeniedException"):
            r.generate_data_key(KeyId=self.key_id, KeySpec="AES_256",
                                EncryptionContext={"file": "a"})
        # DescribeKey is not constrained; ListGrants is not grantable.
        self.assertEqual(r.describe_key(KeyId=self.key_id)["KeyMetadata"]["KeyId"], self.key_id)
        with self.raises("AccessDeniedException"):
            r.list_grants(KeyId=self.key_id)
        # Name idempotency: the same request answers the same grant, with a
        # new token; a different request under the name is a new grant.
        again = o.create_grant(KeyId=self.key_id, GranteePrincipal="key:reader",
                               RetiringPrincipal="key:reader", Name="share-a",
                               Operations=["DescribeKey", "Decrypt"],
                               Constraints={"EncryptionContextEquals": {"FILE": "a"}})
        self.assertEqual(again["GrantId"], g["GrantId"])
        self.assertNotEqual(again["GrantToken"], g["GrantToken"])
        listed = o.list_grants(KeyId=self.key_id)
        self.assertEqual(len(listed["Grants"]), 1)
        entry = listed["Grants"][0]
        self.assertEqual(entry["GrantId"], g["GrantId"])
        self.assertEqual(entry["GranteePrincipal"], "key:reader")
        self.assertEqual(entry["RetiringPrincipal"], "key:reader")
        self.assertEqual(entry["Name"], "share-a")
        self.assertEqual(sorted(entry["Operations"]), ["Decrypt", "DescribeKey"])
        self.assertEqual(entry["Constraints"], {"EncryptionContextEquals": {"FILE": "a"}})
        self.assertTrue(entry["KeyId"].endswith(self.key_id))
        self.assertIn("IssuingAccount", entry)
        self.assertEqual(
            o.list_grants(KeyId=self.key_id, GranteePrincipal="key:other")["Grants"], [])
        # Grant tokens are accepted on cryptographic operations; a token this
        # service did not issue is refused.
        self.assertEqual(self.decrypt(r, "a", GrantTokens=[g["GrantToken"]]), b"secret a")
        with self.raises("InvalidGrantTokenException"):
            self.decrypt(r, "a", GrantTokens=["not-a-token"])
        # The reader lists what it may retire; nobody lists another's.
        mine = r.list_retirable_grants(RetiringPrincipal="key:reader")["Grants"]
        self.assertEqual([x["GrantId"] for x in mine], [g["GrantId"]])
        with self.raises("AccessDeniedException"):
            o.list_retirable_grants(RetiringPrincipal="key:reader")
        # Every use through the grant is audited with its id.
        uses = [a for a in self.audit() if a["operation"] == "Decrypt"
                and a.get("principal", {}).get("name") == "key:reader" and a["result"] == "ok"]
        self.assertTrue(uses)
        self.assertTrue(all(a["grant_ids"] == [g["GrantId"]] for a in uses))
        # Retired by token: the next request is refused.
        r.retire_grant(GrantToken=g["GrantToken"])
        with self.raises("AccessDeniedException"):
            self.decrypt(r, "a")
        self.assertEqual(o.list_grants(KeyId=self.key_id)["Grants"], [])
        with self.raises("NotFoundException"):
            r.retire_grant(GrantToken=g["GrantToken"])

    def test_subset_grant_revoked_takes_effect_at_once(self):
        r, o = self.reader, self.owner
        g = o.create_grant(KeyId=self.key_id, GranteePrincipal="key:reader",
                           Operations=["GenerateDataKey", "Decrypt"],
                           Constraints={"EncryptionContextSubset": {"volume": "v1"}})
        dk = r.generate_data_key(KeyId=self.key_id, KeySpec="AES_256",
                                 EncryptionContext={"volume": "v1", "file": "7"})
        back = r.decrypt(CiphertextBlob=dk["CiphertextBlob"],
                         EncryptionContext={"volume": "v1", "file": "7"})["Plaintext"]
        self.assertEqual(back, dk["Plaintext"])
        with self.raises("AccessDeniedException"):
            r.generate_data_key(KeyId=self.key_id, KeySpec="AES_256",
                                EncryptionContext={"volume": "v2"})
        # Only the key's administrators revoke; the grantee may not.
        with self.raises("AccessDeniedException"):
            r.revoke_grant(KeyId=self.key_id, GrantId=g["GrantId"])
        # Nor retire: no retiring principal, and RetireGrant not granted.
        with self.raises("AccessDeniedException"):
            r.retire_grant(KeyId=self.key_id, GrantId=g["GrantId"])
        o.revoke_grant(KeyId=self.key_id, GrantId=g["GrantId"])
        with self.raises("AccessDeniedException"):
            r.decrypt(CiphertextBlob=dk["CiphertextBlob"],
                      EncryptionContext={"volume": "v1", "file": "7"})
        with self.raises("NotFoundException"):
            o.revoke_grant(KeyId=self.key_id, GrantId=g["GrantId"])

    def test_grants_made_through_grants_stay_within_them(self):
        r, o = self.reader, self.owner
        o.create_grant(KeyId=self.key_id, GranteePrincipal="key:reader",
                       Operations=["CreateGrant", "Decrypt"],
                       Constraints={"EncryptionContextSubset": {"file": "a"}})
        # Narrower or equal: allowed. Wider (no constraint, or another
        # operation): refused.
        r.create_grant(KeyId=self.key_id, GranteePrincipal="key:ci-bot",
                       Operations=["Decrypt"],
                       Constraints={"EncryptionContextEquals": {"file": "a"}})
        with self.raises("AccessDeniedException"):
            r.create_grant(KeyId=self.key_id, GranteePrincipal="key:ci-bot",
                           Operations=["Decrypt"])
        with self.raises("AccessDeniedException"):
            r.create_grant(KeyId=self.key_id, GranteePrincipal="key:ci-bot",
                           Operations=["Encrypt"],
                           Constraints={"EncryptionContextSubset": {"file": "a"}})

    def test_an_explicit_deny_in_the_policy_beats_a_grant(self):
        r, o = self.reader, self.owner
        o.create_grant(KeyId=self.key_id, GranteePrincipal="key:reader", Operations=["Decrypt"])
        self.assertEqual(self.decrypt(r, "b"), b"secret b")
        policy = json.loads(o.get_key_policy(KeyId=self.key_id, PolicyName="default")["Policy"])
        policy["Statement"].append({"Effect": "Deny", "Principal": {"Local": "key:reader"},
                                    "Action": "kms:Decrypt", "Resource": "*"})
        o.put_key_policy(KeyId=self.key_id, PolicyName="default", Policy=json.dumps(policy))
        with self.raises("AccessDeniedException"):
            self.decrypt(r, "b")

    def test_aws_errors(self):
        o = self.owner
        cases = [
            ("ValidationException", dict(KeyId=self.key_id, GranteePrincipal="key:reader",
                                         Operations=["Frobnicate"])),
            ("ValidationException", dict(KeyId=self.key_id, GranteePrincipal="*",
                                         Operations=["Decrypt"])),
            ("ValidationException", dict(KeyId=self.key_id, GranteePrincipal="key:reader",
                                         Operations=["Sign"],
                                         Constraints={"EncryptionContextSubset": {"a": "b"}})),
            ("ValidationException", dict(KeyId=self.key_id, GranteePrincipal="key:reader",
                                         Operations=["Decrypt"], Name="bad name!")),
            ("NotFoundException", dict(KeyId="00000000-0000-4000-8000-000000000000",
                                       GranteePrincipal="key:reader", Operations=["Decrypt"])),
            ("InvalidGrantTokenException", dict(KeyId=self.key_id, GranteePrincipal="key:reader",
                                                Operations=["Decrypt"], GrantTokens=["x"])),
        ]
        for error, kwargs in cases:
            with self.subTest(error=error, kwargs=kwargs):
                with self.raises(error):
                    o.create_grant(**kwargs)
        with self.raises("InvalidGrantIdException"):
            o.list_grants(KeyId=self.key_id, GrantId="zz")
        with self.raises("NotFoundException"):
            o.retire_grant(KeyId=self.key_id, GrantId="0" * 64)
        with self.raises("InvalidGrantTokenException"):
            o.retire_grant(GrantToken="egt1.bm90IGEgdG9rZW4=")
        # DryRun and Recipient (newer than Debian's boto3: hand-signed) are
        # refused before anything is done.
        status, out = self.keyd.signed_request(
            "CreateGrant", {"KeyId": self.key_id, "GranteePrincipal": "key:reader",
                            "Operations": ["Decrypt"], "DryRun": True})
        self.assertEqual((status, out["__type"]), (400, "UnsupportedOperationException"))
        self.assertEqual(o.list_grants(KeyId=self.key_id)["Grants"], [])
        status, out = self.keyd.signed_request(
            "Decrypt", {"CiphertextBlob": base64.b64encode(self.blob["a"]).decode(),
                        "EncryptionContext": {"file": "a"},
                        "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                                      "AttestationDocument": "ZG9j"}})
        self.assertEqual((status, out["__type"]), (400, "UnsupportedOperationException"))
        self.assertNotIn("Plaintext", out)
        # A disabled key takes no new grants (AWS's DisabledException).
        o.disable_key(KeyId=self.key_id)
        with self.raises("DisabledException"):
            o.create_grant(KeyId=self.key_id, GranteePrincipal="key:reader",
                           Operations=["Decrypt"])

    def test_grants_survive_a_restart(self):
        g = self.owner.create_grant(KeyId=self.key_id, GranteePrincipal="key:reader",
                                    Operations=["Decrypt"])
        self.keyd.stop()
        self.start()
        self.assertEqual(self.decrypt(self.reader, "a"), b"secret a")
        self.assertEqual([x["GrantId"] for x in
                          self.owner.list_grants(KeyId=self.key_id)["Grants"]], [g["GrantId"]])


if __name__ == "__main__":
    unittest.main()


class ConditionTest(GrantTest):
    """Key-policy conditions with the same two principals: the reader's
    statements hold only for the contexts, alias and numbers they name."""

    def put_policy(self, *statements):
        policy = json.loads(self.owner.get_key_policy(KeyId=self.key_id,
                                                      PolicyName="default")["Policy"])
        policy["Statement"].extend(statements)
        self.owner.put_key_policy(KeyId=self.key_id, PolicyName="default",
                                  Policy=json.dumps(policy))

    # The grant tests do not run again here.
    test_constrained_grant_opens_exactly_one_context_until_retired = None
    test_subset_grant_revoked_takes_effect_at_once = None
    test_grants_made_through_grants_stay_within_them = None
    test_an_explicit_deny_in_the_policy_beats_a_grant = None
    test_aws_errors = None
    test_grants_survive_a_restart = None

    def test_conditions_on_context_alias_and_numbers(self):
        r, o = self.reader, self.owner
        reader = {"Local": "key:reader"}
        self.put_policy(
            {"Effect": "Allow", "Principal": reader, "Action": "kms:Decrypt", "Resource": "*",
             "Condition": {"StringEquals": {"kms:EncryptionContext:file": "a"}}},
            {"Effect": "Allow", "Principal": reader,
             "Action": ["kms:Encrypt", "kms:CreateAlias"], "Resource": "*"},
            {"Effect": "Deny", "Principal": reader, "Action": "kms:Encrypt", "Resource": "*",
             "Condition": {"StringNotEquals": {"kms:RequestAlias": "alias/app"}}},
            {"Effect": "Deny", "Principal": "*", "Action": "kms:ScheduleKeyDeletion",
             "Resource": "*", "Condition": {
                 "NumericLessThanEquals": {"kms:ScheduleKeyDeletionPendingWindowInDays": 10}}})
        self.assertEqual(self.decrypt(r, "a"), b"secret a")
        with self.raises("AccessDeniedException"):
            self.decrypt(r, "b")
        # Encrypt only through the alias the Deny's condition names.
        with self.raises("AccessDeniedException"):
            r.encrypt(KeyId=self.key_id, Plaintext=b"x")
        r.create_alias(AliasName="alias/app", TargetKeyId=self.key_id)
        blob = r.encrypt(KeyId="alias/app", Plaintext=b"x",
                         EncryptionContext={"file": "a"})["CiphertextBlob"]
        self.assertEqual(r.decrypt(CiphertextBlob=blob, EncryptionContext={"file": "a"})
                         ["Plaintext"], b"x")
        # kms:RequestAlias is the alias of the key being authorised: a
        # ReEncrypt from alias/app to a key named by id does not carry the
        # source's alias to the destination (whose Deny then applies).
        dest = r.create_key()["KeyMetadata"]["KeyId"]
        r_policy = {"Effect": "Deny", "Principal": reader, "Action": "kms:ReEncryptTo",
                    "Resource": "*",
                    "Condition": {"StringEquals": {"kms:RequestAlias": "alias/app"}}}
        policy = json.loads(r.get_key_policy(KeyId=dest, PolicyName="default")["Policy"])
        policy["Statement"].append(r_policy)
        r.put_key_policy(KeyId=dest, PolicyName="default", Policy=json.dumps(policy))
        self.put_policy({"Effect": "Allow", "Principal": reader,
                         "Action": "kms:ReEncryptFrom", "Resource": "*"})
        out = r.re_encrypt(CiphertextBlob=blob, SourceKeyId="alias/app",
                           SourceEncryptionContext={"file": "a"}, DestinationKeyId=dest,
                           DestinationEncryptionContext={"file": "a"})
        self.assertTrue(out["KeyId"].endswith(dest))
        # A short deletion window is denied, the default one is not.
        with self.raises("AccessDeniedException"):
            o.schedule_key_deletion(KeyId=self.key_id, PendingWindowInDays=7)
        o.schedule_key_deletion(KeyId=self.key_id, PendingWindowInDays=30)

    def test_conditions_not_supported_are_refused_by_name(self):
        for condition, name in [({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, "IpAddress"),
                                ({"StringEquals": {"kms:ViaService": "s3.x"}}, "kms:ViaService"),
                                ({"StringEqualsIfExists": {"kms:CallerAccount": "1"}},
                                 "StringEqualsIfExists")]:
            with self.subTest(name=name):
                with self.raises("MalformedPolicyDocumentException"):
                    self.put_policy({"Effect": "Deny", "Principal": "*", "Action": "kms:*",
                                     "Resource": "*", "Condition": condition})
                # Named in the message, and the policy unchanged.
                try:
                    self.put_policy({"Effect": "Deny", "Principal": "*", "Action": "kms:*",
                                     "Resource": "*", "Condition": condition})
                except ClientError as e:
                    self.assertIn(name, e.response["Error"]["Message"])
        self.assertEqual(self.decrypt(self.owner, "a"), b"secret a")
