"""Resource files load through libyaml (issue 17: bulk input) with the pure loader's rules and words:
duplicate keys refused at their line, the same values, the same message for malformed YAML."""

import pytest
import yaml

from vnstitch.domain import registry
from vnstitch.domain.registry import load_yaml_documents, parse_documents
from vnstitch.errors import InvalidInput
from tests.tiers import require_tier

@pytest.fixture
def needs_libyaml():
    """PyYAML's C loader: skipped where PyYAML was built without libyaml, failed under CI=true."""
    require_tier("libyaml", None if yaml.__with_libyaml__ else "PyYAML built without libyaml: the pure loader is "
                                                                 "the only one")


NETWORK = ("kind: VirtualNetwork\nmetadata: {{name: n{i}, tenant: acme}}\n"
           "spec:\n  vnid: {vnid}\n  cidr: 10.0.{i}.0/24\n")


def pure(text: str) -> list:
    return [d for d in yaml.load_all(text, Loader=registry.StrictLoader) if d is not None]


@pytest.mark.usefixtures("needs_libyaml")
def test_the_c_loader_is_the_one_used_and_keeps_the_strict_constructor():
    assert issubclass(registry.StrictCLoader, yaml.CSafeLoader)
    constructor = registry.StrictCLoader.yaml_constructors[yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG]
    assert constructor is registry.StrictLoader.yaml_constructors[yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG]


@pytest.mark.usefixtures("needs_libyaml")
def test_a_duplicate_key_deep_in_a_large_file_is_refused_at_its_line():
    text = "---\n".join(NETWORK.format(i=i, vnid=i + 1) for i in range(200))
    lines = text.count("\n")
    text += "---\nkind: VirtualNetwork\nmetadata: {name: last, tenant: acme}\nspec:\n  vnid: 999\n  vnid: 998\n"
    with pytest.raises(InvalidInput) as caught:
        parse_documents(text, source="big.yaml")
    assert caught.value.message == (f"big.yaml: malformed YAML at line {lines + 6}, column 3: duplicate key "
                                    f"'vnid' (first given at line {lines + 5})")


@pytest.mark.parametrize("text", [
    "a: 1\nb: [1, 2.5, true, null, ~, yes, no, on, 0x1f, 017, 1_000, 1:30, .inf, 2001-12-14, '1', \"x\\n\"]\n",
    "a: &x {k: 1}\nb:\n  <<: *x\n  j: 2\n",            # merge keys go through the constructor
    "x: 1\ny: 1\n---\n---\nz: [1, 1]\n",                 # empty documents are dropped
    "a: !!binary aGVsbG8=\nb: !!set {x, y}\nc: !!str 1\nd: !!omap [{x: 1}]\n",
    "a: &s x\nb: *s\n? a key\n1: int key\nnull: none\n",
    "c: |\n  block\n  literal\nd: >\n  folded\n  text\n",
    '{"json": [1, 2, {"a": null}], "b": "c"}\n',
])
def test_values_are_those_of_the_pure_loader(text):
    assert load_yaml_documents(text) == pure(text)


@pytest.mark.parametrize("text, message", [
    ("a:\n\t- x\n", "at line 2, column 1: found character '\\t' that cannot start any token"),
    ("a: [*nope]\n", "at line 1, column 5: found undefined alias 'nope'"),
    ("a: 1\n---\nb: c: d\n", "at line 3, column 5: mapping values are not allowed here"),
    ("a: 1\n---\nb: 'open\n---\nc: 3\n", "at line 4, column 1: found unexpected document separator"),
    ("a: 1\n---\n{x: 1\n", "at line 4, column 1: expected ',' or '}', but got '<stream end>'"),
    ("1: a\n1.0: b\n", "at line 2, column 1: duplicate key '1.0' (first given at line 1)"),
    ("k: {x: 1, y: {x: 1, x: 2}}\n", "at line 1, column 21: duplicate key 'x' (first given at line 1)"),
    ("a: 1\n---\nb: \x07\n", "unacceptable character #x0007: special characters are not allowed"),
])
def test_malformed_yaml_reads_as_the_pure_loader_words_it(text, message):
    with pytest.raises(InvalidInput) as caught:
        parse_documents(text, source="f.yaml")
    assert caught.value.message == f"f.yaml: malformed YAML {message}".replace("YAML unacceptable", "YAML: unacceptable")


def test_malformed_yaml_after_an_invalid_resource_is_what_is_reported():
    """Documents become resources as they are read, but the errors are those of reading the file first."""
    text = "kind: Nope\nmetadata: {name: a}\n---\n" + NETWORK.format(i=1, vnid=1) + "---\nx: [1\n"
    with pytest.raises(InvalidInput, match="malformed YAML at line 11, column 1"):
        parse_documents(text)
    with pytest.raises(InvalidInput) as caught:
        parse_documents(text.rsplit("---\n", 1)[0])
    assert caught.value.message.startswith("unknown kind 'Nope'") and caught.value.message.endswith("(document 1)")
    with pytest.raises(InvalidInput) as caught:
        parse_documents("kind: Nope\nmetadata: {name: a}\n")
    assert "(document" not in caught.value.message, "one document: not numbered"
