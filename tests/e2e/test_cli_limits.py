"""The CLI caps a resource file's objects like the API caps a body (1 MiB each by default, configurable),
and what `get -o yaml|json` prints applies again under the strict unit rules."""

import json

import pytest

NETWORK = "kind: VirtualNetwork\nmetadata: {{name: {name}}}\nspec: {{vnid: {vnid}, cidr: 10.{vnid}.0.0/24}}\n"


def padded(name: str, vnid: int, size: int) -> str:
    """A valid VirtualNetwork document of about `size` bytes (a long annotation)."""
    head = NETWORK.format(name=name, vnid=vnid)
    note = "x" * max(0, size - len(head) - 40)
    return head.replace("metadata: {", f"metadata: {{annotations: {{note: {note}}}, ")


@pytest.mark.parametrize("command", [["validate", "--offline"], ["apply", "-f"]])
def test_a_document_over_one_mib_is_refused_naming_it_and_its_size(cli, tmp_path, command):
    big = tmp_path / "big.yaml"
    big.write_text(NETWORK.format(name="small", vnid=1) + "---\n" + padded("large", 2, (1 << 20) + 100))
    size = len(big.read_text().split("---\n")[1].encode())
    code, out, err = cli(*command, str(big))
    assert code == 1
    assert err.strip() == (f"error: FILE: {big}: document 2 is {size} bytes, over the limit of 1048576 bytes per "
                           "object (--max-object-bytes)")
    assert cli("get", "virtualnetworks", "-o", "name")[1].strip() == "", "nothing applied"


def test_many_documents_under_the_cap_pass_however_large_the_file(cli, tmp_path):
    many = tmp_path / "many.yaml"
    many.write_text("---\n".join(padded(f"n{i}", i + 1, 600_000) for i in range(3)))
    assert many.stat().st_size > 1 << 20
    code, out, err = cli("validate", "--offline", str(many))
    assert code == 0, err
    assert "3 resource(s) valid" in out


def test_the_cap_is_configurable_by_option_and_environment(cli, tmp_path, monkeypatch):
    doc = tmp_path / "net.yaml"
    doc.write_text(padded("mid", 3, 5000))
    assert cli("validate", "--offline", str(doc))[0] == 0
    code, _, err = cli("--max-object-bytes", "4096", "validate", "--offline", str(doc))
    assert code == 1 and "over the limit of 4096 bytes per object" in err
    monkeypatch.setenv("VNSTITCH_MAX_OBJECT_BYTES", "2048")
    code, _, err = cli("validate", "--offline", str(doc))
    assert code == 1 and "over the limit of 2048 bytes per object" in err
    assert cli("--max-object-bytes", "8192", "validate", "--offline", str(doc))[0] == 0, "the option wins"


def test_a_json_list_counts_its_objects_one_by_one(cli, tmp_path):
    items = [{"kind": "VirtualNetwork", "metadata": {"name": f"j{i}", "annotations": {"note": "y" * 600_000}},
              "spec": {"vnid": 10 + i, "cidr": f"10.{10 + i}.0.0/24"}} for i in range(2)]
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps(items))
    assert cli("validate", "--offline", str(listing))[0] == 0
    items[1]["metadata"]["annotations"]["note"] = "y" * (1 << 20)
    listing.write_text(json.dumps(items))
    code, _, err = cli("validate", "--offline", str(listing))
    assert code == 1 and f"{listing}: document 1, item 2, is " in err


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_get_output_applies_again_with_units(cli, tmp_path, fmt):
    spec = tmp_path / "in.yaml"
    spec.write_text("kind: Node\nmetadata: {name: a}\n---\nkind: Node\nmetadata: {name: b}\n---\n"
                    "kind: Link\nmetadata: {name: a--b}\nspec: {endpoints: [a, b], capacity: 10MB/s, latency: 1.5ms}\n"
                    "---\nkind: ForecastPolicy\nmetadata: {name: fc}\nspec: {interval: 5m, trainingWindow: 2d}\n")
    assert cli("apply", "-f", str(spec))[0] == 0
    code, out, _ = cli("get", "links", "a--b", "-o", fmt)
    assert code == 0
    if fmt == "yaml":
        assert "capacity: 80Mbps" in out and "latency: 1.5ms" in out, "bytes are converted ×8, units printed"
    again = tmp_path / f"again.{fmt}"
    again.write_text(out)
    code, out, err = cli("apply", "-f", str(again))
    assert code == 0, err
    assert "unchanged" in out
    code, out, _ = cli("get", "forecastpolicies", "fc", "-o", fmt)
    again.write_text(out)
    assert cli("apply", "-f", str(again))[0] == 0
