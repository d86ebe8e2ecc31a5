"""Re-applying a file (issue 17): documents an earlier apply recorded are taken as unchanged without parsing
only where parsing them would say so too. Each case runs the same re-apply twice, on copies of one store:
with the recorded digests (the fast path) and without them (every document parsed), and both must print,
fail and store exactly the same."""

from __future__ import annotations

import sqlite3

import pytest

from vnstitch.cli.main import main
from vnstitch.data import data_path
from vnstitch.domain.registry import document_chunks, parse_documents, parse_documents_known, parser_fingerprint
from vnstitch.store.applied import APPLIED_KIND, AppliedTable, fingerprint
from vnstitch.store.base import Delete
from vnstitch.store.sqlite import SQLiteStore

NODES = ("NYCMng", "LOSAng", "CHINng", "WASHng", "ATLAng", "DNVRng")


def network(i: int, tenant: str | None = "acme", address_suffix: int = 11, labels: str = "{app: web}") -> str:
    tenant_line = f"  tenant: {tenant}\n" if tenant else ""
    return (f"---\napiVersion: vnstitch.io/v1\nkind: VirtualNetwork\nmetadata:\n  name: net-{i}\n{tenant_line}"
            f"  labels: {labels}\nspec:\n  vnid: {100 + i}\n  cidr: 10.{i}.0.0/24\n  members:\n"
            f"    - {{name: m1, node: {NODES[i % len(NODES)]}, address: 10.{i}.0.{address_suffix}}}\n"
            f"    - {{name: m2, node: {NODES[(i + 1) % len(NODES)]}, address: 10.{i}.0.12}}\n")


def stitch(j: int, a: int, b: int, tenant: str | None = "acme", bandwidth: str = "10Mbps") -> str:
    tenant_part = f", tenant: {tenant}" if tenant else ""
    if j % 2:
        spec = f"  type: direct\n  from: {{network: net-{a}, member: m1}}\n  to: {{network: net-{b}, member: m2}}\n"
    else:
        spec = (f"  type: bandwidth\n  from: {{network: net-{a}}}\n  to: {{network: net-{b}}}\n"
                f"  bandwidth: {bandwidth}\n  maxLatency: 80ms\n")
    return f"---\napiVersion: vnstitch.io/v1\nkind: Stitch\nmetadata: {{name: s-{j}{tenant_part}}}\nspec:\n{spec}"


BASE = "# twelve networks, eight stitches\n" + "".join(network(i) for i in range(12)) \
    + "".join(stitch(j, j, j + 3) for j in range(8))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def stored(path) -> dict:
    """What a user sees of every object: its spec, labels and annotations, and a stitch's state and path."""
    store = SQLiteStore(str(path))
    try:
        out = {}
        for kind in ("VirtualNetwork", "Stitch", "LinkLedger"):
            for record in store.list(kind):
                status = record.value.get("status") or {}
                out[record.key] = (fingerprint(record.value), status.get("state"), status.get("path"),
                                   record.value.get("forward"), record.value.get("reverse"),
                                   bool(record.value["metadata"].get("deletionTimestamp"))
                                   if "metadata" in record.value else None)
        return out
    finally:
        store.close()


@pytest.fixture
def applied(tmp_path, capsys):
    """A store with the Abilene substrate and BASE applied; returns (store path, file path)."""
    db, source = tmp_path / "state.db", tmp_path / "base.yaml"
    source.write_text(BASE)
    assert run(capsys, "--store", f"sqlite://{db}", "--create", "substrate", "import", str(data_path("abilene.xml")))[0] == 0
    code, out, _ = run(capsys, "--store", f"sqlite://{db}", "apply", "-f", str(source))
    assert code == 0 and out.count(" created") == 20
    return db, source


def both(tmp_path, capsys, applied, text: str, change=None, *flags: str):
    """Re-apply `text` (after `change(store)`) on a copy with the recorded digests and on one without them;
    asserts they print, exit and store the same, and returns (exit, output, errors) and the store."""
    db, _ = applied
    fast, slow = tmp_path / "fast.db", tmp_path / "slow.db"
    for copy in (fast, slow):
        with sqlite3.connect(db) as origin, sqlite3.connect(copy) as target:
            origin.backup(target)  # with what the write-ahead log holds
        store = SQLiteStore(str(copy))
        try:
            if copy == slow:
                names = [r.name for r in store.list(APPLIED_KIND)]
                assert names, "the first apply recorded no digests"
                store.txn([], [Delete(APPLIED_KIND, "", name) for name in names])
            if change is not None:
                change(store)
        finally:
            store.close()
    source = tmp_path / "again.yaml"
    source.write_text(text)
    results = [run(capsys, "--store", f"sqlite://{copy}", "apply", *flags, "-f", str(source)) for copy in (fast, slow)]
    assert results[0] == results[1]
    assert stored(fast) == stored(slow)
    return results[0], fast


def edit(kind: str, namespace: str, name: str, update):
    """A change another writer makes to one stored object (not through apply)."""
    def change(store):
        record = store.get(kind, namespace, name)
        store.put(kind, namespace, name, update(record.value), expect_revision=record.revision)
    return change


def test_an_unchanged_file_is_unchanged_and_writes_nothing(tmp_path, capsys, applied):
    db, _ = applied
    store = SQLiteStore(str(db))
    revision, digests = store.revision(), AppliedTable.read(store).by_digest
    store.close()
    assert len(digests) == 20  # every network and stitch
    (code, out, err), fast = both(tmp_path, capsys, applied, BASE)
    assert code == 0 and out.count(" unchanged") == 20 and not err
    store = SQLiteStore(str(fast))
    assert store.revision() == revision  # nothing written
    store.close()


@pytest.mark.parametrize("change", [
    edit("VirtualNetwork", "acme", "net-3", lambda v: {**v, "metadata": {**v["metadata"], "labels": {"app": "db"}}}),
    edit("VirtualNetwork", "acme", "net-4",
         lambda v: {**v, "metadata": {**v["metadata"], "annotations": {"why": "an annotation only"}}}),
    edit("VirtualNetwork", "acme", "net-5", lambda v: {**v, "spec": {**v["spec"], "trustLevel": "partner"}}),
    edit("Stitch", "acme", "s-2", lambda v: {**v, "spec": {**v["spec"], "bandwidth": 20e6}}),
    edit("Stitch", "acme", "s-4", lambda v: {**v, "spec": {**v["spec"], "priority": 7}}),
], ids=["labels", "annotations", "a spec default", "stitch bandwidth", "stitch priority"])
def test_an_object_changed_elsewhere_is_configured_back(tmp_path, capsys, applied, change):
    (code, out, _), _ = both(tmp_path, capsys, applied, BASE, change)
    assert code == 0 and out.count(" configured") == 1 and out.count(" unchanged") == 19


def test_a_status_written_by_the_reconciler_leaves_it_unchanged(tmp_path, capsys, applied):
    change = edit("Stitch", "acme", "s-0", lambda v: {**v, "status": {**v["status"], "state": "READY",
                                                                     "message": "up"}})
    (code, out, _), _ = both(tmp_path, capsys, applied, BASE, change)
    assert code == 0 and out.count(" unchanged") == 20


def test_a_stitch_being_deleted_refuses_as_without_digests(tmp_path, capsys, applied):
    change = edit("Stitch", "acme", "s-1", lambda v: {**v, "metadata": {**v["metadata"], "deletionTimestamp": 1.0}})
    (code, _, err), _ = both(tmp_path, capsys, applied, BASE, change)
    assert code != 0 and "being deleted" in err


def test_a_finished_stitch_is_admitted_again(tmp_path, capsys, applied):
    change = edit("Stitch", "acme", "s-3", lambda v: {**v, "status": {**v["status"], "state": "TERMINATED",
                                                                     "reservedBandwidth": 0.0}})
    (code, out, _), _ = both(tmp_path, capsys, applied, BASE, change)
    assert code == 0 and "stitch/acme/s-3 configured" in out


def test_a_deleted_object_is_created_again(tmp_path, capsys, applied):
    def change(store):
        store.delete("Stitch", "acme", "s-5")
    (code, out, _), _ = both(tmp_path, capsys, applied, BASE, change)
    assert code == 0 and "stitch/acme/s-5 created" in out


def test_an_inconsistent_store_fails_as_without_digests(tmp_path, capsys, applied):
    # a stitch naming a member its network no longer has: the network's re-apply must not wave it through
    change = edit("Stitch", "acme", "s-1", lambda v: {**v, "spec": {**v["spec"], "to": {"network": "net-4",
                                                                                       "member": "m9"}}})
    (code, _, err), _ = both(tmp_path, capsys, applied, BASE, change)
    assert code != 0 and "m9" in err


def test_edited_documents_are_parsed_and_the_rest_recognised(tmp_path, capsys, applied):
    text = BASE.replace(network(6), network(6, address_suffix=99)).replace(stitch(2, 2, 5), stitch(2, 2, 5, bandwidth="30Mbps"))
    (code, out, _), fast = both(tmp_path, capsys, applied, text + network(40))
    assert code == 0 and out.count(" configured") == 2 and out.count(" created") == 1 and out.count(" unchanged") == 18
    store = SQLiteStore(str(fast))
    assert len(AppliedTable.read(store).by_digest) == 21  # one entry per object: the edited ones' new texts
    store.close()
    code, out, _ = run(capsys, "--store", f"sqlite://{fast}", "apply", "-f", str(tmp_path / "again.yaml"))
    assert code == 0 and out.count(" unchanged") == 21


@pytest.mark.parametrize("extra", [
    network(50).replace("vnid: 150", "vnid: 103"),  # the VNID of a network the file leaves unchanged
    network(51).replace("cidr: 10.51.0.0/24", "cidr: 10.51.0.0/33"),  # invalid
    network(52).replace("labels: {app: web}", "labels: {app: web, app: db}"),  # a key twice
    "---\nkind: VirtualNetwork\nmetadata: {name: x\n",  # malformed YAML
    network(3),  # a document given twice
], ids=["vnid taken", "invalid", "duplicate key", "malformed", "twice"])
def test_errors_are_the_same_as_without_digests(tmp_path, capsys, applied, extra):
    head, tail = BASE[:len(BASE) // 2], BASE[len(BASE) // 2:]
    cut = tail.index("\n---\n") + 1
    (code, out, err), _ = both(tmp_path, capsys, applied, head + tail[:cut] + extra + tail[cut:])
    assert code != 0 and err


def test_the_tenant_flag_is_part_of_what_a_document_gives(tmp_path, capsys, applied):
    text = network(60, tenant=None) + network(61, tenant=None)
    db, _ = applied
    source = tmp_path / "untenanted.yaml"
    source.write_text(text)
    assert run(capsys, "--store", f"sqlite://{db}", "apply", "--tenant", "blue", "-f", str(source))[1].count(" created") == 2
    (code, _, err), _ = both(tmp_path, capsys, applied, text)  # the same text, no flag: new ones in 'default'
    assert code != 0 and "VNID 160 is already used" in err
    (code, out, _), _ = both(tmp_path, capsys, applied, text, None, "--tenant", "blue")
    assert code == 0 and out.count(" unchanged") == 2


def test_dry_run_records_nothing(tmp_path, capsys, applied):
    (code, out, _), fast = both(tmp_path, capsys, applied, BASE + network(70), None, "--dry-run")
    assert code == 0 and "net-70 created (dry run)" in out
    store = SQLiteStore(str(fast))
    assert len(AppliedTable.read(store).by_digest) == 20
    store.close()


def test_known_documents_stand_where_parsing_would_put_them():
    salt = parser_fingerprint()
    resources, recorded = parse_documents_known(BASE, {}, salt)
    assert [r.name for r in resources] == [r.name for r in parse_documents(BASE)] and len(recorded) == 20
    known = {digest: (key, "print", 1) for key, digest in recorded.items() if key[2] in ("net-2", "s-3")}
    items, _ = parse_documents_known(BASE, known, salt)
    assert [(i.KIND, i.namespace, i.name) for i in items] == [(r.KIND, r.namespace, r.name) for r in resources]
    standins = [i for i in items if not hasattr(i, "spec")]
    assert [i.name for i in standins] == ["net-2", "s-3"]
    assert [i.parse() for i in standins] == [r for r in resources if r.name in ("net-2", "s-3")]


@pytest.mark.parametrize("text", [
    "%YAML 1.1\n" + BASE,  # a directive
    BASE.replace("---\napiVersion", "...\n---\napiVersion", 1),  # a document end
    BASE.replace("\n", "\r", 3),  # old Mac line breaks
    BASE + "\u2028",
])
def test_a_text_that_might_split_elsewhere_is_only_parsed_whole(text):
    assert document_chunks(text) is None


def test_a_digest_depends_on_the_parser_and_the_flags():
    resources, first = parse_documents_known(BASE, {}, parser_fingerprint() + b"|tenant=|")
    _, second = parse_documents_known(BASE, {}, parser_fingerprint() + b"|tenant=blue|")
    assert set(first) == set(second) and not set(first.values()) & set(second.values())


def test_digests_missing_from_an_unchanged_apply_are_recorded_once(tmp_path, capsys, applied):
    both(tmp_path, capsys, applied, BASE)  # on the copy without digests: every document parsed, all unchanged
    slow = tmp_path / "slow.db"
    store = SQLiteStore(str(slow))
    revision, digests = store.revision(), AppliedTable.read(store).by_digest
    store.close()
    assert len(digests) == 20
    code, out, _ = run(capsys, "--store", f"sqlite://{slow}", "apply", "-f", str(tmp_path / "again.yaml"))
    store = SQLiteStore(str(slow))
    assert code == 0 and out.count(" unchanged") == 20 and store.revision() == revision  # nothing more to write
    store.close()
