"""Hostile clients and hostile local users against the real envelope-keyd.

Every test runs a real attack: malformed bytes that used to kill the daemon,
a fake server squatting another user's default socket, a fake server run by
another uid, a request relayed to another port, an operation swapped in a
captured request, idle connections that used to lock everyone out, and
clients too slow to ever finish a request. Other users are `nobody` and an
unnamed uid (4242) via setpriv."""
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import harness
from harness import ENVELOPECTL, Keyd

NOBODY = pwd.getpwnam("nobody").pw_uid
VICTIM_UID = 4242  # a second unprivileged user, with no passwd entry
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
AS_VICTIM = ["setpriv", f"--reuid={VICTIM_UID}", f"--regid={VICTIM_UID}", "--clear-groups"]
SECRET = "hunter2-do-not-leak-7f3a"


def wait_for(predicate, what, timeout=30):
    """harness.wait_for with this suite's bound."""
    return harness.wait_for(predicate, what, timeout)


def response_complete(data):
    """True once `data` holds a whole Content-Length-framed response."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def exchange(path, data, timeout=30):
    """Sends raw bytes on a new Unix-socket connection and reads until the
    server closes it. Returns (status, json body or None, raw bytes)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    out = b""
    while not response_complete(out):
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else None
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    return status, parsed, out


def request_bytes(target, body, extra=b""):
    return (b"POST / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            b"Content-Type: application/x-amz-json-1.1\r\n"
            b"X-Amz-Target: " + target + b"\r\n" + extra +
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def closed_by_server(sock, timeout=30):
    """True once the server closes `sock` (end of stream or reset) within
    `timeout`; any bytes it sends first are skipped."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return False


# A fake key service, run as another user: records the length and bytes of
# every connection's input (reading until the request is complete or the
# client closes), answers 500, and handles connections one at a time in
# accept order. argv: socket path to bind (or "fd:N" for a bound socket to
# listen on), record file.
FAKE_SERVER = r'''
import os, socket, sys
where, record = sys.argv[1], sys.argv[2]
if where.startswith("fd:"):
    s = socket.socket(fileno=int(where[3:]))
else:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(where)
    os.chmod(where, 0o666)
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(30)
    data = b""
    try:
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if len(body) >= length:
                    break
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
        c.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n"
                  b"Connection: close\r\n\r\n{}")
    except OSError:
        pass
    c.close()
    with open(record, "a") as f:
        f.write(f"{len(data)} {data.hex()}\n")
'''


class FakeServer:
    """FAKE_SERVER as `nobody`; `where` as in its argv."""

    def __init__(self, where, record, pass_fds=()):
        self.record = record
        self.socket_path = where if not where.startswith("fd:") else None
        self.proc = subprocess.Popen(AS_NOBODY + [sys.executable, "-c", FAKE_SERVER, where, record],
                                     stdout=subprocess.PIPE, pass_fds=pass_fds)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.proc.kill()
            raise RuntimeError("the fake server did not start")

    def records(self, path):
        """Every connection's input, in accept order, up to and including a
        sentinel connection made now: once the sentinel is recorded, every
        connection made before it is too."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(path)
        s.sendall(b"SENTINEL")
        s.shutdown(socket.SHUT_WR)
        s.recv(100)
        s.close()

        def read():
            if not os.path.exists(self.record):
                return None
            lines = open(self.record).read().splitlines()
            if lines and lines[-1].split(" ")[1:] == [b"SENTINEL".hex()]:
                return ("recorded", [bytes.fromhex(l.split(" ")[1]) for l in lines[:-1]])
            return None
        return wait_for(read, "the fake server's record")[1]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class MalformedInputTest(unittest.TestCase):
    """Bytes that are not UTF-8, not HTTP, or too big: each gets an AWS error
    answer and the daemon keeps serving. `TrentService.\\xff` used to kill
    it (the target was echoed into an error and json::dump threw)."""

    @classmethod
    def setUpClass(cls):
        cls.keyd = Keyd(tcp=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.keyd.cleanup()

    def assertAlive(self):
        self.assertIsNone(self.keyd.proc.poll(), "envelope-keyd died")
        self.assertIn("Keys", self.keyd.call("ListKeys"))

    def test_invalid_utf8_target(self):
        for target in [b"TrentService.\xff", b"EnvelopeKeyService.\xfe\xff",
                       b"\xc3\x28", b"TrentService.\xed\xa0\x80", b"\xff" * 3000]:
            status, body, raw = exchange(self.keyd.socket, request_bytes(target, b"{}"))
            self.assertEqual(status, 400, raw[:300])
            self.assertEqual(body["__type"], "UnknownOperationException")
            self.assertAlive()

    def test_invalid_utf8_target_over_tcp(self):
        s = socket.create_connection(("127.0.0.1", self.keyd.port), timeout=30)
        s.sendall(request_bytes(b"TrentService.\xff", b"{}").replace(
            b"Host: localhost", f"Host: 127.0.0.1:{self.keyd.port}".encode()))
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        s.close()
        self.assertTrue(out.startswith(b"HTTP/1.1 403 "), out[:200])
        self.assertEqual(json.loads(out.partition(b"\r\n\r\n")[2])["__type"],
                         "MissingAuthenticationTokenException")
        self.assertAlive()

    def test_invalid_utf8_in_bodies(self):
        for body in [b'{"Description": "\xff"}', b'{"\xfe\xff": 1}',
                     b'{"Description": "\\ud800"}', b'\xff\xfe{}', b'{"Tags": [{"TagKey": "\xc0\xaf"}]}']:
            status, out, raw = exchange(self.keyd.socket,
                                        request_bytes(b"TrentService.CreateKey", body))
            self.assertEqual(status, 400, raw[:300])
            self.assertEqual(out["__type"], "SerializationException")
            self.assertAlive()

    def test_malformed_http_and_huge_headers(self):
        huge = b"X-Big: " + b"a" * (64 * 1024) + b"\r\n"
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
        for data in [b"\x00\xff\xfe garbage \xff\r\n\r\n",
                     b"GET /\xff HTTP/1.1\r\n\r\n",
                     b"POST / HTTP/1.1\r\nX-\xff: 1\r\nContent-Length: 2\r\n\r\n{}",
                     b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                     b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                     b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                     request_bytes(b"TrentService.ListKeys", b"{}", extra=huge),
                     request_bytes(b"TrentService.ListKeys", b"{}", extra=many)]:
            status, body, raw = exchange(self.keyd.socket, data)
            self.assertIn(status, (400, 413), raw[:300])
            self.assertIn(body["__type"], ("SerializationException", "ValidationException",
                                           "UnknownOperationException"))
            self.assertAlive()

    def test_audit_log_still_verifies(self):
        exchange(self.keyd.socket, request_bytes(b"TrentService.\xff\xfe", b"{}"))
        r = self.keyd.envelopectl("audit", "verify")
        self.assertIn("OK", r.stdout + r.stderr)
        self.assertAlive()


class SocketSquatTest(unittest.TestCase):
    """`nobody` creates another user's default socket directory first
    (/tmp/envelope-keyd-UID, used when XDG_RUNTIME_DIR is unset) and serves
    a fake key service there. The victim's client must refuse it before
    sending anything; the daemon must refuse to listen there."""

    def setUp(self):
        self.squat_dir = f"/tmp/envelope-keyd-{VICTIM_UID}"
        shutil.rmtree(self.squat_dir, ignore_errors=True)
        self.tmp = tempfile.mkdtemp(prefix="keyd-squat-")
        os.chmod(self.tmp, 0o755)
        self.fake = None

    def tearDown(self):
        if self.fake:
            self.fake.stop()
        shutil.rmtree(self.squat_dir, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def victim_sets_secret(self, endpoint=None):
        """uid 4242 stores SECRET with envelopectl, default endpoint unless
        one is given, XDG_RUNTIME_DIR unset."""
        work = os.path.join(self.tmp, "victim")
        os.makedirs(work, exist_ok=True)
        os.chown(work, VICTIM_UID, VICTIM_UID)
        env = {k: v for k, v in os.environ.items()
               if k not in ("XDG_RUNTIME_DIR", "ENVELOPE_KMS_ENDPOINT")}
        env["HOME"] = work
        cmd = AS_VICTIM + [ENVELOPECTL] + (["--endpoint", endpoint] if endpoint else []) + [
            "secrets", "--file", os.path.join(work, "app.env"), "--key", "alias/home",
            "set", "app", "PASSWORD"]
        return subprocess.run(cmd, input=SECRET, capture_output=True, text=True, env=env,
                              timeout=120, cwd=work)

    def test_client_refuses_squatted_default_directory(self):
        subprocess.run(AS_NOBODY + ["mkdir", "-m", "0755", self.squat_dir], check=True)
        sock = os.path.join(self.squat_dir, "kms.sock")
        self.fake = FakeServer(sock, os.path.join(self.squat_dir, "record"))
        r = self.victim_sets_secret()
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"belongs to uid {NOBODY}", r.stderr)
        received = self.fake.records(sock)
        self.assertEqual(received, [], "the client talked to the squatter")
        self.assertNotIn(SECRET.encode().hex(), open(self.fake.record).read())

    def test_client_refuses_server_of_another_uid(self):
        # A directory the victim may trust (root's, 0755) holding a socket
        # whose server is `nobody`: bound by root, listened on by nobody,
        # so SO_PEERCRED names nobody.
        sock_path = os.path.join(self.tmp, "kms.sock")
        record_dir = os.path.join(self.tmp, "record")
        os.mkdir(record_dir)
        os.chown(record_dir, NOBODY, -1)
        bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bound.bind(sock_path)
        os.chmod(sock_path, 0o666)
        self.fake = FakeServer(f"fd:{bound.fileno()}", os.path.join(record_dir, "r"),
                               pass_fds=(bound.fileno(),))
        bound.close()
        r = self.victim_sets_secret(endpoint="unix:" + sock_path)
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"served by uid {NOBODY}", r.stderr)
        received = self.fake.records(sock_path)
        self.assertTrue(received, "the client never connected")
        self.assertEqual(received, [b""] * len(received), "the client sent bytes to a fake server")

    def test_daemon_refuses_directory_of_another_user_or_writable(self):
        theirs = os.path.join(self.tmp, "theirs")
        os.mkdir(theirs, 0o755)
        os.chown(theirs, NOBODY, -1)
        open_dir = os.path.join(self.tmp, "open")
        os.mkdir(open_dir)
        os.chmod(open_dir, 0o777)
        for directory, why in [(theirs, f"belongs to uid {NOBODY}"),
                               (open_dir, "writable by group or others")]:
            keyd = Keyd()
            keyd.socket = os.path.join(directory, "kms.sock")
            try:
                with self.assertRaises(RuntimeError) as cm:
                    keyd.start()
                self.assertIn(why, str(cm.exception))
                self.assertFalse(os.path.exists(os.path.join(directory, "kms.sock")))
            finally:
                keyd.cleanup()

    def test_daemon_creates_a_private_socket_directory(self):
        keyd = Keyd()
        fresh = os.path.join(self.tmp, "fresh")
        keyd.socket = os.path.join(fresh, "kms.sock")
        try:
            keyd.start()
            st = os.stat(fresh)
            self.assertEqual(st.st_uid, os.geteuid())
            self.assertEqual(st.st_mode & 0o022, 0)
        finally:
            keyd.cleanup()


class SignedHeadersTest(unittest.TestCase):
    """The TCP endpoint: a request signed for another listener (Host) or
    whose operation was not signed (X-Amz-Target) is refused."""

    @classmethod
    def setUpClass(cls):
        cls.keyd = Keyd(tcp=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.keyd.cleanup()

    def test_properly_signed_request_is_served(self):
        status, out = self.keyd.signed_request("ListKeys", {})
        self.assertEqual(status, 200, out)
        status, out = self.keyd.signed_request("ListKeys", {}, host=f"localhost:{self.keyd.port}")
        self.assertEqual(status, 200, out)

    def test_request_signed_for_another_port_is_refused(self):
        other = self.keyd.port + 1 if self.keyd.port < 65535 else self.keyd.port - 1
        for host in [f"127.0.0.1:{other}", f"127.0.0.2:{self.keyd.port}", "127.0.0.1",
                     f"evil.example:{self.keyd.port}"]:
            status, out = self.keyd.signed_request("ListKeys", {}, host=host)
            self.assertEqual(status, 400, (host, out))
            self.assertEqual(out["__type"], "InvalidSignatureException")
            self.assertIn("Host", out["message"])

    def test_unsigned_target_is_refused(self):
        key_id = self.keyd.call("CreateKey")["KeyMetadata"]["KeyId"]
        status, out = self.keyd.signed_request("DescribeKey", {"KeyId": key_id},
                                               sign_target=False)
        self.assertEqual(status, 400, out)
        self.assertEqual(out["__type"], "IncompleteSignatureException")
        self.assertIn("x-amz-target", out["message"])

    def test_boto3_signs_what_the_server_requires(self):
        kms = self.keyd.boto3_client()
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"x")


# Runs as `nobody`: opens N connections to the socket, then says for each
# whether the server refused it (answered 503 and closed) within a generous
# deadline, keeping the accepted ones open until stdin closes.
HOG = r'''
import socket, sys
path, n = sys.argv[1], int(sys.argv[2])
conns = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    conns.append(s)
print("open", flush=True)
refused = []
for s in conns[int(sys.argv[3]):]:
    s.settimeout(30)
    try:
        refused.append(s.recv(100).startswith(b"HTTP/1.1 503"))
    except socket.timeout:
        refused.append(False)
print(" ".join("refused" if r else "accepted" for r in refused), flush=True)
sys.stdin.read()
'''


class ConnectionLimitTest(unittest.TestCase):
    """One uid holding idle connections up to its cap keeps no one else out.
    (Before the cap, 1,030 idle connections from one user locked everyone
    out.) Timeouts are long here, so the hog's connections stay open."""

    CAP = 4

    @classmethod
    def setUpClass(cls):
        cls.keyd = Keyd(extra_args=[
            "--max-connections-per-peer", str(cls.CAP), "--max-connections", "64",
            "--header-timeout-seconds", "120"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.keyd.cleanup()

    def test_one_uid_at_its_cap_does_not_block_another(self):
        # The server admits connections in accept order, so the first CAP
        # are admitted and the rest refused.
        hog = subprocess.Popen(
            AS_NOBODY + [sys.executable, "-c", HOG, self.keyd.socket, str(self.CAP + 3),
                         str(self.CAP)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            self.assertEqual(hog.stdout.readline().strip(), "open")
            # Another uid (root) is served while nobody is at its cap.
            self.assertIn("Keys", self.keyd.call("ListKeys"))
            verdicts = hog.stdout.readline().split()
            self.assertEqual(verdicts, ["refused"] * 3)
        finally:
            hog.stdin.close()
            hog.wait(timeout=60)
        # Once its connections are gone, nobody is served again.
        def nobody_served():
            return subprocess.run(
                AS_NOBODY + [ENVELOPECTL, "--endpoint", "unix:" + self.keyd.socket, "key", "list"],
                capture_output=True, timeout=60).returncode == 0
        wait_for(nobody_served, "nobody to be served again")


class TimeoutTest(unittest.TestCase):
    """Connections that send nothing, or too slowly, or idle between
    requests, are closed (small limits here; polled with a generous
    deadline, never timed from below)."""

    @classmethod
    def setUpClass(cls):
        cls.keyd = Keyd(extra_args=[
            "--header-timeout-seconds", "1", "--idle-timeout-seconds", "1",
            "--body-timeout-seconds", "1"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.keyd.cleanup()

    def test_silent_connection_is_closed(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.keyd.socket)
        self.assertTrue(closed_by_server(s), "a connection that sent nothing stayed open")
        s.close()

    def test_slow_header_is_closed(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.keyd.socket)
        s.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\n")  # and never the rest
        self.assertTrue(closed_by_server(s), "a half-sent header kept its connection")
        s.close()

    def test_slow_body_is_closed(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.keyd.socket)
        s.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: TrentService.ListKeys\r\n"
                  b"Content-Length: 100\r\n\r\n{")
        self.assertTrue(closed_by_server(s), "a half-sent body kept its connection")
        s.close()

    def test_idle_keep_alive_connection_is_closed(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self.keyd.socket)
        s.sendall(request_bytes(b"TrentService.ListKeys", b"{}").replace(
            b"Connection: close\r\n", b""))
        out = b""
        while b"\r\n\r\n" not in out:
            out += s.recv(65536)
        self.assertTrue(out.startswith(b"HTTP/1.1 200 "), out[:200])
        self.assertTrue(closed_by_server(s), "an idle kept-alive connection stayed open")
        s.close()


if __name__ == "__main__":
    unittest.main()
