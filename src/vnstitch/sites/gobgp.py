"""A GoBGP speaker for one site: its config (TOML), its process in the site's namespace, its CLI."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

from vnstitch.domain.site import Site
from vnstitch.drivers.linux.kernel import pid_alive
from vnstitch.errors import DriverError

log = logging.getLogger("vnstitch.route_manager")
CLI_WORKERS = 4   # `gobgp` CLI calls at once when the gRPC API is not there


@dataclass(frozen=True)
class Timers:
    """BGP timers in seconds (RFC 4271: a hold time is 0 or ≥ 3)."""

    hold_time_s: int = 3
    keepalive_s: int = 1
    connect_retry_s: int = 1


def speaker_config(site: Site, peers: list[Site], timers: Timers) -> str:
    """gobgpd TOML: eBGP full mesh with every other site, the l2vpn-evpn family only."""
    spec = site.spec
    lines = ["[global.config]", f"  as = {spec.as_number}", f'  router-id = "{spec.route_manager_address}"',
             f'  local-address-list = ["{spec.route_manager_address}"]', ""]
    for peer in sorted(peers, key=lambda s: s.name):
        lines += ["[[neighbors]]", "  [neighbors.config]",
                  f'    neighbor-address = "{peer.spec.route_manager_address}"',
                  f"    peer-as = {peer.spec.as_number}",
                  f'    description = "site {peer.name}"',
                  "  [neighbors.timers.config]",
                  f"    connect-retry = {timers.connect_retry_s}",
                  f"    hold-time = {timers.hold_time_s}",
                  f"    keepalive-interval = {timers.keepalive_s}",
                  "  [neighbors.transport.config]",
                  f'    local-address = "{spec.route_manager_address}"',
                  "  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]",
                  '      afi-safi-name = "l2vpn-evpn"', ""]
    return "\n".join(lines)


class Speaker:
    """gobgpd in namespace `netns`, its gRPC API on a unix socket in `directory`."""

    def __init__(self, directory: str, netns: str):
        self.directory, self.netns = directory, netns
        self.config_path = os.path.join(directory, "gobgpd.toml")
        self.socket_path = os.path.join(directory, "gobgpd.sock")
        self.pid_path = os.path.join(directory, "gobgpd.pid")
        self.log_path = os.path.join(directory, "gobgpd.log")
        self.process: subprocess.Popen | None = None
        self._api = None                      # gobgp_api.Api once loaded (a new one per speaker start)
        self.api_error: str | None = None     # why the gRPC API cannot be used here, once known
        for tool in ("gobgpd", "gobgp"):
            if shutil.which(tool) is None:
                raise DriverError(f"{tool} not found (apt-get install gobgpd; scripts/system-deps.sh)")

    def pid(self) -> int | None:
        try:
            with open(self.pid_path) as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            return False
        return pid_alive(self.pid(), "gobgpd")

    def start(self, config: str, timeout_s: float = 5.0) -> int:
        """Write the config, stop a speaker a previous route manager left, start gobgpd, wait for its API."""
        self.stop()
        with open(self.config_path, "w") as handle:
            handle.write(config)
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        self.close()   # a fresh gRPC channel for the new speaker (no reconnect backoff left from the old one)
        log = open(self.log_path, "ab")
        # ip netns exec NS gobgpd -f CONF -t toml --api-hosts unix://SOCK --pprof-disable -p -l info
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "gobgpd", "-f", self.config_path, "-t", "toml",
             "--api-hosts", f"unix://{self.socket_path}", "--pprof-disable", "-p", "-l", "info"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        with open(self.pid_path, "w") as handle:
            handle.write(str(self.process.pid))
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise DriverError(f"gobgpd exited with {self.process.returncode} (see {self.log_path})")
            if os.path.exists(self.socket_path) and self.cli(["global"], check=False).returncode == 0:
                return self.process.pid
            if time.monotonic() > deadline:
                raise DriverError(f"gobgpd did not answer on {self.socket_path} within {timeout_s:g}s")
            time.sleep(0.02)

    def stop(self, timeout_s: float = 3.0) -> None:
        """SIGTERM (gobgpd closes its sessions with a NOTIFICATION), SIGKILL after timeout_s."""
        pid = self.pid()
        if pid_alive(pid, "gobgpd"):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout_s
            while pid_alive(pid) and time.monotonic() < deadline:
                if self.process is not None and self.process.pid == pid:
                    self.process.poll()
                time.sleep(0.02)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
            self.process = None
        for path in (self.pid_path, self.socket_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def cli(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
        """gobgp --target unix://SOCK ARGS…"""
        try:
            proc = subprocess.run(["gobgp", "--target", f"unix://{self.socket_path}", *args],
                                  capture_output=True, text=True, timeout=5)
        except subprocess.TimeoutExpired:
            raise DriverError(f"gobgp {' '.join(args)}: no answer within 5s") from None
        if check and proc.returncode != 0:
            raise DriverError(f"gobgp {' '.join(args)}: {(proc.stderr or proc.stdout).strip()}")
        return proc

    def announce(self, adverts, withdraw: bool = False) -> str:
        """Add (or withdraw) every advert: all in one call of gobgpd's gRPC API (sites/gobgp_api.py), or, where
        that API cannot be loaded (said once in the log), one `gobgp global rib -a evpn add|del` each, up to
        CLI_WORKERS at once. Returns how: "grpc" or "cli"."""
        adverts = list(adverts)
        if not adverts:
            return self.api_mode()
        api = self._get_api()
        if api is not None:
            try:
                api.announce(adverts, withdraw)
                return "grpc"
            except DriverError as exc:
                if not self._unimplemented(exc):
                    raise
        verb = "del" if withdraw else "add"
        commands = [["global", "rib", "-a", "evpn", verb, *(a.del_args() if withdraw else a.add_args())]
                    for a in adverts]
        if len(commands) == 1:
            self.cli(commands[0])
            return "cli"
        from concurrent.futures import ThreadPoolExecutor

        def attempt(command: list[str]) -> DriverError | None:
            try:
                self.cli(command)
            except DriverError as exc:
                return exc
            return None

        with ThreadPoolExecutor(max_workers=CLI_WORKERS, thread_name_prefix="gobgp-cli") as pool:
            failures = [exc for exc in pool.map(attempt, commands) if exc is not None]
        if failures:
            raise DriverError(f"{len(failures)} of {len(commands)} gobgp {verb} commands failed; the first: "
                              f"{failures[0]}")
        return "cli"

    def close(self) -> None:
        """Close the gRPC channel (the speaker itself: stop())."""
        if self._api is not None:
            self._api.close()
            self._api = None

    def api_mode(self) -> str:
        return "grpc" if self._get_api() is not None else "cli"

    def _get_api(self):
        if self._api is None and self.api_error is None:
            from vnstitch.sites import gobgp_api

            try:
                self._api = gobgp_api.Api(self.socket_path)
            except (DriverError, ImportError, OSError) as exc:
                self.api_error = str(exc)
                log.warning("gobgpd's gRPC API is not used (%s): routes are added by the gobgp CLI, one fork each",
                            exc)
        return self._api

    def evpn_routes(self) -> tuple[list, list[tuple[str, str]]]:
        """The RIB's EVPN routes, decoded (evpn.decode_rib): by the gRPC API (ListPath), else the CLI's JSON."""
        api = self._get_api()
        if api is not None:
            try:
                return api.evpn_routes()
            except DriverError as exc:
                if not self._unimplemented(exc):
                    raise
        from vnstitch.sites.evpn import decode_rib

        return decode_rib(self.evpn_rib())

    def peers(self) -> list[dict] | None:
        """The neighbors and their session states (gobgp_api.Api.peers); None without the gRPC API."""
        api = self._get_api()
        try:
            return api.peers() if api is not None else None
        except DriverError as exc:
            if not self._unimplemented(exc):
                raise
            return None

    def _unimplemented(self, exc: DriverError) -> bool:
        """True (and the CLI used from now on, said once) when the speaker lacks an API call the stubs have."""
        from vnstitch.sites.gobgp_api import ApiUnimplemented

        if not isinstance(exc, ApiUnimplemented):
            return False
        self.api_error = str(exc)
        log.warning("gobgpd's gRPC API is not used from now on (%s): routes go through the gobgp CLI", exc)
        self.close()
        return True

    def evpn_rib(self) -> dict:
        """gobgp global rib -a evpn -j"""
        out = self.cli(["global", "rib", "-a", "evpn", "-j"]).stdout.strip()
        return json.loads(out) if out else {}

    def monitor(self, on_change) -> subprocess.Popen:
        """gobgp monitor global rib -a evpn -j: a thread calls on_change() for each best-path change; it ends
        when the speaker does."""
        import threading

        proc = subprocess.Popen(["gobgp", "--target", f"unix://{self.socket_path}", "monitor", "global", "rib",
                                 "-a", "evpn", "-j"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL)

        def pump() -> None:
            for _line in proc.stdout:
                on_change()
            proc.wait()
            on_change()

        threading.Thread(target=pump, name="gobgp-monitor", daemon=True).start()
        return proc

    def neighbors(self) -> list[dict]:
        """gobgp neighbor -j"""
        out = self.cli(["neighbor", "-j"]).stdout.strip()
        return json.loads(out) if out else []
