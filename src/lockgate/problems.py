"""One RFC 9457 ``application/problem+json`` shape for every error response.

:func:`problem_response` builds it; :func:`handle_http_exception` is
registered once per app so Werkzeug's errors (404, 405, 413, ...) and
lockgate's own come out the same way; :class:`Problem` lets a view raise one
with extra members (``errors`` for validation failures, for instance).
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Response, current_app, has_request_context, request
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.http import HTTP_STATUS_CODES

from .errors import ApiVersionError

__all__ = [
    "ORIGINAL_PATH_KEY",
    "PROBLEM_JSON",
    "Problem",
    "handle_http_exception",
    "problem_response",
]

#: The path the client asked for, kept in the environ when versioning rewrites
#: ``PATH_INFO``: a problem's ``instance`` names what the client sent.
ORIGINAL_PATH_KEY = "lockgate.original_path"

PROBLEM_JSON = "application/problem+json"
DEFAULT_TYPE_BASE = "https://lockgate.dev/problems/"
_WORD = re.compile(r"(?<!^)(?=[A-Z])")
#: Headers of an exception's own response that a problem response keeps.
_KEEP = ("Allow", "Retry-After", "WWW-Authenticate", "Link")


class Problem(HTTPException):
    """An HTTP error with a problem document; raise it from a view.

    :param status: the HTTP status.
    :param detail: a human-readable explanation of this occurrence.
    :param code: a machine-readable code, also the last part of ``type``.
    :param headers: extra response headers.
    :param extra: extension members (``errors=[...]``).
    """

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.code = status
        self.title = title
        self.problem_code = code
        self.extra = extra
        self.extra_headers = headers or {}


def problem_type(code: str | None) -> str:
    """The ``type`` URI of a problem code; ``about:blank`` for plain HTTP errors."""
    if code is None:
        return "about:blank"
    base = current_app.config.get("LOCKGATE_PROBLEM_TYPE_BASE", DEFAULT_TYPE_BASE)
    return f"{base}{_WORD.sub('-', code).lower()}"


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """Build an ``application/problem+json`` response."""
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": title or HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
        "detail": detail or HTTP_STATUS_CODES.get(status, "Error"),
    }
    if code is not None:
        body["code"] = code
    if has_request_context():
        # The path the client asked for, before any rewrite to a version's route.
        body["instance"] = request.environ.get(ORIGINAL_PATH_KEY) or request.path
    body.update(extra)
    response = current_app.response_class(
        json.dumps(body, default=str), status=status, mimetype=PROBLEM_JSON
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def handle_http_exception(error: HTTPException) -> Response | HTTPException:
    """Render any HTTP error as problem+json, keeping ``Allow`` and ``Retry-After``."""
    if error.code is None or error.code < 400:
        return error
    if error.response is not None:
        return error.response  # type: ignore[return-value]
    headers = {name: value for name, value in error.get_headers() if name in _KEEP}
    title: str | None = None
    code: str | None = None
    extra: dict[str, Any] = {}
    if isinstance(error, ApiVersionError | Problem):
        title = error.title
        code = error.problem_code
        extra = dict(error.extra)
        headers.update(error.extra_headers)
    detail = error.description
    if isinstance(error, InternalServerError) and not isinstance(error, Problem):
        detail = "The server hit an unexpected error; it has been logged."
    return problem_response(error.code, detail, title=title, code=code, headers=headers, **extra)
