"""Versioning: readers, versions and their lifecycle, negotiation, the extension.

The rule of this folder: it stands alone. It imports nothing from
``lockgate.runtime``, ``lockgate.serving``, ``lockgate.fleet`` or
``lockgate.openapi`` (no Redis, no server, no manifest, no documents), and
nothing of ``services/``. What it decides for a request is read by the
layers above through one function, :func:`request_version`; they never ask
the clock or the bundle again. Packages above it hook in with :func:`on_init`.
Version changes (``changes``, ``schemas``, ``migration``) let one head
implementation serve every version.
"""

from __future__ import annotations

from .changes import (
    RequestInfo,
    ResponseInfo,
    VersionChange,
    endpoint,
    field,
    request,
    response,
)
from .extension import Versioning, on_init, url_for
from .lifecycle_file import apply_lifecycle_file
from .state import RequestVersion, VersioningState, current_version, get_state, request_version
from .versions import Version, VersionStatus

__all__ = [
    "RequestInfo",
    "RequestVersion",
    "ResponseInfo",
    "Version",
    "VersionChange",
    "VersionStatus",
    "Versioning",
    "VersioningState",
    "apply_lifecycle_file",
    "current_version",
    "endpoint",
    "field",
    "get_state",
    "on_init",
    "request",
    "request_version",
    "response",
    "url_for",
]
