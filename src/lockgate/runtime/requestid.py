"""``X-Request-ID``: taken from the request when it is a sane token, else made;
and the request's W3C trace id, from its ``traceparent`` or made.

The id is echoed on the response and bound into every log line of the
request, with the trace id, so one call across services can be followed by
either. Outgoing calls (:mod:`lockgate.client`) pass both on.
"""

from __future__ import annotations

import re
import time
import uuid

from flask import Flask, Response, g, request

__all__ = ["HEADER", "RequestIds", "request_id", "trace_id"]

HEADER = "X-Request-ID"
#: Letters, digits and ``._:-``, at most 128: safe to log and to echo.
_SANE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id() -> str:
    """This request's id."""
    found: str | None = g.get("lockgate_request_id")
    if found is None:
        incoming = request.headers.get(HEADER, "")
        found = incoming if _SANE.fullmatch(incoming) else uuid.uuid4().hex
        g.lockgate_request_id = found
    return found


#: W3C Trace Context ``traceparent``: version 00, trace id, parent id, flags.
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def trace_id() -> str:
    """This request's W3C trace id (32 lowercase hex digits): the incoming
    ``traceparent``'s when it is valid (not all zeros), else a new one."""
    found: str | None = g.get("lockgate_trace_id")
    if found is None:
        match = _TRACEPARENT.fullmatch(request.headers.get("traceparent", "").strip())
        valid = match is not None and match[1] != "0" * 32 and match[2] != "0" * 16
        found = match[1] if valid and match is not None else uuid.uuid4().hex
        g.lockgate_trace_id = found
    return found


#: In the environ: ``time.monotonic()`` when the request reached the app, from
#: which an incoming ``X-Request-Deadline-Ms`` budget is counted down.
ARRIVED_KEY = "lockgate.arrived"


def _assign() -> None:
    request.environ.setdefault(ARRIVED_KEY, time.monotonic())
    request_id()


class RequestIds:
    """Assign every request an id and echo it in ``X-Request-ID``."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if "lockgate.requestid" in app.extensions:
            raise RuntimeError("lockgate.RequestIds is already registered on this app")
        app.extensions["lockgate.requestid"] = True
        # First, so every later hook and log line sees the id.
        app.before_request_funcs.setdefault(None, []).insert(0, _assign)

        @app.after_request
        def echo(response: Response) -> Response:
            response.headers[HEADER] = request_id()
            return response
