"""The server as a program: start-up refusal, --dev, tokens, and the CLI over --server."""

from __future__ import annotations

import pytest

from vnstitch.api.app import MissingAdminToken, create_app
from vnstitch.api.client import RemoteController
from vnstitch.api.settings import Settings
from vnstitch.cli.main import main
from vnstitch.errors import InsufficientCapacity, NotFound, PolicyDenied
from vnstitch.store.sqlite import SQLiteStore
from tests.api.payloads import vnet


def test_server_refuses_to_start_without_an_admin_token(tmp_path):
    store = SQLiteStore(str(tmp_path / "s.db"))
    with pytest.raises(MissingAdminToken):
        create_app(Settings(reconcile=False), store=store)
    app = create_app(Settings(reconcile=False, dev=True), store=store)
    assert app.state.dev_token.startswith("vns_")
    # The next start finds the admin token and needs no --dev.
    assert create_app(Settings(reconcile=False), store=store).state.dev_token is None


def test_token_commands(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/t.db"
    assert main(["--store", url, "--create", "token", "create", "--tenant", "acme", "--role", "member"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("vns_")
    assert main(["--store", url, "token", "list"]) == 0
    listing = capsys.readouterr().out
    assert "acme" in listing and token not in listing
    token_id = listing.splitlines()[1].split()[0]
    assert main(["--store", url, "token", "revoke", token_id]) == 0
    with pytest.raises(SystemExit):
        main(["--store", url, "token", "create", "--tenant", "acme", "--role", "boss"])


def test_cli_and_remote_controller_over_a_real_server(live, tmp_path, capsys):
    member = ["--server", live.url, "--token", live.tokens["member"]]
    spec = tmp_path / "nets.yaml"
    spec.write_text(
        "kind: VirtualNetwork\nmetadata: {name: web}\nspec:\n  vnid: 100\n  cidr: 10.0.0.0/24\n"
        "  members: [{name: w1, node: NYCMng, address: 10.0.0.1}]\n---\n"
        "kind: VirtualNetwork\nmetadata: {name: db}\nspec:\n  vnid: 101\n  cidr: 10.1.0.0/24\n"
        "  members: [{name: d1, node: LOSAng, address: 10.1.0.1}]\n---\n"
        "kind: Stitch\nmetadata: {name: web-db}\nspec: {type: bandwidth, from: {network: web}, "
        "to: {network: db}, bandwidth: 10Mbps}\n")
    assert main(member + ["apply", "-f", str(spec)]) == 0
    assert "stitch/acme/web-db created" in capsys.readouterr().out
    assert main(member + ["get", "stitches"]) == 0
    assert "web-db" in capsys.readouterr().out
    assert main(member + ["availability", "web", "db", "--bandwidth", "1Gbps"]) == 0
    assert capsys.readouterr().out.startswith("yes")
    # ForecastPolicies go through apply and get like every other kind
    policy = tmp_path / "fc.yaml"
    policy.write_text("kind: ForecastPolicy\nmetadata: {name: fc}\nspec: {networks: [web, db], interval: 60s}\n")
    assert main(member + ["apply", "-f", str(policy)]) == 0
    assert "forecastpolicy/acme/fc created" in capsys.readouterr().out.lower()
    assert main(member + ["get", "forecastpolicies", "fc", "-o", "json"]) == 0
    assert '"interval": "1min"' in capsys.readouterr().out  # a document: units, so that it applies again
    # Errors come back as the same classes, with code and field.
    remote = RemoteController(live.url, token=live.tokens["other"])
    with pytest.raises(NotFound):
        remote.get("stitches", "web-db", "acme")
    partner = vnet("partner", 300, "10.3.0.0/24", [("p1", "STTLng", "10.3.0.1")])
    from vnstitch.domain.registry import parse_resource

    remote.apply([parse_resource(partner)])
    cross = parse_resource({"kind": "Stitch", "metadata": {"name": "x"},
                            "spec": {"type": "bandwidth", "from": {"network": "partner"},
                                     "to": {"network": "web", "tenant": "acme"}, "bandwidth": "1Mbps"}})
    with pytest.raises(PolicyDenied) as denied:
        remote.apply([cross])
    assert denied.value.field == "spec.from"
    huge = parse_resource({"kind": "Stitch", "metadata": {"name": "huge"},
                           "spec": {"type": "bandwidth", "from": {"network": "partner"},
                                    "to": {"network": "partner"}, "bandwidth": "1Gbps"}})
    assert remote.list("stitches") == []
    admin = RemoteController(live.url, token=live.tokens["admin"])
    admin.apply([parse_resource(vnet("far", 301, "10.4.0.0/24", [("f1", "NYCMng", "10.4.0.1")]) | {
        "metadata": {"name": "far", "tenant": "globex"}})])
    huge.spec.to.network = "far"
    huge.spec.bandwidth = 50e9  # more than any Abilene link
    with pytest.raises(InsufficientCapacity):
        remote.apply([huge])
    assert main(["--server", live.url, "--token", "vns_wrong", "get", "stitches"]) == 1
    assert "unknown or revoked token" in capsys.readouterr().err
    assert main(member + ["delete", "stitch", "web-db"]) == 0
    assert "deleting" in capsys.readouterr().out
