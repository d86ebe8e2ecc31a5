"""The audit log: every write through a route is one row with its principal and outcome; reads are not;
nothing secret (no token, no body) is kept; `vnstitch audit` and GET /v1/audit print it."""

from __future__ import annotations

import json
import sqlite3

from vnstitch.api.audit import AuditEntry, AuditLog, audit_path_for_url
from vnstitch.api.auth import hash_token
from vnstitch.cli.main import main

from tests.api.payloads import stitch, vnet


def rows(api) -> list[AuditEntry]:
    return api.app.state.audit.query()


def stored_text(api) -> str:
    """Every stored row, as the file on disk holds it."""
    audit = api.app.state.audit
    audit.flush()
    with sqlite3.connect(audit.path) as db:
        return json.dumps(db.execute("SELECT * FROM audit").fetchall())


def test_a_create_and_a_delete_are_two_rows_with_principal_and_outcome(api):
    member_id = hash_token(api.tokens["member"])[:12]
    web = vnet("web", 100, "10.0.0.0/24", [("w1", "NYCMng", "10.0.0.1")])
    assert api.call("member", "POST", "/v1/virtualnetworks", json=web,
                    headers={"X-Request-Id": "req-42"}).status_code == 201
    assert api.call("member", "GET", "/v1/virtualnetworks/web").status_code == 200   # a read: not recorded
    assert api.call("member", "GET", "/v1/virtualnetworks").status_code == 200
    assert api.call("member", "DELETE", "/v1/virtualnetworks/web").status_code == 200
    created, deleted = rows(api)
    assert (created.method, created.path, created.kind, created.resource_tenant, created.name) == \
        ("POST", "/v1/virtualnetworks", "VirtualNetwork", "acme", "web")
    assert (created.token_id, created.tenant, created.role) == (member_id, "acme", "member")
    assert (created.status, created.outcome, created.request_id) == (201, "ok", "req-42")
    assert created.time.endswith("Z") and "T" in created.time
    assert (deleted.method, deleted.path, deleted.kind, deleted.name, deleted.status, deleted.outcome) == \
        ("DELETE", "/v1/virtualnetworks/web", "VirtualNetwork", "web", 200, "ok")
    assert api.app.state.audit.path.endswith("state.audit.db")   # beside the SQLite state


def test_refused_writes_are_recorded_as_refused(api):
    web = vnet("web", 100, "10.0.0.0/24", [("w1", "NYCMng", "10.0.0.1")])
    assert api.call("reader", "POST", "/v1/virtualnetworks", json=web).status_code == 403
    assert api.call("member", "POST", "/v1/virtualnetworks", json={**web, "bogus": 1}).status_code == 422
    assert api.call(None, "DELETE", "/v1/virtualnetworks/web").status_code == 401
    assert api.call("member", "DELETE", "/v1/nosuchroute").status_code == 404         # reached no route
    forbidden, invalid, anonymous = rows(api)
    assert (forbidden.role, forbidden.status, forbidden.outcome, forbidden.error) == \
        ("reader", 403, "refused", "forbidden")
    assert (forbidden.kind, forbidden.name) == ("VirtualNetwork", "web")               # from the request body
    assert (invalid.role, invalid.status, invalid.outcome, invalid.error) == ("member", 422, "refused", "invalid")
    assert (anonymous.token_id, anonymous.status, anonymous.error) == (None, 401, "unauthenticated")


def test_nothing_secret_is_stored(seeded):
    secret_description = "wg-private-key-DO-NOT-LOG"
    body = vnet("sec", 102, "10.2.0.0/24", [("s1", "CHINng", "10.2.0.1")])
    body["metadata"]["labels"] = {"note": secret_description[:20]}
    seeded.call("member", "POST", "/v1/virtualnetworks", json=body).raise_for_status()
    seeded.call("member", "PATCH", "/v1/stitches/web-db", json={"spec": {"bandwidth": "20Mbps"}},
                headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
    seeded.call("admin", "GET", "/v1/audit").raise_for_status()
    text = stored_text(seeded)
    for token in seeded.tokens.values():
        assert token not in text and hash_token(token) not in text    # neither the token nor its full hash
    assert secret_description[:20] not in text and "10.2.0.0/24" not in text and "20Mbps" not in text
    assert "sec" in text and "web-db" in text


def test_telemetry_batches_are_one_row_with_their_size_and_apply_names_its_objects(seeded):
    now = seeded.app.state.ctx.controller.clock()
    samples = [{"from": "web", "to": "db", "time": now - 60 * i, "rateBps": 1e6} for i in range(3)]
    seeded.call("member", "POST", "/v1/telemetry", json={"samples": samples}).raise_for_status()
    seeded.call("member", "POST", "/v1/apply", json={"items": [stitch("web-db-2", "web", "db")]}).raise_for_status()
    *_, pushed, applied = rows(seeded)
    assert (pushed.kind, pushed.detail, pushed.outcome) == ("Telemetry", "samples=3", "ok")
    assert applied.kind == "Apply" and applied.detail == "Stitch acme/web-db-2 created"


def test_the_log_is_bounded_and_append_only(tmp_path):
    audit = AuditLog(str(tmp_path / "a.db"), max_rows=10)
    for i in range(30):
        audit.record(AuditEntry(float(i), "t", None, None, None, "POST", f"/p{i}", None, None, None, 201, "ok"))
    kept = audit.query()
    assert 10 <= len(kept) <= 11 and kept[-1].path == "/p29"
    with sqlite3.connect(audit.path) as db:
        try:
            db.execute("UPDATE audit SET status = 200")
            raise AssertionError("an update went through")
        except sqlite3.DatabaseError as exc:
            assert "append-only" in str(exc)
    audit.close()


def test_get_audit_is_for_admins_and_filters(seeded):
    assert seeded.call("member", "GET", "/v1/audit").status_code == 403
    seeded.call("other", "POST", "/v1/virtualnetworks",
                json=vnet("g", 200, "10.9.0.0/24", [("g1", "NYCMng", "10.9.0.1")])).raise_for_status()
    items = seeded.call("admin", "GET", "/v1/audit").json()["items"]
    assert [i["resource"]["name"] for i in items] == ["web", "db", "web-db", "g"]
    only = seeded.call("admin", "GET", "/v1/audit", params={"tenant": "globex"}).json()["items"]
    assert [i["principal"]["tenant"] for i in only] == ["globex"]
    other_id = hash_token(seeded.tokens["other"])[:12]
    by_id = seeded.call("admin", "GET", "/v1/audit", params={"principal": other_id[:6]}).json()["items"]
    assert [i["principal"]["tokenId"] for i in by_id] == [other_id]
    assert seeded.call("admin", "GET", "/v1/audit", params={"since": items[-1]["unixTime"] + 1}).json()["items"] == []


def test_vnstitch_audit_prints_the_rows_from_the_store_and_the_server(seeded, capsys):
    store = seeded.app.state.ctx.store
    seeded.app.state.audit.flush()
    url = f"sqlite://{store.path}"
    assert audit_path_for_url(url) == seeded.app.state.audit.path
    assert main(["--store", url, "audit", "--since", "1h"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["TIME", "TOKEN", "TENANT", "ROLE"]
    assert any("POST" in line and "Stitch acme/web-db" in line and "201" in line and " ok" in line for line in out)
    assert main(["--store", url, "audit", "--tenant", "acme", "-o", "json"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert len(items) == 3 and {i["principal"]["role"] for i in items} == {"member"}
    assert main(["--store", url, "audit", "--principal", "ffffffffffff"]) == 0
    assert "No audit entries." in capsys.readouterr().err


def test_vnstitch_audit_over_the_server(live, capsys):
    import httpx

    httpx.post(live.url + "/v1/virtualnetworks", headers=live.headers("member"),
               json=vnet("web", 100, "10.0.0.0/24", [("w1", "NYCMng", "10.0.0.1")])).raise_for_status()
    assert main(["--server", live.url, "--token", live.tokens["admin"], "audit", "-o", "json"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert [(i["method"], i["resource"]["name"], i["status"]) for i in items] == [("POST", "web", 201)]
    assert main(["--server", live.url, "--token", live.tokens["member"], "audit"]) == 1
    assert "admin" in capsys.readouterr().err
