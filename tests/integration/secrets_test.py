"""Integration tests of `envelopectl secrets`: the real envelopectl against
the real envelope-keyd (harness.Keyd), and a secrets file kept inside a real
envelopefs mount (fs_harness.Mount). Values are random markers, so that a
leak anywhere (file, /proc, audit log) is found by searching for them."""
import base64
import json
import os
import pty
import select
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import unittest

from harness import ENVELOPECTL, Keyd
from fs_harness import Mount

MAX_VALUE = 4095
MAX_TOTAL = 64 * 1024

# Run as CMD by exec: reports its pid and parent, the variables it was
# asked about (by name: the values themselves must not be on its command
# line), and which processes have any of those values in
# /proc/PID/cmdline.
SCAN_PROC = r"""
import json, os, sys
names = sys.argv[1:]
values = [os.environ[n].encode() for n in names]
hits = []
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        continue
    if any(v in cmdline for v in values):
        hits.append(pid)
print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "hits": hits,
                  "checked": len(values)}))
"""

# Run as CMD in the fd mode: reads the secrets from $ENVELOPE_SECRETS_FD and
# reports them, its own environment, and whether the descriptor is sealed.
READ_FD = r"""
import base64, json, os
fd = int(os.environ["ENVELOPE_SECRETS_FD"])
data = b""
while True:
    chunk = os.read(fd, 65536)
    if not chunk:
        break
    data += chunk
try:
    os.write(fd, b"x")
    sealed = False
except OSError:
    sealed = True
with open("/proc/self/environ", "rb") as f:
    environ = f.read()
print(json.dumps({"fd": fd, "payload": base64.b64encode(data).decode(),
                  "environ": base64.b64encode(environ).decode(),
                  "sealed": sealed}))
"""


def marker(tag):
    return f"{tag}-{os.urandom(8).hex()}"


class SecretsTestCase(unittest.TestCase):
    """A key service, a key, and a secrets file path in a fresh directory."""

    def setUp(self):
        self.keyd = Keyd().start()
        self.tmp = tempfile.mkdtemp(prefix="secrets-test-")
        os.chmod(self.tmp, 0o755)  # other users in PolicyTest
        self.file = os.path.join(self.tmp, "billing.env")
        self.key = self.ctl("key", "create").stdout.decode().strip()

    def tearDown(self):
        self.keyd.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- Running envelopectl. ---

    def ctl(self, *args, input=b"", check=True, user=None, env=None, endpoint=None):
        cmd = [ENVELOPECTL, "--endpoint", endpoint or ("unix:" + self.keyd.socket)]
        cmd += list(args)
        if user:
            cmd = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups"] + cmd
        if isinstance(input, str):
            input = input.encode()
        r = subprocess.run(cmd, input=input, capture_output=True, timeout=120, env=env)
        if check and r.returncode != 0:
            raise AssertionError(f"{cmd} failed {r.returncode}: {r.stderr.decode()}")
        return r

    def secrets(self, *args, file=None, **kw):
        return self.ctl("secrets", "--file", file or self.file, *args, **kw)

    def set(self, app, name, value, file=None, key=True, **kw):
        extra = ["--key", self.key] if key else []
        return self.secrets("set", app, name, *extra, input=value, file=file, **kw)

    def get(self, app, name, file=None, **kw):
        return self.secrets("get", app, name, "--raw", file=file, **kw)

    def list_json(self, app, file=None):
        return json.loads(self.ctl("--json", "secrets", "--file", file or self.file,
                                   "list", app).stdout)

    def exec_env(self, app, *flags, file=None, env=None):
        """The child's environment as a dict, from `env -0`."""
        r = self.secrets("exec", app, *flags, "--", "/usr/bin/env", "-0", file=file, env=env)
        out = {}
        for entry in r.stdout.split(b"\0")[:-1]:
            k, _, v = entry.partition(b"=")
            out[k.decode()] = v
        return out

    def read(self, path=None):
        with open(path or self.file, "rb") as f:
            return f.read()

    def lines(self, path=None):
        return self.read(path).decode().split("\n")

    def write_lines(self, lines, path=None):
        with open(path or self.file, "w") as f:
            f.write("\n".join(lines))

    def assertFails(self, result, *needles):
        self.assertNotEqual(result.returncode, 0, result.stdout)
        err = result.stderr.decode()
        for n in needles:
            self.assertIn(n, err)
        return err

    def assertNoPlaintext(self, data, values):
        if isinstance(data, str):
            data = data.encode()
        for v in values:
            raw = v.encode() if isinstance(v, str) else v
            self.assertNotIn(raw, data)
            # Nor its base64, alone or as the value record KMS encrypts.
            self.assertNotIn(base64.b64encode(raw), data)
            self.assertNotIn(base64.b64encode(b"\x01" + raw), data)


class RoundTripTest(SecretsTestCase):
    def test_set_get_round_trip_from_stdin(self):
        db = marker("db")
        token = marker("tok")
        self.set("billing", "DB_PASSWORD", db + "\n")  # one newline dropped
        self.set("billing", "API_TOKEN", token, key=False)  # the file knows its key
        self.assertEqual(self.get("billing", "DB_PASSWORD").stdout, db.encode())
        self.assertEqual(self.get("billing", "API_TOKEN").stdout, token.encode())
        # Without --raw, get ends the value with a newline.
        self.assertEqual(self.secrets("get", "billing", "DB_PASSWORD").stdout,
                         db.encode() + b"\n")
        # Any byte but NUL, newlines included; --raw keeps them all.
        odd = b"line1\nline2\r\n\t\x01\xff 'q' \"dq\" $HOME \\ #\n\n"
        self.secrets("set", "billing", "ODD", "--raw", input=odd)
        self.assertEqual(self.get("billing", "ODD").stdout, odd)
        self.set("billing", "EMPTY", "")
        self.assertEqual(self.get("billing", "EMPTY").stdout, b"")

        text = self.read()
        self.assertNoPlaintext(text, [db, token, odd])
        self.assertEqual(stat.S_IMODE(os.stat(self.file).st_mode), 0o600)
        lines = self.lines()
        self.assertTrue(lines[0].startswith("# envelope-secrets v1 app=billing key=arn:"), lines[0])
        self.assertIn(self.key, lines[0])
        self.assertTrue(lines[1].startswith("DB_PASSWORD=enc:v1:"), lines[1])
        self.assertEqual([l.split("=")[0] for l in lines[1:] if l],
                         ["DB_PASSWORD", "API_TOKEN", "ODD", "EMPTY"])

        listing = self.list_json("billing")
        self.assertEqual([s["Name"] for s in listing["Secrets"]],
                         ["DB_PASSWORD", "API_TOKEN", "ODD", "EMPTY"])
        self.assertEqual({s["KeyId"] for s in listing["Secrets"]}, {self.key})
        self.assertEqual({s["KeyVersion"] for s in listing["Secrets"]}, {1})
        self.assertEqual(listing["Secrets"][0]["ValueSize"], len(db))
        self.assertEqual(listing["Damaged"], [])
        text_listing = self.secrets("list", "billing").stdout.decode()
        self.assertIn("DB_PASSWORD", text_listing)
        self.assertNoPlaintext(text_listing, [db, token])

        missing = self.secrets("get", "billing", "NOPE", check=False)
        self.assertFails(missing, "NOPE is not set")
        self.assertFails(self.secrets("get", "billing", "DB_PASSWORD", check=False,
                                      file=os.path.join(self.tmp, "none.env")),
                         "does not exist")

    def test_set_changes_one_line_and_keeps_comments_and_mode(self):
        self.set("billing", "A", marker("a"))
        self.set("billing", "B", marker("b"))
        lines = self.lines()
        edited = [lines[0], "# the database", "", lines[1], "   # indented", lines[2], ""]
        self.write_lines(edited)
        os.chmod(self.file, 0o640)
        new = marker("a2")
        self.set("billing", "A", new)
        after = self.lines()
        self.assertEqual(len(after), len(edited))
        changed = [i for i in range(len(after)) if after[i] != edited[i]]
        self.assertEqual(changed, [3])
        self.assertEqual(self.get("billing", "A").stdout, new.encode())
        self.assertEqual(stat.S_IMODE(os.stat(self.file).st_mode), 0o640)
        self.secrets("rm", "billing", "A")
        self.assertEqual(self.lines(), edited[:3] + edited[4:])
        self.assertFails(self.secrets("rm", "billing", "A", check=False), "A is not set")
        # No temporary files are left behind.
        self.assertEqual(os.listdir(self.tmp), ["billing.env"])

    def test_a_symlinked_file_is_updated_where_it_points(self):
        os.mkdir(os.path.join(self.tmp, "real"))
        target = os.path.join(self.tmp, "real", "billing.env")
        self.set("billing", "A", "1", file=target)
        os.symlink(target, self.file)
        self.set("billing", "B", "2")
        self.assertTrue(os.path.islink(self.file))
        self.assertEqual(self.get("billing", "B", file=target).stdout, b"2")

    def test_a_new_file_needs_a_key_and_the_file_pins_it(self):
        r = self.set("billing", "A", "x", key=False, check=False)
        self.assertFails(r, "give --key")
        self.assertFalse(os.path.exists(self.file))
        self.set("billing", "A", "x")
        other = self.ctl("key", "create").stdout.decode().strip()
        r = self.secrets("get", "billing", "A", "--key", other, check=False)
        self.assertFails(r, "is encrypted under")
        self.ctl("key", "alias", "create", "alias/billing", self.key)
        self.assertEqual(self.secrets("get", "billing", "A", "--raw", "--key",
                                      "alias/billing").stdout, b"x")

    def test_import_export_round_trip(self):
        db, tok = marker("db"), marker("tok")
        dotenv = (f"# plaintext\nexport DB_PASSWORD='{db}'\n"
                  f"API_TOKEN=\"{tok}\\nsecond line\"  # comment\n"
                  "EMPTY=\nSPACED = a b c\n")
        src = os.path.join(self.tmp, "plain.env")
        with open(src, "w") as f:
            f.write(dotenv)
        out = self.secrets("import", "billing", src, "--key", self.key).stdout.decode()
        self.assertIn("imported 4", out)
        os.remove(src)
        self.assertNoPlaintext(self.read(), [db, tok])
        self.assertEqual(self.get("billing", "API_TOKEN").stdout,
                         f"{tok}\nsecond line".encode())
        self.assertEqual(self.get("billing", "SPACED").stdout, b"a b c")

        refused = self.secrets("export", "billing", check=False)
        self.assertFails(refused, "--plaintext")
        self.assertEqual(refused.stdout, b"")
        exported = self.secrets("export", "billing", "--plaintext").stdout
        self.assertIn(f"DB_PASSWORD='{db}'".encode(), exported)
        # What export writes, import reads back to the same values (stdin).
        other = os.path.join(self.tmp, "copy.env")
        self.ctl("secrets", "--file", other, "--key", self.key, "import", "billing", "-",
                 input=exported)
        for name in ("DB_PASSWORD", "API_TOKEN", "EMPTY", "SPACED"):
            self.assertEqual(self.get("billing", name, file=other).stdout,
                             self.get("billing", name).stdout, name)

        # A bad line is named and nothing is imported.
        before = self.read()
        r = self.secrets("import", "billing", "-", input="GOOD=1\n1BAD=2\n", check=False)
        self.assertFails(r, "standard input:2: invalid variable name")
        self.assertEqual(self.read(), before)

    def test_prompt_does_not_echo(self):
        value = marker("typed")
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [ENVELOPECTL, "--endpoint", "unix:" + self.keyd.socket, "secrets", "--file",
             self.file, "--key", self.key, "set", "billing", "TYPED"],
            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        seen = b""
        deadline = time.time() + 30
        while b"Value of TYPED" not in seen and time.time() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 4096)
        self.assertIn(b"input is not shown", seen)
        os.write(master, value.encode() + b"\n")
        proc.wait(timeout=60)
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        os.close(master)
        self.assertEqual(proc.returncode, 0, seen)
        self.assertNotIn(value.encode(), seen)  # not echoed
        self.assertEqual(self.get("billing", "TYPED").stdout, value.encode())

    def test_concurrent_sets_lose_no_update(self):
        # Including the race to create the file.
        values = {f"V{i}": marker(f"v{i}") for i in range(8)}
        errors = []

        def one(name):
            r = self.set("billing", name, values[name], check=False)
            if r.returncode != 0:
                errors.append(r.stderr.decode())

        threads = [threading.Thread(target=one, args=(n,)) for n in values]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(sorted(s["Name"] for s in self.list_json("billing")["Secrets"]),
                         sorted(values))
        for name, v in values.items():
            self.assertEqual(self.get("billing", name).stdout, v.encode())


class ExecTest(SecretsTestCase):
    def setUp(self):
        super().setUp()
        self.values = {"DB_PASSWORD": marker("db"), "API_TOKEN": marker("tok"),
                       "MULTI": marker("m") + "\nline2"}
        for name, v in self.values.items():
            self.set("billing", name, v)
        self.expected = {k: v.encode() for k, v in self.values.items()}

    def test_child_sees_exactly_the_expected_variables(self):
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "INHERITED": "kept",
                "DB_PASSWORD": "stale value from the caller"}
        child = self.exec_env("billing", env=base)
        want = {k: v.encode() for k, v in base.items()}
        want.update(self.expected)  # the secrets win over the caller's
        self.assertEqual(child, want)

    def test_pristine_gives_the_secrets_and_nothing_else(self):
        child = self.exec_env("billing", "--pristine",
                              env={"PATH": "/usr/bin:/bin", "INHERITED": "dropped"})
        self.assertEqual(child, self.expected)
        # CMD is still found through our PATH, though the child has none.
        r = self.secrets("exec", "billing", "--pristine", "--", "env", "-0",
                         env={"PATH": "/usr/bin:/bin"})
        self.assertNotIn(b"PATH=", r.stdout)

    def test_no_shell_no_parent_and_nothing_in_any_cmdline(self):
        args = [ENVELOPECTL, "--endpoint", "unix:" + self.keyd.socket, "secrets", "--file",
                self.file, "exec", "billing", "--", "python3", "-c", SCAN_PROC,
                *self.values]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 0, err)
        report = json.loads(out)
        self.assertEqual(report["checked"], 3)
        self.assertEqual(report["hits"], [])
        # envelopectl became the child: same pid, and its parent is us, so
        # no envelopectl process is left holding the secrets.
        self.assertEqual(report["pid"], proc.pid)
        self.assertEqual(report["ppid"], os.getpid())
        # Arguments reach CMD unchanged, shell metacharacters included.
        r = self.secrets("exec", "billing", "--", "printf", "%s|", "$DB_PASSWORD", "a b", ";")
        self.assertEqual(r.stdout, b"$DB_PASSWORD|a b|;|")

    def test_loader_and_shell_hooks_are_refused(self):
        # set refuses them outright...
        for name in ("LD_PRELOAD", "BASH_ENV", "PATH"):
            self.assertFails(self.set("billing", name, "/tmp/x.so", check=False),
                             "refused variable name")
        # ...and a line planted by someone allowed to Encrypt under the key,
        # with the right context, does not reach the child.
        blob = self.keyd.call("Encrypt", {
            "KeyId": self.key, "Plaintext": base64.b64encode(b"\x01/tmp/evil.so").decode(),
            "EncryptionContext": {"envelope:secrets": "v1", "app": "billing",
                                  "name": "LD_PRELOAD"},
        })["CiphertextBlob"]
        with open(self.file, "a") as f:
            f.write("LD_PRELOAD=enc:v1:" + blob + "\n")
        r = self.secrets("exec", "billing", "--", "/usr/bin/env", check=False)
        self.assertNotIn(b"LD_PRELOAD", r.stdout)
        self.assertFails(r, "LD_PRELOAD")
        # rm removes the line; then exec works again.
        self.secrets("rm", "billing", "LD_PRELOAD")
        self.assertEqual(self.exec_env("billing")["DB_PASSWORD"], self.expected["DB_PASSWORD"])

    def test_exit_status_and_a_missing_command(self):
        r = self.secrets("exec", "billing", "--", "sh", "-c", "exit 7", check=False)
        self.assertEqual(r.returncode, 7)
        r = self.secrets("exec", "billing", "--", "no-such-command-here", check=False)
        self.assertEqual(r.returncode, 127)
        self.assertIn("cannot execute no-such-command-here", r.stderr.decode())

    def test_secrets_on_a_descriptor_instead_of_the_environment(self):
        for flags in ([], ["--pristine"]):
            r = self.secrets("exec", "billing", "--secrets-fd", "3", *flags, "--",
                             "python3", "-c", READ_FD)
            report = json.loads(r.stdout)
            self.assertEqual(report["fd"], 3)
            payload = base64.b64decode(report["payload"])
            want = b"".join(k.encode() + b"=" + v + b"\0" for k, v in self.expected.items())
            self.assertEqual(payload, want)
            self.assertTrue(report["sealed"])
            environ = base64.b64decode(report["environ"])
            self.assertIn(b"ENVELOPE_SECRETS_FD=3\0", environ)
            self.assertNoPlaintext(environ, self.values.values())
            for name in self.values:
                self.assertNotIn(name.encode() + b"=", environ)
        # Descriptor 0: the secrets arrive as standard input.
        r = self.secrets("exec", "billing", "--secrets-fd", "0", "--", "cat")
        self.assertEqual(r.stdout, want)
        r = self.secrets("exec", "billing", "--secrets-fd", "1", "--", "true", check=False)
        self.assertFails(r, "--secrets-fd")


class BindingTest(SecretsTestCase):
    """A value is bound to its variable, its application and the file's key."""

    def setUp(self):
        super().setUp()
        self.a, self.b = marker("a"), marker("b")
        self.set("billing", "A", self.a)
        self.set("billing", "B", self.b)

    def test_a_value_moved_to_another_variable_is_refused(self):
        lines = self.lines()
        blob_a = lines[1].split("=", 1)[1]
        self.write_lines([lines[0], lines[1], "B=" + blob_a, ""])
        for r in (self.get("billing", "B", check=False),
                  self.secrets("exec", "billing", "--", "true", check=False)):
            err = self.assertFails(r, f"{self.file}:3: cannot decrypt B",
                                   "InvalidCiphertextException")
            self.assertNotIn(self.a, err)
            self.assertNotIn(self.a.encode(), r.stdout)
        # Swapping the names of two lines is the same move.
        self.write_lines([lines[0], "A=" + lines[2].split("=", 1)[1],
                          "B=" + blob_a, ""])
        self.assertFails(self.get("billing", "A", check=False), "InvalidCiphertextException")

    def test_a_value_copied_to_another_application_is_refused(self):
        other = os.path.join(self.tmp, "payroll.env")
        self.set("payroll", "X", marker("x"), file=other)
        lines = self.lines()
        with open(other, "a") as f:
            f.write(lines[1] + "\n")  # billing's A, same key, same name
        r = self.get("payroll", "A", file=other, check=False)
        self.assertFails(r, f"{other}:3: cannot decrypt A", "InvalidCiphertextException")
        self.assertNotIn(self.a.encode(), r.stdout)
        # Relabelling the whole file to another application does not work
        # either: the application comes from the command line.
        with open(self.file) as f:
            text = f.read()
        relabelled = os.path.join(self.tmp, "relabelled.env")
        with open(relabelled, "w") as f:
            f.write(text.replace("app=billing", "app=payroll", 1))
        self.assertFails(self.get("payroll", "A", file=relabelled, check=False),
                         "InvalidCiphertextException")
        self.assertFails(self.get("payroll", "A", check=False), "holds the secrets of 'billing'")

    def test_a_value_under_another_key_is_refused(self):
        # Someone who can write the file encrypts a value of their choosing
        # under their own key with the right context: the file's key is
        # pinned, so it is refused.
        mine = self.keyd.call("CreateKey", {})["KeyMetadata"]["KeyId"]
        blob = self.keyd.call("Encrypt", {
            "KeyId": mine, "Plaintext": base64.b64encode(b"\x01evil").decode(),
            "EncryptionContext": {"envelope:secrets": "v1", "app": "billing", "name": "A"},
        })["CiphertextBlob"]
        lines = self.lines()
        self.write_lines([lines[0], "A=enc:v1:" + blob, lines[2], ""])
        r = self.get("billing", "A", check=False)
        self.assertFails(r, f"{self.file}:2: cannot decrypt A", "IncorrectKeyException")
        self.assertNotIn(b"evil", r.stdout)


class PolicyTest(SecretsTestCase):
    def test_a_user_the_key_policy_does_not_name_cannot_decrypt(self):
        v = marker("v")
        self.set("billing", "A", v)
        os.chmod(self.file, 0o644)  # the file is readable: only KMS stands in the way
        for args in (("get", "billing", "A"),
                     ("exec", "billing", "--", "/usr/bin/env"),
                     ("export", "billing", "--plaintext")):
            r = self.secrets(*args, user="nobody", check=False)
            self.assertFails(r, "AccessDeniedException")
            self.assertNotIn(v.encode(), r.stdout)
        # list needs no key: names and versions only.
        r = self.ctl("--json", "secrets", "--file", self.file, "list", "billing", user="nobody")
        self.assertEqual([s["Name"] for s in json.loads(r.stdout)["Secrets"]], ["A"])
        # Granting nobody kms:Decrypt on the key is what lets it in.
        policy = json.loads(self.keyd.call("GetKeyPolicy", {"KeyId": self.key})["Policy"])
        policy["Statement"].append({"Effect": "Allow", "Principal": {"Local": "user:nobody"},
                                    "Action": "kms:Decrypt", "Resource": "*"})
        self.keyd.call("PutKeyPolicy", {"KeyId": self.key, "Policy": json.dumps(policy)})
        self.assertEqual(self.get("billing", "A", user="nobody").stdout, v.encode())
        child = self.secrets("exec", "billing", "--pristine", "--", "/usr/bin/env",
                             user="nobody").stdout
        self.assertEqual(child, f"A={v}\n".encode())
        # ...and to nothing else: Encrypt is still denied.
        r = self.set("billing", "B", "x", key=False, user="nobody", check=False)
        self.assertFails(r, "AccessDeniedException")


class RotateTest(SecretsTestCase):
    def test_rotate_moves_every_value_to_the_new_version_and_exec_still_works(self):
        values = {f"V{i}": marker(f"v{i}") for i in range(5)}
        for name, v in values.items():
            self.set("billing", name, v)
        before = self.read()
        self.assertEqual(self.ctl("key", "rotate", self.key).stdout.strip(), b"2")
        # Nothing moved yet: the values are still under version 1.
        self.assertEqual({s["KeyVersion"] for s in self.list_json("billing")["Secrets"]}, {1})
        out = json.loads(self.ctl("--json", "secrets", "--file", self.file, "rotate",
                                  "billing").stdout)
        self.assertEqual((out["Rotated"], out["AlreadyCurrent"], out["KeyVersion"]), (5, 0, 2))
        self.assertEqual(out["From"], {"version 1": 5})
        listing = self.list_json("billing")["Secrets"]
        self.assertEqual([s["KeyVersion"] for s in listing], [2] * 5)
        after = self.read()
        self.assertNotEqual(after, before)
        self.assertNoPlaintext(after, values.values())
        child = self.exec_env("billing", "--pristine")
        self.assertEqual(child, {k: v.encode() for k, v in values.items()})
        # A second rotate has nothing to do and leaves the file as it is.
        self.assertIn(b"0 values re-encrypted",
                      self.secrets("rotate", "billing").stdout)
        self.assertEqual(self.read(), after)
        # Retiring version 1 proves nothing still needs it.
        self.ctl("key", "retire", self.key, "--below", "2")
        self.assertEqual(self.exec_env("billing", "--pristine"),
                         {k: v.encode() for k, v in values.items()})
        # New values go under the current version too.
        self.set("billing", "NEW", "n")
        self.assertEqual(self.list_json("billing")["Secrets"][-1]["KeyVersion"], 2)


class AuditTest(SecretsTestCase):
    def test_no_plaintext_in_the_audit_log(self):
        values = {"DB_PASSWORD": marker("db"), "API_TOKEN": marker("tok")}
        for name, v in values.items():
            self.set("billing", name, v)
        self.get("billing", "DB_PASSWORD")
        self.exec_env("billing")
        self.secrets("export", "billing", "--plaintext")
        self.ctl("key", "rotate", self.key)
        self.secrets("rotate", "billing")
        with open(os.path.join(self.keyd.data_dir, "audit.log"), "rb") as f:
            log = f.read()
        self.assertNoPlaintext(log, values.values())
        records = [json.loads(l) for l in log.decode().splitlines()]
        ops = [r["operation"] for r in records]
        self.assertIn("Encrypt", ops)
        self.assertIn("Decrypt", ops)
        self.assertIn("ReEncrypt", ops)
        # The log does record which variable was decrypted: the context.
        contexts = [r.get("encryption_context") for r in records if r["operation"] == "Decrypt"]
        self.assertIn({"envelope:secrets": "v1", "app": "billing", "name": "DB_PASSWORD"},
                      contexts)
        self.assertEqual(self.ctl("audit", "verify").returncode, 0)


class DamageTest(SecretsTestCase):
    def setUp(self):
        super().setUp()
        self.values = {"A": marker("a"), "B": marker("b"), "C": marker("c")}
        for name, v in self.values.items():
            self.set("billing", name, v)

    def test_a_damaged_line_is_named_and_loses_no_other_value(self):
        lines = self.lines()
        damaged = "B=enc:v1:!!!not base64!!!"
        self.write_lines([lines[0], lines[1], damaged, lines[3], ""])
        where = f"{self.file}:3:"
        # The other values still read.
        self.assertEqual(self.get("billing", "A").stdout, self.values["A"].encode())
        self.assertEqual(self.get("billing", "C").stdout, self.values["C"].encode())
        self.assertFails(self.get("billing", "B", check=False), where)
        # Commands that need every value refuse, naming the line.
        for args in (("exec", "billing", "--", "true"), ("export", "billing", "--plaintext"),
                     ("rotate", "billing")):
            self.assertFails(self.secrets(*args, check=False), where, "base64")
        r = self.secrets("list", "billing")
        self.assertIn(where.encode(), r.stderr)
        self.assertEqual([d["Line"] for d in self.list_json("billing")["Damaged"]], [3])
        # Writing another value keeps the damaged line byte for byte.
        self.set("billing", "D", "d")
        after = self.lines()
        self.assertEqual(after[:4], [lines[0], lines[1], damaged, lines[3]])
        self.assertTrue(after[4].startswith("D=enc:v1:"))
        self.secrets("rm", "billing", "C")
        self.assertIn(damaged, self.lines())
        # Setting B repairs its line in place.
        self.set("billing", "B", "fixed")
        self.assertEqual(self.lines()[2].split("=")[0], "B")
        self.assertEqual(self.exec_env("billing", "--pristine"),
                         {"A": self.values["A"].encode(), "B": b"fixed", "D": b"d"})

    def test_a_tampered_ciphertext_names_its_line(self):
        lines = self.lines()
        prefix, b64 = lines[2].split("enc:v1:")
        blob = bytearray(base64.b64decode(b64))
        blob[30] ^= 1
        lines[2] = prefix + "enc:v1:" + base64.b64encode(bytes(blob)).decode()
        self.write_lines(lines)
        self.assertEqual(self.get("billing", "A").stdout, self.values["A"].encode())
        self.assertFails(self.get("billing", "B", check=False),
                         f"{self.file}:3: cannot decrypt B", "InvalidCiphertextException")
        self.assertFails(self.secrets("exec", "billing", "--", "true", check=False),
                         f"{self.file}:3: cannot decrypt B")

    def test_a_damaged_header_is_refused_and_the_file_kept(self):
        text = self.read()
        bad = text.replace(b"envelope-secrets v1", b"envelope-secrets v9", 1)
        with open(self.file, "wb") as f:
            f.write(bad)
        self.assertFails(self.get("billing", "A", check=False),
                         f"{self.file}:1: unsupported format version")
        self.assertFails(self.set("billing", "Z", "z", check=False), f"{self.file}:1:")
        self.assertEqual(self.read(), bad)


class LimitsTest(SecretsTestCase):
    def test_value_size_limit(self):
        self.set("billing", "MAX", "x" * MAX_VALUE)
        self.assertEqual(self.get("billing", "MAX").stdout, b"x" * MAX_VALUE)
        r = self.set("billing", "BIG", "x" * (MAX_VALUE + 1), check=False)
        self.assertFails(r, "BIG: the value is 4096 bytes; the limit is 4095")
        r = self.set("billing", "BIG", "x" * 100000, check=False)
        self.assertFails(r, "BIG: the value is more than 4096 bytes; the limit is 4095")
        r = self.secrets("set", "billing", "NUL", input=b"a\0b", check=False)
        self.assertFails(r, "NUL byte")
        self.assertEqual([s["Name"] for s in self.list_json("billing")["Secrets"]], ["MAX"])

    def test_total_size_limit(self):
        # 16 values of 4000 bytes: 64,080 bytes of environment, just inside.
        plain = "".join(f"V{i:02d}='{'v' * 4000}'\n" for i in range(16))
        self.secrets("import", "billing", "-", "--key", self.key, input=plain)
        before = self.read()
        r = self.set("billing", "V16", "v" * 4000, check=False)
        self.assertFails(r, "the limit is 65536")
        r = self.secrets("import", "billing", "-", input="MORE='" + "m" * 2000 + "'\n",
                         check=False)
        self.assertFails(r, "the limit is 65536")
        self.assertEqual(self.read(), before)
        # Replacing a value counts its new size, not both.
        self.set("billing", "V00", "w" * 4000)
        self.assertEqual(len(self.exec_env("billing", "--pristine")), 16)

    def test_names_and_applications_are_checked(self):
        for name in ("1BAD", "A-B", "A B", "Ä"):
            r = self.set("billing", name, "x", check=False)
            self.assertFails(r, "invalid variable name")
        for app in ("bad app", "a/b", ".x", ""):
            r = self.set(app, "A", "x", check=False)
            self.assertFails(r, "invalid application name")
        self.assertFalse(os.path.exists(self.file))


class MountTest(SecretsTestCase):
    """The secrets file kept inside a real envelopefs mount."""

    def setUp(self):
        self.m = Mount().mount()
        self.keyd = self.m.keyd
        self.tmp = tempfile.mkdtemp(prefix="secrets-test-")
        self.key = self.m.key
        os.mkdir(self.m.path("app"))
        self.file = self.m.path("app", "billing.env")

    def tearDown(self):
        self.m.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_secrets_file_inside_a_mount_works_the_same(self):
        values = {"DB_PASSWORD": marker("db"), "API_TOKEN": marker("tok"),
                  "MULTI": marker("m") + "\nsecond"}
        for name, v in values.items():
            self.set("billing", name, v)
        expected = {k: v.encode() for k, v in values.items()}
        self.assertEqual(self.get("billing", "DB_PASSWORD").stdout, expected["DB_PASSWORD"])
        self.assertEqual(self.exec_env("billing", "--pristine"), expected)
        self.assertNoPlaintext(self.read(), values.values())
        self.assertEqual(stat.S_IMODE(os.stat(self.file).st_mode), 0o600)
        # Concurrent writers through the mount (flock + rename over).
        extra = {f"C{i}": marker(f"c{i}") for i in range(4)}
        threads = [threading.Thread(target=self.set, args=("billing", n, v))
                   for n, v in extra.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        expected.update({k: v.encode() for k, v in extra.items()})
        self.assertEqual(self.exec_env("billing", "--pristine"), expected)
        self.assertEqual(sorted(os.listdir(self.m.path("app"))), ["billing.env"])

        self.ctl("key", "rotate", self.key)
        self.secrets("rotate", "billing")
        self.assertEqual({s["KeyVersion"] for s in self.list_json("billing")["Secrets"]}, {2})
        r = self.secrets("exec", "billing", "--secrets-fd", "0", "--", "cat")
        records = [e.partition(b"=") for e in r.stdout.split(b"\0")[:-1]]
        self.assertEqual({k.decode(): v for k, _, v in records}, expected)

        # After a remount everything is still there, and the cipherdir holds
        # neither plaintext nor the file's names.
        self.m.unmount()
        for path in self.m.backing_files():
            with open(path, "rb") as f:
                data = f.read()
            self.assertNoPlaintext(data, values.values())
            self.assertNotIn(b"DB_PASSWORD", data)
        self.m.mount()
        self.assertEqual(self.exec_env("billing", "--pristine"), expected)


if __name__ == "__main__":
    unittest.main()
