#!/usr/bin/python3
"""Independent reference for the SigV4 vectors in tests/unit/sigv4_test.cc.

Signs KMS-shaped requests with botocore's SigV4Auth (Debian's python3-boto3,
botocore 1.29) instead of the project's own code, and prints each request's
signed headers. Run it with Debian's /usr/bin/python3 to re-derive the
expected Authorization values after a deliberate change to the vectors.

botocore reads the clock inside add_auth, so the signing time is fixed by
swapping the datetime module botocore.auth sees for one whose utcnow() is
constant.
"""
import datetime
import types

import botocore
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AMZ_DATE = "20240102T030405Z"
ACCESS_KEY_ID = "AKIAENVELOPEFSTEST01"
SECRET_ACCESS_KEY = "envelopefs+test/secret/KEY0123456789abcdef"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLE//session+token="
REGION = "us-east-1"
SERVICE = "kms"
ENDPOINT = "http://127.0.0.1:8443"
KMS_HEADERS = [
    ("Host", "127.0.0.1:8443"),
    ("Content-Type", "application/x-amz-json-1.1"),
    ("X-Amz-Target", "TrentService.Decrypt"),
]
KMS_BODY = b'{"CiphertextBlob":"AAAA"}'


class _FixedDatetime(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return cls.strptime(AMZ_DATE, botocore.auth.SIGV4_TIMESTAMP)


botocore.auth.datetime = types.SimpleNamespace(datetime=_FixedDatetime)


def sign(name, method, path_and_query, headers, body, token=None):
    request = AWSRequest(method=method, url=ENDPOINT + path_and_query,
                         data=body)
    for header, value in headers:
        # HTTPHeaders appends on assignment, so repeated names are kept in
        # order, as on the wire.
        request.headers[header] = value
    creds = Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY, token)
    auth = botocore.auth.SigV4Auth(creds, SERVICE, REGION)
    # Keep the canonical request add_auth signs: recomputed afterwards it
    # would cover the Authorization header just added.
    signed = {}
    canonical_request = auth.canonical_request

    def record(req):
        signed["canonical_request"] = canonical_request(req)
        return signed["canonical_request"]

    auth.canonical_request = record
    auth.add_auth(request)
    print(f"== {name}: {method} {path_and_query}")
    print("canonical request:")
    print(signed["canonical_request"])
    for header in ("X-Amz-Date", "X-Amz-Security-Token", "Authorization"):
        if header in request.headers:
            print(f"{header}: {request.headers[header]}")
    print()


def main():
    print("botocore", botocore.__version__)
    print()
    sign("kms-decrypt", "POST", "/", KMS_HEADERS, KMS_BODY)
    sign("kms-decrypt-session-token", "POST", "/", KMS_HEADERS, KMS_BODY,
         token=SESSION_TOKEN)
    # The path arrives percent-encoded; SigV4 for non-S3 services normalises
    # it and encodes it once more ("%20" becomes "%2520"). The query is
    # already in canonical encoding, so botocore (which sorts it as sent) and
    # a decode-then-encode implementation agree on it.
    sign("path-and-query", "GET",
         "/a%20b//./c/../d~e/?b=2&a=%20x&a=1&flag",
         [("Host", "127.0.0.1:8443"), ("X-Dup", " one "),
          ("X-Dup", "two   words"), ("x-dup", "three")],
         b"")


if __name__ == "__main__":
    main()
