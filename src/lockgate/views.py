"""Markers a view function carries for the layers that serve it.

A leaf: versioning reads :data:`NEUTRAL_ATTR` and :data:`SERVED_ATTR`, the
runtime's caching reads :data:`CONTROL_ATTR`, the OpenAPI documents and the
version changes read :func:`operation`'s :class:`Operation`, and the docs and
probes set the first ones, so none of them has to import another to mark a view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = [
    "CONTROL_ATTR",
    "NEUTRAL_ATTR",
    "OPERATION_ATTR",
    "QUERY_ATTR",
    "SERVED_ATTR",
    "Operation",
    "cache_control",
    "mark_neutral",
    "operation",
]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
#: On a view or blueprint: it answers with any version or none.
NEUTRAL_ATTR = "_lockgate_neutral"
#: A view's own ``Cache-Control`` (see :func:`cache_control`).
CONTROL_ATTR = "_lockgate_cache_control"
#: The query parameter names a view reads (set by ``operation(query=Model)``):
#: the runtime's cache keys by these only.
QUERY_ATTR = "_lockgate_query_params"
#: A view's :class:`Operation` (set by :func:`operation`).
OPERATION_ATTR = "_lockgate_operation"
#: On a view served in one version by the head's code: the methods it serves
#: there (a version change may have removed or not yet added the others).
SERVED_ATTR = "_lockgate_served_methods"
#: On a view taking an ``Idempotency-Key``: whether the key is required.
IDEMPOTENT_ATTR = "_lockgate_idempotent"


def mark_neutral(view: T) -> T:
    """Mark a view function or blueprint as version-neutral."""
    setattr(view, NEUTRAL_ATTR, True)
    return view


def cache_control(value: str) -> Callable[[F], F]:
    """Give a view its own ``Cache-Control`` on 200 GETs (the default is
    ``LOCKGATE_CACHE_CONTROL``): ``no-store`` for probes, ``max-age`` for what
    rarely changes."""

    def decorate(view: F) -> F:
        setattr(view, CONTROL_ATTR, value)
        return view

    return decorate


@dataclass(frozen=True)
class Operation:
    """What a view declares about itself for the OpenAPI document."""

    summary: str | None = None
    description: str | None = None
    request: Any = None
    response: Any = None
    status: int = 200
    query: type[BaseModel] | None = None
    responses: dict[int, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()


def operation(
    *,
    summary: str | None = None,
    description: str | None = None,
    request: Any = None,
    response: Any = None,
    status: int = 200,
    query: type[BaseModel] | None = None,
    responses: dict[int, str] | None = None,
    tags: tuple[str, ...] = (),
) -> Callable[[F], F]:
    """Describe a view's bodies with pydantic models.

    :param request: the request body model.
    :param response: the success body: a model, or a type such as ``list[User]``.
    :param status: the success status.
    :param query: a model whose fields are the query parameters.
    :param responses: other statuses and what they mean (problem+json bodies).
    """

    def decorate(view: F) -> F:
        setattr(
            view,
            OPERATION_ATTR,
            Operation(
                summary, description, request, response, status, query, responses or {}, tags
            ),
        )
        if query is not None:
            # What the view reads: the runtime's cache keys by these alone.
            names = {field.alias or name for name, field in query.model_fields.items()}
            setattr(view, QUERY_ATTR, frozenset(names))
        return view

    return decorate
