"""etcd over TLS with client certificates and a role limited to the store's prefix: no certificate,
no connection; another prefix, or a key outside, is refused with a clear StoreUnavailable; inside works."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.etcd.conftest import ROLE_PREFIX
from vnstitch.errors import InvalidInput, StoreUnavailable
from vnstitch.store import open_store
from vnstitch.store.etcd import EtcdStore, parse_options, parse_url
from vnstitch.store.etcd_http import ENV, EtcdSecurity, StorePermissionDenied


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_inside_the_prefix_works_over_tls(etcd_cluster_healthy, etcd_prefix):
    cluster = etcd_cluster_healthy
    url = cluster.url(etcd_prefix)
    assert "cacert=" in url and "cert=" in url and "key=" in url and "user=vnstitch" in url
    store = open_store(url)
    try:
        assert all(e.startswith("https://") for e in store._client.endpoints)
        store.put("K", "ns", "a", {"v": 1})
        assert store.get("K", "ns", "a").value == {"v": 1}
        assert [e.record.name for e in store.events_since(0)] == ["a"]
    finally:
        store.close()


def test_a_client_without_certificate_is_refused(etcd_cluster_healthy, etcd_prefix, tmp_path):
    pki = etcd_cluster_healthy.pki
    with etcd_cluster_healthy.http(with_certificate=False) as client:
        with pytest.raises(httpx.HTTPError):  # the TLS handshake itself fails
            client.post(etcd_cluster_healthy.members[0].client_url + "/v3/kv/range", json={"key": "AA=="})
    no_certificate = EtcdSecurity(cacert=pki.ca, cert=None, key=None, user="vnstitch", password_file=pki.password_file)
    with pytest.raises(StoreUnavailable, match="TLS handshake failed"):
        EtcdStore(etcd_cluster_healthy.endpoints.split(","), etcd_prefix, security=no_certificate)
    plain = EtcdSecurity(cacert=None, cert=None, key=None, user=None, password_file=None)
    with pytest.raises(StoreUnavailable):  # plain HTTP to a TLS port: nothing usable comes back
        EtcdStore([f"http://{e}" for e in etcd_cluster_healthy.endpoints.split(",")],  # host:port → http://host:port
                  etcd_prefix, security=plain)


def test_outside_the_prefix_is_permission_denied(etcd_cluster_healthy):
    cluster = etcd_cluster_healthy
    assert cluster.role_prefix == ROLE_PREFIX
    with pytest.raises(StorePermissionDenied, match="permission denied.*readwrite on this store's key prefix"):
        EtcdStore(cluster.endpoints.split(","), "elsewhere")   # keys /elsewhere/...: outside the role
    # a key outside, seeded by root: the vnstitch user can neither read nor overwrite it
    with cluster.http() as client:
        root = {"Authorization": cluster.root_token(client)}
        put = client.post(cluster.members[0].client_url + "/v3/kv/put", headers=root,
                          json={"key": b64("/outside/secret"), "value": b64("root's")})
        assert put.status_code == 200, put.text
    store = EtcdStore(cluster.endpoints.split(","), ROLE_PREFIX.strip("/") + "/inside")
    try:
        for path, body in (("/v3/kv/range", {"key": b64("/outside/secret")}),
                           ("/v3/kv/put", {"key": b64("/outside/secret"), "value": b64("mine")})):
            with pytest.raises(StorePermissionDenied, match="permission denied"):
                store._client.call(path, body, idempotent=True)
    finally:
        store.close()
    with cluster.http() as client:
        root = {"Authorization": cluster.root_token(client)}
        kvs = client.post(cluster.members[0].client_url + "/v3/kv/range", headers=root,
                          json={"key": b64("/outside/secret")}).json()["kvs"]
        assert base64.b64decode(kvs[0]["value"]) == b"root's"


def test_wrong_password_and_bad_options_are_clear(etcd_cluster_healthy, etcd_prefix, tmp_path, monkeypatch):
    pki = etcd_cluster_healthy.pki
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    security = EtcdSecurity(pki.ca, pki.client_cert, pki.client_key, "vnstitch", str(wrong))
    with pytest.raises(StorePermissionDenied, match="authentication failed"):
        EtcdStore(etcd_cluster_healthy.endpoints.split(","), etcd_prefix, security=security)
    with pytest.raises(InvalidInput, match="unknown etcd URL option 'cafile'"):
        parse_options("h:1/p?cafile=/x")
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InvalidInput, match="both cert and key"):
        parse_options("h:1/p?cert=/c.pem")
    assert not parse_options("h:1/p").tls          # nothing given, nothing in the environment: plain HTTP
    assert parse_url("a:1,b:2/x/y?cacert=/ca.pem") == (["a:1", "b:2"], "x/y")


def test_an_expired_auth_token_is_renewed(etcd_store):
    etcd_store.put("K", "", "a", {"v": 1})
    etcd_store._client._token = "stale.token"   # as after etcd dropped it (idle TTL, member restart)
    assert etcd_store.get("K", "", "a").value == {"v": 1}
    assert etcd_store._client._token != "stale.token"
