"""A large resource file (issue 17): one transaction however many documents, progress on stderr when it takes
a while, and the same checks as one document at a time (VNIDs, members in use, stitches being deleted)."""

from pathlib import Path

import pytest

from vnstitch.cli import main as cli_main

ABILENE = Path(__file__).resolve().parents[2] / "src" / "vnstitch" / "data" / "abilene.xml"


def network(i: int, vnid: int | None = None, members: str = "m1") -> str:
    listed = "".join(f"    - {{name: {name}, node: {node}, address: 10.1.{i % 250}.{10 + k}}}\n"
                     for k, (name, node) in enumerate(zip(members.split(","), ("NYCMng", "CHINng", "LOSAng"))))
    return (f"kind: VirtualNetwork\nmetadata: {{name: net-{i}, tenant: acme}}\n"
            f"spec:\n  vnid: {vnid or i + 1}\n  cidr: 10.1.{i % 250}.0/24\n  members:\n{listed}")


def stitch(j: int, a: int, b: int) -> str:
    return (f"kind: Stitch\nmetadata: {{name: s-{j}, tenant: acme}}\n"
            f"spec: {{type: bandwidth, from: {{network: net-{a}}}, to: {{network: net-{b}}}, bandwidth: 10kbps}}\n")


def bulk(networks: int, stitches: int) -> list[str]:
    return [network(i) for i in range(networks)] + [stitch(j, j, j + 1) for j in range(stitches)]


@pytest.fixture
def abilene(cli):
    assert cli("substrate", "import", str(ABILENE))[0] == 0
    return cli


def names(cli, kind: str) -> list[str]:
    return cli("get", kind, "-A", "-o", "name")[1].split()


def test_a_bad_last_document_leaves_nothing_of_the_thousands_before(abilene, tmp_path, monkeypatch):
    monkeypatch.setattr(cli_main, "PROGRESS_AFTER_S", 1e9)  # stderr: the error alone, however slow the machine
    docs = bulk(1500, 700)
    docs.append(network(1600, vnid=5))  # the VNID of net-4, staged earlier in the same file
    path = tmp_path / "bulk.yaml"
    path.write_text("---\n".join(docs))
    code, out, err = abilene("apply", "-f", str(path))
    assert code == 1 and out == ""
    assert err == "error: spec.vnid: VNID 5 is already used by acme/net-4\n"
    assert names(abilene, "virtualnetworks") == [] and names(abilene, "stitches") == []
    docs.pop()
    path.write_text("---\n".join(docs))
    assert abilene("apply", "-f", str(path))[0] == 0
    assert len(names(abilene, "virtualnetworks")) == 1500 and len(names(abilene, "stitches")) == 700


def test_reapplied_unchanged_then_the_same_checks_as_one_at_a_time(abilene, tmp_path, monkeypatch):
    monkeypatch.setattr(cli_main, "PROGRESS_AFTER_S", 1e9)
    path = tmp_path / "bulk.yaml"
    docs = [network(i, members="m1,m2") for i in range(40)] + [
        f"kind: Stitch\nmetadata: {{name: d-{j}, tenant: acme}}\nspec: {{type: direct, from: {{network: net-{j}, "
        f"member: m2}}, to: {{network: net-{j + 1}, member: m1}}}}\n" for j in range(20)]
    path.write_text("---\n".join(docs))
    assert abilene("apply", "-f", str(path))[0] == 0
    code, out, _ = abilene("apply", "-f", str(path))
    assert code == 0 and out.count(" unchanged\n") == 60 and "created" not in out
    clash = tmp_path / "clash.yaml"
    clash.write_text(network(100, vnid=7))  # net-6's VNID, stored
    assert abilene("apply", "-f", str(clash))[2] == "error: spec.vnid: VNID 7 is already used by acme/net-6\n"
    dropped = tmp_path / "dropped.yaml"
    dropped.write_text(network(3, members="m1"))  # m2 of net-3 carries stitch d-3
    assert abilene("apply", "-f", str(dropped))[2] == ("error: spec.members: member 'm2' is used by stitch "
                                                       "acme/d-3\n")
    assert abilene("delete", "stitch", "d-5", "--tenant", "acme")[0] == 0
    code, _, err = abilene("apply", "-f", str(path))  # d-5 unchanged, but being deleted
    assert code == 1 and err == "error: metadata.name: stitch 'd-5' is being deleted; wait until it is gone\n"


def test_progress_appears_on_stderr_for_a_large_input(abilene, tmp_path, monkeypatch):
    path = tmp_path / "bulk.yaml"
    path.write_text("---\n".join(bulk(1800, 700)))
    monkeypatch.setattr(cli_main, "PROGRESS_AFTER_S", 0.0)  # as if it had run for a while already
    code, out, err = abilene("apply", "-f", str(path))
    assert code == 0 and out.count(" created\n") == 2500
    lines = err.splitlines()
    assert len(lines) == 3, "in a log: one line per phase, not a flood"
    assert lines[0].startswith(f"{path}: parsed 2500/2500 documents (")
    assert lines[1].startswith("admitted 2500/2500 resources; committing (")
    assert lines[2].startswith("applied 2500 resources (")
    monkeypatch.setattr(cli_main, "PROGRESS_EVERY_S", 0.0)  # a long phase: a line now and then within it
    code, out, err = abilene("validate", str(path))
    lines = err.splitlines()
    assert code == 0 and lines[0].startswith(f"{path}: parsed 1000 documents (")
    assert any(line.startswith("checked 1000/2500 resources (") for line in lines)
    assert lines[-1].startswith("validated 2500 resources (")


def test_a_command_quicker_than_the_threshold_prints_no_progress(abilene, tmp_path, monkeypatch):
    monkeypatch.setattr(cli_main, "PROGRESS_AFTER_S", 60.0)
    path = tmp_path / "few.yaml"
    path.write_text("---\n".join(bulk(30, 10)))
    code, _, err = abilene("apply", "-f", str(path))
    assert code == 0 and err == ""
