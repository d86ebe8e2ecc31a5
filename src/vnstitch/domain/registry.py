"""Explicit registry of resource kinds and the one parser for resource files."""

from __future__ import annotations

import bisect
import re
from typing import Any, Callable, Iterator

import yaml
from pydantic import ValidationError

from vnstitch.domain.anomaly import Anomaly, AnomalyPolicy
from vnstitch.domain.forecastpolicy import ForecastPolicy
from vnstitch.domain.intent import Intent, Proposal
from vnstitch.domain.resources import API_VERSION, USER_INPUT, Resource, invalid_from_pydantic
from vnstitch.domain.site import Site, SiteStitch
from vnstitch.domain.stitch import Stitch
from vnstitch.domain.substrate import Link, Node
from vnstitch.domain.vnet import VirtualNetwork
from vnstitch.errors import InvalidInput

KINDS: dict[str, type[Resource]] = {cls.KIND: cls for cls in (Node, Link, VirtualNetwork, Stitch, ForecastPolicy,
                                                               Intent, Proposal, AnomalyPolicy, Anomaly)}
KINDS[Site.KIND] = Site  # issue 14: sites and their route managers (docs/SITES.md)
KINDS[SiteStitch.KIND] = SiteStitch  # issue 14: stitches across sites, negotiated by the route managers
_ALIASES = {
    **{cls.KIND.lower(): cls for cls in KINDS.values()},
    **{cls.PLURAL: cls for cls in KINDS.values()},
    "node": Node, "nodes": Node, "link": Link, "links": Link,
    "vnet": VirtualNetwork, "vnets": VirtualNetwork, "network": VirtualNetwork, "networks": VirtualNetwork,
    "stitch": Stitch, "forecastpolicy": ForecastPolicy, "fp": ForecastPolicy, "intent": Intent,
    "proposal": Proposal, "sitestitch": SiteStitch, "anomalypolicy": AnomalyPolicy, "ap": AnomalyPolicy, "anomaly": Anomaly,
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
                if None not in self.yaml_implicit_resolvers:
                    self.resolve = self._resolver()

        def _resolver(self):
            """Resolver.resolve without path or wildcard resolvers (what __init__ checks), as one closure over
            what it reads: libyaml calls it for every node, so each attribute lookup there counts."""
            tags, implicit_resolvers, kept = self._plain_tags, self.yaml_implicit_resolvers, _PLAIN_TAGS_KEPT
            remembered = tags.get
            scalar, sequence, mapping = yaml.ScalarNode, yaml.SequenceNode, yaml.MappingNode
            str_tag, seq_tag, map_tag = self.DEFAULT_SCALAR_TAG, self.DEFAULT_SEQUENCE_TAG, self.DEFAULT_MAPPING_TAG

            def resolve(kind, value, implicit):
                if kind is scalar:
                    if not implicit[0]:
                        return str_tag
                    tag = remembered(value)
                    if tag is None:
                        tag = str_tag
                        for candidate, regexp in implicit_resolvers.get(value[0] if value else "", ()):
                            if regexp.match(value):
                                tag = candidate
                                break
                        if len(tags) < kept:
                            tags[value] = tag
                    return tag
                return map_tag if kind is mapping else seq_tag if kind is sequence else str_tag

            return resolve

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


def _load_all(stream, lines: list | None = None):
    """yaml.load_all(stream, StrictCLoader), several times faster on large files (see _plain_data).
    `lines`: each document's first line (0-based) is appended to it as the document is read."""
    loader = StrictCLoader(stream)
    try:
        while loader.check_node():
            node = loader.get_node()
            if lines is not None:
                lines.append(node.start_mark.line)
            yield _plain_data(loader, node, {})
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


def _yaml_documents(stream, lines: list | None = None) -> Iterator[Any]:
    """Each non-empty document of a YAML (or JSON) text or file, as it is read; a duplicate key is a YAMLError
    (its message the pure-Python loader's, see _reference_error). `lines`: see _load_all (libyaml only)."""
    if hasattr(stream, "read"):
        stream = stream.read()
    loaded = _load_all(stream, lines) if StrictCLoader is not StrictLoader \
        else yaml.load_all(stream, Loader=StrictLoader)
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
                    progress: Callable[[int, int | None], None] | None = None,
                    origins: list | None = None) -> list[Resource]:
    """Multi-document YAML (or JSON) text a person wrote (or `get -o yaml` printed) → resources, in file order.

    Each document becomes its resource as soon as it is read (a large file never holds both forms), but
    the errors are those of reading the whole file first: malformed YAML anywhere wins over the first
    invalid resource, which is reported once every document is read (named 'document N' when there are
    several). `progress(done, total)`: every 1,000 documents (total None until all are read) and at the end.
    `origins`: (first line of its document, resources it gave) is appended for each document (libyaml only)."""
    resources: list[Resource] = []
    refused = None  # (number, document) of the first document that is not a valid resource
    count = 0
    lines: list[int] | None = [] if origins is not None else None
    try:
        for count, doc in enumerate(_yaml_documents(text, lines), 1):
            if refused is None:
                try:
                    given = _resources_of(doc, f"document {count}")
                    resources.extend(given)
                    if origins is not None:
                        origins.append((lines[-1], len(given)))
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


# documents known from an earlier apply (issue 17: re-applying an unchanged file) ---------------------
DIGESTED_KINDS = ("VirtualNetwork", "Stitch")  # whose unchanged documents an apply may recognise unparsed


def document_chunks(text: str) -> list[str] | None:
    """The text cut before each line that starts a document ('---' at the start of a line), so that each
    piece holds at most one document, which reads the same alone as in the file. None where a cut might
    not be where YAML puts it (a directive, a '...' end, a byte-order mark past the start, a line break
    other than LF and CRLF): such a text is only ever parsed whole. (String methods, not a multi-line
    regular expression: those try every position of a large file.)"""
    if text.startswith("%") or "\n%" in text or any(c in text for c in "\x85\u2028\u2029") \
            or text.find("\ufeff", 1) >= 0 or text.count("\r") != text.count("\r\n") \
            or _marks(text, "...") or not text:
        return None
    parts = text.split("\n---")
    chunks = [parts[0]]
    for part in parts[1:]:
        if not part or part[0] in _BLANK_OR_BREAK:  # '---' alone on its line or before a blank: a document starts
            chunks[-1] += "\n"
            chunks.append("---" + part)
        else:  # '----', '---x': text of the document before
            chunks[-1] += "\n---" + part
    return [chunk for chunk in chunks if chunk]


_BLANK_OR_BREAK = " \t\r\n"


def _marks(text: str, mark: str) -> bool:
    """Does a line start with `mark` followed by a blank, a line break or the end?"""
    at = 0 if text.startswith(mark) else text.find("\n" + mark)
    while at >= 0:
        after = text[at + len(mark) + (at > 0 or not text.startswith(mark)):][:1]
        if not after or after in _BLANK_OR_BREAK:
            return True
        at = text.find("\n" + mark, at + 1)
    return False


def chunk_digest(salt: bytes, chunk: str) -> str:
    """A piece's digest under `salt` (what else decides what it parses to: the parser's code, CLI flags)."""
    import hashlib

    return hashlib.blake2b(salt + chunk.encode(), digest_size=16).hexdigest()


_PARSER_FINGERPRINT: list[bytes] = []


def parser_fingerprint() -> bytes:
    """A digest of what turns a document into a resource: this package's domain code and units, and the
    versions of PyYAML, pydantic and vnstitch. A digest made by other code never matches."""
    if not _PARSER_FINGERPRINT:
        import hashlib
        from pathlib import Path

        import pydantic

        import vnstitch

        here = Path(__file__).resolve().parent
        digest = hashlib.blake2b(f"{vnstitch.__version__}|{yaml.__version__}|{pydantic.VERSION}|"
                                 f"{StrictCLoader.__name__}".encode(), digest_size=16)
        for path in sorted(here.glob("*.py")) + [here.parent / "units.py", here.parent / "errors.py"]:
            if path.exists():
                digest.update(path.name.encode() + b"\0" + path.read_bytes())
        _PARSER_FINGERPRINT.append(digest.digest())
    return _PARSER_FINGERPRINT[0]


class KnownDocument:
    """A document whose digest an earlier apply recorded: the key and fingerprint of the object it gave.
    Controller.apply takes it as unchanged when the stored object still has that fingerprint, and
    otherwise parses it (`parse()`) and goes on as if it had been parsed up front."""

    __slots__ = ("KIND", "namespace", "name", "fingerprint", "revision", "digest", "_text", "_parse")

    def __init__(self, key: tuple[str, str, str], fingerprint: str, revision: int, digest: str, text: str,
                 parse: Callable[[str], Resource]):
        self.KIND, self.namespace, self.name = key
        self.fingerprint, self.revision = fingerprint, revision  # the object's then, and the revision it had
        self.digest, self._text, self._parse = digest, text, parse

    def parse(self) -> Resource:
        return self._parse(self._text)

    def __repr__(self) -> str:
        return f"KnownDocument({self.KIND}/{self.namespace}/{self.name})"


def parse_documents_known(text: str, known: dict[str, tuple[tuple[str, str, str], str, int]], salt: bytes,
                          source: str = "input", progress: Callable[[int, int | None], None] | None = None,
                          prepare: Callable[[Resource], Resource] = lambda r: r, chunks: list[str] | None = None
                          ) -> tuple[list, dict[tuple[str, str, str], str]]:
    """parse_documents, but a document whose digest is in `known` (digest → (key, fingerprint, revision)) is not parsed:
    a KnownDocument stands in its place. Returns the resources (prepared) and known documents in file order,
    and the digest of each parsed resource that came alone from its document (key → digest), for the next
    apply to recognise. Any error is the whole file's, exactly as parse_documents reports it. `chunks`:
    document_chunks(text), where the caller has it already (emptied when nothing is known)."""
    if chunks is None or StrictCLoader is StrictLoader:
        chunks = document_chunks(text) if StrictCLoader is not StrictLoader else None
    if chunks is None:
        return [prepare(r) for r in parse_documents(text, source, progress)], {}
    digests = [chunk_digest(salt, c) for c in chunks]
    hits = [known.get(d) for d in digests]
    unknown = [i for i, hit in enumerate(hits) if hit is None]
    whole = len(unknown) == len(chunks)
    if whole:  # nothing known (a first apply): the text is parsed as it is, the pieces are only counted
        lines = [c.count("\n") for c in chunks]
        chunks.clear()  # (the caller's list too: not kept while the text is parsed)
        chunks = lines
    starts, line = [], 0  # first line of each unknown piece in the text parsed
    for i in unknown:
        starts.append(line)
        line += chunks[i] if whole else chunks[i].count("\n")
    origins: list[tuple[int, int]] = []
    try:
        parsed = parse_documents(text if whole else "".join(chunks[i] for i in unknown), source,
                                 progress if whole else None, origins)
    except InvalidInput:
        if whole:
            raise
        return [prepare(r) for r in parse_documents(text, source, progress)], {}  # its errors, as they are

    def parse_alone(chunk: str) -> Resource:
        return prepare(parse_documents(chunk, source)[0])

    given: dict[int, list[Resource]] = {}  # piece → its resources
    position = 0
    for line, count in origins:
        piece = unknown[bisect.bisect_right(starts, line) - 1]
        given.setdefault(piece, []).extend(prepare(r) for r in parsed[position:position + count])
        position += count
    items: list = []
    recorded: dict[tuple[str, str, str], str] = {}
    for i, hit in enumerate(hits):
        if hit is not None:
            items.append(KnownDocument(*hit, digests[i], chunks[i], parse_alone))
            continue
        resources = given.get(i, [])
        items.extend(resources)
        if len(resources) == 1 and resources[0].KIND in DIGESTED_KINDS:
            res = resources[0]
            recorded[(res.KIND, res.namespace, res.name)] = digests[i]
    if progress is not None and not whole:
        documents = len(chunks) - len(unknown) + len(origins)
        progress(documents, documents)
    return items, recorded
