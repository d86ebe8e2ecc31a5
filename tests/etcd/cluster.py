"""A real etcd cluster on 127.0.0.1 for tests and benches: free ports, tmp data dirs, no leftovers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import httpx

ETCD_BINARY = os.environ.get("VNSTITCH_ETCD_BINARY") or shutil.which("etcd")


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
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


class LocalEtcdCluster:
    """`size` etcd members on loopback. Short election timeouts so tests fail over quickly."""

    def __init__(self, size: int = 3, base_dir: str | None = None, heartbeat_ms: int = 50,
                 election_ms: int = 500, max_txn_ops: int = 20_000):
        if ETCD_BINARY is None:
            raise RuntimeError("etcd is not installed (scripts/system-deps.sh installs Debian's etcd-server)")
        self._own_dir = base_dir is None
        self.base_dir = base_dir or tempfile.mkdtemp(prefix="vnstitch-etcd-")
        os.makedirs(self.base_dir, exist_ok=True)
        ports = free_ports(2 * size)
        self.members = [Member(f"m{i}", ports[2 * i], ports[2 * i + 1], os.path.join(self.base_dir, f"m{i}"))
                        for i in range(size)]
        self.flags = ["--heartbeat-interval", str(heartbeat_ms), "--election-timeout", str(election_ms),
                      "--max-txn-ops", str(max_txn_ops), "--quota-backend-bytes", str(2 << 30),
                      "--logger", "zap", "--log-level", "error"]
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> str:
        return ",".join(f"127.0.0.1:{m.client_port}" for m in self.members)

    def url(self, prefix: str) -> str:
        return f"etcd://{self.endpoints}/{prefix.strip('/')}"

    def start(self, timeout_s: float = 30.0) -> "LocalEtcdCluster":
        for member in self.members:
            self.start_member(member, wait=False)
        self.wait_healthy(timeout_s)
        return self

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
        while pending:
            member = pending[0]
            try:
                r = httpx.post(member.client_url + "/v3/kv/range", json={"key": "AA=="}, timeout=2.0)
                if r.status_code == 200:
                    pending.pop(0)
                    continue
            except httpx.HTTPError:
                pass
            if member.process is not None and member.process.poll() is not None:
                raise RuntimeError(f"etcd {member.name} exited: see {self.base_dir}/{member.name}.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd {member.name} not healthy after {timeout_s:.0f} s")
            time.sleep(0.1)

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
