"""Attacks of one local user on another through envelope-keyd's
authorization, quotas and audit trail (issue: hardening against a hostile
local user). The real daemon and store; the second user is `nobody`, whose
requests come from a process running as nobody (setpriv), so the daemon
identifies them by SO_PEERCRED as it would in production."""
import base64
import json
import os
import subprocess
import tempfile
import shutil
import unittest

from harness import Keyd, KmsError, UnixHTTPConnection, ENVELOPECTL

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]

# One KMS request over the Unix socket, from whatever user runs it; prints
# the HTTP status and the body. Passed to python3 -c so that nobody needs no
# access to the test sources.
_CLIENT = r"""
import http.client, json, socket, sys
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(sys.argv[1])
c = C("localhost", timeout=60)
c.request("POST", "/", body=sys.stdin.read(),
          headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": sys.argv[2]})
r = c.getresponse()
sys.stdout.write(json.dumps({"status": r.status, "body": r.read().decode()}))
"""


def b64(b):
    return base64.b64encode(b).decode()


class PolicyTestCase(unittest.TestCase):
    keyd_args = ()

    def setUp(self):
        self.keyd = Keyd(extra_args=self.keyd_args).start()

    def tearDown(self):
        self.keyd.cleanup()

    def as_nobody(self, op, body=None, prefix="TrentService"):
        r = subprocess.run(NOBODY + ["/usr/bin/python3", "-c", _CLIENT, self.keyd.socket,
                                     f"{prefix}.{op}"],
                           input=json.dumps(body or {}), capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        data = json.loads(out["body"]) if out["body"] else {}
        if out["status"] != 200:
            raise KmsError(out["status"], data.get("__type"), data.get("message"))
        return data

    def ctl(self, *args, user=None, input=None, check=True):
        cmd = [ENVELOPECTL, "--endpoint", "unix:" + self.keyd.socket] + list(args)
        if user == "nobody":
            cmd = NOBODY + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"{cmd} failed {r.returncode}: {r.stderr}")
        return r

    def assertKmsError(self, type_, fn, *args, **kw):
        with self.assertRaises(KmsError) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.type, type_, cm.exception.message)
        return cm.exception


class AliasNamespaceTest(PolicyTestCase):
    """nobody plants alias/home (the README's example name) on their own key
    before root makes one: root's alias/home must never mean nobody's key."""

    def test_planted_alias_is_not_resolved_for_root(self):
        evil = self.as_nobody("CreateKey")["KeyMetadata"]["KeyId"]
        self.as_nobody("CreateAlias", {"AliasName": "alias/home", "TargetKeyId": evil})

        # Root's alias/home does not exist: encrypting under it fails
        # instead of sealing root's secret under nobody's key.
        self.assertKmsError("NotFoundException", self.keyd.call, "Encrypt",
                            {"KeyId": "alias/home", "Plaintext": b64(b"root secret")})
        d = tempfile.mkdtemp(prefix="policy-secrets-")
        try:
            path = os.path.join(d, "root.env")
            r = self.ctl("secrets", "--file", path, "--key", "alias/home", "set", "app", "PW",
                         input="hunter2", check=False)
            self.assertNotEqual(r.returncode, 0, "secrets set used nobody's alias/home")
            self.assertFalse(os.path.exists(path) and os.path.getsize(path) > 0)

            # Root makes its own alias/home: both exist, each for its owner.
            mine = self.keyd.call("CreateKey")["KeyMetadata"]["KeyId"]
            self.keyd.call("CreateAlias", {"AliasName": "alias/home", "TargetKeyId": mine})
            self.ctl("secrets", "--file", path, "--key", "alias/home", "set", "app", "PW",
                     input="hunter2")
            blob = self.keyd.call("Encrypt", {"KeyId": "alias/home",
                                              "Plaintext": b64(b"root secret")})
            self.assertTrue(blob["KeyId"].endswith(mine))
            self.assertKmsError("AccessDeniedException", self.as_nobody, "Decrypt",
                                {"CiphertextBlob": blob["CiphertextBlob"]})
            r = self.ctl("secrets", "--file", path, "get", "app", "PW", "--raw", user="nobody",
                         check=False)
            self.assertNotEqual(r.returncode, 0)
            self.assertNotIn("hunter2", r.stdout)
            # nobody's alias/home still means nobody's key, for nobody, and
            # DescribeKey says whose each key is.
            meta = self.as_nobody("DescribeKey", {"KeyId": "alias/home"})["KeyMetadata"]
            self.assertEqual((meta["KeyId"], meta["Creator"]), (evil, "uid:65534"))
            meta = self.keyd.call("DescribeKey", {"KeyId": "alias/home"})["KeyMetadata"]
            self.assertEqual((meta["KeyId"], meta["Creator"]), (mine, "uid:0"))
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_aliases_are_listed_and_managed_per_principal(self):
        evil = self.as_nobody("CreateKey")["KeyMetadata"]["KeyId"]
        self.as_nobody("CreateAlias", {"AliasName": "alias/shared", "TargetKeyId": evil})
        mine = self.keyd.call("CreateKey")["KeyMetadata"]["KeyId"]
        self.keyd.call("CreateAlias", {"AliasName": "alias/shared", "TargetKeyId": mine})
        root_list = self.keyd.call("ListAliases")["Aliases"]
        self.assertEqual([(a["AliasName"], a["TargetKeyId"]) for a in root_list],
                         [("alias/shared", mine)])
        nobody_list = self.as_nobody("ListAliases")["Aliases"]
        self.assertEqual([(a["AliasName"], a["TargetKeyId"]) for a in nobody_list],
                         [("alias/shared", evil)])
        # nobody can neither repoint nor delete root's alias: theirs is hit.
        self.as_nobody("DeleteAlias", {"AliasName": "alias/shared"})
        self.assertEqual(self.keyd.call("DescribeKey", {"KeyId": "alias/shared"})
                         ["KeyMetadata"]["KeyId"], mine)
        # Another principal's key is named by its ARN (root may use it: the
        # default policy gives root every key).
        arn = self.keyd.call("DescribeKey", {"KeyId": evil})["KeyMetadata"]["Arn"]
        self.assertTrue(self.keyd.call("Encrypt", {"KeyId": arn, "Plaintext": b64(b"x")})
                        ["KeyId"] == arn)


class ReEncryptDenyTest(PolicyTestCase):
    """A key policy denies nobody kms:Decrypt but lets them ReEncrypt (say,
    a key-migration job). ReEncrypt to a key nobody owns, then Decrypt there,
    used to reveal the plaintext."""

    def test_explicit_decrypt_deny_also_stops_reencrypt_from(self):
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Local": "user:root"}, "Action": "kms:*",
             "Resource": "*"},
            {"Effect": "Allow", "Principal": {"Local": "user:nobody"},
             "Action": ["kms:ReEncrypt*", "kms:Encrypt", "kms:DescribeKey"], "Resource": "*"},
            {"Effect": "Deny", "Principal": {"Local": "user:nobody"}, "Action": "kms:Decrypt",
             "Resource": "*"}]}
        guarded = self.keyd.call("CreateKey", {"Policy": json.dumps(policy)})["KeyMetadata"]["KeyId"]
        blob = self.keyd.call("Encrypt", {"KeyId": guarded, "Plaintext": b64(b"payroll"),
                                          "EncryptionContext": {"app": "hr"}})["CiphertextBlob"]
        self.assertKmsError("AccessDeniedException", self.as_nobody, "Decrypt",
                            {"CiphertextBlob": blob, "EncryptionContext": {"app": "hr"}})
        own = self.as_nobody("CreateKey")["KeyMetadata"]["KeyId"]
        e = self.assertKmsError("AccessDeniedException", self.as_nobody, "ReEncrypt",
                                {"CiphertextBlob": blob, "SourceEncryptionContext": {"app": "hr"},
                                 "DestinationKeyId": own})
        self.assertIn("kms:Decrypt", e.message)
        # Without a Deny, ReEncryptFrom alone still works (root here).
        out = self.keyd.call("ReEncrypt", {"CiphertextBlob": blob,
                                           "SourceEncryptionContext": {"app": "hr"},
                                           "DestinationKeyId": guarded})
        self.assertTrue(out["KeyId"].endswith(guarded))
        # nobody may still re-encrypt into the guarded key (ReEncryptTo).
        theirs = self.as_nobody("Encrypt", {"KeyId": own, "Plaintext": b64(b"mine")})
        out = self.as_nobody("ReEncrypt", {"CiphertextBlob": theirs["CiphertextBlob"],
                                           "DestinationKeyId": guarded})
        self.assertTrue(out["KeyId"].endswith(guarded))


class QuotaTest(PolicyTestCase):
    keyd_args = ("--max-keys-per-principal", "3", "--max-key-versions-per-principal", "5")

    def test_keys_and_versions_past_the_quota_are_refused_others_unaffected(self):
        mine = self.keyd.call("CreateKey")["KeyMetadata"]["KeyId"]
        theirs = [self.as_nobody("CreateKey")["KeyMetadata"]["KeyId"] for _ in range(3)]
        e = self.assertKmsError("LimitExceededException", self.as_nobody, "CreateKey")
        self.assertIn("uid:65534", e.message)
        # Versions: 3 keys hold 3; two rotations make 5, the third is refused.
        for _ in range(2):
            self.as_nobody("RotateKeyOnDemand", {"KeyId": theirs[0]},
                           prefix="TrentService")
        self.assertKmsError("LimitExceededException", self.as_nobody, "RotateKeyOnDemand",
                            {"KeyId": theirs[0]})
        # Another principal is not affected.
        dk = self.keyd.call("GenerateDataKey", {"KeyId": mine, "KeySpec": "AES_256"})
        self.assertEqual(len(base64.b64decode(dk["Plaintext"])), 32)
        self.keyd.call("CreateKey")
        self.keyd.call("RotateKeyOnDemand", {"KeyId": mine})
        # Retiring versions frees quota again.
        self.as_nobody("RetireKeyVersions", {"KeyId": theirs[0], "BelowVersion": 3},
                       prefix="EnvelopeKeyService")
        self.as_nobody("RotateKeyOnDemand", {"KeyId": theirs[0]})


class SecureHeapReserveTest(PolicyTestCase):
    """Creating keys until the secure heap is full used to make everyone's
    data-key operations fail. With a 1 MiB heap of which 99% is kept for
    operations on existing keys, creation stops after a few hundred keys
    with LimitExceededException, and data keys keep coming."""
    keyd_args = ("--secure-heap-mib", "1", "--secure-heap-reserve-percent", "99",
                 "--max-keys-per-principal", "0", "--max-key-versions-per-principal", "0")

    def test_key_creation_stops_before_the_reserve(self):
        victim = self.keyd.call("CreateKey")["KeyMetadata"]["KeyId"]
        conn = UnixHTTPConnection(self.keyd.socket)
        refused = None
        for _ in range(5000):  # 1% of 1 MiB is ~330 keys
            status, out = self.keyd.raw("TrentService.CreateKey", {}, conn=conn)
            if status != 200:
                refused = out
                break
        conn.close()
        self.assertIsNotNone(refused, "key creation never stopped")
        self.assertEqual(refused["__type"], "LimitExceededException", refused)
        # The reserve serves the existing keys: big data keys, a full batch,
        # and decrypting them.
        for _ in range(3):
            dk = self.keyd.call("GenerateDataKey", {"KeyId": victim, "NumberOfBytes": 1024})
            self.assertEqual(len(base64.b64decode(dk["Plaintext"])), 1024)
            self.assertEqual(self.keyd.call("Decrypt", {"CiphertextBlob": dk["CiphertextBlob"]})
                             ["Plaintext"], dk["Plaintext"])
        out = self.keyd.call("GenerateDataKeys", {
            "KeyId": victim, "NumberOfBytes": 1024,
            "EncryptionContexts": [{"n": str(i)} for i in range(256)]},
            prefix="EnvelopeKeyService")
        self.assertEqual(len(out["DataKeys"]), 256)


class AuditAnchorTest(PolicyTestCase):
    """Cutting the audit log's tail while the daemon is stopped."""

    def audit_path(self):
        return os.path.join(self.keyd.data_dir, "audit.log")

    def cut_tail(self, n):
        with open(self.audit_path()) as f:
            lines = f.readlines()
        with open(self.audit_path(), "w") as f:
            f.writelines(lines[:-n])
        return len(lines)

    def test_tail_cut_while_stopped_is_refused_at_start_then_flagged_by_verify(self):
        key = self.keyd.call("CreateKey")["KeyMetadata"]["KeyId"]
        for i in range(30):
            self.keyd.call("Encrypt", {"KeyId": key, "Plaintext": b64(b"x%d" % i)})
        self.assertEqual(self.keyd.stop(), 0)  # saves the anchor
        total = self.cut_tail(20)

        # Start-up refuses, twice: the refused start did not move the anchor.
        for _ in range(2):
            with self.assertRaises(RuntimeError) as cm:
                self.keyd.start()
            self.assertIn("20 records were cut", str(cm.exception))
            self.assertIn("--audit-accept-truncation", str(cm.exception))

        # The operator accepts the loss: recorded, and verify says so.
        self.keyd.start(extra_args=["--audit-accept-truncation"])
        r = self.ctl("audit", "verify")
        self.assertIn("audit log OK", r.stdout)
        self.assertIn(f"records {total - 19} to {total} were lost", r.stdout)
        tail = self.ctl("audit", "tail", "-n", "50").stdout
        self.assertIn("AuditTruncationAccepted", tail)
        self.assertEqual(self.keyd.stop(), 0)
        # And from then on the daemon starts normally.
        self.keyd.start()
        self.ctl("audit", "verify")

    def test_clean_restart_verifies(self):
        key = self.keyd.call("CreateKey")["KeyMetadata"]["KeyId"]
        self.keyd.call("Encrypt", {"KeyId": key, "Plaintext": b64(b"x")})
        self.assertEqual(self.keyd.stop(), 0)
        self.keyd.start()
        r = self.ctl("audit", "verify")
        self.assertIn("audit log OK", r.stdout)
        self.assertNotIn("note:", r.stdout)


if __name__ == "__main__":
    unittest.main()
