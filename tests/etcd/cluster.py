"""A real etcd cluster on 127.0.0.1 for tests and benches: free ports, tmp data dirs, no leftovers.

Secured as docs/SCALE_OUT.md says: TLS for clients and peers with certificates from a throwaway CA
(made with `cryptography` once per process), client certificates required, and etcd auth on with
a `root` user and a `vnstitch` user whose role may read and write `role_prefix` only. `url(prefix)`
carries the TLS files and the user; the same settings are exported as $VNSTITCH_ETCD_* so that an
`EtcdStore(cluster.endpoints.split(","), prefix)` (and every replica process) connects the same way.
"""

from __future__ import annotations

import atexit
import base64
import datetime
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from urllib.parse import quote

import httpx

ETCD_BINARY = os.environ.get("VNSTITCH_ETCD_BINARY") or shutil.which("etcd")
ETCD_USER = "vnstitch"


@dataclass(frozen=True)
class Pki:
    """PEM files of the test CA, the members' certificate (server and peer) and vnstitch's client
    certificate, and the etcd users' password files."""

    directory: str
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    password_file: str       # the vnstitch user's
    root_password: str

    def client_context(self, with_certificate: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca)
        if with_certificate:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context

    def query(self) -> str:
        return "&".join(f"{k}={quote(v, safe='/')}" for k, v in (
            ("cacert", self.ca), ("cert", self.client_cert), ("key", self.client_key), ("user", ETCD_USER),
            ("password-file", self.password_file)))

    def export(self) -> None:
        os.environ.update({"VNSTITCH_ETCD_CACERT": self.ca, "VNSTITCH_ETCD_CERT": self.client_cert,
                           "VNSTITCH_ETCD_KEY": self.client_key, "VNSTITCH_ETCD_USER": ETCD_USER,
                           "VNSTITCH_ETCD_PASSWORD_FILE": self.password_file})


_pki: Pki | None = None


def shared_pki() -> Pki:
    """The process's CA and certificates (made on first use, removed at exit)."""
    global _pki
    if _pki is None:
        directory = tempfile.mkdtemp(prefix="vnstitch-etcd-pki-")
        atexit.register(shutil.rmtree, directory, True)
        _pki = make_pki(directory)
    return _pki


def make_pki(directory: str) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def write(name: str, key, cert) -> tuple[str, str]:
        cert_path, key_path = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")
        with open(key_path, "wb") as handle:
            handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        os.chmod(key_path, 0o600)
        with open(cert_path, "wb") as handle:
            handle.write(cert.public_bytes(serialization.Encoding.PEM))
        return cert_path, key_path

    def builder(subject: x509.Name, issuer: x509.Name, key) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=7)))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vnstitch test CA")])
    ca = (builder(ca_name, ca_name, ca_key)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    ca_path, _ = write("ca", ca_key, ca)

    def leaf(name: str, subject: x509.Name, usages, server: bool) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (builder(subject, ca_name, key)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
        if server:
            cert = cert.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return write(name, key, cert.sign(ca_key, hashes.SHA256()))

    # members serve clients and talk to each other (peer TLS): server and client use
    server_cert, server_key = leaf("member", x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etcd member")]),
                                   [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], True)
    # no CN: etcd's JSON gateway refuses client certificates with one (it cannot pass the CN on to
    # etcd's auth); the etcd user authenticates with its password instead
    client_cert, client_key = leaf("vnstitch", x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vnstitch")]),
                                   [ExtendedKeyUsageOID.CLIENT_AUTH], False)
    password_file = os.path.join(directory, "vnstitch.password")
    with open(password_file, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_urlsafe(24))
    os.chmod(password_file, 0o600)
    return Pki(directory, ca_path, server_cert, server_key, client_cert, client_key, password_file,
               secrets.token_urlsafe(24))


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now (held open together so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Member:
    def __init__(self, name: str, client_port: int, peer_port: int, data_dir: str):
        self.name = name
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = data_dir
        self.process: subprocess.Popen | None = None

    @property
    def client_url(self) -> str:
        return f"https://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://127.0.0.1:{self.peer_port}"


class LocalEtcdCluster:
    """`size` etcd members on loopback. Short election timeouts so tests fail over quickly. The
    `vnstitch` user's role may read and write the keys under `role_prefix` (default: every key that
    starts with '/', where every vnstitch store prefix lives) and nothing else."""

    def __init__(self, size: int = 3, base_dir: str | None = None, heartbeat_ms: int = 50,
                 election_ms: int = 500, max_txn_ops: int = 20_000, role_prefix: str = "/"):
        if ETCD_BINARY is None:
            raise RuntimeError("etcd is not installed (scripts/system-deps.sh installs Debian's etcd-server)")
        self.pki = shared_pki()
        self.role_prefix = role_prefix
        self._own_dir = base_dir is None
        self.base_dir = base_dir or tempfile.mkdtemp(prefix="vnstitch-etcd-")
        os.makedirs(self.base_dir, exist_ok=True)
        ports = free_ports(2 * size)
        self.members = [Member(f"m{i}", ports[2 * i], ports[2 * i + 1], os.path.join(self.base_dir, f"m{i}"))
                        for i in range(size)]
        self.flags = ["--heartbeat-interval", str(heartbeat_ms), "--election-timeout", str(election_ms),
                      "--max-txn-ops", str(max_txn_ops), "--quota-backend-bytes", str(2 << 30),
                      "--logger", "zap", "--log-level", "error",
                      "--client-cert-auth", "--trusted-ca-file", self.pki.ca,
                      "--cert-file", self.pki.server_cert, "--key-file", self.pki.server_key,
                      "--peer-client-cert-auth", "--peer-trusted-ca-file", self.pki.ca,
                      "--peer-cert-file", self.pki.server_cert, "--peer-key-file", self.pki.server_key]
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> str:
        return ",".join(f"127.0.0.1:{m.client_port}" for m in self.members)

    def url(self, prefix: str) -> str:
        """The store URL of `prefix`, with the TLS files and the etcd user in its query."""
        return f"etcd://{self.endpoints}/{prefix.strip('/')}?{self.pki.query()}"

    def start(self, timeout_s: float = 30.0) -> "LocalEtcdCluster":
        fresh = not any(os.path.isdir(m.data_dir) for m in self.members)
        for member in self.members:
            self.start_member(member, wait=False)
        self.wait_healthy(timeout_s)
        if fresh:
            self.enable_auth()
        self.pki.export()
        return self

    def http(self, with_certificate: bool = True) -> httpx.Client:
        """A client of the members' JSON gateway (with vnstitch's certificate, no etcd user)."""
        return httpx.Client(verify=self.pki.client_context(with_certificate), timeout=5.0)

    def enable_auth(self) -> None:
        """Users root and vnstitch, role vnstitch = readwrite on `role_prefix`, then auth on (etcd's own
        HTTP API; etcdctl is not needed)."""
        from vnstitch.store.etcd_http import prefix_end

        def b64(text: bytes) -> str:
            return base64.b64encode(text).decode()

        with open(self.pki.password_file, encoding="utf-8") as handle:
            password = handle.read().strip()
        prefix = self.role_prefix.encode()
        calls = [("/v3/auth/user/add", {"name": "root", "password": self.pki.root_password}),
                 ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
                 ("/v3/auth/role/add", {"name": ETCD_USER}),
                 ("/v3/auth/role/grant", {"name": ETCD_USER, "perm": {"permType": "READWRITE", "key": b64(prefix),
                                                                      "range_end": b64(prefix_end(prefix))}}),
                 ("/v3/auth/user/add", {"name": ETCD_USER, "password": password}),
                 ("/v3/auth/user/grant", {"user": ETCD_USER, "role": ETCD_USER}),
                 ("/v3/auth/enable", {})]
        with self.http() as client:
            for path, body in calls:
                answer = client.post(self.members[0].client_url + path, json=body)
                if answer.status_code != 200:
                    raise RuntimeError(f"etcd {path}: HTTP {answer.status_code}: {answer.text[:300]}")

    def root_token(self, client: httpx.Client) -> str:
        """An auth token of etcd's root user (for tests that seed keys outside vnstitch's prefix)."""
        answer = client.post(self.members[0].client_url + "/v3/auth/authenticate",
                             json={"name": "root", "password": self.pki.root_password})
        answer.raise_for_status()
        return answer.json()["token"]

    def start_member(self, member: Member, wait: bool = True) -> None:
        state = "existing" if os.path.isdir(member.data_dir) else "new"
        log = open(os.path.join(self.base_dir, f"{member.name}.log"), "ab")
        member.process = subprocess.Popen(
            [ETCD_BINARY, "--name", member.name, "--data-dir", member.data_dir,
             "--listen-client-urls", member.client_url, "--advertise-client-urls", member.client_url,
             "--listen-peer-urls", member.peer_url, "--initial-advertise-peer-urls", member.peer_url,
             "--initial-cluster", self.initial_cluster, "--initial-cluster-state", state,
             "--initial-cluster-token", "vnstitch-test", *self.flags],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        if wait:
            self.wait_healthy(30.0, [member])

    def kill_member(self, member: Member, sig: int = signal.SIGKILL) -> None:
        if member.process and member.process.poll() is None:
            member.process.send_signal(sig)
            member.process.wait(10)
        member.process = None

    def wait_healthy(self, timeout_s: float, members: list[Member] | None = None) -> None:
        """Every given member answers a linearizable read (so the cluster has a leader)."""
        deadline = time.monotonic() + timeout_s
        pending = list(members or self.members)
        client = httpx.Client(verify=self.pki.client_context(), timeout=2.0)
        while pending:
            member = pending[0]
            try:
                r = client.post(member.client_url + "/v3/kv/range", json={"key": "AA=="})
                # with auth on, etcd checks the user after the linearizable read: that answer is healthy too
                if r.status_code == 200 or "user name is empty" in r.text:
                    pending.pop(0)
                    continue
            except httpx.HTTPError:
                pass
            if member.process is not None and member.process.poll() is not None:
                raise RuntimeError(f"etcd {member.name} exited: see {self.base_dir}/{member.name}.log")
            if time.monotonic() > deadline:
                client.close()
                raise RuntimeError(f"etcd {member.name} not healthy after {timeout_s:.0f} s")
            time.sleep(0.1)
        client.close()

    def stop(self) -> None:
        for member in self.members:  # SIGKILL: the data is throwaway and a graceful stop takes seconds
            if member.process and member.process.poll() is None:
                member.process.kill()
        for member in self.members:
            if member.process:
                member.process.wait(10)
                member.process = None
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> "LocalEtcdCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
