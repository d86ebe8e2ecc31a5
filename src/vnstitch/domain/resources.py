"""Kubernetes-shaped resource envelope shared by every kind, and strict parsing."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, ClassVar, get_args

from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, SerializationInfo, ValidationError, ValidationInfo,
)

from vnstitch.errors import InvalidInput
from vnstitch.units import bandwidth_text, duration_text, parse_bandwidth, parse_bytes, parse_duration

API_VERSION = "vnstitch.io/v1"
NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
DEFAULT_TENANT = "default"

# Validation context of what people write (resource files: `vnstitch apply/validate`, lab files): a bandwidth
# or a duration must name its unit there. Without it (the store, the API's JSON, the HTTP client reading
# answers) a bare number is the canonical unit, bit/s or seconds, as the controller writes them.
USER_INPUT = {"user_input": True}
# Dump context that writes bandwidths and durations with units ('10Mbps', '30ms'), exactly: what
# `vnstitch get -o yaml|json` prints, so that its output applies again under USER_INPUT.
WITH_UNITS = {"units": True}


def _from_user(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get("user_input"))


def _bandwidth_in(value: Any, info: ValidationInfo) -> float:
    return parse_bandwidth(value, require_unit=_from_user(info))


def _duration_in(value: Any, info: ValidationInfo) -> float:
    return parse_duration(value, require_unit=_from_user(info))


def _with_units(text: Any):
    def out(value: float, info: SerializationInfo) -> float | str:
        return text(value) if isinstance(info.context, dict) and info.context.get("units") else value
    return out


BandwidthBps = Annotated[float, BeforeValidator(_bandwidth_in), PlainSerializer(_with_units(bandwidth_text))]
DurationSeconds = Annotated[float, BeforeValidator(_duration_in), PlainSerializer(_with_units(duration_text))]
SizeBytes = Annotated[int, BeforeValidator(parse_bytes)]

# Dump context that writes timestamps as RFC 3339 strings (what the API and the CLI show); without it a
# dump keeps unix seconds, the form the store holds and the controller computes with.
WIRE_TIMES = {"rfc3339": True}


def format_timestamp(seconds: float) -> str:
    """Unix seconds → RFC 3339 UTC: 1796157720 → '2026-12-01T20:42:00Z' (fractions only when present)."""
    text = datetime.fromtimestamp(float(seconds), timezone.utc).isoformat(timespec="microseconds")
    text = text.removesuffix("+00:00")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + "Z"


def parse_timestamp(value: Any) -> Any:
    """Unix seconds, or an RFC 3339 / ISO 8601 date-time with a zone ('2026-12-01T20:42:00Z') → unix seconds."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" and text else text)
            except ValueError:
                raise ValueError(f"'{value}' is not an RFC 3339 date-time (e.g. 2026-12-01T20:42:00Z) "
                                 "nor unix seconds") from None
            if moment.tzinfo is None:
                raise ValueError(f"'{value}' names no time zone (end it with Z for UTC)")
            return moment.timestamp()
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool) \
            and not EARLIEST_S <= value <= LATEST_S:  # also NaN: it writes as no RFC 3339 time
        raise ValueError(f"{value} is not a time between years 1 and 9999 (unix seconds)")
    return value


EARLIEST_S, LATEST_S = -62135596800.0, 253402300799.0  # 0001-01-01T00:00:00Z, 9999-12-31T23:59:59Z


def _wire_time(seconds: float, info: SerializationInfo) -> float | str:
    if isinstance(info.context, dict) and info.context.get("rfc3339"):
        return format_timestamp(seconds)
    return seconds


# A moment in time: unix seconds inside, RFC 3339 on the wire (dump with context=WIRE_TIMES); both parse.
Timestamp = Annotated[float, BeforeValidator(parse_timestamp), PlainSerializer(_wire_time, return_type=float | str)]


class Strict(BaseModel):
    """Base for every model: unknown keys are errors, camelCase on the wire."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=False)


class Metadata(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    tenant: str = Field(default=DEFAULT_TENANT, pattern=NAME_PATTERN)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)  # free-form notes, e.g. why a stitch exists
    # Server-set; accepted on input so that `get -o yaml | apply -f -` round-trips.
    generation: int = 0
    resource_version: int | None = Field(default=None, alias="resourceVersion")
    creation_timestamp: Timestamp | None = Field(default=None, alias="creationTimestamp")
    deletion_timestamp: Timestamp | None = Field(default=None, alias="deletionTimestamp")


class Resource(Strict):
    """apiVersion/kind/metadata/spec/status envelope."""

    KIND: ClassVar[str] = ""
    PLURAL: ClassVar[str] = ""
    NAMESPACED: ClassVar[bool] = True

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str
    metadata: Metadata

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        """Store namespace: the tenant for tenant-owned kinds, '' for cluster-scoped ones."""
        return self.metadata.tenant if self.NAMESPACED else ""

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


_BRANCHES = ("str", "int", "float", "bool")


def format_loc(loc: tuple) -> str:
    """('spec', 'members', 0, 'node') → 'spec.members[0].node'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith("function-") or part in _BRANCHES or part in _strict_models():
            continue  # union/validator branch names and discriminator tags are noise for the user
        else:
            out += ("." if out else "") + str(part)
    return out


# Patterns in plain words, as a message says what is allowed (never the regular expression itself).
PATTERN_WORDS = {NAME_PATTERN: "at most 63 characters: letters, digits, '-', '_', '.', beginning and ending with "
                               "a letter or digit"}
_TYPE_WORDS = {
    "int_type": "must be a whole number", "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number", "float_type": "must be a number", "float_parsing": "must be a number",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false", "string_type": "must be a string",
    "dict_type": "must be a mapping (key: value)", "model_type": "must be a mapping (key: value)",
    "model_attributes_type": "must be a mapping (key: value)", "list_type": "must be a list",
    "tuple_type": "must be a list", "missing": "is required", "none_required": "must be empty (null)",
}
_BOUNDS = {"less_than_equal": ("le", "≤"), "less_than": ("lt", "<"), "greater_than_equal": ("ge", "≥"),
           "greater_than": ("gt", ">")}
# A model validator names the sub-field it refuses first: 'members[0].address: 10.1.0.1 is outside …'.
_SUB_FIELD = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\]|\.[A-Za-z_]\w*)*): (.+)$", re.S)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (Optional[X], list[X], Union[str, X]), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _walk(model: type[BaseModel] | None, loc: tuple) -> tuple[Any, type[BaseModel] | None]:
    """Follow `loc` through `model`'s fields: (the last field's FieldInfo, the model it holds)."""
    info, tags = None, _strict_models()
    for part in loc:
        if isinstance(part, str) and part in tags:
            model = tags[part]  # a discriminated union's tag is its model's name: ('items', 0, 'Stitch', 'spec')
            continue
        if isinstance(part, int) or model is None:
            continue
        fields = model.model_fields
        name = next((n for n, f in fields.items() if part in (n, f.alias)), None)
        if name is None:
            continue  # a union branch or a discriminator tag in the location
        info = fields[name]
        model = _model_in(info.annotation)
    return info, model


def _quantity(info: Any, value: Any) -> str:
    """A bound as the field is written: '10s' for a duration, '1Gbps' for a bandwidth, else the number."""
    validators = " ".join(repr(m) for m in getattr(info, "metadata", ()))
    if "_duration_in" in validators:
        return duration_text(value)
    if "_bandwidth_in" in validators:
        return bandwidth_text(value)
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _strict_models() -> dict[str, type[BaseModel]]:
    found, todo = {}, [Strict]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.__name__, cls)
        todo.extend(cls.__subclasses__())
    return found


def describe_error(err: dict, model: type[BaseModel] | None = None) -> tuple[str, str]:
    """One pydantic error → (dotted field path, what is allowed in plain words); `model` (the one validated)
    lets the message list known fields and write bounds in the field's unit."""
    loc = tuple(err.get("loc", ()))
    field, kind, ctx = format_loc(loc), err.get("type", ""), err.get("ctx") or {}
    message = str(err.get("msg", "invalid value"))
    if kind == "extra_forbidden":
        _, holder = _walk(model, loc[:-1])
        known = [f.alias or n for n, f in holder.model_fields.items()] if holder is not None else []
        message = "is not a known field" + (f" (known: {', '.join(known)})" if known else "")
    elif kind == "string_pattern_mismatch":
        words = PATTERN_WORDS.get(ctx.get("pattern"))
        message = f"must be {words}" if words else f"must match the pattern {ctx.get('pattern')}"
        message += f" (got '{err.get('input')}')"
    elif kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        message = f"must be {sign} {_quantity(_walk(model, loc)[0], ctx.get(key))}"
    elif kind in ("literal_error", "enum"):
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        message = f"must be one of: {', '.join(choices)}" if choices else message
    elif kind in ("union_tag_invalid", "union_tag_not_found"):   # a list of resources told apart by `kind`
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        got = ctx.get("tag")
        message = (f"kind '{got}' cannot be given here" if kind == "union_tag_invalid" else "has no kind") + \
            (f"; kinds: {', '.join(choices)}" if choices else "")
    elif kind == "too_short":
        message = f"must have at least {ctx.get('min_length')} items"
    elif kind == "too_long":
        message = f"must have at most {ctx.get('max_length')} items"
    elif kind == "string_too_long":
        message = f"must be at most {ctx.get('max_length')} characters"
    elif kind in _TYPE_WORDS:
        message = _TYPE_WORDS[kind]
    elif kind == "value_error":
        message = message.removeprefix("Value error, ")
        sub = _SUB_FIELD.match(message)
        if sub:
            field = f"{field}.{sub.group(1)}" if field else sub.group(1)
            message = sub.group(2)
    return field, message


def first_error(errors: list[dict]) -> dict:
    """The error to show: the first, but where it is one branch of a union (a name, or a selector), the
    branch that got furthest (`allowStitchTo[0].z: is not a known field` beats `must be a string`)."""
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    if not loc or loc[-1] not in _BRANCHES:
        return first
    same = [e for e in errors if tuple(e.get("loc", ()))[:len(loc) - 1] == loc[:-1]]
    return max(same, key=lambda e: len(e.get("loc", ())))


def invalid_from_pydantic(exc: ValidationError, prefix: str = "") -> InvalidInput:
    """First pydantic error as one line naming the field (dotted) and saying what is allowed."""
    field, message = describe_error(first_error(exc.errors()), _strict_models().get(exc.title))
    if prefix:
        field = f"{prefix}.{field}" if field else prefix
    return InvalidInput(message, field=field or None)
