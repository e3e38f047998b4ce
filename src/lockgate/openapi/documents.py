"""OpenAPI 3.1 documents generated from the URL map, one per version.

A view describes its bodies with pydantic models through :func:`operation`;
everything else (paths, parameters, methods, deprecation) is read from the
routes themselves, so the document cannot drift from the code.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Flask
from pydantic import BaseModel, TypeAdapter

from ..auth import required_scopes, security_scheme
from ..versioning import Version, VersioningState, VersionStatus
from ..versioning.versions import Label
from ..views import (
    IDEMPOTENT_ATTR,
    NEUTRAL_ATTR,
    OPERATION_ATTR,
    SERVED_ATTR,
    Operation,
    operation,
)

__all__ = ["Operation", "build_openapi", "catalog_entry", "iso", "operation"]

_CONVERTER = re.compile(r"<(?:(?P<conv>[a-zA-Z_][a-zA-Z0-9_]*)(?:\([^)]*\))?:)?(?P<name>\w+)>")
_PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "uuid": {"type": "string", "format": "uuid"},
}
_PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
    },
    "required": ["type", "title", "status"],
}


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def lifecycle(version: Version, status: VersionStatus) -> dict[str, Any]:
    return {
        "status": str(status),
        "deprecated": iso(version.deprecated),
        "sunset": iso(version.sunset),
        "successor": None if version.successor is None else version.successor.text,
        "policy": version.policy,
        "brownouts": [{"start": iso(s), "end": iso(e)} for s, e in version.brownouts],
    }


def catalog_entry(state: VersioningState, version: Version, now: datetime) -> dict[str, Any]:
    """One object of ``GET <prefix>/versions``."""
    status = state.bundle.snapshot(now).statuses[version.label]
    entry = {"version": version.label.text, **lifecycle(version, status)}
    entry["openapi"] = f"{state.prefix}/v{version.label.text}/openapi.json"
    return entry


class _Schemas:
    """Collects JSON Schemas of pydantic types into ``components/schemas``."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {"Problem": _PROBLEM_SCHEMA}

    def ref(self, annotation: Any) -> dict[str, Any]:
        schema = TypeAdapter(annotation).json_schema(
            ref_template="#/components/schemas/{model}", mode="serialization"
        )
        self.components.update(schema.pop("$defs", {}))
        if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
            self.components[annotation.__name__] = schema
            return {"$ref": f"#/components/schemas/{annotation.__name__}"}
        return schema

    def request_ref(self, model: Any) -> dict[str, Any]:
        schema = TypeAdapter(model).json_schema(
            ref_template="#/components/schemas/{model}", mode="validation"
        )
        self.components.update(schema.pop("$defs", {}))
        if inspect.isclass(model) and issubclass(model, BaseModel):
            name = f"{model.__name__}Input"
            self.components[name] = schema
            return {"$ref": f"#/components/schemas/{name}"}
        return schema


def build_openapi(
    app: Flask, state: VersioningState, label: Label, now: datetime
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of one version: exactly its routes."""
    version = state.bundle.get(label)
    if version is None:
        raise LookupError(f"version {label} is not declared")
    status = state.bundle.snapshot(now).statuses[label]
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    names = {name for name, served in state.blueprint_versions.items() if served == label}
    base = f"{state.prefix}/v{label.text}"
    taken: set[str] = set()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        blueprint = rule.endpoint.partition(".")[0]
        view = app.view_functions[rule.endpoint]
        if blueprint not in names or getattr(view, NEUTRAL_ATTR, False):
            continue
        if getattr(app.blueprints.get(blueprint), NEUTRAL_ATTR, False):
            continue
        path, parameters = _path(rule.rule)
        doc: Operation = getattr(view, OPERATION_ATTR, Operation())
        original = rule.endpoint.partition(".")[2]
        tag = blueprint[: -len(f"_v{label.text}")] if blueprint else "default"
        methods = (rule.methods or set()) - {"HEAD", "OPTIONS"}
        served = getattr(view, SERVED_ATTR, None)
        if served is not None:
            methods &= served  # the rest is the head's, not this version's
        for method in sorted(methods):
            operation_id = _unique(f"{original}_{method.lower()}", tag, taken)
            op = _operation(doc, view, method, parameters, schemas, status, operation_id, tag)
            scopes = required_scopes(app, rule.endpoint, method)
            if scopes:
                _secure(op, scopes)
            paths.setdefault(path, {})[method.lower()] = op
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": app.config.get("LOCKGATE_TITLE") or app.name,
            "version": label.text,
            "description": f"API version {label.text} ({status}). Paths live under {base}.",
        },
        "paths": paths,
        "components": {"schemas": schemas.components},
        "x-lifecycle": lifecycle(version, status),
    }
    scheme = security_scheme(app)
    if scheme is not None:
        document["components"]["securitySchemes"] = {"oauth2": scheme}
    return document


def _secure(op: dict[str, Any], scopes: list[str]) -> None:
    """A guarded operation: its scopes, and the 401 and 403 it can answer."""
    op["security"] = [{"oauth2": scopes}]
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    responses = op["responses"]
    default = responses.pop("default")
    responses.setdefault("401", {"description": "Missing or invalid token", "content": problem})
    responses.setdefault("403", {"description": "The token lacks the scope", "content": problem})
    op["responses"] = dict(sorted(responses.items())) | {"default": default}


def _unique(operation_id: str, tag: str, taken: set[str]) -> str:
    """An ``operationId`` no other operation has (OpenAPI requires it): two
    blueprints may each have a ``show`` view, one view may serve two rules."""
    chosen = operation_id if operation_id not in taken else f"{tag}_{operation_id}"
    number = 2
    while chosen in taken:
        chosen = f"{tag}_{operation_id}_{number}"
        number += 1
    taken.add(chosen)
    return chosen


def _path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    parameters = []
    for match in _CONVERTER.finditer(rule):
        conv = match["conv"] or "default"
        parameters.append(
            {
                "name": match["name"],
                "in": "path",
                "required": True,
                "schema": dict(_PARAM_SCHEMAS.get(conv, {"type": "string"})),
            }
        )
    return _CONVERTER.sub(lambda m: "{" + m["name"] + "}", rule), parameters


def _operation(
    doc: Operation,
    view: Callable[..., Any],
    method: str,
    parameters: list[dict[str, Any]],
    schemas: _Schemas,
    status: VersionStatus,
    operation_id: str,
    tag: str,
) -> dict[str, Any]:
    lines = inspect.cleandoc(view.__doc__ or "").split("\n", 1)
    op: dict[str, Any] = {
        "operationId": operation_id,
        "summary": doc.summary or lines[0] or operation_id.replace("_", " "),
        "tags": list(doc.tags or (tag,)),
        "parameters": list(parameters),
    }
    description = doc.description or (lines[1].strip() if len(lines) > 1 else "")
    if description:
        op["description"] = description
    if doc.query is not None and method == "GET":
        query_schema = doc.query.model_json_schema()
        required = set(query_schema.get("required", []))
        for name, prop in query_schema.get("properties", {}).items():
            op["parameters"].append(
                {"name": name, "in": "query", "required": name in required, "schema": prop}
            )
    idempotent = getattr(view, IDEMPOTENT_ATTR, None)
    if idempotent is not None and method in ("POST", "PATCH"):
        # Said in words, not as a header parameter: a generator of requests
        # (schemathesis) would reuse one key for two bodies and take the
        # 422 it is owed for a defect.
        needed = "requires" if idempotent else "takes"
        note = (
            f"This operation {needed} an `Idempotency-Key` header "
            "(draft-ietf-httpapi-idempotency-key-header): a repeat with the same key and "
            "body replays the first answer (`Idempotent-Replayed: true`), the same key "
            "with another body is 422 `IdempotencyKeyReused`, and a repeat while the "
            "first still runs is 409 `IdempotencyKeyInUse`."
        )
        op["description"] = f"{op['description']}\n\n{note}" if op.get("description") else note
    if doc.request is not None and method in ("POST", "PUT", "PATCH"):
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.request_ref(doc.request)}},
        }
    success_status = doc.status if method != "DELETE" or doc.response else 204
    success: dict[str, Any] = {"description": "Success"}
    if doc.response is not None and success_status != 204:
        success["content"] = {"application/json": {"schema": schemas.ref(doc.response)}}
    responses: dict[str, Any] = {str(success_status): success}
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    # The answers lockgate itself gives to bad input, unless the view says otherwise.
    declared = dict(doc.responses)
    if doc.query is not None and method == "GET":
        declared.setdefault(400, "Invalid query parameters")
    if "requestBody" in op:
        declared.setdefault(400, "Malformed JSON, or JSON nested too deeply")
        declared.setdefault(413, "Body larger than the limit")
        declared.setdefault(415, "Body is not JSON")
        declared.setdefault(422, "Invalid fields; see `errors`")
    for code, meaning in sorted(declared.items()):
        responses[str(code)] = {"description": meaning, "content": problem}
    responses.setdefault("default", {"description": "Error (RFC 9457)", "content": problem})
    op["responses"] = responses
    if not op["parameters"]:
        del op["parameters"]
    if status in (VersionStatus.DEPRECATED, VersionStatus.RETIRED):
        op["deprecated"] = True
    return op
