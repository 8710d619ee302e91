"""envelope-keyd serving a fleet: TLS and mutual TLS listeners, certificate
principals, hostile TLS clients, the refusals at start-up, and the
standard-only mode that stands in for AWS KMS.

Everything is real: the built envelope-keyd on a temporary LMDB store (the
harness), a PKI made with the openssl CLI in the test's temporary directory
(a CA, a server certificate for localhost and 127.0.0.1, client
certificates for host-a and host-b, and an untrusted CA that also issues a
host-a certificate), boto3 and Debian's AWS CLI over https, and Python's
ssl module for client-certificate requests with hand-made JSON bodies.
Hostile clients connect from 127.0.0.2 so that the per-address connection
cap they reach is not the honest clients' (127.0.0.1)."""
import base64
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from harness import ACCESS_KEY_ID, KEYD, SECRET_KEY, Keyd, wait_for

AWS_CLI = "/usr/bin/aws"  # Debian's awscli (scripts/setup.sh)
HOSTILE_ADDRESS = "127.0.0.2"

# What AWS's published model (botocore's kms service-2.json) has gained
# since the model in Debian's botocore: members per shape name, and the
# output shapes of operations Debian's model lacks. From the 2024-2025
# service-2.json.
NEWER_AWS_MEMBERS = {
    "KeyMetadata": {"KeyAgreementAlgorithms", "CurrentKeyMaterialId"},
    "GetKeyRotationStatusResponse": {"KeyId", "RotationPeriodInDays", "NextRotationDate",
                                     "OnDemandRotationStartDate"},
    "DecryptResponse": {"KeyMaterialId"},
    "GenerateDataKeyResponse": {"KeyMaterialId"},
    "GenerateDataKeyWithoutPlaintextResponse": {"KeyMaterialId"},
    "ReEncryptResponse": {"SourceKeyMaterialId", "DestinationKeyMaterialId"},
    "GetKeyPolicyResponse": {"PolicyName"},
}
NEWER_AWS_OPERATIONS = {
    "RotateKeyOnDemand": {"KeyId"},
    "ListKeyRotations": {"Rotations", "NextMarker", "Truncated"},
}
AWS_ROTATIONS_LIST_ENTRY = {"KeyId", "KeyMaterialId", "KeyMaterialDescription", "ImportState",
                            "KeyMaterialState", "ExpirationModel", "ValidTo", "RotationDate",
                            "RotationType"}


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class Pki:
    """A test PKI in `directory`, made with the openssl CLI (P-256 keys)."""

    def __init__(self, directory):
        self.dir = directory
        self.ca = self._ca("ca", "envelope test CA")
        self.untrusted_ca = self._ca("untrusted-ca", "envelope untrusted CA")
        self.server = self._leaf("server", "ca", "/CN=localhost",
                                 "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                 "extendedKeyUsage=serverAuth\n")
        self.host_a = self._leaf("host-a", "ca", "/CN=host-a", "extendedKeyUsage=clientAuth\n")
        self.host_b = self._leaf("host-b", "ca", "/CN=host-b", "extendedKeyUsage=clientAuth\n")
        # Same subject as host-a, from a CA the daemon does not trust.
        self.impostor_a = self._leaf("impostor-a", "untrusted-ca", "/CN=host-a",
                                     "extendedKeyUsage=clientAuth\n")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, name):
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", f"{name}.key", cwd=self.dir)
        os.chmod(self.path(f"{name}.key"), 0o600)

    def _ca(self, name, common_name):
        self._key(name)
        openssl("req", "-x509", "-new", "-key", f"{name}.key", "-out", f"{name}.pem",
                "-days", "2", "-subj", f"/CN={common_name}",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        return self.path(f"{name}.pem")

    def _leaf(self, name, ca, subject, extensions):
        self._key(name)
        with open(self.path(f"{name}.ext"), "w") as f:
            f.write("basicConstraints=CA:FALSE\n" + extensions)
        openssl("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
                cwd=self.dir)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                "-extfile", f"{name}.ext", cwd=self.dir)
        return (self.path(f"{name}.pem"), self.path(f"{name}.key"))


class TlsKeyd(Keyd):
    """The harness's daemon with a TLS listener; `port` is read from the
    start-up line ("... and https://127.0.0.1:PORT ...")."""

    def __init__(self, pki, client_ca=False, listen="127.0.0.1:0", extra_args=()):
        args = ["--listen", listen, "--tls-cert", pki.server[0], "--tls-key", pki.server[1]]
        if client_ca:
            args += ["--client-ca", pki.ca]
        super().__init__(tcp=False, extra_args=args + list(extra_args))
        self.pki = pki
        self.extra_args += ["--access-keys", self.access_keys]

    def start(self, extra_args=None, pass_fds=()):
        super().start(extra_args, pass_fds)
        with open(self.log_path, errors="replace") as f:
            ports = re.findall(r"envelope-keyd serving unix:\S+ and https://\S+:(\d+)", f.read())
        if not ports:
            raise RuntimeError("no https listener in the start-up line")
        self.port = int(ports[-1])
        return self

    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def audit_records(self):
        with open(os.path.join(self.data_dir, "audit.log")) as f:
            return [json.loads(line) for line in f if line.strip()]

    # Clients.
    def context(self, cert=None, ca=None):
        ctx = ssl.create_default_context(cafile=ca or self.pki.ca)
        if cert:
            ctx.load_cert_chain(*cert)
        return ctx

    def boto3_client(self, verify=None, host="127.0.0.1"):
        import boto3
        from botocore.config import Config
        return boto3.client(
            "kms", endpoint_url=f"https://{host}:{self.port}", region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_KEY,
            verify=verify or self.pki.ca, config=Config(retries={"max_attempts": 1}))

    def tls_call(self, op, body, cert=None, prefix="TrentService", sign=False):
        """One request on a new TLS connection (with `cert` as the client
        certificate). Returns (status, json body, the client's ADDR:PORT)."""
        headers = {"Content-Type": "application/x-amz-json-1.1",
                   "X-Amz-Target": f"{prefix}.{op}"}
        data = json.dumps(body)
        if sign:
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest
            from botocore.credentials import Credentials
            req = AWSRequest(method="POST", url=f"https://127.0.0.1:{self.port}/", data=data,
                             headers=headers)
            SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET_KEY), "kms", "us-east-1").add_auth(req)
            prepared = req.prepare()
            headers, data = dict(prepared.headers), prepared.body
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context(cert),
                                        timeout=30)
        try:
            c.request("POST", "/", body=data, headers=headers)
            local = "%s:%d" % c.sock.getsockname()[:2]
            r = c.getresponse()
            out = r.read()
        finally:
            c.close()
        return r.status, json.loads(out) if out else {}, local

    def tls_ok(self, op, body, cert=None, **kw):
        status, out, _ = self.tls_call(op, body, cert=cert, **kw)
        if status != 200:
            raise AssertionError(f"{op}: {status} {out}")
        return out


def raw_connection(port, source=HOSTILE_ADDRESS):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(30)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_until_closed(sock, timeout=60):
    """Everything the server sends until it closes the connection; fails
    the test if it has not closed it within `timeout`."""
    deadline = time.monotonic() + timeout
    out = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk
    raise AssertionError("the server did not close the connection")


def still_open(sock):
    """True if the server has neither closed `sock` nor sent anything."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b"X"  # b"" (closed) or data: not a waiting peer
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def client_hello(pki):
    """The bytes of a real TLS ClientHello for this daemon."""
    ctx = ssl.create_default_context(cafile=pki.ca)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class PkiOnlyTestCase(unittest.TestCase):
    """A test class with a fresh PKI of its own (cls.pki, in cls.pki_dir)."""

    @classmethod
    def setUpClass(cls):
        cls.pki_dir = tempfile.mkdtemp(prefix="keyd-tls-pki-")
        cls.pki = Pki(cls.pki_dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.pki_dir, ignore_errors=True)


class PkiTestCase(PkiOnlyTestCase):
    """A PKI and one TLS envelope-keyd for the whole class."""
    keyd_args = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.keyd = TlsKeyd(cls.pki, **cls.keyd_args).start()

    @classmethod
    def tearDownClass(cls):
        cls.keyd.cleanup()
        super().tearDownClass()

    def assertAlive(self):
        self.assertIsNone(self.keyd.proc.poll(), "envelope-keyd died")
        self.keyd.boto3_client().list_keys()


class TlsSigV4Test(PkiTestCase):
    """TLS without client certificates: every request SigV4-signed."""

    def test_boto3_over_https(self):
        kms = self.keyd.boto3_client()
        key_id = kms.create_key(Description="over TLS")["KeyMetadata"]["KeyId"]
        dk = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256",
                                   EncryptionContext={"app": "tls"})
        self.assertEqual(len(dk["Plaintext"]), 32)
        out = kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"app": "tls"})
        self.assertEqual(out["Plaintext"], dk["Plaintext"])
        self.assertTrue(out["KeyId"].endswith(key_id))

    def test_boto3_by_the_certificate_dns_name(self):
        # Host "localhost:PORT" is one of the certificate's names.
        kms = self.keyd.boto3_client(host="localhost")
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"by name")["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"by name")

    def test_aws_cli(self):
        self.assertTrue(os.path.exists(AWS_CLI), "Debian's awscli is missing: run scripts/setup.sh")
        home = tempfile.mkdtemp(prefix="keyd-tls-home-")
        self.addCleanup(shutil.rmtree, home, True)
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
               "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_PAGER": "", "AWS_CONFIG_FILE": os.path.join(home, "none"),
               "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "none")}

        def aws(*args, binary_out=None):
            cmd = [AWS_CLI, "kms", *args, "--endpoint-url", f"https://127.0.0.1:{self.keyd.port}",
                   "--ca-bundle", self.pki.ca, "--output", "json"]
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, f"{args}: {r.stderr}")
            return json.loads(r.stdout) if r.stdout.strip() else {}

        key_id = aws("create-key", "--description", "from the AWS CLI")["KeyMetadata"]["KeyId"]
        dk = aws("generate-data-key", "--key-id", key_id, "--key-spec", "AES_256")
        blob = os.path.join(home, "blob")
        with open(blob, "wb") as f:
            f.write(base64.b64decode(dk["CiphertextBlob"]))
        out = aws("decrypt", "--ciphertext-blob", f"fileb://{blob}")
        self.assertEqual(out["Plaintext"], dk["Plaintext"])
        described = aws("describe-key", "--key-id", key_id)
        self.assertEqual(described["KeyMetadata"]["Description"], "from the AWS CLI")

    def test_client_not_trusting_the_server_ca_fails(self):
        from botocore.exceptions import SSLError
        kms = self.keyd.boto3_client(verify=self.pki.untrusted_ca)
        with self.assertRaises(SSLError):
            kms.list_keys()
        self.assertAlive()

    def test_unsigned_request_without_client_ca_is_refused(self):
        # Without --client-ca no certificate is asked for, and a presented
        # one would name nobody: the request must be signed.
        for cert in (None, self.pki.host_a):
            status, out, _ = self.keyd.tls_call("ListKeys", {}, cert=cert)
            self.assertEqual(status, 403)
            self.assertEqual(out["__type"], "MissingAuthenticationTokenException")

    def test_tls_1_2_uses_ecdhe_with_an_aead_cipher(self):
        ctx = self.keyd.context()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection(("127.0.0.1", self.keyd.port), timeout=30) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                name, version, _ = tls.cipher()
                self.assertEqual(version, "TLSv1.2")
                self.assertTrue(name.startswith("ECDHE-"), name)
                self.assertTrue("GCM" in name or "CHACHA20" in name, name)

    def test_cbc_ciphers_and_old_versions_are_refused(self):
        ctx = self.keyd.context()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA")  # CBC, no AEAD
        with socket.create_connection(("127.0.0.1", self.keyd.port), timeout=30) as raw:
            with self.assertRaises(ssl.SSLError):
                ctx.wrap_socket(raw, server_hostname="localhost")
        old = self.keyd.context()
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        with socket.create_connection(("127.0.0.1", self.keyd.port), timeout=30) as raw:
            with self.assertRaises(ssl.SSLError):
                old.wrap_socket(raw, server_hostname="localhost")
        self.assertAlive()

    def test_audit_names_the_remote_address_and_transport(self):
        _, out, local = self.keyd.tls_call("CreateKey", {"Description": "audited"}, sign=True)
        key_id = out["KeyMetadata"]["KeyId"]
        records = [r for r in self.keyd.audit_records()
                   if r["operation"] == "CreateKey" and r.get("key_id") == key_id]
        self.assertEqual(len(records), 1)
        self.assertEqual(records[0]["remote"], local)
        self.assertEqual(records[0]["transport"], "tls")
        self.assertEqual(records[0]["principal"]["type"], "access_key")
        self.assertEqual(records[0]["principal"]["name"], "key:ci-bot")
        # A rejected request names where it came from too.
        status, _, local = self.keyd.tls_call("ListKeys", {})
        self.assertEqual(status, 403)
        rejected = [r for r in self.keyd.audit_records() if r.get("remote") == local]
        self.assertEqual(len(rejected), 1)
        self.assertEqual(rejected[0]["principal"]["type"], "anonymous")
        self.assertEqual(rejected[0]["error_type"], "MissingAuthenticationTokenException")


class MutualTlsTest(PkiTestCase):
    """--client-ca: certificates name principals, SigV4 still works."""
    keyd_args = {"client_ca": True}

    def shared_key(self):
        """A key made by the access key, usable by host-a's certificate only
        (besides its administrator)."""
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Local": "key:ci-bot"}, "Action": "kms:*",
             "Resource": "*"},
            {"Effect": "Allow", "Principal": {"Local": ["tls:CN=host-a"]},
             "Action": ["kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"],
             "Resource": "*"}]}
        kms = self.keyd.boto3_client()
        key_id = kms.create_key(Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"fleet secret",
                           EncryptionContext={"host": "any"})["CiphertextBlob"]
        return key_id, base64.b64encode(blob).decode()

    def test_policy_naming_host_a_lets_host_a_decrypt_and_denies_host_b(self):
        key_id, blob = self.shared_key()
        body = {"CiphertextBlob": blob, "EncryptionContext": {"host": "any"}}
        out = self.keyd.tls_ok("Decrypt", body, cert=self.pki.host_a)
        self.assertEqual(base64.b64decode(out["Plaintext"]), b"fleet secret")
        status, out, _ = self.keyd.tls_call("Decrypt", body, cert=self.pki.host_b)
        self.assertEqual(status, 400)
        self.assertEqual(out["__type"], "AccessDeniedException")
        self.assertIn("tls:CN=host-b", out["message"])
        # host-a may make data keys under it too, and decrypt them.
        dk = self.keyd.tls_ok("GenerateDataKey", {"KeyId": key_id, "KeySpec": "AES_256"},
                              cert=self.pki.host_a)
        out = self.keyd.tls_ok("Decrypt", {"CiphertextBlob": dk["CiphertextBlob"]},
                               cert=self.pki.host_a)
        self.assertEqual(out["Plaintext"], dk["Plaintext"])

    def test_audit_records_the_certificate_principal_and_remote_address(self):
        _, blob = self.shared_key()
        body = {"CiphertextBlob": blob, "EncryptionContext": {"host": "any"}}
        status, _, local = self.keyd.tls_call("Decrypt", body, cert=self.pki.host_a)
        self.assertEqual(status, 200)
        status, _, denied_local = self.keyd.tls_call("Decrypt", body, cert=self.pki.host_b)
        self.assertEqual(status, 400)
        records = {r.get("remote"): r for r in self.keyd.audit_records()}
        ok = records[local]
        self.assertEqual(ok["operation"], "Decrypt")
        self.assertEqual(ok["result"], "ok")
        self.assertEqual(ok["transport"], "tls")
        self.assertEqual(ok["principal"]["type"], "tls_cert")
        self.assertEqual(ok["principal"]["name"], "tls:CN=host-a")
        self.assertEqual(ok["principal"]["subject"], "CN=host-a")
        self.assertEqual(ok["principal"]["issuer"], "CN=envelope test CA")
        self.assertRegex(ok["principal"]["serial"], r"^[0-9A-F]+$")
        denied = records[denied_local]
        self.assertEqual(denied["principal"]["name"], "tls:CN=host-b")
        self.assertEqual(denied["error_type"], "AccessDeniedException")

    def test_certificate_principal_owns_its_keys_and_aliases(self):
        made = self.keyd.tls_ok("CreateKey", {}, cert=self.pki.host_a)["KeyMetadata"]
        self.assertEqual(made["Creator"], "tls:CN=host-a")
        key_id = made["KeyId"]
        policy = json.loads(self.keyd.tls_ok("GetKeyPolicy", {"KeyId": key_id},
                                             cert=self.pki.host_a)["Policy"])
        self.assertIn("tls:CN=host-a", json.dumps(policy))
        self.keyd.tls_ok("CreateAlias", {"AliasName": "alias/fleet", "TargetKeyId": key_id},
                         cert=self.pki.host_a)
        blob = self.keyd.tls_ok("Encrypt", {"KeyId": "alias/fleet",
                                            "Plaintext": base64.b64encode(b"a").decode()},
                                cert=self.pki.host_a)["CiphertextBlob"]
        # host-b: its own alias namespace, and no rights on host-a's key.
        status, out, _ = self.keyd.tls_call("DescribeKey", {"KeyId": "alias/fleet"},
                                            cert=self.pki.host_b)
        self.assertEqual((status, out["__type"]), (400, "NotFoundException"))
        status, out, _ = self.keyd.tls_call("Decrypt", {"CiphertextBlob": blob},
                                            cert=self.pki.host_b)
        self.assertEqual((status, out["__type"]), (400, "AccessDeniedException"))
        aliases = self.keyd.tls_ok("ListAliases", {}, cert=self.pki.host_b)["Aliases"]
        self.assertEqual(aliases, [])

    def test_sigv4_names_the_principal_on_a_certificate_connection(self):
        _, out, local = self.keyd.tls_call("CreateKey", {}, cert=self.pki.host_a, sign=True)
        self.assertEqual(out["KeyMetadata"]["Creator"], "key:ci-bot")
        record = [r for r in self.keyd.audit_records() if r.get("remote") == local][0]
        self.assertEqual(record["principal"]["type"], "access_key")
        self.assertEqual(record["tls_client_subject"], "CN=host-a")
        # boto3 without a client certificate: SigV4 as ever.
        self.keyd.boto3_client().list_keys()

    def test_no_certificate_and_no_signature_is_refused(self):
        status, out, _ = self.keyd.tls_call("ListKeys", {})
        self.assertEqual((status, out["__type"]), (403, "MissingAuthenticationTokenException"))

    def test_certificate_from_an_untrusted_ca_is_refused(self):
        # Same subject as host-a, another CA: the handshake fails (in TLS
        # 1.3 the client may only see it when it reads).
        before = len(self.keyd.audit_records())
        with self.assertRaises((ssl.SSLError, ConnectionResetError, BrokenPipeError,
                                http.client.RemoteDisconnected)):
            self.keyd.tls_call("ListKeys", {}, cert=self.pki.impostor_a)
        self.assertEqual(len(self.keyd.audit_records()), before)
        self.assertAlive()
        self.keyd.tls_ok("ListKeys", {}, cert=self.pki.host_a)


class CertificateLimitsTest(PkiTestCase):
    """Quotas count per certificate principal, as per access key."""
    keyd_args = {"client_ca": True, "extra_args": ["--max-keys-per-principal", "2"]}

    def test_key_quota_is_per_certificate_principal(self):
        for _ in range(2):
            self.keyd.tls_ok("CreateKey", {}, cert=self.pki.host_a)
        status, out, _ = self.keyd.tls_call("CreateKey", {}, cert=self.pki.host_a)
        self.assertEqual((status, out["__type"]), (400, "LimitExceededException"))
        self.assertIn("tls:CN=host-a", out["message"])
        # Another certificate and the access key have their own quotas.
        self.keyd.tls_ok("CreateKey", {}, cert=self.pki.host_b)
        self.keyd.boto3_client().create_key()


class HostileTlsTest(PkiTestCase):
    """Garbage, stalled handshakes and connection hogs from 127.0.0.2 while
    honest clients on 127.0.0.1 are served."""
    HEADER_TIMEOUT = 8
    keyd_args = {"client_ca": True, "extra_args": [
        "--header-timeout-seconds", str(HEADER_TIMEOUT), "--idle-timeout-seconds", "8"]}

    def honest_round_trip(self):
        kms = self.keyd.boto3_client()
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"honest")["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"honest")
        self.keyd.tls_ok("ListKeys", {}, cert=self.pki.host_a)

    def test_garbage_instead_of_a_client_hello(self):
        for garbage in (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", os.urandom(4096),
                        b"\x16\x03\x01\xff\xff" + os.urandom(64), b"\x00" * 10):
            s = raw_connection(self.keyd.port)
            s.sendall(garbage)
            read_until_closed(s)  # closed at once, whatever it sent back
            s.close()
        self.assertAlive()
        self.honest_round_trip()
        self.assertRegex(self.keyd.log_text(), r"TLS handshake with 127\.0\.0\.2:\d+ failed")

    def test_many_failed_handshakes_are_not_logged_one_by_one(self):
        count = 150
        for _ in range(count):
            s = raw_connection(self.keyd.port)
            s.sendall(b"\x00" * 16)
            read_until_closed(s)
            s.close()
        self.honest_round_trip()
        logged = len(re.findall(r"\] TLS handshake with", self.keyd.log_text()))
        self.assertLess(logged, count // 2)

    def test_stalled_handshake_does_not_block_others_and_times_out(self):
        hello = client_hello(self.pki)
        s = raw_connection(self.keyd.port)
        started = time.monotonic()
        s.sendall(hello[:len(hello) // 2])  # half a ClientHello, then nothing
        self.honest_round_trip()
        if time.monotonic() - started < self.HEADER_TIMEOUT - 2:
            # Served while the stalled handshake was still waiting.
            self.assertTrue(still_open(s))
        read_until_closed(s, timeout=self.HEADER_TIMEOUT * 6)
        s.close()
        self.assertAlive()

    def test_handshaken_connection_that_sends_nothing_times_out(self):
        raw = raw_connection(self.keyd.port)
        tls = self.keyd.context().wrap_socket(raw, server_hostname="localhost")
        deadline = time.monotonic() + self.HEADER_TIMEOUT * 6
        tls.settimeout(self.HEADER_TIMEOUT * 6)
        try:
            self.assertEqual(tls.recv(1), b"")
        except (ConnectionResetError, ssl.SSLError):
            pass
        self.assertLess(time.monotonic(), deadline)
        tls.close()

class TlsConnectionLimitTest(PkiTestCase):
    """TLS connections count against the per-address cap (before their
    handshake) like plain ones, and one address at its cap does not keep
    another out."""
    CAP = 3
    keyd_args = {"client_ca": True, "extra_args": [
        "--header-timeout-seconds", "120", "--max-connections-per-peer", str(CAP)]}

    def honest_round_trip(self):
        HostileTlsTest.honest_round_trip(self)

    def test_tls_connections_count_against_the_per_address_cap(self):
        hogs = [raw_connection(self.keyd.port) for _ in range(self.CAP)]
        try:
            # The accept loop takes connections in order: once one beyond
            # the cap is refused, the hogs hold every slot of 127.0.0.2.
            def refused():
                s = raw_connection(self.keyd.port)
                data = read_until_closed(s)
                s.close()
                return data.startswith(b"HTTP/1.1 503")
            wait_for(refused, "a connection over 127.0.0.2's cap to be refused")
            self.honest_round_trip()  # 127.0.0.1 has its own count
            self.assertIn("connections from tcp:127.0.0.2 refused", self.keyd.log_text())
        finally:
            for h in hogs:
                h.close()

        def served_again():
            raw = raw_connection(self.keyd.port)
            try:
                tls = self.keyd.context(cert=self.pki.host_b).wrap_socket(
                    raw, server_hostname="localhost")
            except (ssl.SSLError, ConnectionResetError):
                raw.close()
                return False
            body = b"{}"
            tls.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                        b"application/x-amz-json-1.1\r\nX-Amz-Target: TrentService.ListKeys\r\n"
                        b"Content-Length: 2\r\nConnection: close\r\n\r\n" + body)
            try:
                data = read_until_closed(tls)
            except (ssl.SSLError, ConnectionResetError):
                return False
            finally:
                tls.close()
            return data.startswith(b"HTTP/1.1 200")
        wait_for(served_again, "127.0.0.2 to be served once its hogs are gone")



class ListenerTest(PkiOnlyTestCase):
    """What --listen and the TLS files accept and refuse at start-up."""

    def refused(self, *args):
        """Runs the daemon with `args`; it must exit 1 at once. Returns its
        stderr."""
        tmp = tempfile.mkdtemp(prefix="keyd-tls-refused-")
        self.addCleanup(shutil.rmtree, tmp, True)
        access_keys = os.path.join(tmp, "access-keys")
        with open(access_keys, "w") as f:
            f.write(f"{ACCESS_KEY_ID} {SECRET_KEY} ci-bot\n")
        os.chmod(access_keys, 0o600)
        args = [a.replace("ACCESS_KEYS", access_keys) for a in args]
        r = subprocess.run([KEYD, "--data-dir", os.path.join(tmp, "data"), "--socket",
                            os.path.join(tmp, "kms.sock"), "-f", *args],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists(os.path.join(tmp, "kms.sock")))
        return r.stderr

    def test_plain_tcp_off_loopback_is_refused(self):
        for listen in ("0.0.0.0:0", "[::]:0", "192.0.2.1:7800"):
            err = self.refused("--listen", listen, "--access-keys", "ACCESS_KEYS")
            self.assertIn("is not a loopback address", err)
            self.assertIn("--tls-cert", err)

    def test_malformed_listen_addresses_are_refused(self):
        for listen in ("localhost:7800", "::1:7800", "[::1]7800", "127.0.0.1:70000",
                       "127.0.0.1", "[127.0.0.1]:1"):
            err = self.refused("--listen", listen, "--access-keys", "ACCESS_KEYS")
            self.assertIn("--listen wants HOST:PORT", err)

    def test_tls_key_file_must_be_private_and_ours(self):
        cert, key = self.pki.server
        loose = os.path.join(self.pki_dir, "loose.key")
        shutil.copy(key, loose)
        os.chmod(loose, 0o640)
        err = self.refused("--listen", "127.0.0.1:0", "--access-keys", "ACCESS_KEYS",
                           "--tls-cert", cert, "--tls-key", loose)
        self.assertIn("accessible by group or others", err)
        theirs = os.path.join(self.pki_dir, "theirs.key")
        shutil.copy(key, theirs)
        os.chmod(theirs, 0o600)
        os.chown(theirs, 65534, 65534)
        err = self.refused("--listen", "127.0.0.1:0", "--access-keys", "ACCESS_KEYS",
                           "--tls-cert", cert, "--tls-key", theirs)
        self.assertIn("belongs to uid 65534", err)
        err = self.refused("--listen", "127.0.0.1:0", "--access-keys", "ACCESS_KEYS",
                           "--tls-cert", cert, "--tls-key", self.pki_dir)
        self.assertIn("not a regular file", err)
        other_key = self.pki.host_a[1]
        err = self.refused("--listen", "127.0.0.1:0", "--access-keys", "ACCESS_KEYS",
                           "--tls-cert", cert, "--tls-key", other_key)
        self.assertIn("is not the key of the certificate", err)

    def test_incomplete_tls_flags_are_refused(self):
        cert, key = self.pki.server
        self.refused("--listen", "127.0.0.1:0", "--access-keys", "ACCESS_KEYS",
                     "--tls-cert", cert)
        self.refused("--listen", "127.0.0.1:0", "--access-keys", "ACCESS_KEYS",
                     "--client-ca", self.pki.ca)
        err = self.refused("--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
        self.assertIn("--access-keys", err)

    def test_tls_on_the_wildcard_address(self):
        keyd = TlsKeyd(self.pki, listen="0.0.0.0:0")
        self.addCleanup(keyd.cleanup)
        keyd.start()
        self.assertIn("https://0.0.0.0:", keyd.log_text())
        kms = keyd.boto3_client()
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"fleet")["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"fleet")

    def test_mutual_tls_without_access_keys(self):
        keyd = TlsKeyd(self.pki, client_ca=True)
        keyd.extra_args.remove("--access-keys")
        keyd.extra_args.remove(keyd.access_keys)
        self.addCleanup(keyd.cleanup)
        keyd.start()
        keyd.tls_ok("ListKeys", {}, cert=self.pki.host_a)
        status, out, _ = keyd.tls_call("ListKeys", {}, sign=True)
        self.assertEqual((status, out["__type"]), (400, "UnrecognizedClientException"))

    def test_plain_tcp_on_ipv6_loopback(self):
        try:
            probe = socket.socket(socket.AF_INET6)
            probe.bind(("::1", 0))
            probe.close()
        except OSError:
            self.skipTest("no IPv6 loopback on this machine")
        keyd = Keyd(extra_args=["--listen", "[::1]:0"])
        keyd.extra_args += ["--access-keys", keyd.access_keys]
        self.addCleanup(keyd.cleanup)
        keyd.start()
        port = int(re.findall(r"and http://\[::1\]:(\d+)", open(keyd.log_path).read())[-1])
        import boto3
        from botocore.config import Config
        kms = boto3.client("kms", endpoint_url=f"http://[::1]:{port}", region_name="us-east-1",
                           aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_KEY,
                           config=Config(retries={"max_attempts": 1}))
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        with open(os.path.join(keyd.data_dir, "audit.log")) as f:
            record = [json.loads(line) for line in f if key_id in line][0]
        self.assertRegex(record["remote"], r"^\[::1\]:\d+$")
        self.assertEqual(record["transport"], "tcp")


class StandardOnlyTest(unittest.TestCase):
    """--standard-only: what AWS KMS would answer, and nothing more."""

    @classmethod
    def setUpClass(cls):
        cls.keyd = Keyd(tcp=True, extra_args=["--standard-only"]).start()
        cls.extended = Keyd(tcp=True).start()  # the same requests without the flag
        import botocore.session
        cls.model = botocore.session.get_session().get_service_model("kms")

    @classmethod
    def tearDownClass(cls):
        cls.keyd.cleanup()
        cls.extended.cleanup()

    def assertStandard(self, operation, response):
        """Every member of `response` is in AWS's output shape for
        `operation` (botocore's model), recursively."""
        def check(shape, value, where):
            if shape.type_name == "structure":
                self.assertIsInstance(value, dict, where)
                newer = NEWER_AWS_MEMBERS.get(shape.name, set())
                for name, member in value.items():
                    self.assertTrue(name in shape.members or name in newer,
                                    f"{where}.{name} is not AWS's")
                    if name in shape.members:
                        check(shape.members[name], member, f"{where}.{name}")
            elif shape.type_name == "list":
                for i, item in enumerate(value):
                    check(shape.member, item, f"{where}[{i}]")
        if operation not in self.model.operation_names:
            self.assertLessEqual(set(response), NEWER_AWS_OPERATIONS[operation], operation)
            for r in response.get("Rotations", []):
                self.assertLessEqual(set(r), AWS_ROTATIONS_LIST_ENTRY, r)
            return
        output = self.model.operation_model(operation).output_shape
        if output is None:
            self.assertEqual(response, {}, operation)
        else:
            check(output, response, operation)

    def test_extension_operations_answer_as_unknown_targets(self):
        _, unknown = self.keyd.raw("EnvelopeKeyService.NoSuchOperation", {})
        key_id = self.keyd.call("CreateKey")["KeyMetadata"]["KeyId"]
        bodies = {"GenerateDataKeys": {"KeyId": key_id, "KeySpec": "AES_256",
                                       "EncryptionContexts": [{}]},
                  "RetireKeyVersions": {"KeyId": key_id, "BelowVersion": 1},
                  "VerifyAudit": {}, "TailAudit": {}}
        for op, body in bodies.items():
            status, out = self.keyd.raw(f"EnvelopeKeyService.{op}", body)
            self.assertEqual(status, 400, op)
            self.assertEqual(out["__type"], "UnknownOperationException", op)
            self.assertEqual(out["message"], f"unknown operation EnvelopeKeyService.{op}")
            self.assertEqual(set(out), set(unknown))
            # The same request is served without the flag.
            ext_key = self.extended.call("CreateKey")["KeyMetadata"]["KeyId"]
            body = dict(body, KeyId=ext_key) if "KeyId" in body else body
            status, _ = self.extended.raw(f"EnvelopeKeyService.{op}", body)
            self.assertEqual(status, 200, op)
        status, out = self.keyd.raw("TrentService.NoSuchOperation", {})
        self.assertEqual((status, out["__type"]), (400, "UnknownOperationException"))
        # Over SigV4 too.
        status, out = self.keyd.signed_request("ListKeys", {})
        self.assertEqual(status, 200)

    def test_describe_key_has_no_extension_fields(self):
        key_id = self.keyd.call("CreateKey", {"Description": "plain"})["KeyMetadata"]["KeyId"]
        meta = self.keyd.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]
        for field in ("CurrentKeyVersion", "MinKeyVersion", "Creator"):
            self.assertNotIn(field, meta)
        self.assertEqual(meta["KeyId"], key_id)
        self.assertEqual(meta["Description"], "plain")
        self.assertEqual(meta["KeyState"], "Enabled")
        self.assertStandard("DescribeKey", {"KeyMetadata": meta})
        # Without the flag the extensions are there: the check can fail.
        ext_key = self.extended.call("CreateKey")["KeyMetadata"]["KeyId"]
        ext_meta = self.extended.call("DescribeKey", {"KeyId": ext_key})["KeyMetadata"]
        self.assertIn("CurrentKeyVersion", ext_meta)
        self.assertIn("Creator", ext_meta)
        with self.assertRaises(AssertionError):
            self.assertStandard("DescribeKey", {"KeyMetadata": ext_meta})

    def test_every_answer_has_only_aws_fields(self):
        call = self.keyd.call
        answers = []

        def run(op, body=None):
            out = call(op, body or {})
            answers.append((op, out))
            return out
        key_id = run("CreateKey", {"Description": "d", "Tags": [
            {"TagKey": "k", "TagValue": "v"}]})["KeyMetadata"]["KeyId"]
        run("DescribeKey", {"KeyId": key_id})
        run("ListKeys")
        run("CreateAlias", {"AliasName": "alias/std", "TargetKeyId": key_id})
        run("ListAliases")
        blob = run("Encrypt", {"KeyId": "alias/std", "Plaintext": "aGk="})["CiphertextBlob"]
        run("Decrypt", {"CiphertextBlob": blob})
        run("ReEncrypt", {"CiphertextBlob": blob, "DestinationKeyId": key_id})
        run("GenerateDataKey", {"KeyId": key_id, "NumberOfBytes": 32})
        run("GenerateDataKeyWithoutPlaintext", {"KeyId": key_id, "KeySpec": "AES_128"})
        run("GenerateRandom", {"NumberOfBytes": 16})
        run("EnableKeyRotation", {"KeyId": key_id})
        run("GetKeyRotationStatus", {"KeyId": key_id})
        run("RotateKeyOnDemand", {"KeyId": key_id})
        rotations = run("ListKeyRotations", {"KeyId": key_id})
        self.assertEqual(len(rotations["Rotations"]), 1)
        for field in ("KeyVersion", "Retired"):
            self.assertNotIn(field, rotations["Rotations"][0])
        run("DisableKeyRotation", {"KeyId": key_id})
        run("GetKeyPolicy", {"KeyId": key_id, "PolicyName": "default"})
        run("TagResource", {"KeyId": key_id, "Tags": [{"TagKey": "a", "TagValue": "b"}]})
        run("ListResourceTags", {"KeyId": key_id})
        run("UntagResource", {"KeyId": key_id, "TagKeys": ["a"]})
        run("DisableKey", {"KeyId": key_id})
        run("EnableKey", {"KeyId": key_id})
        run("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": 7})
        run("DescribeKey", {"KeyId": key_id})
        run("CancelKeyDeletion", {"KeyId": key_id})
        run("UpdateAlias", {"AliasName": "alias/std", "TargetKeyId": key_id})
        run("DeleteAlias", {"AliasName": "alias/std"})
        for op, out in answers:
            self.assertStandard(op, out)

    def test_aws_operations_work_through_boto3(self):
        kms = self.keyd.boto3_client()
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        dk = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256",
                                   EncryptionContext={"a": "b"})
        out = kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"a": "b"})
        self.assertEqual(out["Plaintext"], dk["Plaintext"])
        # The blob format is the same as without the flag ('E' 'K' 0x01 ...).
        self.assertEqual(dk["CiphertextBlob"][:3], b"EK\x01")
        self.assertEqual(len(dk["CiphertextBlob"]), 32 + 51)

    def test_start_up_says_the_mode_is_on(self):
        with open(self.keyd.log_path, errors="replace") as f:
            self.assertIn("standard-only mode", f.read())
        with open(self.extended.log_path, errors="replace") as f:
            self.assertNotIn("standard-only mode", f.read())


if __name__ == "__main__":
    unittest.main()
