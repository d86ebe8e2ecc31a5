"""The compact intent language → the structured intent spec (a dict the Intent model validates).

Parsed by Lark (LALR, contextual lexer) from grammar.lark; errors say the line and column and what
could come there. Quantities stay as written ('20ms', '200Mbps'): the model reads them with their units.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from vnstitch.errors import InvalidInput

_CONDITION = {"<": "lessThan", "<=": "atMost", ">": "greaterThan", ">=": "atLeast", "=": "equals"}
# How a terminal reads in an error message.
_WORDS = {"STRING": "a quoted name ('tenant/name')", "QUANTITY": "a quantity with its unit (20ms, 200Mbps)",
          "CMP": "a comparison (<, <=, >, >=, =)", "NAME": "a name", "INT": "a whole number",
          "NUMBER": "a number", "PERCENT": "a percentage (0.1%)", "PERCENTILE": "a percentile (p95)",
          "CLOCK": "a time of day (08:00)", "DATETIME": "a date-time (2027-01-01T00:00:00Z)",
          "DAYS": "days (mon-fri)", "SEMICOLON": "';'", "LPAR": "'('", "RPAR": "')'", "COMMA": "','",
          "MINUS": "'-'", "EQUAL": "'='", "MORETHAN": "'>'", "VBAR": "'|'", "$END": "the end of the text"}


class IntentSyntaxError(InvalidInput):
    """A malformed intent text; `line` and `column` count from 1."""

    def __init__(self, message: str, line: int, column: int, context: str = ""):
        super().__init__(f"line {line}, column {column}: {message}", field="spec.text")
        self.line, self.column, self.context = line, column, context


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = resources.files("vnstitch.intent").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", lexer="contextual", propagate_positions=True, maybe_placeholders=False)


def _unquote(token: Token | str) -> str:
    return str(token)[1:-1]


def _short_name(ref: str) -> str:
    """'acme/analytics:8443' → 'analytics-8443': a readable expectation id part."""
    text = ref.rsplit("/", 1)[-1] if ":" not in ref else ref.split("/", 1)[-1]
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:24] or "x"


class _Build(Transformer):
    """Parse tree → {"priority", "validity", "expectations"}."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def _id(self, stem: str) -> str:
        stem = re.sub(r"[^a-z0-9]+", "-", stem.lower())[:28].strip("-") or "e"
        name, n = stem, 2
        while name in self.ids:
            name, n = f"{stem}-{n}", n + 1
        self.ids.add(name)
        return name

    # options ---------------------------------------------------------------------------
    def priority(self, items):
        return ("priority", int(items[0]))

    def validity(self, items):
        stamps = [str(t) for t in items]
        return ("validity", {"start": stamps[0], "end": stamps[1]} if len(stamps) == 2 else {"end": stamps[0]})

    # groups and services ----------------------------------------------------------------
    def group_named(self, items):
        return {"group": _unquote(items[0])}

    def group_selected(self, items):
        return {"selector": dict(items)}

    def label(self, items):
        key, value = items
        return str(key), _unquote(value) if value.type == "STRING" else str(value)

    def service(self, items):
        return _unquote(items[0])

    def arg(self, items):
        key, value = items
        if value.type == "STRING":
            return str(key), _unquote(value)
        if value.type == "NUMBER":
            return str(key), float(value) if "." in value else int(value)
        return str(key), str(value)

    # constraints: ("target", {...}) | ("context", {...}) | ("classes", [...]) ----------------
    @staticmethod
    def _target(name: str, cmp: Token, value: Any, **extra) -> tuple:
        return ("target", {"name": name, "condition": _CONDITION[str(cmp)], "value": value, **extra})

    def latency(self, items):
        return self._target("latency", items[0], str(items[1]))

    def jitter(self, items):
        return self._target("jitter", items[0], str(items[1]))

    def bandwidth(self, items):
        extra = {"quantile": float(str(items[2])[1:]) / 100} if len(items) > 2 else {}
        return self._target("bandwidth", items[0], str(items[1]), **extra)

    def loss(self, items):
        return self._target("loss", items[0], str(items[1]) if items[1].type == "PERCENT" else float(items[1]))

    def encrypted(self, _):
        return ("target", {"name": "encryption", "condition": "equals", "value": "required"})

    def unencrypted(self, _):
        return ("target", {"name": "encryption", "condition": "equals", "value": "none"})

    def window(self, items):
        return ("context", {"attribute": "timeWindow", "value": f"{items[0]}-{items[1]}"})

    def days(self, items):
        return ("context", {"attribute": "days", "value": str(items[0])})

    def timezone(self, items):
        return ("context", {"attribute": "timeZone", "value": _unquote(items[0])})

    def classes(self, items):
        return ("classes", [{**c, "rank": rank} for rank, c in enumerate(items, start=1)])

    def qclass(self, items):
        out: dict = {"name": str(items[0])}
        for key, value in items[1:]:
            out[key] = value
        out.setdefault("share", None)
        return out

    def dscp(self, items):
        return ("dscp", int(items[0]))

    def share(self, items):
        text = str(items[0])
        return ("share", float(text[:-1]) / 100 if text.endswith("%") else float(text))

    def ports(self, items):
        return ("ports", [int(t) for t in items])

    # clauses -------------------------------------------------------------------------------
    @staticmethod
    def _split(constraints) -> tuple[list, list, list | None]:
        targets = [c[1] for c in constraints if c[0] == "target"]
        contexts = [c[1] for c in constraints if c[0] == "context"]
        classes = next((c[1] for c in constraints if c[0] == "classes"), None)
        return targets, contexts, classes

    def isolate(self, _):
        return [("isolation", None, [], [], None, {})]

    def allow(self, items):
        targets, contexts, classes = self._split(items[1:])
        out = [("reachability", items[0], targets, contexts, None, {})]
        if classes is not None:
            out.append(("qos", items[0], [], contexts, classes, {}))
        return out

    def plugin(self, items):
        name, rest = str(items[0]), items[1:]
        args = dict(a for a in rest if isinstance(a, tuple) and len(a) == 2 and isinstance(a[0], str)
                    and a[0] not in ("target", "context", "classes"))
        targets, contexts, classes = self._split([c for c in rest if isinstance(c, tuple) and
                                                  c[0] in ("target", "context", "classes")])
        return [(name, None, targets, contexts, classes, args)]

    def block(self, items):
        subject, clauses = items[0], items[1:]
        stem = _short_name(subject["group"]) if "group" in subject else "selected"
        out = []
        for clause in clauses:
            for kind, service, targets, contexts, classes, args in clause:
                word = {"isolation": "isolate", "reachability": "reach", "qos": "qos"}.get(kind, kind)
                expectation = {"id": self._id(f"{word}-{_short_name(service) if service else stem}"),
                               "type": kind, "object": subject}
                if service is not None:
                    expectation["service"] = service
                if targets:
                    expectation["targets"] = targets
                if contexts:
                    expectation["contexts"] = contexts
                if classes is not None:
                    expectation["classes"] = _fill_shares(classes)
                if args:
                    expectation["parameters"] = args
                out.append(expectation)
        return out

    def start(self, items):
        spec: dict[str, Any] = {"expectations": []}
        for item in items:
            if isinstance(item, tuple):
                spec[item[0]] = item[1]
            else:
                spec["expectations"].extend(item)
        return spec


def _fill_shares(classes: list[dict]) -> list[dict]:
    """Classes without a share split what the others leave equally (all without: equal shares)."""
    given = sum(c["share"] for c in classes if c["share"] is not None)
    open_ = [c for c in classes if c["share"] is None]
    rest = max(0.0, 1.0 - given)
    for c in open_:
        c["share"] = round(rest / len(open_), 6) if rest > 0 else 0.01
    return classes


def _expected_words(expected: set[str]) -> str:
    words = []
    for name in sorted(expected):
        if name in _WORDS:
            words.append(_WORDS[name])
        elif name.isupper():
            words.append(f"'{name.lower()}'")
        else:
            words.append(name)
    return ", ".join(dict.fromkeys(words))


def _keyword(name: str) -> str:
    """An anonymous keyword terminal ('ISOLATE' for "isolate") as the person would type it."""
    if name in _WORDS:
        return _WORDS[name]
    return f"'{name.lower()}'" if name.isupper() and name.isalpha() else name


def parse_intent_text(text: str) -> dict:
    """Intent text → {"expectations": [...], "priority"?, "validity"?}; IntentSyntaxError on bad text."""
    if not text or not text.strip():
        raise IntentSyntaxError("the intent text is empty (e.g. for group('acme/orders') isolate)", 1, 1)
    try:
        tree = _parser().parse(text)
        return _Build().transform(tree)
    except UnexpectedEOF as exc:
        lines = text.splitlines() or [""]
        raise IntentSyntaxError(f"the text ends too soon; expected {_expected_words(set(exc.expected))}",
                                len(lines), len(lines[-1]) + 1) from None
    except UnexpectedToken as exc:
        expected = {e for e in exc.expected if e != "$END"} or set(exc.expected)
        line, column = (exc.line if exc.line > 0 else 1), (exc.column if exc.column > 0 else 1)
        if exc.token.type == "$END":  # point after the last character, where something else was due
            lines = text.rstrip().splitlines() or [""]
            line, column = len(lines), len(lines[-1]) + 1
            got = "the end of the text"
        else:
            got = f"'{exc.token}'"
        raise IntentSyntaxError(f"unexpected {got}; expected {', '.join(_keyword(e) for e in sorted(expected))}",
                                line, column, exc.get_context(text)) from None
    except UnexpectedCharacters as exc:
        allowed = {_keyword(e) for e in exc.allowed or ()}
        char = text[exc.pos_in_stream] if 0 <= exc.pos_in_stream < len(text) else "?"
        hint = f"; expected {', '.join(sorted(allowed))}" if allowed else ""
        raise IntentSyntaxError(f"unexpected '{char}'{hint}", exc.line, exc.column, exc.get_context(text)) from None
    except UnexpectedInput as exc:  # pragma: no cover - the three above are the kinds Lark raises
        raise IntentSyntaxError(str(exc).splitlines()[0], getattr(exc, "line", 1), getattr(exc, "column", 1)) from None
    except VisitError as exc:
        raise InvalidInput(f"intent text: {exc.orig_exc}", field="spec.text") from None


__all__ = ["parse_intent_text", "IntentSyntaxError"]
