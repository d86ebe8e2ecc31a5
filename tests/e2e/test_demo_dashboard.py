"""`vnstitch demo` ends with the command that serves the dashboard on the demo's store; that very command,
run as printed (on a free port), serves /ui/ and answers the API with the token it prints: the demo's objects."""

import io
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from vnstitch.cli.main import main


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_printed_serve_command_opens_the_dashboard_on_the_demos_store(tmp_path):
    capture = pytest.MonkeyPatch()
    out = io.StringIO()
    capture.setattr(sys, "stdout", out)
    capture.setattr(sys, "stderr", io.StringIO())
    try:
        assert main(["demo", "--workdir", str(tmp_path), "--model", "last_value", "--steps", "12"]) == 0
    finally:
        capture.undo()
    printed = out.getvalue()
    command = re.search(r"^dashboard: (vnstitch .+)$", printed, re.M).group(1)
    assert f"--store sqlite://{tmp_path / 'state.db'}" in command and " serve --dev" in command
    assert "http://127.0.0.1:8470/ui/" in printed
    port = free_port()
    argv = shlex.split(command)
    argv[0] = str(Path(sys.executable).with_name("vnstitch"))
    server = subprocess.Popen(argv + ["--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        token = None
        while token is None:  # the first lines on stderr: the --dev token, then "serving on …"
            line = server.stderr.readline()
            assert line, f"serve exited ({server.poll()}) before printing a token"
            token = (re.search(r"\(shown once\): (vns_\S+)", line) or [None, None])[1]
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "the server did not become ready"
            time.sleep(0.2)
        page = httpx.get(url + "/ui/")
        assert page.status_code == 200 and 'src="js/app.js"' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(url + "/v1/whoami", headers=headers).json()["role"] == "admin"
        assert httpx.get(url + "/v1/stitches").status_code == 401  # no token, no data
        stitches = httpx.get(url + "/v1/stitches", headers=headers).json()["items"]
        policies = httpx.get(url + "/v1/forecastpolicies", headers=headers).json()["items"]
        nodes = httpx.get(url + "/v1/substrate/nodes", headers=headers).json()["items"]
        assert stitches and {s["metadata"]["tenant"] for s in stitches} == {"backbone"}  # what the demo replayed
        assert [p["metadata"]["name"] for p in policies] == ["replay"]
        assert "NYCMng" in {n["metadata"]["name"] for n in nodes}
    finally:
        server.terminate()
        server.wait(20)
