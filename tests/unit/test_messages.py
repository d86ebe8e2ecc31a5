"""Validation messages speak the user's language: what is allowed in plain words, field paths dotted;
the same words from `vnstitch validate --offline FILE` and (tests/api/test_messages.py) the API's 422
body."""

import pytest

from vnstitch.cli.main import main

NET = "kind: VirtualNetwork\nmetadata: {{name: {name}}}\nspec: {{vnid: {vnid}, cidr: 10.0.0.0/24{more}}}\n"
STITCH = "kind: Stitch\nmetadata: {{name: s}}\nspec: {{type: {type}, from: {{network: a}}, to: {{network: b}}{more}}}\n"
LINK = "kind: Link\nmetadata: {{name: l}}\nspec: {{endpoints: [a, b], capacity: {capacity}{more}}}\n"

# document, field, message: exactly what the user reads
CASES = [
    (NET.format(name="-web", vnid=1, more=""), "metadata.name",
     "must be at most 63 characters: letters, digits, '-', '_', '.', beginning and ending with a letter or digit "
     "(got '-web')"),
    (NET.format(name="web", vnid=16777216, more=""), "spec.vnid", "must be ≤ 16777215"),
    (NET.format(name="web", vnid=0, more=""), "spec.vnid", "must be ≥ 1"),
    (NET.format(name="web", vnid="many", more=""), "spec.vnid", "must be a whole number"),
    ("kind: VirtualNetwork\nmetadata: {name: web}\nspec: {cidr: 10.0.0.0/24}\n", "spec.vnid", "is required"),
    (NET.format(name="web", vnid=1, more=", colour: red"), "spec.colour",
     "is not a known field (known: vnid, cidr, members, policy, services, capabilities, trustLevel, external)"),
    (NET.format(name="web", vnid=1, more=", members: [{name: a, node: n, address: 10.1.0.1}]"),
     "spec.members[0].address", "10.1.0.1 is outside 10.0.0.0/24"),
    (NET.format(name="web", vnid=1, more=", policy: {allowStitchTo: [{matchLabels: {}, tenat: x}]}"),
     "spec.policy.allowStitchTo[0].tenat", "is not a known field (known: matchLabels, tenant)"),
    (STITCH.format(type="bandwidth", more=""), "spec.bandwidth", "a bandwidth stitch needs a bandwidth above 0"),
    (STITCH.format(type="direct", more=""), "spec.from.member", "a direct stitch joins two VMs; name the member"),
    (STITCH.format(type="tunnel", more=""), "spec.type", "must be one of: direct, segment, bandwidth"),
    (STITCH.format(type="segment", more=", encryption: maybe"), "spec.encryption", "must be one of: required, none"),
    (STITCH.format(type="segment", more=", priority: 5000"), "spec.priority", "must be ≤ 1000"),
    (LINK.format(capacity="1Gbps", more=", latency: 20s"), "spec.latency", "must be ≤ 10s"),
    (LINK.format(capacity="0bps", more=""), "spec.capacity", "must be > 0bps"),
    (LINK.format(capacity="1Gbps", more=", state: broken"), "spec.state", "must be one of: up, maintenance, down"),
    ("kind: Link\nmetadata: {name: l}\nspec: {endpoints: [a, b, c], capacity: 1Gbps}\n", "spec.endpoints",
     "must have at most 2 items"),
    ("kind: ForecastPolicy\nmetadata: {name: f}\nspec: {interval: 500ms}\n", "spec.interval", "must be ≥ 1s"),
    ("kind: ForecastPolicy\nmetadata: {name: f}\nspec: {interval: 2d}\n", "spec.interval", "must be ≤ 1d"),
    ("kind: Node\nmetadata: {name: n, labels: [a]}\n", "metadata.labels", "must be a mapping (key: value)"),
]


@pytest.mark.parametrize("document,field,message", CASES, ids=[f"{c[1]}:{c[2][:24]}" for c in CASES])
def test_validate_offline_says_what_is_allowed(tmp_path, capsys, document, field, message):
    path = tmp_path / "bad.yaml"
    path.write_text(document)
    assert main(["validate", "--offline", str(path)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {field}: {message}"
