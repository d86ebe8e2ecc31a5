"""Explicit registry of resource kinds and the one parser for resource files."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from vnstitch.domain.forecastpolicy import ForecastPolicy
from vnstitch.domain.intent import Intent, Proposal
from vnstitch.domain.resources import API_VERSION, USER_INPUT, Resource, invalid_from_pydantic
from vnstitch.domain.stitch import Stitch
from vnstitch.domain.substrate import Link, Node
from vnstitch.domain.vnet import VirtualNetwork
from vnstitch.errors import InvalidInput

KINDS: dict[str, type[Resource]] = {cls.KIND: cls for cls in (Node, Link, VirtualNetwork, Stitch, ForecastPolicy,
                                                               Intent, Proposal)}
_ALIASES = {
    **{cls.KIND.lower(): cls for cls in KINDS.values()},
    **{cls.PLURAL: cls for cls in KINDS.values()},
    "node": Node, "nodes": Node, "link": Link, "links": Link,
    "vnet": VirtualNetwork, "vnets": VirtualNetwork, "network": VirtualNetwork, "networks": VirtualNetwork,
    "stitch": Stitch, "forecastpolicy": ForecastPolicy, "fp": ForecastPolicy, "intent": Intent,
    "proposal": Proposal,
}


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML lets the last one win
    silently: `bandwidth: 1Gbps` … `bandwidth: 10Gbps` would reserve the second without a word)."""


def _mapping_without_duplicates(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # '<<' merges are resolved by the base constructor
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:
            continue  # an unhashable key: the base constructor reports it
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first given at line {first})", key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_yaml_documents(stream) -> list:
    """Every non-empty document of a YAML (or JSON) text or file; a duplicate key is a YAMLError."""
    return [d for d in yaml.load_all(stream, Loader=StrictLoader) if d is not None]


def kind_class(name: str) -> type[Resource]:
    """'stitches', 'Stitch', 'vnet' → the resource class; unknown names list the valid ones."""
    cls = _ALIASES.get(name) or _ALIASES.get(name.lower())
    if cls is None:
        raise InvalidInput(f"unknown kind '{name}' (valid: {', '.join(sorted(c.PLURAL for c in KINDS.values()))})",
                           field="kind")
    return cls


def parse_resource(doc: Any, where: str = "", user_input: bool = False) -> Resource:
    """One decoded document → a validated resource; errors name the field (and the document).
    `user_input`: written by a person, so bandwidths and durations must name their unit."""
    suffix = f" ({where})" if where else ""
    if not isinstance(doc, dict):
        raise InvalidInput(f"a resource must be a mapping with apiVersion, kind, metadata, spec{suffix}")
    if doc.get("apiVersion", API_VERSION) != API_VERSION:
        raise InvalidInput(f"unsupported apiVersion '{doc.get('apiVersion')}' (use {API_VERSION}){suffix}",
                           field="apiVersion")
    kind = doc.get("kind")
    if kind not in KINDS:
        raise InvalidInput(f"unknown kind '{kind}' (valid: {', '.join(sorted(KINDS))}){suffix}", field="kind")
    try:
        return KINDS[kind].model_validate(doc, context=USER_INPUT if user_input else None)
    except ValidationError as exc:
        err = invalid_from_pydantic(exc)
        err.message += suffix
        raise err from None


def parse_documents(text: str, source: str = "input") -> list[Resource]:
    """Multi-document YAML (or JSON) text a person wrote (or `get -o yaml` printed) → resources, in file order."""
    try:
        docs = load_yaml_documents(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidInput(f"{source}: malformed YAML{where}: {problem}") from None
    resources = []
    for index, doc in enumerate(docs):
        if isinstance(doc, list):  # a JSON list of objects, as `get -o json` prints
            resources.extend(parse_resource(d, f"item {i + 1}", user_input=True) for i, d in enumerate(doc))
        else:
            resources.append(parse_resource(doc, f"document {index + 1}" if len(docs) > 1 else "", user_input=True))
    return resources
