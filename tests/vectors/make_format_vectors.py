#!/usr/bin/env python3
"""Independent reference for the envelopefs v1 and v2 known-answer vectors.

Computes, with python3-cryptography and hashlib instead of the project's own
code, the bytes that docs/FORMAT.md lists and tests/unit/format_vectors_test.cc
checks. Run it to re-derive them after a deliberate format change.
"""
import hashlib
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

DEK = bytes(range(0x00, 0x20))
FILE_ID = bytes(range(0xA0, 0xB0))
WRAPPED = b"wrapped-dek-blob-from-the-key-service"
CHUNK_SIZE = 4096
NONCE_A = bytes(range(0x10, 0x1C))
PLAIN_A = b"envelopefs known-answer vector\n"
NONCE_B = bytes(range(0x40, 0x4C))
PLAIN_B = b"interior chunk 1"
MAGIC = bytes([0x89]) + b"ENVFS\r\n"


def hkdf(info, length=32):
    return HKDF(hashes.SHA256(), length, FILE_ID, info).derive(DEK)


def slot(gen, blob):
    body = struct.pack("<QH", gen, len(blob)) + blob
    body += bytes(496 - len(body))
    return body + hashlib.sha256(b"envelopefs/v1/dek-slot" + body).digest()[:16]


def prefix(flags, commitment, version=1):
    return (MAGIC + struct.pack("<HHI", version, flags, CHUNK_SIZE) + FILE_ID +
            commitment)


def aad(index, last):
    return FILE_ID + struct.pack("<QB", index, 1 if last else 0)


def main():
    commitment = hkdf(b"envelopefs/v1/key-commitment")
    chunk_key = hkdf(b"envelopefs/v1/chunk-key/aes-256-gcm")
    header = prefix(0, commitment) + slot(1, WRAPPED) + bytes(512)
    xheader = prefix(1, commitment)
    aead = AESGCM(chunk_key)
    chunk_a = NONCE_A + aead.encrypt(NONCE_A, PLAIN_A, aad(0, True))
    chunk_b = NONCE_B + aead.encrypt(NONCE_B, PLAIN_B, aad(1, False))
    empty = NONCE_A + aead.encrypt(NONCE_A, b"", aad(0, True))
    file_a = header + chunk_a
    print("commitment       ", commitment.hex())
    print("chunk_key        ", chunk_key.hex())
    print("header_prefix    ", header[:64].hex())
    print("slot0_head       ", header[64:64 + 10 + len(WRAPPED)].hex())
    print("slot0_checksum   ", header[64 + 496:64 + 512].hex())
    print("header_sha256    ", hashlib.sha256(header).hexdigest())
    print("xattr_header     ", xheader.hex())
    print("xattr_value      ", (b"\x01" + WRAPPED).hex())
    print("chunk_a          ", chunk_a.hex())
    print("chunk_b          ", chunk_b.hex())
    print("empty_chunk      ", empty.hex())
    print("file_a_size      ", len(file_a))
    print("file_a_sha256    ", hashlib.sha256(file_a).hexdigest())
    # Version 2 (a file that may have holes): the same file with chunk B at
    # index 2 and chunk 1 a hole (1, 4096 + 28 zero bytes).
    sparse_commitment = hkdf(b"envelopefs/v2/key-commitment/sparse")
    sparse_prefix = prefix(0, sparse_commitment, version=2)
    chunk_b2 = NONCE_B + aead.encrypt(NONCE_B, PLAIN_B, aad(2, True))
    full = bytes([0x5A]) * CHUNK_SIZE
    chunk_0 = NONCE_A + aead.encrypt(NONCE_A, full, aad(0, False))
    file_s = sparse_prefix + slot(1, WRAPPED) + bytes(512) + chunk_0 + \
        bytes(CHUNK_SIZE + 28) + chunk_b2
    print("v2_commitment    ", sparse_commitment.hex())
    print("v2_header_prefix ", sparse_prefix.hex())
    print("v2_chunk_b2      ", chunk_b2.hex())
    print("file_s_size      ", len(file_s))
    print("file_s_sha256    ", hashlib.sha256(file_s).hexdigest())


if __name__ == "__main__":
    main()


def names():
    """Name and symlink-target vectors (docs/FORMAT.md §8)."""
    import base64
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV
    name_key = bytes(range(0x20, 0x40))
    dir_id = bytes(range(0x60, 0x70))
    siv = AESSIV(name_key)
    def b64url(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    enc = siv.encrypt(b"hello.txt", [b"envelopefs/v1/name" + dir_id])
    print("name_hello_txt   ", b64url(enc))
    target = siv.encrypt(b"../target", [b"envelopefs/v1/symlink" + bytes(16)])
    print("symlink_target   ", b64url(target))
    long_enc = b64url(siv.encrypt(b"L" * 200, [b"envelopefs/v1/name" + dir_id]))
    print("long_name        ", "envelopefs.long." + b64url(hashlib.sha256(long_enc.encode()).digest()))


if __name__ == "__main__":
    names()
