"""The changelog as data: every version's changes, what they touch, and whether each breaks clients.

Derived from the :class:`~.changes.VersionChange` classes alone (their
docstrings are the prose), so it cannot drift from what is served. The JSON
of ``GET <prefix>/changelog``, the ``/docs/changelog`` page and the generated
migration guides all read :func:`changelog`.

Breaking, from a client's side: a removed endpoint; a removed, renamed or
retyped field; a field added to a request as required. Compatible: an added
endpoint, a field added to a response, an optional request field. A change
with migrations but no instruction changes behaviour, so it counts as
breaking unless its ``breaking`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from .changes import EndpointChange, FieldChange, VersionChange
from .migration import HeadPlan, normal_path
from .versions import Label, Version, VersionStatus

__all__ = ["changelog", "migration_steps"]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def changelog(
    versions: Sequence[Version],
    statuses: dict[Label, VersionStatus],
    head: HeadPlan | None,
    prefix: str,
) -> dict[str, Any]:
    """``{"versions": [...]}``, newest first, each with its changes."""
    entries = []
    for index in range(len(versions) - 1, -1, -1):
        version = versions[index]
        previous = versions[index - 1].label.text if index > 0 else None
        entries.append(
            {
                "version": version.label.text,
                "previous": previous,
                "status": str(statuses[version.label]),
                "deprecated": _iso(version.deprecated),
                "sunset": _iso(version.sunset),
                "served_by_changes": head is not None,
                "openapi": f"{prefix}/v{version.label.text}/openapi.json",
                "changes": [
                    change_entry(change, version.label, head) for change in version.changes
                ],
            }
        )
    return {"versions": entries}


def change_entry(
    change: type[VersionChange], label: Label, head: HeadPlan | None
) -> dict[str, Any]:
    """One change: its name, its docstring, the endpoints and fields it touches."""
    endpoints = [_endpoint(item) for item in change.endpoint_changes]
    fields = [_field(item, label, head) for item in change.field_changes]
    migrations = [
        {
            "direction": migration.direction,
            "applies_to": migration.model.__name__ if migration.model else migration.path,
            "methods": sorted(migration.methods) if migration.methods else None,
        }
        for migration in (*change.request_migrations, *change.response_migrations)
    ]
    breaking = change.breaking
    if breaking is None:
        breaking = any(item["breaking"] for item in (*endpoints, *fields)) or (
            not endpoints and not fields and bool(migrations)
        )
    return {
        "name": change.__name__,
        "description": change.description,
        "breaking": breaking,
        "endpoints": endpoints,
        "fields": fields,
        "migrations": migrations,
    }


def _endpoint(item: EndpointChange) -> dict[str, Any]:
    """The path is below the version segment, as in every version's document."""
    return {
        "path": normal_path(item.path),
        "methods": sorted(item.methods) if item.methods else None,
        "change": item.kind,
        "breaking": item.kind == "removed",
    }


def _field(item: FieldChange, label: Label, head: HeadPlan | None) -> dict[str, Any]:
    roles = []
    if head is not None and item.model in head.request_models:
        roles.append("request")
    if head is None or item.model in head.response_models:
        roles.append("response")
    entry: dict[str, Any] = {
        "schema": item.model.__name__,
        "field": item.name,
        "change": item.kind,
        "in": roles,
    }
    if item.kind == "renamed":
        entry["from"] = item.old_name
    if item.kind in ("retyped", "removed") and item.annotation is not None:
        entry["type" if item.kind == "removed" else "from_type"] = _type_name(item.annotation)
    if item.kind == "added":
        required = _required_in(head, label, item.model, item.name)
        entry["required"] = required
        entry["breaking"] = "request" in roles and required
    else:
        entry["breaking"] = True
    return entry


def _required_in(head: HeadPlan | None, label: Label, model: type[BaseModel], name: str) -> bool:
    built = head.schemas.model(label, model) if head is not None else model
    info = built.model_fields.get(name)
    return info is not None and info.is_required()


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or repr(annotation).replace("typing.", "")


def migration_steps(
    versions: Sequence[Version], old: Label, new: Label
) -> list[tuple[Version, tuple[type[VersionChange], ...]]]:
    """The versions after ``old`` up to ``new`` with their changes, oldest first:
    what a client moving from ``old`` to ``new`` must read."""
    return [(version, version.changes) for version in versions if old < version.label <= new]
