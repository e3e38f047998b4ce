"""Markers a view function carries for the layers that serve it.

A leaf: versioning reads :data:`NEUTRAL_ATTR`, the runtime's caching reads
:data:`CONTROL_ATTR`, and the docs and probes set both, so none of them has
to import another to mark a view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["CONTROL_ATTR", "NEUTRAL_ATTR", "QUERY_ATTR", "cache_control", "mark_neutral"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
#: On a view or blueprint: it answers with any version or none.
NEUTRAL_ATTR = "_lockgate_neutral"
#: A view's own ``Cache-Control`` (see :func:`cache_control`).
CONTROL_ATTR = "_lockgate_cache_control"
#: The query parameter names a view reads (set by ``operation(query=Model)``):
#: the runtime's cache keys by these only.
QUERY_ATTR = "_lockgate_query_params"


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
