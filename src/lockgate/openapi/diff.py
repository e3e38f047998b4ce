"""Classify the differences between two OpenAPI 3.1 documents of one version.

Hand-written because no maintained Python library classifies OpenAPI 3.1
breaking changes offline (oasdiff, the tool that does, is Go). It reads plain
dicts loaded from JSON and imports only the standard library, so the guard
that no commit breaks a released version needs neither Flask nor the app.

It compares operations (method and path), their parameters, request bodies and
responses (by status and media type). Schemas are compared by resolved
content: ``$ref`` (each side in its own document), ``allOf``, ``anyOf`` and
``oneOf`` are folded in, so ``Optional[X]`` is X plus ``null``. A request may
accept more than before, never less; a response may gain fields, never change
what it sends. Constraints (``maxLength``, ``pattern``, ...) are compared on
the request side only: there they decide what a client may send. Descriptions,
examples, tags, ``operationId``, ``deprecated``, ``info`` and ``x-*`` are ignored.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

__all__ = ["Difference", "diff_documents", "format_differences", "has_breaking"]

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_UPPER = ("maxLength", "maximum", "exclusiveMaximum", "maxItems")
_LOWER = ("minLength", "minimum", "exclusiveMinimum", "minItems")
_LIMITS = (*_UPPER, *_LOWER, "pattern")


@dataclass(frozen=True, slots=True)
class Difference:
    """One difference between the old and the new document.

    ``operation`` is ``"GET /path"`` (``""`` for the document), ``location``
    where in it (``"request body"``, ``"response 200"``, ``"parameter query
    limit"``), ``field`` the path inside a body (``"items[].name"``, ``""`` for
    none) and ``kind`` a stable machine name such as ``"type-narrowed"``.
    """

    breaking: bool
    operation: str
    location: str
    field: str
    kind: str
    message: str


def diff_documents(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Difference]:
    """Every difference from ``old`` to ``new``, by operation, location, field.

    :raises ValueError: a ``$ref`` that does not resolve inside its document.
    """
    differ = _Differ(old, new)
    was, now = _operations(old), _operations(new)
    for path, method in sorted(was.keys() | now.keys()):
        differ.op = f"{method.upper()} {path}"
        if (path, method) not in now:
            differ.add(True, "", "", "operation-removed", "operation was removed")
        elif (path, method) not in was:
            differ.add(False, "", "", "operation-added", "operation was added")
        else:
            differ.operation(was[path, method], now[path, method])
    return sorted(differ.found, key=lambda d: (d.operation, d.location, d.field, d.kind, d.message))


def has_breaking(differences: Iterable[Difference]) -> bool:
    """Whether any difference breaks a client (the CLI then exits 1)."""
    return any(difference.breaking for difference in differences)


def format_differences(differences: Sequence[Difference]) -> str:
    """One line per difference, breaking ones first, then a count."""
    if not differences:
        return "no differences"
    ordered = sorted(differences, key=lambda d: not d.breaking)
    lines = [f"{'BREAKING' if d.breaking else 'compatible':<10} {d.message}" for d in ordered]
    breaking = sum(d.breaking for d in differences)
    lines.append(f"{breaking} breaking, {len(differences) - breaking} compatible differences")
    return "\n".join(lines)


@dataclass(slots=True)
class _Shape:
    """A schema with its ``$ref``, ``allOf``, ``anyOf`` and ``oneOf`` folded in."""

    #: The JSON types it accepts; ``None``: any value.
    types: frozenset[str] | None = None
    format: str | None = None
    #: Canonical JSON of each allowed value to the value; ``None``: no enum.
    enum: dict[str, Any] | None = None
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)
    required: frozenset[str] = frozenset()
    items: Any = None
    #: ``additionalProperties``: a schema, a boolean or ``None`` (absent).
    extra: Any = None
    limits: dict[str, Any] = dataclasses.field(default_factory=dict)


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _pointer(document: Mapping[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        raise ValueError(f"only local $ref are resolved, not {ref!r}")
    node: Any = document
    for part in ref[1:].split("/")[1:]:
        part = unquote(part).replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ValueError(f"$ref {ref!r} does not resolve")
    return node


def _resolve(value: Any, document: Mapping[str, Any]) -> Any:
    """Follow ``$ref`` of a path item, parameter, body or response to its target."""
    seen: set[str] = set()
    while isinstance(value, Mapping) and isinstance(value.get("$ref"), str):
        if value["$ref"] in seen:
            raise ValueError(f"$ref {value['$ref']!r} refers to itself")
        seen.add(value["$ref"])
        value = _pointer(document, value["$ref"])
    return value


def _has(types: frozenset[str] | None, kind: str) -> bool:
    """Whether ``types`` accepts ``kind``; an integer is a number."""
    return types is None or kind in types or (kind == "integer" and "number" in types)


def _covers(wide: frozenset[str] | None, narrow: frozenset[str] | None) -> bool:
    if narrow is None:
        return wide is None
    return all(_has(wide, kind) for kind in narrow)


def _shape(schema: Any, document: Mapping[str, Any], chain: frozenset[str] = frozenset()) -> _Shape:
    if not isinstance(schema, Mapping):
        return _Shape(types=frozenset() if schema is False else None)
    shape = _Shape()
    ref = schema.get("$ref")
    # ``chain`` stops a schema that is only a reference to itself.
    if isinstance(ref, str) and ref not in chain:
        shape = _both(shape, _shape(_pointer(document, ref), document, chain | {ref}))
    for member in schema.get("allOf", ()):
        shape = _both(shape, _shape(member, document, chain))
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            shape = _both(shape, _either([_shape(m, document, chain) for m in schema[key]]))
    kind = schema.get("type")
    types = None if kind is None else frozenset([kind] if isinstance(kind, str) else kind)
    if types is not None and schema.get("nullable") is True:
        types |= {"null"}
    values = [schema["const"]] if "const" in schema else schema.get("enum")
    own = _Shape(
        types=types,
        format=schema.get("format"),
        enum=None if values is None else {_key(value): value for value in values},
        properties=dict(schema.get("properties", {})),
        required=frozenset(schema.get("required", ())),
        items=schema.get("items"),
        extra=schema.get("additionalProperties"),
        limits={key: schema[key] for key in _LIMITS if key in schema},
    )
    return _both(shape, own)


def _both(a: _Shape, b: _Shape) -> _Shape:
    """What satisfies both (``allOf``, or a schema's keywords beside its ``$ref``)."""
    properties = dict(a.properties)
    for name, schema in b.properties.items():
        properties[name] = {"allOf": [properties[name], schema]} if name in properties else schema
    enum = a.enum if b.enum is None else b.enum
    if a.enum is not None and b.enum is not None:
        enum = {key: value for key, value in a.enum.items() if key in b.enum}
    types = a.types if b.types is None else b.types
    if a.types is not None and b.types is not None:
        types = frozenset(k for k in a.types | b.types if _has(a.types, k) and _has(b.types, k))
    items = a.items if b.items is None else b.items
    if a.items is not None and b.items is not None:
        items = {"allOf": [a.items, b.items]}
    extra = a.extra if b.extra is None else b.extra
    return _Shape(
        types=types,
        format=b.format or a.format,
        enum=enum,
        properties=properties,
        required=a.required | b.required,
        items=items,
        extra=False if a.extra is False or b.extra is False else extra,
        limits={**a.limits, **b.limits},
    )


def _either(members: list[_Shape]) -> _Shape:
    """What satisfies one of them: ``Optional[X]`` is X that also accepts null."""
    types: frozenset[str] | None = frozenset()
    for member in members:
        types = None if types is None or member.types is None else types | member.types
    values = [member for member in members if member.types != frozenset({"null"})]
    if len(values) == 1:
        return dataclasses.replace(values[0], types=types)
    # A real union: the fields any member has, required where every object requires them.
    properties: dict[str, Any] = {}
    enum: dict[str, Any] | None = {}
    for member in values:
        for name, schema in member.properties.items():
            properties[name] = (
                {"anyOf": [properties[name], schema]} if name in properties else schema
            )
        enum = None if enum is None or member.enum is None else {**enum, **member.enum}
    objects = [member.required for member in values if member.properties or member.required]
    return _Shape(
        types=types,
        enum=enum,
        properties=properties,
        required=frozenset.intersection(*objects) if objects else frozenset(),
    )


def _describe(shape: _Shape) -> str:
    kinds = "any" if shape.types is None else "|".join(sorted(shape.types)) or "nothing"
    return f"{kinds}({shape.format})" if shape.format else kinds


def _type_change(a: _Shape, b: _Shape) -> str | None:
    """``narrowed``, ``widened`` or ``changed`` from ``a`` to ``b``; ``None``: the same."""
    wider, narrower = _covers(b.types, a.types), _covers(a.types, b.types)
    if wider and narrower:
        if a.format == b.format:
            return None
        wider, narrower = b.format is None, a.format is None
    return "changed" if wider == narrower else "widened" if wider else "narrowed"


def _values(values: Iterable[Any]) -> str:
    shown = [json.dumps(value, default=str) for value in values]
    return f"value{'s' if len(shown) > 1 else ''} {', '.join(shown)}"


def _operations(document: Mapping[str, Any]) -> dict[tuple[str, str], tuple[Any, Any]]:
    """``(path, method)`` to the path item and the operation."""
    found: dict[tuple[str, str], tuple[Any, Any]] = {}
    for path, raw in document.get("paths", {}).items():
        item = _resolve(raw, document)
        for method in _METHODS:
            if isinstance(item.get(method), Mapping):
                found[path, method] = (item, item[method])
    return found


def _requirements(op: Any, document: Mapping[str, Any]) -> list[dict[str, frozenset[str]]]:
    """An operation's security alternatives (its own, else the document's);
    none declared is one alternative any client meets."""
    declared = op.get("security", document.get("security"))
    if not declared:
        return [{}]
    return [
        {name: frozenset(scopes or ()) for name, scopes in dict(item).items()} for item in declared
    ]


def _requirement_text(requirement: Mapping[str, frozenset[str]]) -> str:
    if not requirement:
        return "no credentials"
    return " and ".join(
        f"{name} {' '.join(sorted(scopes))}".strip() for name, scopes in sorted(requirement.items())
    )


def _parameters(item: Any, op: Any, document: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    """``(in, name)`` to each parameter; the operation's override the path item's."""
    found: dict[tuple[str, str], Any] = {}
    for raw in [*item.get("parameters", ()), *op.get("parameters", ())]:
        parameter = _resolve(raw, document)
        where, name = parameter.get("in", ""), parameter.get("name", "")
        # Header names are case-insensitive (RFC 9110).
        found[where, name.lower() if where == "header" else name] = parameter
    return found


def _parameter_schema(parameter: Any) -> Any:
    if "schema" in parameter:
        return parameter["schema"]
    return next((media.get("schema", {}) for media in parameter.get("content", {}).values()), {})


class _Differ:
    """Walks both documents side by side and collects what differs in :attr:`op`."""

    def __init__(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        self.old, self.new = old, new
        #: The operation being compared, ``"GET /path"``.
        self.op = ""
        self.found: list[Difference] = []

    def add(self, breaking: bool, location: str, field: str, kind: str, text: str) -> None:
        where = " ".join(part for part in (location, f"field {field}" if field else "") if part)
        message = " ".join(part for part in (f"{self.op}:" if self.op else "", where, text) if part)
        self.found.append(Difference(breaking, self.op, location, field, kind, message))

    def operation(self, old: tuple[Any, Any], new: tuple[Any, Any]) -> None:
        was, now = _parameters(*old, self.old), _parameters(*new, self.new)
        for key in sorted(was.keys() | now.keys()):
            before, after = was.get(key), now.get(key)
            location = f"parameter {key[0]} {(before or after or {}).get('name', key[1])}"
            if after is None:
                self.add(True, location, "", "parameter-removed", "was removed")
            elif before is None:
                required = bool(after.get("required"))
                kind = "required-parameter-added" if required else "parameter-added"
                text = "was added as required" if required else "was added"
                self.add(required, location, "", kind, text)
            else:
                required = bool(after.get("required"))
                if bool(before.get("required")) != required:
                    state = "required" if required else "optional"
                    self.add(required, location, "", f"parameter-made-{state}", f"was made {state}")
                old_schema, new_schema = _parameter_schema(before), _parameter_schema(after)
                self.schema(location, "", old_schema, new_schema, True, frozenset())
        self.security(old[1], new[1])
        self.request_body(old[1], new[1])
        self.responses(old[1], new[1])

    def security(self, old_op: Any, new_op: Any) -> None:
        """Breaking when a client that met an old requirement meets no new one: a
        token now required, or a scope added. (Alternatives are ORed, the
        schemes of one alternative ANDed; ``{}`` is anyone.)"""
        was = _requirements(old_op, self.old)
        now = _requirements(new_op, self.new)
        if was == now:
            return

        def met(held: dict[str, frozenset[str]]) -> bool:
            return any(
                all(name in held and scopes <= held[name] for name, scopes in wanted.items())
                for wanted in now
            )

        refused = [held for held in was if not met(held)]
        needed = " or ".join(_requirement_text(wanted) for wanted in now)
        if refused:
            text = f"now needs {needed} (clients with {_requirement_text(refused[0])} are refused)"
            self.add(True, "security", "", "security-tightened", text)
        else:
            self.add(False, "security", "", "security-relaxed", f"now accepts {needed}")

    def request_body(self, old_op: Any, new_op: Any) -> None:
        old = _resolve(old_op.get("requestBody"), self.old)
        new = _resolve(new_op.get("requestBody"), self.new)
        was = old is not None and bool(old.get("required"))
        where = "request body"
        if new is None:
            if old is not None:
                self.add(True, where, "", "request-body-removed", "was removed")
            return
        if new.get("required") and not was:
            text = "was added as required" if old is None else "was made required"
            self.add(True, where, "", "request-body-made-required", text)
        elif old is None:
            self.add(False, where, "", "request-body-added", "was added (optional)")
        elif was and not new.get("required"):
            self.add(False, where, "", "request-body-made-optional", "was made optional")
        if old is not None:
            self.content(where, old.get("content", {}), new.get("content", {}), True)

    def responses(self, old_op: Any, new_op: Any) -> None:
        was = {str(code): value for code, value in old_op.get("responses", {}).items()}
        now = {str(code): value for code, value in new_op.get("responses", {}).items()}
        for code in sorted(was.keys() | now.keys()):
            location = f"response {code}"
            if code not in now:
                self.add(True, location, "", "status-code-removed", "was removed")
            elif code not in was:
                self.add(False, location, "", "status-code-added", "was added")
            else:
                old = _resolve(was[code], self.old).get("content", {})
                new = _resolve(now[code], self.new).get("content", {})
                self.content(location, old, new, False)

    def content(self, location: str, old: Any, new: Any, request: bool) -> None:
        for media in sorted(old.keys() | new.keys()):
            if media not in new:
                self.add(
                    True, location, "", "media-type-removed", f"media type {media} was removed"
                )
            elif media not in old:
                self.add(False, location, "", "media-type-added", f"media type {media} was added")
            else:
                where = location if media == "application/json" else f"{location} {media}"
                before, after = old[media].get("schema", {}), new[media].get("schema", {})
                self.schema(where, "", before, after, request, frozenset())

    def schema(
        self, location: str, field: str, old: Any, new: Any, request: bool, seen: frozenset[str]
    ) -> None:
        """Compare two schemas: a request may widen, a response may only gain fields."""
        a, b = _shape(old, self.old), _shape(new, self.new)
        change = _type_change(a, b)
        if change is not None:
            text = f"type {change} from {_describe(a)} to {_describe(b)}"
            self.add(not request or change != "widened", location, field, f"type-{change}", text)
        self.enum(location, field, a, b, request)
        if request:
            self.limits(location, field, a, b)
        # The members an enclosing schema is comparing already: a recursive schema.
        pair = _key([[s.properties, sorted(s.required), s.items, s.extra] for s in (a, b)])
        if pair in seen:
            return
        seen |= {pair}
        if _has(a.types, "object") and _has(b.types, "object"):
            self.fields(location, field, a, b, request, seen)
        if _has(a.types, "array") and _has(b.types, "array") and (a.items, b.items) != (None, None):
            items = ({} if a.items is None else a.items, {} if b.items is None else b.items)
            self.schema(location, f"{field}[]", *items, request, seen)

    def enum(self, location: str, field: str, a: _Shape, b: _Shape, request: bool) -> None:
        if a.enum == b.enum:
            return
        if a.enum is None and b.enum is not None:
            text = f"enum was introduced ({_values(b.enum.values())})"
            self.add(True, location, field, "enum-introduced", text)
        elif b.enum is None:
            # Any value may now come: a request accepts more, a response surprises clients.
            self.add(not request, location, field, "enum-lifted", "enum was lifted")
        elif a.enum is not None:
            removed = [value for key, value in a.enum.items() if key not in b.enum]
            added = [value for key, value in b.enum.items() if key not in a.enum]
            if removed:
                self.add(
                    True, location, field, "enum-value-removed", f"enum lost {_values(removed)}"
                )
            if added:
                self.add(
                    False, location, field, "enum-value-added", f"enum gained {_values(added)}"
                )

    def limits(self, location: str, field: str, a: _Shape, b: _Shape) -> None:
        for key in _LIMITS:
            was, now = a.limits.get(key), b.limits.get(key)
            # OpenAPI 3.0's boolean exclusiveMaximum is no bound of its own.
            if was == now or isinstance(was, bool) or isinstance(now, bool):
                continue
            if key == "pattern":
                narrowed = now is not None
            elif key in _UPPER:
                narrowed = now is not None and (was is None or now < was)
            else:
                narrowed = now is not None and (was is None or now > was)
            state = "narrowed" if narrowed else "loosened"
            text = f"{key} {state} from {_key(was)} to {_key(now)}"
            self.add(narrowed, location, field, f"constraint-{state}", text)

    def fields(
        self, location: str, field: str, a: _Shape, b: _Shape, request: bool, seen: frozenset[str]
    ) -> None:
        side = "request" if request else "response"
        for name in sorted(a.properties.keys() | b.properties.keys() | a.required | b.required):
            path = f"{field}.{name}" if field else name
            was, now = name in a.required, name in b.required
            if name not in a.properties and not was:
                kind = "response-field-added"
                if request:
                    kind = "required-request-field-added" if now else "optional-request-field-added"
                text = "was added as required" if request and now else "was added"
                self.add(request and now, location, path, kind, text)
            elif name not in b.properties and not now:
                # A request may still carry it unless the object now forbids extra fields.
                breaking = not request or b.extra is False
                self.add(breaking, location, path, f"{side}-field-removed", "was removed")
            else:
                if was != now:
                    state = "required" if now else "optional"
                    kind, text = f"{side}-field-made-{state}", f"was made {state}"
                    self.add(now if request else was, location, path, kind, text)
                old, new = a.properties.get(name, {}), b.properties.get(name, {})
                self.schema(location, path, old, new, request, seen)
        closed = b.extra is False
        if request and (a.extra is False) != closed:
            state = "narrowed" if closed else "loosened"
            text = f"additionalProperties {state} ({'now' if closed else 'no longer'} false)"
            self.add(closed, location, field, f"constraint-{state}", text)
        # A map's values (``dict[str, X]``), unless either side allows no extra fields.
        if a.extra is not False and not closed:
            before, after = (x if isinstance(x, Mapping) else {} for x in (a.extra, b.extra))
            if before or after:
                self.schema(location, f"{field}{{}}", before, after, request, seen)
