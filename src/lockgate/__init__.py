"""lockgate: versioned, scalable Flask microservices.

The versioning core is :class:`Versioning`; everything not in ``__all__`` is
private and may change. The packages, each with its rule at its top:
``versioning`` (stands alone), ``openapi`` (reads versioning), ``runtime``
(reads versioning through :func:`request_version`), ``serving`` (runs apps
under gunicorn, granian or uWSGI) and ``fleet`` (the manifest and the
``lockgate`` CLI, which knows all of them). Arrows point one way, and the
library never imports ``services/``.
"""

from __future__ import annotations

from .errors import (
    AmbiguousApiVersion,
    ApiVersionBrownout,
    ApiVersionError,
    ApiVersionSunset,
    ApiVersionUnspecified,
    ConfigurationError,
    InvalidApiVersion,
    LockgateError,
    UnsupportedApiVersion,
)
from .openapi import operation
from .problems import Problem, problem_response
from .versioning import (
    RequestInfo,
    RequestVersion,
    ResponseInfo,
    Version,
    VersionChange,
    Versioning,
    VersionStatus,
    current_version,
    endpoint,
    field,
    request,
    request_version,
    response,
    url_for,
)

__all__ = [
    "AmbiguousApiVersion",
    "ApiVersionBrownout",
    "ApiVersionError",
    "ApiVersionSunset",
    "ApiVersionUnspecified",
    "ConfigurationError",
    "InvalidApiVersion",
    "LockgateError",
    "Problem",
    "RequestInfo",
    "RequestVersion",
    "ResponseInfo",
    "UnsupportedApiVersion",
    "Version",
    "VersionChange",
    "VersionStatus",
    "Versioning",
    "current_version",
    "endpoint",
    "field",
    "operation",
    "problem_response",
    "request",
    "request_version",
    "response",
    "url_for",
]
