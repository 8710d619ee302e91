"""Asymmetric and HMAC keys against the real envelope-keyd (issue 16):
boto3 drives the operations, and the openssl command checks what comes
out: signatures verify with `openssl dgst`/`pkeyutl`, RSA-OAEP ciphertext
made by openssl decrypts in the service, an ECDH secret agrees with
openssl's. DeriveSharedSecret is newer than Debian's boto3: a hand-signed
request carries it."""
import base64
import os
import subprocess
import tempfile
import unittest

from botocore.exceptions import ClientError

from harness import Keyd


def openssl(*args, input=None):
    r = subprocess.run(["openssl", *args], input=input, capture_output=True, timeout=60)
    return r


class AsymmetricTest(unittest.TestCase):
    def setUp(self):
        self.keyd = Keyd(tcp=True).start()
        self.kms = self.keyd.boto3_client()
        self.tmp = tempfile.mkdtemp(prefix="keyd-asym-")

    def tearDown(self):
        self.keyd.cleanup()
        subprocess.run(["rm", "-rf", self.tmp])

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write(self, name, data):
        with open(self.path(name), "wb") as f:
            f.write(data)
        return self.path(name)

    def assertError(self, code, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        self.assertEqual(cm.exception.response["Error"]["Code"], code,
                         cm.exception.response["Error"].get("Message"))

    def public_pem(self, key_id):
        out = self.kms.get_public_key(KeyId=key_id)
        der = self.write(f"{key_id}.der", out["PublicKey"])
        r = openssl("pkey", "-pubin", "-inform", "DER", "-in", der, "-out", der + ".pem")
        self.assertEqual(r.returncode, 0, r.stderr)
        return der + ".pem", out

    def test_signatures_verify_with_openssl(self):
        message = b"release v1.2.3: sha256 of the tarball is ..." * 3
        msg = self.write("msg", message)
        cases = [
            ("RSA_2048", "RSASSA_PSS_SHA_256", "sha256", ["-sigopt", "rsa_padding_mode:pss",
                                                          "-sigopt", "rsa_pss_saltlen:-1"]),
            ("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_384", "sha384", []),
            ("RSA_3072", "RSASSA_PSS_SHA_512", "sha512", ["-sigopt", "rsa_padding_mode:pss",
                                                          "-sigopt", "rsa_pss_saltlen:-1"]),
            ("ECC_NIST_P256", "ECDSA_SHA_256", "sha256", []),
            ("ECC_NIST_P384", "ECDSA_SHA_384", "sha384", []),
            ("ECC_NIST_P521", "ECDSA_SHA_512", "sha512", []),
            ("ECC_SECG_P256K1", "ECDSA_SHA_256", "sha256", []),
        ]
        for spec, algorithm, digest, sigopts in cases:
            with self.subTest(spec=spec, algorithm=algorithm):
                key = self.kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]
                self.assertEqual(key["KeySpec"], spec)
                self.assertIn(algorithm, key["SigningAlgorithms"])
                self.assertNotIn("EncryptionAlgorithms", key)
                pem, pub = self.public_pem(key["KeyId"])
                self.assertEqual(pub["KeyUsage"], "SIGN_VERIFY")
                sig = self.kms.sign(KeyId=key["KeyId"], Message=message,
                                    SigningAlgorithm=algorithm)["Signature"]
                sig_file = self.write("sig", sig)
                r = openssl("dgst", f"-{digest}", "-verify", pem, "-signature", sig_file,
                            *sigopts, msg)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn(b"Verified OK", r.stdout)
                # The service verifies it too, and refuses a changed message.
                self.assertTrue(self.kms.verify(KeyId=key["KeyId"], Message=message,
                                                Signature=sig, SigningAlgorithm=algorithm)
                                ["SignatureValid"])
                self.assertError("KMSInvalidSignatureException", self.kms.verify,
                                 KeyId=key["KeyId"], Message=message + b"!", Signature=sig,
                                 SigningAlgorithm=algorithm)
                # DIGEST: the caller hashed; same signature scheme.
                h = subprocess.run(["openssl", "dgst", f"-{digest}", "-binary", msg],
                                   capture_output=True, check=True).stdout
                dsig = self.kms.sign(KeyId=key["KeyId"], Message=h, MessageType="DIGEST",
                                     SigningAlgorithm=algorithm)["Signature"]
                r = openssl("dgst", f"-{digest}", "-verify", pem, "-signature",
                            self.write("dsig", dsig), *sigopts, msg)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertError("ValidationException", self.kms.sign, KeyId=key["KeyId"],
                                 Message=h[:-1], MessageType="DIGEST", SigningAlgorithm=algorithm)

    def test_rsa_oaep_round_trips_with_openssl(self):
        key = self.kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
        self.assertEqual(key["EncryptionAlgorithms"], ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
        pem, _ = self.public_pem(key["KeyId"])
        secret = b"a wrapped key, say" * 5
        for algorithm, md in [("RSAES_OAEP_SHA_256", "sha256"), ("RSAES_OAEP_SHA_1", "sha1")]:
            with self.subTest(algorithm=algorithm):
                # Made by openssl with the public key, opened by the service.
                r = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", pem,
                            "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", f"rsa_oaep_md:{md}",
                            "-pkeyopt", f"rsa_mgf1_md:{md}", input=secret)
                self.assertEqual(r.returncode, 0, r.stderr)
                out = self.kms.decrypt(KeyId=key["KeyId"], CiphertextBlob=r.stdout,
                                       EncryptionAlgorithm=algorithm)
                self.assertEqual(out["Plaintext"], secret)
                # And the service's own round trip.
                blob = self.kms.encrypt(KeyId=key["KeyId"], Plaintext=secret,
                                        EncryptionAlgorithm=algorithm)["CiphertextBlob"]
                self.assertEqual(len(blob), 256)
                self.assertEqual(self.kms.decrypt(KeyId=key["KeyId"], CiphertextBlob=blob,
                                                  EncryptionAlgorithm=algorithm)["Plaintext"],
                                 secret)
        self.assertError("ValidationException", self.kms.encrypt, KeyId=key["KeyId"],
                         Plaintext=b"x" * 191, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
        self.assertError("InvalidKeyUsageException", self.kms.encrypt, KeyId=key["KeyId"],
                         Plaintext=b"x")  # SYMMETRIC_DEFAULT on an RSA key
        self.assertError("InvalidCiphertextException", self.kms.decrypt, KeyId=key["KeyId"],
                         CiphertextBlob=b"\x01" * 256, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
        self.assertError("ValidationException", self.kms.decrypt, CiphertextBlob=b"\x01" * 256,
                         EncryptionAlgorithm="RSAES_OAEP_SHA_256")  # no KeyId

    def test_hmac_keys(self):
        for spec, algorithm, size in [("HMAC_224", "HMAC_SHA_224", 28),
                                      ("HMAC_256", "HMAC_SHA_256", 32),
                                      ("HMAC_384", "HMAC_SHA_384", 48),
                                      ("HMAC_512", "HMAC_SHA_512", 64)]:
            with self.subTest(spec=spec):
                key = self.kms.create_key(KeySpec=spec, KeyUsage="GENERATE_VERIFY_MAC")
                key_id = key["KeyMetadata"]["KeyId"]
                self.assertEqual(key["KeyMetadata"]["MacAlgorithms"], [algorithm])
                mac = self.kms.generate_mac(KeyId=key_id, Message=b"webhook body",
                                            MacAlgorithm=algorithm)["Mac"]
                self.assertEqual(len(mac), size)
                again = self.kms.generate_mac(KeyId=key_id, Message=b"webhook body",
                                              MacAlgorithm=algorithm)["Mac"]
                self.assertEqual(mac, again)
                self.assertTrue(self.kms.verify_mac(KeyId=key_id, Message=b"webhook body",
                                                    MacAlgorithm=algorithm, Mac=mac)["MacValid"])
                self.assertError("KMSInvalidMacException", self.kms.verify_mac, KeyId=key_id,
                                 Message=b"webhook bodY", MacAlgorithm=algorithm, Mac=mac)
        self.assertError("InvalidKeyUsageException", self.kms.generate_mac, KeyId=key_id,
                         Message=b"x", MacAlgorithm="HMAC_SHA_256")  # the key is HMAC_512
        self.assertError("InvalidKeyUsageException", self.kms.encrypt, KeyId=key_id,
                         Plaintext=b"x")
        self.assertError("InvalidKeyUsageException", self.kms.generate_data_key, KeyId=key_id,
                         KeySpec="AES_256")
        self.assertError("ValidationException", self.kms.create_key, KeySpec="HMAC_256")
        self.assertError("UnsupportedOperationException", self.kms.enable_key_rotation,
                         KeyId=key_id)
        self.assertError("UnsupportedOperationException", self.kms.get_public_key, KeyId=key_id)

    def test_data_key_pairs_and_ecdh(self):
        sym = self.kms.create_key()["KeyMetadata"]["KeyId"]
        pair = self.kms.generate_data_key_pair(KeyId=sym, KeyPairSpec="ECC_NIST_P256",
                                               EncryptionContext={"app": "signer"})
        priv = self.write("pair.der", pair["PrivateKeyPlaintext"])
        r = openssl("pkey", "-inform", "DER", "-in", priv, "-pubout", "-outform", "DER")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, pair["PublicKey"])
        opened = self.kms.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"],
                                  EncryptionContext={"app": "signer"})["Plaintext"]
        self.assertEqual(opened, pair["PrivateKeyPlaintext"])
        bare = self.kms.generate_data_key_pair_without_plaintext(KeyId=sym,
                                                                 KeyPairSpec="RSA_2048")
        self.assertNotIn("PrivateKeyPlaintext", bare)
        self.assertError("ValidationException", self.kms.generate_data_key_pair, KeyId=sym,
                         KeyPairSpec="HMAC_256")

        # ECDH: a KEY_AGREEMENT key in the service, a key pair of ours.
        agree = self.kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")
        agree_id = agree["KeyMetadata"]["KeyId"]
        # Newer than Debian's botocore, which drops the member: read it raw.
        status, described = self.keyd.signed_request("DescribeKey", {"KeyId": agree_id})
        self.assertEqual(described["KeyMetadata"]["KeyAgreementAlgorithms"], ["ECDH"])
        kms_pem, _ = self.public_pem(agree_id)
        mine = self.path("mine.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-out", mine], check=True, capture_output=True)
        my_pub = subprocess.run(["openssl", "pkey", "-in", mine, "-pubout", "-outform", "DER"],
                                capture_output=True, check=True).stdout
        status, out = self.keyd.signed_request(
            "DeriveSharedSecret", {"KeyId": agree_id, "KeyAgreementAlgorithm": "ECDH",
                                   "PublicKey": base64.b64encode(my_pub).decode()})
        self.assertEqual(status, 200, out)
        ours = openssl("pkeyutl", "-derive", "-inkey", mine, "-peerkey", kms_pem)
        self.assertEqual(ours.returncode, 0, ours.stderr)
        self.assertEqual(base64.b64decode(out["SharedSecret"]), ours.stdout)
        status, out = self.keyd.signed_request(
            "DeriveSharedSecret", {"KeyId": agree_id, "KeyAgreementAlgorithm": "ECDH",
                                   "PublicKey": base64.b64encode(b"junk").decode()})
        self.assertEqual((status, out["__type"]), (400, "ValidationException"))
        self.assertError("InvalidKeyUsageException", self.kms.sign, KeyId=agree_id,
                         Message=b"x", SigningAlgorithm="ECDSA_SHA_256")

    def test_keys_survive_a_restart_and_specs_are_checked(self):
        key = self.kms.create_key(KeySpec="ECC_NIST_P384", KeyUsage="SIGN_VERIFY")
        key_id = key["KeyMetadata"]["KeyId"]
        sig = self.kms.sign(KeyId=key_id, Message=b"m", SigningAlgorithm="ECDSA_SHA_384")
        self.keyd.stop()
        self.keyd.start()
        self.kms = self.keyd.boto3_client()
        self.assertTrue(self.kms.verify(KeyId=key_id, Message=b"m", Signature=sig["Signature"],
                                        SigningAlgorithm="ECDSA_SHA_384")["SignatureValid"])
        self.assertEqual(self.kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeySpec"],
                         "ECC_NIST_P384")
        self.assertError("InvalidKeyUsageException", self.kms.sign, KeyId=key_id, Message=b"m",
                         SigningAlgorithm="ECDSA_SHA_256")  # P-384 signs with SHA-384
        self.assertError("ValidationException", self.kms.create_key, KeySpec="ECC_SECG_P256K1",
                         KeyUsage="KEY_AGREEMENT")
        self.assertError("ValidationException", self.kms.create_key, KeySpec="RSA_1024")
        self.assertError("InvalidKeyUsageException", self.kms.sign,
                         KeyId=self.kms.create_key()["KeyMetadata"]["KeyId"], Message=b"m",
                         SigningAlgorithm="ECDSA_SHA_256")


if __name__ == "__main__":
    unittest.main()


class ImportTest(unittest.TestCase):
    """Imported key material (Origin EXTERNAL): wrapped by the openssl
    command exactly as AWS's documentation shows, imported with boto3; the
    material is the one imported (a ciphertext made under it decrypts again
    after a delete and re-import), expiry and the AWS errors."""

    def setUp(self):
        self.keyd = Keyd(tcp=True).start()
        self.kms = self.keyd.boto3_client()
        self.tmp = tempfile.mkdtemp(prefix="keyd-import-")
        self.material = os.urandom(32)

    def tearDown(self):
        self.keyd.cleanup()
        subprocess.run(["rm", "-rf", self.tmp])

    def path(self, name):
        return os.path.join(self.tmp, name)

    def assertError(self, code, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        self.assertEqual(cm.exception.response["Error"]["Code"], code,
                         cm.exception.response["Error"].get("Message"))

    def wrap(self, key_id, algorithm, material=None):
        """GetParametersForImport, then the material wrapped by openssl."""
        material = material or self.material
        params = self.kms.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm=algorithm,
                                                    WrappingKeySpec="RSA_2048")
        pub = self.path("wrap.der")
        with open(pub, "wb") as f:
            f.write(params["PublicKey"])
        with open(self.path("material"), "wb") as f:
            f.write(material)
        oaep = ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                "-pkeyopt", "rsa_mgf1_md:sha256"]
        if algorithm == "RSAES_OAEP_SHA_256":
            wrapped = subprocess.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-keyform",
                                      "DER", "-inkey", pub, *oaep, "-in", self.path("material")],
                                     capture_output=True, check=True).stdout
        else:  # RSA_AES_KEY_WRAP_SHA_256: an AES key under RSA-OAEP, the material under it
            aes = os.urandom(32)
            with open(self.path("aes"), "wb") as f:
                f.write(aes)
            head = subprocess.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-keyform", "DER",
                                   "-inkey", pub, *oaep, "-in", self.path("aes")],
                                  capture_output=True, check=True).stdout
            tail = subprocess.run(["openssl", "enc", "-id-aes256-wrap-pad", "-iv", "A65959A6",
                                   "-K", aes.hex(), "-in", self.path("material")],
                                  capture_output=True, check=True).stdout
            wrapped = head + tail
        return params["ImportToken"], wrapped

    def state(self, key_id):
        return self.kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"]

    def test_import_use_delete_reimport(self):
        key_id = self.kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
        self.assertEqual(self.state(key_id), "PendingImport")
        self.assertError("KMSInvalidStateException", self.kms.encrypt, KeyId=key_id,
                         Plaintext=b"x")
        self.assertError("KMSInvalidStateException", self.kms.enable_key, KeyId=key_id)
        token, wrapped = self.wrap(key_id, "RSAES_OAEP_SHA_256")
        self.kms.import_key_material(KeyId=key_id, ImportToken=token,
                                     EncryptedKeyMaterial=wrapped,
                                     ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
        meta = self.kms.describe_key(KeyId=key_id)["KeyMetadata"]
        self.assertEqual((meta["KeyState"], meta["Origin"], meta["ExpirationModel"]),
                         ("Enabled", "EXTERNAL", "KEY_MATERIAL_DOES_NOT_EXPIRE"))
        blob = self.kms.encrypt(KeyId=key_id, Plaintext=b"under imported material")
        blob = blob["CiphertextBlob"]
        self.kms.delete_imported_key_material(KeyId=key_id)
        self.assertEqual(self.state(key_id), "PendingImport")
        self.assertError("KMSInvalidStateException", self.kms.decrypt, CiphertextBlob=blob)
        # Other material is refused; the same material, wrapped the other
        # way, brings the key back, and the old ciphertext decrypts: the
        # service holds exactly what was imported.
        token, wrapped = self.wrap(key_id, "RSA_AES_KEY_WRAP_SHA_256", material=os.urandom(32))
        self.assertError("IncorrectKeyMaterialException", self.kms.import_key_material,
                         KeyId=key_id, ImportToken=token, EncryptedKeyMaterial=wrapped,
                         ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
        token, wrapped = self.wrap(key_id, "RSA_AES_KEY_WRAP_SHA_256")
        self.kms.import_key_material(KeyId=key_id, ImportToken=token,
                                     EncryptedKeyMaterial=wrapped,
                                     ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"],
                         b"under imported material")
        # And it survives a restart; rotation is refused.
        self.keyd.stop()
        self.keyd.start()
        self.kms = self.keyd.boto3_client()
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"],
                         b"under imported material")
        self.assertError("UnsupportedOperationException", self.kms.enable_key_rotation,
                         KeyId=key_id)

    def test_material_expires(self):
        import time
        key_id = self.kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
        token, wrapped = self.wrap(key_id, "RSAES_OAEP_SHA_256")
        valid_to = int(time.time()) + 3600
        self.kms.import_key_material(KeyId=key_id, ImportToken=token,
                                     EncryptedKeyMaterial=wrapped, ValidTo=valid_to,
                                     ExpirationModel="KEY_MATERIAL_EXPIRES")
        blob = self.kms.encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"]
        # Two hours later (the daemon's testing clock): the material is gone.
        self.keyd.stop()
        self.keyd.start(extra_args=["--clock-offset-seconds", "7200"])
        self.kms = self.keyd.boto3_client()
        self.assertEqual(self.state(key_id), "PendingImport")
        self.assertError("KMSInvalidStateException", self.kms.decrypt, CiphertextBlob=blob)

    def test_aws_errors(self):
        normal = self.kms.create_key()["KeyMetadata"]["KeyId"]
        self.assertError("UnsupportedOperationException", self.kms.get_parameters_for_import,
                         KeyId=normal, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                         WrappingKeySpec="RSA_2048")
        key_id = self.kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
        self.assertError("ValidationException", self.kms.get_parameters_for_import,
                         KeyId=key_id, WrappingAlgorithm="RSAES_PKCS1_V1_5",
                         WrappingKeySpec="RSA_2048")
        token, wrapped = self.wrap(key_id, "RSAES_OAEP_SHA_256")
        self.assertError("InvalidImportTokenException", self.kms.import_key_material,
                         KeyId=key_id, ImportToken=b"not a token", EncryptedKeyMaterial=wrapped,
                         ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
        self.assertError("InvalidCiphertextException", self.kms.import_key_material,
                         KeyId=key_id, ImportToken=token, EncryptedKeyMaterial=b"\x01" * 256,
                         ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
        self.assertError("ValidationException", self.kms.import_key_material,
                         KeyId=key_id, ImportToken=token, EncryptedKeyMaterial=wrapped)  # no ValidTo
        other = self.kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
        self.assertError("InvalidImportTokenException", self.kms.import_key_material,
                         KeyId=other, ImportToken=token, EncryptedKeyMaterial=wrapped,
                         ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
        short = self.wrap(key_id, "RSAES_OAEP_SHA_256", material=os.urandom(16))
        self.assertError("IncorrectKeyMaterialException", self.kms.import_key_material,
                         KeyId=key_id, ImportToken=short[0], EncryptedKeyMaterial=short[1],
                         ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
        self.assertError("UnsupportedOperationException", self.kms.create_key,
                         Origin="EXTERNAL", KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")


class KeyPairThrottleTest(unittest.TestCase):
    """Key pairs made on request are limited per principal (they cost up to
    a second of CPU each): a burst of 2 and no refill here, so the third is
    ThrottlingException for its caller, deterministically, and another
    principal is not affected."""

    def test_key_pairs_per_principal(self):
        import boto3
        from botocore.config import Config
        keyd = Keyd(tcp=True, extra_args=["--key-pair-burst", "2", "--key-pairs-per-second", "0"])
        with open(keyd.access_keys, "a") as f:
            f.write("AKIAENVELOPEOTHER001 envelope/test/other/secret/0001/abcdefgh other\n")
        keyd.start()
        try:
            kms = keyd.boto3_client()
            other = boto3.client(
                "kms", endpoint_url=f"http://127.0.0.1:{keyd.port}", region_name="us-east-1",
                aws_access_key_id="AKIAENVELOPEOTHER001",
                aws_secret_access_key="envelope/test/other/secret/0001/abcdefgh",
                config=Config(retries={"max_attempts": 1}))
            sym = kms.create_key()["KeyMetadata"]["KeyId"]
            ext = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
            kms.generate_data_key_pair(KeyId=sym, KeyPairSpec="ECC_NIST_P256")
            kms.get_parameters_for_import(KeyId=ext, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                          WrappingKeySpec="RSA_2048")
            for call in (lambda: kms.generate_data_key_pair(KeyId=sym,
                                                            KeyPairSpec="ECC_NIST_P256"),
                         lambda: kms.get_parameters_for_import(
                             KeyId=ext, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                             WrappingKeySpec="RSA_2048")):
                with self.assertRaises(ClientError) as cm:
                    call()
                self.assertEqual(cm.exception.response["Error"]["Code"], "ThrottlingException")
            # Symmetric operations are not limited; other principals have
            # their own bucket.
            kms.generate_data_key(KeyId=sym, KeySpec="AES_256")
            own = other.create_key()["KeyMetadata"]["KeyId"]
            other.generate_data_key_pair(KeyId=own, KeyPairSpec="ECC_NIST_P256")
        finally:
            keyd.cleanup()
