"""A key given twice in a resource file is an error at its line, not the last one silently winning."""

import pytest

from vnstitch.domain.registry import load_yaml_documents, parse_documents
from vnstitch.errors import InvalidInput

STITCH = """kind: Stitch
metadata: {name: s, tenant: acme}
spec:
  from: {network: blue}
  to: {network: red}
  bandwidth: 1Gbps
  bandwidth: 10Gbps
"""


def test_a_duplicate_key_names_its_line_and_the_first_one():
    with pytest.raises(InvalidInput) as caught:
        parse_documents(STITCH, source="s.yaml")
    assert caught.value.message == ("s.yaml: malformed YAML at line 7, column 3: duplicate key 'bandwidth' "
                                    "(first given at line 6)")


def test_duplicates_in_flow_mappings_and_later_documents_too():
    with pytest.raises(InvalidInput, match="line 2, column 21: duplicate key 'name'"):
        parse_documents("kind: Node\nmetadata: {name: a, name: b}\n")
    with pytest.raises(InvalidInput, match="line 5, column 1: duplicate key 'kind'"):
        parse_documents("kind: Node\nmetadata: {name: a}\n---\nkind: Node\nkind: Link\n")


def test_merge_keys_and_equal_values_under_different_keys_still_load():
    assert load_yaml_documents("a: &x {k: 1}\nb:\n  <<: *x\n  j: 2\n") == [{"a": {"k": 1}, "b": {"k": 1, "j": 2}}]
    assert load_yaml_documents("x: 1\ny: 1\n---\n---\nz: [1, 1]\n") == [{"x": 1, "y": 1}, {"z": [1, 1]}]


def test_the_lab_topology_reader_refuses_duplicates(tmp_path):
    from vnstitch.lab.topology import load_documents

    path = tmp_path / "lab.yaml"
    path.write_text("kind: Node\nkind: Node\n")
    with pytest.raises(InvalidInput, match="duplicate key 'kind'"):
        load_documents(str(path))
