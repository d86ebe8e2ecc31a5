"""Explicit registry of resource kinds and the one parser for resource files."""

from __future__ import annotations

import re
from typing import Any, Callable, Iterator

import yaml
from pydantic import ValidationError

from vnstitch.domain.anomaly import Anomaly, AnomalyPolicy
from vnstitch.domain.forecastpolicy import ForecastPolicy
from vnstitch.domain.intent import Intent, Proposal
from vnstitch.domain.resources import API_VERSION, USER_INPUT, Resource, invalid_from_pydantic
from vnstitch.domain.site import Site
from vnstitch.domain.stitch import Stitch
from vnstitch.domain.substrate import Link, Node
from vnstitch.domain.vnet import VirtualNetwork
from vnstitch.errors import InvalidInput

KINDS: dict[str, type[Resource]] = {cls.KIND: cls for cls in (Node, Link, VirtualNetwork, Stitch, ForecastPolicy,
                                                               Intent, Proposal, AnomalyPolicy, Anomaly)}
KINDS[Site.KIND] = Site  # issue 14: sites and their route managers (docs/SITES.md)
_ALIASES = {
    **{cls.KIND.lower(): cls for cls in KINDS.values()},
    **{cls.PLURAL: cls for cls in KINDS.values()},
    "node": Node, "nodes": Node, "link": Link, "links": Link,
    "vnet": VirtualNetwork, "vnets": VirtualNetwork, "network": VirtualNetwork, "networks": VirtualNetwork,
    "stitch": Stitch, "forecastpolicy": ForecastPolicy, "fp": ForecastPolicy, "intent": Intent,
    "proposal": Proposal, "anomalypolicy": AnomalyPolicy, "ap": AnomalyPolicy, "anomaly": Anomaly,
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

_PLAIN_TAGS_KEPT = 50_000  # plain scalars whose resolved tag a loader remembers (keys, names that recur)

if getattr(yaml, "CSafeLoader", None) is not None:  # PyYAML built with libyaml
    class StrictCLoader(yaml.CSafeLoader):
        """StrictLoader's rules over libyaml's parser: the same constructor, so duplicates are refused alike.
        libyaml calls back into Python's resolver around every node; those calls are most of its time, so a
        plain scalar's tag is remembered (it depends on its text alone), and without path resolvers the
        descend/ascend calls, no-ops then, go to builtins that ignore them."""

        def __init__(self, stream):
            super().__init__(stream)
            self._plain_tags: dict[str, str] = {}
            if not self.yaml_path_resolvers:
                self.descend_resolver = {}.get  # (parent, index) → ignored, as Resolver's would
                self.ascend_resolver = [].clear  # () → ignored

        def resolve(self, kind, value, implicit):
            if kind is not yaml.ScalarNode or not implicit[0] or self.yaml_path_resolvers:
                return super().resolve(kind, value, implicit)
            tag = self._plain_tags.get(value)
            if tag is None:
                tag = super().resolve(kind, value, implicit)
                if len(self._plain_tags) < _PLAIN_TAGS_KEPT:
                    self._plain_tags[value] = tag
            return tag

    StrictCLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
else:
    StrictCLoader = StrictLoader

_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
_PLAIN_SCALARS = {  # tag → the SafeConstructor method that builds it (called directly: no bookkeeping needed)
    "tag:yaml.org,2002:int": "construct_yaml_int", "tag:yaml.org,2002:float": "construct_yaml_float",
    "tag:yaml.org,2002:bool": "construct_yaml_bool", "tag:yaml.org,2002:null": "construct_yaml_null",
}
_Scalar, _Sequence, _Mapping = yaml.ScalarNode, yaml.SequenceNode, yaml.MappingNode


def _plain_data(loader: yaml.BaseLoader, node: yaml.Node, made: dict):
    """The node's value as StrictLoader builds it, without the constructor's per-node bookkeeping (most of
    the time of a large file): plain mappings, sequences and scalars here, anything else (merge keys,
    tags, timestamps, an unhashable key) by the constructor itself. `made`: node → value, for aliases."""
    kind = type(node)
    if kind is _Scalar:
        if node.tag == _STR:
            return node.value
        method = _PLAIN_SCALARS.get(node.tag)
        return getattr(loader, method)(node) if method else loader.construct_object(node, deep=True)
    if node in made:
        return made[node]
    if kind is _Mapping and node.tag == _MAP:
        pairs = node.value
        first: dict = {}  # key → its node; keys first, as StrictLoader checks them before any value
        for key_node, _ in pairs:
            if type(key_node) is not _Scalar:
                return loader.construct_object(node, deep=True)  # a complex key
            if key_node.tag == _STR:
                key = key_node.value
            elif key_node.tag in _PLAIN_SCALARS:
                key = getattr(loader, _PLAIN_SCALARS[key_node.tag])(key_node)
            else:
                return loader.construct_object(node, deep=True)  # '<<', '=', a tagged key
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (first given at line {first[key].start_mark.line + 1})",
                    key_node.start_mark)
            first[key] = key_node
        mapping = made[node] = {}
        for key, (_, value_node) in zip(first, pairs):  # no key twice, so one entry per pair, in order
            if type(value_node) is _Scalar and value_node.tag == _STR:
                mapping[key] = value_node.value
            else:
                mapping[key] = _plain_data(loader, value_node, made)
        return mapping
    if kind is _Sequence and node.tag == _SEQ:
        sequence = made[node] = []
        sequence.extend(_plain_data(loader, item, made) for item in node.value)
        return sequence
    return loader.construct_object(node, deep=True)


def _load_all(stream):
    """yaml.load_all(stream, StrictCLoader), several times faster on large files (see _plain_data)."""
    loader = StrictCLoader(stream)
    try:
        while loader.check_node():
            yield _plain_data(loader, loader.get_node(), {})
            loader.constructed_objects, loader.recursive_objects = {}, {}
    finally:
        loader.dispose()


_DOCUMENT_MARK = re.compile(r"(?:---|\.\.\.)(?:\s|$)")


def _reference_error(text: str, error: yaml.YAMLError) -> yaml.YAMLError:
    """libyaml's syntax errors are terser than PyYAML's ('found character that cannot start any token'
    without the character): re-read only the document at fault with the pure-Python loader, so the
    message is the one the pure loader gives. Its error stands where the pure loader agrees on the line.
    A constructor's error (a duplicate key, an unknown tag) is the pure loader's already: the same code."""
    if StrictCLoader is StrictLoader or not isinstance(text, str) \
            or isinstance(error, yaml.constructor.ConstructorError):
        return error
    if isinstance(error, yaml.reader.ReaderError):
        try:
            yaml.reader.Reader(text)  # checks every character up front
        except yaml.reader.ReaderError as pure:
            return pure
        return error
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return error
    lines = text.splitlines(keepends=True)
    line = min(mark.line, len(lines) - 1)
    start = line - 1 if line > 0 and _DOCUMENT_MARK.match(lines[line]) else line
    while start > 0 and not _DOCUMENT_MARK.match(lines[start]):
        start -= 1
    end = line + 1
    while end < len(lines) and not _DOCUMENT_MARK.match(lines[end]):
        end += 1
    try:
        for _ in yaml.load_all("".join(lines[start:end]), Loader=StrictLoader):
            pass
    except yaml.YAMLError as pure:
        pure_mark = getattr(pure, "problem_mark", None)
        if pure_mark is not None and pure_mark.line + start == mark.line and pure_mark.column == mark.column:
            pure.problem_mark = yaml.Mark(mark.name, mark.index, mark.line, mark.column, None, None)
            return pure
    return error


def _yaml_documents(stream) -> Iterator[Any]:
    """Each non-empty document of a YAML (or JSON) text or file, as it is read; a duplicate key is a YAMLError
    (its message the pure-Python loader's, see _reference_error)."""
    if hasattr(stream, "read"):
        stream = stream.read()
    loaded = _load_all(stream) if StrictCLoader is not StrictLoader else yaml.load_all(stream, Loader=StrictLoader)
    try:
        for doc in loaded:
            if doc is not None:
                yield doc
    except yaml.YAMLError as exc:
        raise _reference_error(stream, exc) from None


def load_yaml_documents(stream) -> list:
    """Every non-empty document of a YAML (or JSON) text or file; a duplicate key is a YAMLError."""
    return list(_yaml_documents(stream))


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


def parse_documents(text: str, source: str = "input",
                    progress: Callable[[int, int | None], None] | None = None) -> list[Resource]:
    """Multi-document YAML (or JSON) text a person wrote (or `get -o yaml` printed) → resources, in file order.

    Each document becomes its resource as soon as it is read (a large file never holds both forms), but
    the errors are those of reading the whole file first: malformed YAML anywhere wins over the first
    invalid resource, which is reported once every document is read (named 'document N' when there are
    several). `progress(done, total)`: every 1,000 documents (total None until all are read) and at the end."""
    resources: list[Resource] = []
    refused = None  # (number, document) of the first document that is not a valid resource
    count = 0
    try:
        for count, doc in enumerate(_yaml_documents(text), 1):
            if refused is None:
                try:
                    resources.extend(_resources_of(doc, f"document {count}"))
                except Exception:  # noqa: BLE001 - raised again below, once the file is known to be YAML
                    refused = (count, doc)
            if progress is not None and count % 1000 == 0:
                progress(count, None)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidInput(f"{source}: malformed YAML{where}: {problem}") from None
    if refused is not None:
        number, doc = refused
        _resources_of(doc, f"document {number}" if count > 1 else "")  # raises, now naming it as it should
        raise AssertionError("a refused document parsed the second time")
    if progress is not None:
        progress(count, count)
    return resources


def _resources_of(doc: Any, where: str) -> list[Resource]:
    if isinstance(doc, list):  # a JSON list of objects, as `get -o json` prints
        return [parse_resource(d, f"item {i + 1}", user_input=True) for i, d in enumerate(doc)]
    return [parse_resource(doc, where, user_input=True)]
