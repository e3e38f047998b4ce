"""lockgate: versioned, scalable Flask microservices.

The versioning core is :class:`Versioning`; everything not in ``__all__`` is
private and may change.
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
from .extension import Versioning
from .openapi import operation
from .problems import Problem, problem_response
from .state import current_version
from .versions import Version, VersionStatus

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
    "UnsupportedApiVersion",
    "Version",
    "VersionStatus",
    "Versioning",
    "current_version",
    "operation",
    "problem_response",
]
