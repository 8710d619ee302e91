"""Several hosts, one key service, over a real network: the test builds its
own hosts as network namespaces joined by veth links (addresses inside its
own namespaces only), runs the real envelope-keyd with a TLS listener in
one of them, and mounts a volume from each of two client "hosts" through
it over TLS, with SigV4 access keys as the hosts' credentials.

Checked: a key policy that names only host A's credentials denies host B;
killing and restarting the key service in the middle of writes loses
nothing, and both mounts recover by themselves; the AWS CLI and boto3 work
against it from a client host with --ca-bundle.

Skipped, with the reason, only where network namespaces cannot be made
(not root, no iproute2, or a sandbox that forbids them)."""
import errno
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from fs_harness import ENVELOPEFS
from harness import ENVELOPECTL, wait_for
from keyd_tls_test import Pki, TlsKeyd

TAG = str(os.getpid() % 100000)
KEYD_NS, HOST_A, HOST_B = f"efk{TAG}", f"efa{TAG}", f"efb{TAG}"
PORT = 8443
# One /30 per link: the key service's side, then the host's.
LINKS = {HOST_A: ("10.201.1.1", "10.201.1.2"), HOST_B: ("10.201.2.1", "10.201.2.2")}
CREDENTIALS = {
    HOST_A: ("AKIAFLEETHOSTA000001", "fleet/host-a/secret/0001/abcdefghijklmno", "host-a"),
    HOST_B: ("AKIAFLEETHOSTB000001", "fleet/host-b/secret/0001/abcdefghijklmno", "host-b"),
}


def sh(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120, **kw)


def namespaces_unavailable():
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        return "iproute2 or nsenter missing"
    probe = f"efprobe{TAG}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return "ip netns add failed: " + r.stderr.strip()
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def build_network():
    sh("ip", "netns", "add", KEYD_NS)
    sh("ip", "-n", KEYD_NS, "link", "set", "lo", "up")
    for i, (host, (server, client)) in enumerate(LINKS.items()):
        sh("ip", "netns", "add", host)
        sh("ip", "-n", host, "link", "set", "lo", "up")
        outer, inner = f"efk{TAG}{i}", f"efh{TAG}{i}"
        sh("ip", "link", "add", outer, "netns", KEYD_NS, "type", "veth", "peer", "name", inner,
           "netns", host)
        sh("ip", "-n", KEYD_NS, "addr", "add", f"{server}/30", "dev", outer)
        sh("ip", "-n", host, "addr", "add", f"{client}/30", "dev", inner)
        sh("ip", "-n", KEYD_NS, "link", "set", outer, "up")
        sh("ip", "-n", host, "link", "set", inner, "up")


def tear_down_network():
    for ns in (KEYD_NS, HOST_A, HOST_B):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class Host:
    """A client machine: commands run in its network namespace (nsenter
    --net only, so its FUSE mounts are visible to the test) with its own
    credentials in the environment, never on argv."""

    def __init__(self, name, pki, tmp):
        self.name = name
        self.endpoint = f"https://{LINKS[name][0]}:{PORT}"
        self.ca = pki.ca
        key_id, secret, _ = CREDENTIALS[name]
        self.env = dict(os.environ, AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret,
                        AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1", HOME=tmp)
        self.prefix = ["nsenter", f"--net=/run/netns/{name}"]

    def run(self, *cmd, check=True):
        r = subprocess.run(self.prefix + list(cmd), capture_output=True, text=True, timeout=120,
                           env=self.env)
        if check and r.returncode != 0:
            raise AssertionError(f"{self.name}: {cmd} failed {r.returncode}: {r.stdout}{r.stderr}")
        return r

    def envelopefs(self, *args, check=True):
        return self.run(ENVELOPEFS, *args, "--kms", self.endpoint, "--ca-file", self.ca,
                        check=check)

    def mount(self, cipherdir, mnt, key):
        self.run(ENVELOPEFS, "mount", cipherdir, mnt, "-o",
                 f"kms={self.endpoint},ca_file={self.ca},key={key}")


@unittest.skipIf(namespaces_unavailable(), f"network namespaces unavailable: {namespaces_unavailable()}")
class FleetTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="envelopefs-fleet-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        tear_down_network()
        self.addCleanup(tear_down_network)
        build_network()
        pki_dir = os.path.join(self.tmp, "pki")
        os.mkdir(pki_dir)
        self.pki = Pki(pki_dir)
        ips = ",".join(f"IP:{server}" for server, _ in LINKS.values())
        self.pki.server = self.pki._leaf("fleet-server", "ca", "/CN=keyd",
                                         f"subjectAltName={ips}\nextendedKeyUsage=serverAuth\n")
        self.keyd = TlsKeyd(self.pki, listen=f"0.0.0.0:{PORT}")
        self.keyd.prefix = ["ip", "netns", "exec", KEYD_NS]
        with open(self.keyd.access_keys, "w") as f:
            for key_id, secret, name in CREDENTIALS.values():
                f.write(f"{key_id} {secret} {name}\n")
        self.keyd.start()
        self.addCleanup(self.keyd.cleanup)
        self.hosts = {name: Host(name, self.pki, self.tmp) for name in LINKS}
        self.mounts = []
        self.addCleanup(self.unmount_all)
        # Root makes one key per host over the Unix socket; each key's
        # policy names root and that host's access key only.
        self.keys = {}
        for name in LINKS:
            key = self.keyd.envelopectl("key", "create", "--description", name).stdout.strip()
            policy = {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "kms:*", "Resource": "*",
                "Principal": {"Local": ["user:root", "key:" + CREDENTIALS[name][2]]}}]}
            path = os.path.join(self.tmp, f"policy-{name}.json")
            with open(path, "w") as f:
                json.dump(policy, f)
            self.keyd.envelopectl("key", "policy", "put", key, path)
            self.keys[name] = key

    def unmount_all(self):
        for mnt in reversed(self.mounts):
            for _ in range(50):
                if subprocess.run(["fusermount3", "-u", mnt], capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
        self.mounts = []

    def make_volume(self, host_name):
        host = self.hosts[host_name]
        cipherdir = os.path.join(self.tmp, f"cipher-{host_name}")
        mnt = os.path.join(self.tmp, f"mnt-{host_name}")
        os.mkdir(mnt)
        host.envelopefs("init", cipherdir, "--key", self.keys[host_name])
        host.mount(cipherdir, mnt, self.keys[host_name])
        self.mounts.append(mnt)
        return cipherdir, mnt

    def test_a_policy_naming_host_a_denies_host_b(self):
        cipher_a, mnt_a = self.make_volume(HOST_A)
        with open(os.path.join(mnt_a, "report"), "w") as f:
            f.write("host A's data")
        self.unmount_all()
        b = self.hosts[HOST_B]
        # Host B reaches the service (its own key works) ...
        b.envelopefs("info", os.path.join(self.tmp, "unused"), check=False)
        r = b.run(ENVELOPECTL, "--endpoint", b.endpoint, "--ca-file", b.ca, "key", "describe",
                  self.keys[HOST_B])
        self.assertIn(self.keys[HOST_B], r.stdout)
        # ... but not host A's key, so not host A's volume.
        r = b.envelopefs("info", cipher_a, "--key", self.keys[HOST_A], check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("AccessDeniedException", r.stderr)
        mnt = os.path.join(self.tmp, "mnt-b-on-a")
        os.mkdir(mnt)
        r = b.run(ENVELOPEFS, "mount", cipher_a, mnt, "-o",
                  f"kms={b.endpoint},ca_file={b.ca},key={self.keys[HOST_A]}", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("AccessDeniedException", r.stderr)
        # The audit log names the remote host and its principal.
        with open(os.path.join(self.keyd.data_dir, "audit.log")) as f:
            text = f.read()
        self.assertIn(LINKS[HOST_B][1], text)
        self.assertIn("key:host-b", text)

    def test_killing_the_key_service_mid_write_loses_nothing(self):
        volumes = {name: self.make_volume(name) for name in LINKS}
        block = 64 * 1024
        written = {name: 0 for name in LINKS}  # bytes acknowledged per host
        created = {name: [] for name in LINKS}  # files whose create succeeded
        stop = threading.Event()
        errors = []

        def pattern(name, i):
            unit = f"{name}:{i:08d}:".encode()
            return (unit * (block // len(unit) + 1))[:block]

        def writer(name):
            mnt = volumes[name][1]
            try:
                with open(os.path.join(mnt, "stream"), "wb", buffering=0) as f:
                    i = 0
                    while not stop.is_set() or i < 16:
                        n = f.write(pattern(name, i))  # an open file needs no key service
                        if n != block:
                            raise AssertionError(f"short write: {n} of {block} bytes")
                        written[name] += block
                        i += 1
                        if i % 8 == 0:
                            os.fsync(f.fileno())
                        if i % 4 == 0:
                            # A create needs a new file key: fails while the
                            # service is down (or takes one made ahead).
                            path = os.path.join(mnt, f"new-{i}")
                            try:
                                with open(path, "w") as g:
                                    g.write(path)
                                created[name].append(path)
                            except OSError:
                                pass
            except Exception as e:  # reported below, never lost
                errors.append(f"{name}: {e!r}")

        threads = [threading.Thread(target=writer, args=(n,)) for n in LINKS]
        for t in threads:
            t.start()
        def progressed(marks):
            self.assertEqual(errors, [])
            return all(written[n] >= marks[n] + 32 * block for n in LINKS)
        wait_for(lambda: progressed({n: 0 for n in LINKS}), "writes before the kill")
        self.keyd.kill9()
        marks = dict(written)
        wait_for(lambda: progressed(marks), "writes to open files while the key service is down")

        # The outage is real for both mounts: once the file keys made ahead
        # are used up or too old (at most 2 s), a create fails with EIO.
        def create_fails(mnt):
            try:
                with open(os.path.join(mnt, "during-outage"), "w"):
                    pass
                os.unlink(os.path.join(mnt, "during-outage"))
                return False
            except OSError as e:
                self.assertEqual(e.errno, errno.EIO)
                return True
        for name in LINKS:
            wait_for(lambda mnt=volumes[name][1]: create_fails(mnt), f"a failed create on {name}")
        self.keyd.start()
        # Both mounts recover by themselves: a create succeeds again,
        # without a remount.
        for name in LINKS:
            mnt = volumes[name][1]

            def create_works(mnt=mnt):
                try:
                    with open(os.path.join(mnt, "after-restart"), "w") as g:
                        g.write("back")
                    return True
                except OSError:
                    return False
            wait_for(create_works, f"a create on {name} after the restart")
        stop.set()
        for t in threads:
            t.join(timeout=120)
        self.assertEqual(errors, [])

        # Everything acknowledged is there, through fresh mounts (no cache).
        self.unmount_all()
        for name, (cipherdir, _) in volumes.items():
            mnt = os.path.join(self.tmp, f"remount-{name}")
            os.mkdir(mnt)
            self.hosts[name].mount(cipherdir, mnt, self.keys[name])
            self.mounts.append(mnt)
            with open(os.path.join(mnt, "stream"), "rb") as f:
                data = f.read()
            self.assertEqual(len(data), written[name])
            for i in range(written[name] // block):
                self.assertEqual(data[i * block:(i + 1) * block], pattern(name, i), f"{name} block {i}")
            for path in created[name]:
                moved = path.replace(volumes[name][1], mnt)
                with open(moved) as g:
                    self.assertEqual(g.read(), path)
            with open(os.path.join(mnt, "after-restart")) as g:
                self.assertEqual(g.read(), "back")
        fsck = json.loads(self.hosts[HOST_A].envelopefs(
            "fsck", volumes[HOST_A][0], "--deep", "--json", "--key", self.keys[HOST_A]).stdout)
        self.assertEqual(fsck["damaged"], [])

    def test_aws_cli_and_boto3_from_a_client_host(self):
        b = self.hosts[HOST_B]
        r = b.run("/usr/bin/aws", "kms", "describe-key", "--key-id", self.keys[HOST_B],
                  "--endpoint-url", b.endpoint, "--ca-bundle", b.ca, "--output", "json")
        self.assertEqual(json.loads(r.stdout)["KeyMetadata"]["KeyId"], self.keys[HOST_B])
        r = b.run("/usr/bin/aws", "kms", "describe-key", "--key-id", self.keys[HOST_A],
                  "--endpoint-url", b.endpoint, "--ca-bundle", b.ca, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("AccessDenied", r.stderr)
        script = (
            "import boto3, sys\n"
            f"c = boto3.client('kms', endpoint_url='{b.endpoint}', verify='{b.ca}')\n"
            f"dk = c.generate_data_key(KeyId='{self.keys[HOST_B]}', KeySpec='AES_256',"
            " EncryptionContext={'host': 'b'})\n"
            "pt = c.decrypt(CiphertextBlob=dk['CiphertextBlob'], EncryptionContext={'host': 'b'},"
            f" KeyId='{self.keys[HOST_B]}')['Plaintext']\n"
            "sys.exit(0 if pt == dk['Plaintext'] else 1)\n")
        b.run("/usr/bin/python3", "-c", script)


if __name__ == "__main__":
    unittest.main()
