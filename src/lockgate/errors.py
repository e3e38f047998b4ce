"""Exceptions raised by lockgate.

::

    LockgateError
    ├── ConfigurationError          (also ValueError) bad setup, raised at start
    └── ApiVersionError             (also werkzeug HTTPException) answered as problem+json
        ├── InvalidApiVersion           400 malformed label
        ├── AmbiguousApiVersion         400 readers disagree
        ├── ApiVersionUnspecified       400 strict mode, no version given
        ├── UnsupportedApiVersion       404/400/406/415 unknown version or route
        ├── ApiVersionSunset            410 the version is retired
        └── ApiVersionBrownout          410 a scheduled brownout is on
"""

from __future__ import annotations

from typing import Any, ClassVar

from werkzeug.exceptions import HTTPException

__all__ = [
    "AmbiguousApiVersion",
    "ApiVersionBrownout",
    "ApiVersionError",
    "ApiVersionSunset",
    "ApiVersionUnspecified",
    "ConfigurationError",
    "InvalidApiVersion",
    "LockgateError",
    "UnsupportedApiVersion",
]


class LockgateError(Exception):
    """Base class of every lockgate exception."""


class ConfigurationError(LockgateError, ValueError):
    """The versions or settings given to lockgate cannot work; raised at start."""


class ApiVersionError(LockgateError, HTTPException):
    """A request's version cannot be served; rendered as RFC 9457 problem+json.

    :attr:`code` is the HTTP status (Werkzeug's name for it); :attr:`problem_code`
    is the machine-readable ``code`` member of the problem document.
    """

    code: int | None = 400
    problem_code: ClassVar[str] = "ApiVersionError"
    title: ClassVar[str] = "API version error"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        if status is not None:
            self.code = status
        #: Extra members of the problem document.
        self.extra = extra
        #: Extra response headers (``Retry-After``, ``Link``).
        self.extra_headers = headers or {}


class InvalidApiVersion(ApiVersionError):
    """The requested version is not a well-formed label."""

    problem_code = "InvalidApiVersion"
    title = "Invalid API version"


class AmbiguousApiVersion(ApiVersionError):
    """The request names more than one version."""

    problem_code = "AmbiguousApiVersion"
    title = "Ambiguous API version"


class ApiVersionUnspecified(ApiVersionError):
    """Strict mode and the request names no version."""

    problem_code = "ApiVersionUnspecified"
    title = "API version unspecified"


class UnsupportedApiVersion(ApiVersionError):
    """The version is unknown, or the route does not exist in it."""

    problem_code = "UnsupportedApiVersion"
    title = "Unsupported API version"


class ApiVersionSunset(ApiVersionError):
    """The version is past its sunset and is never served again."""

    code = 410
    problem_code = "ApiVersionSunset"
    title = "API version sunset"


class ApiVersionBrownout(ApiVersionError):
    """The version is inside a scheduled brownout window."""

    code = 410
    problem_code = "ApiVersionBrownout"
    title = "API version brownout"
