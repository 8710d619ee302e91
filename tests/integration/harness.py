"""Start and drive the real envelope-keyd for integration tests.

Nothing here is a fake: the daemon is the built binary on a temporary data
directory with a real LMDB store; requests go over its real Unix socket or
its real loopback TCP endpoint.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

BUILD_DIR = os.environ.get("ENVELOPE_BUILD_DIR",
                           os.path.join(os.path.dirname(__file__), "..", "..", "build"))
KEYD = os.path.join(BUILD_DIR, "keyservice", "envelope-keyd")
ENVELOPECTL = os.path.join(BUILD_DIR, "tools", "envelopectl")

ACCESS_KEY_ID = "AKIAENVELOPETEST0001"
SECRET_KEY = "envelope/test/secret/key/0001/abcdefghij"


def wait_for(predicate, what, timeout=60):
    """Polls `predicate` until it returns something true, and returns it: a
    bound generous for loaded machines, never a fixed sleep standing in
    for a condition."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class KmsError(Exception):
    def __init__(self, status, type_, message):
        super().__init__(f"{type_}: {message}")
        self.status = status
        self.type = type_
        self.message = message


class Keyd:
    """One envelope-keyd process on a temporary data directory."""

    def __init__(self, tcp=False, extra_args=(), data_dir=None, prefix=()):
        self.tmp = tempfile.mkdtemp(prefix="keyd-test-")
        os.chmod(self.tmp, 0o755)  # other test users must reach the socket
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.socket = os.path.join(self.tmp, "kms.sock")
        self.tcp = tcp
        self.extra_args = list(extra_args)
        self.prefix = list(prefix)  # e.g. ["ip", "netns", "exec", NS]: where it runs
        self.port = None
        self.proc = None
        self.access_keys = os.path.join(self.tmp, "access-keys")
        with open(self.access_keys, "w") as f:
            f.write(f"# test keys\n{ACCESS_KEY_ID} {SECRET_KEY} ci-bot\n")
        os.chmod(self.access_keys, 0o600)
        self._conn = None

    def start(self, extra_args=None, pass_fds=()):
        args = self.prefix + [KEYD, "--data-dir", self.data_dir, "--socket", self.socket, "-f"]
        if self.tcp:
            args += ["--listen", "127.0.0.1:0", "--access-keys", self.access_keys]
        args += self.extra_args + list(extra_args or [])
        self.log_path = os.path.join(self.tmp, "keyd.stderr")
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, pass_fds=pass_fds)
        deadline = time.time() + 20
        text = ""
        while time.time() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(offset)  # only this run's output
                text = f.read().decode(errors="replace")
            m = re.search(r"envelope-keyd serving unix:\S+( and http://127\.0\.0\.1:(\d+))?", text)
            if m and (not self.tcp or m.group(2)):
                if self.tcp:
                    self.port = int(m.group(2))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"envelope-keyd exited {self.proc.returncode}:\n{text}")
            time.sleep(0.05)
        raise RuntimeError("envelope-keyd did not become ready:\n" + text)

    def stop(self, sig=signal.SIGTERM):
        self._conn = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)
        code = self.proc.returncode if self.proc else None
        self.proc = None
        return code

    def start_detached(self, extra_args, answers, timeout=30):
        """Starts the daemon without -f on a pseudo-terminal, typing each of
        `answers` at the prompt that names it (a (prompt text, answer)
        pair); returns what the terminal showed and the starting process's
        exit code (0: the daemon is serving, in the background)."""
        import pty
        import select
        args = [KEYD, "--data-dir", self.data_dir, "--socket", self.socket] + list(extra_args)
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(KEYD, args)
        shown = b""
        pending = list(answers)
        deadline = time.time() + timeout
        code = None
        while time.time() < deadline:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    data = b""
                shown += data
                if pending and pending[0][0].encode() in shown.split(b"\n")[-1]:
                    os.write(fd, pending.pop(0)[1].encode() + b"\n")
                if data:
                    continue
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                break
        os.close(fd)
        self.detached = True
        return shown.decode(errors="replace"), code

    def stop_detached(self):
        """Stops a daemon started by start_detached (found by its socket)."""
        subprocess.run(["pkill", "-f", f"socket {self.socket}"], check=False)
        for _ in range(100):
            if subprocess.run(["pgrep", "-f", f"socket {self.socket}"],
                              capture_output=True).returncode != 0:
                return
            time.sleep(0.05)

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def cleanup(self):
        self.stop()
        if getattr(self, "detached", False):
            self.stop_detached()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # Raw requests over the Unix socket.
    def raw(self, target, body, headers=None, conn=None):
        c = conn or UnixHTTPConnection(self.socket)
        h = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        c.request("POST", "/", body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        return r.status, json.loads(data) if data else {}

    def call(self, op, body=None, prefix="TrentService"):
        status, out = self.raw(f"{prefix}.{op}", body if body is not None else {})
        if status != 200:
            raise KmsError(status, out.get("__type"), out.get("message"))
        return out

    def envelopectl(self, *args, check=True, input=None, user=None):
        cmd = [ENVELOPECTL, "--endpoint", "unix:" + self.socket] + list(args)
        if user:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"{cmd} failed {r.returncode}: {r.stderr}")
        return r

    def boto3_client(self):
        import boto3
        from botocore.config import Config
        return boto3.client(
            "kms", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_KEY,
            config=Config(retries={"max_attempts": 1}))

    def signed_request(self, op, body, secret=SECRET_KEY, date=None, sign=True,
                       host=None, sign_target=True):
        """A hand-made SigV4 request with botocore's signer, for operations
        Debian's boto3 does not know and for deliberately bad signatures.
        host: sign (and send) this Host instead of this daemon's address;
        sign_target=False: add X-Amz-Target only after signing."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        url = f"http://{host or f'127.0.0.1:{self.port}'}/"
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        if sign_target:
            headers["X-Amz-Target"] = f"TrentService.{op}"
        req = AWSRequest(method="POST", url=url, data=json.dumps(body), headers=headers)
        if sign:
            auth = SigV4Auth(Credentials(ACCESS_KEY_ID, secret), "kms", "us-east-1")
            if date is not None:
                import botocore.auth as ba
                real = ba.datetime.datetime

                class Fixed(real):
                    @classmethod
                    def utcnow(cls):
                        return date
                ba.datetime.datetime = Fixed
                try:
                    auth.add_auth(req)
                finally:
                    ba.datetime.datetime = real
            else:
                auth.add_auth(req)
        prepared = req.prepare()
        sent = dict(prepared.headers)
        if not sign_target:
            sent["X-Amz-Target"] = f"TrentService.{op}"
        if host:
            sent["Host"] = host  # http.client would send the address it connects to
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request("POST", "/", body=prepared.body, headers=sent)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, json.loads(data) if data else {}
