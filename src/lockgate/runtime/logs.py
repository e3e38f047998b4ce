"""One JSON line per request, and the request's context in every other line.

Fields of the access line: ``timestamp``, ``level``, ``event`` (``request``),
``request_id``, ``trace_id``, ``service``, ``version``, ``deprecated`` (the status
versioning decided for the request), ``client``, ``method``, ``route``,
``status``, ``duration`` (seconds, the unit of the latency metric) and
``duration_ms``. Any ``structlog`` logger used while a request runs carries
the request id, service and version too; :func:`logging_config` puts the
server's own lines (gunicorn's) in the same shape.

The access line is the one log line every request pays for, so it does not
go through structlog's processor chain: it is a dict encoded by the C JSON
encoder and written with a single ``write`` (lines of several workers sharing
one stderr never interleave). The request context of other lines is read
when a line is logged, by a processor, rather than bound on every request.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import structlog
from flask import Flask, Response, current_app, g, has_request_context, request

from ..versioning import request_version
from ..versioning.middleware import route_template
from .callers import client_label
from .requestid import request_id, trace_id
from .settings import service_name, settle

__all__ = ["AccessLog", "RequestLogs", "configure_logging", "logging_config"]

_encode = json.JSONEncoder(separators=(", ", ": "), default=str).encode


def _request_context(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: the request's id, service and version, if any."""
    if has_request_context():
        found = request_version()
        version = None if found is None or found.version is None else found.version.label.text
        event.setdefault("request_id", request_id())
        event.setdefault("trace_id", trace_id())
        event.setdefault("service", service_name(current_app))
        event.setdefault("version", version)
    return event


def _shared() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        _request_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


class AccessLog:
    """Writes access lines to a stream; the timestamp's seconds are formatted
    once per second."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._second = -1
        self._prefix = ""

    def timestamp(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"

    def write(self, fields: dict[str, Any]) -> None:
        line = _encode(fields) + "\n"
        try:
            self.stream.write(line)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not fail the request
            pass


_access = AccessLog(sys.stderr)
_configured = False


def logging_config(*loggers: str, formatter: dict[str, Any] | None = None) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dict writing ``loggers`` as JSON lines
    on stderr: for servers that configure logging themselves (gunicorn's
    ``logconfig_dict``), so one log stream has one format. ``formatter``
    replaces the formatter's spec, for a server that reads the dict from a
    file and so needs a factory by dotted name (granian)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": formatter
            or {
                "()": structlog.stdlib.ProcessorFormatter,
                "processor": structlog.processors.JSONRenderer(),
                "foreign_pre_chain": [*_shared(), structlog.stdlib.add_logger_name],
            }
        },
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["json"], "level": "WARNING"},
        "loggers": {
            name: {"handlers": ["json"], "level": "INFO", "propagate": False} for name in loggers
        },
    }


def configure_logging(stream: Any = None) -> None:
    """JSON lines on ``stream`` (stderr) for structlog and the standard library."""
    global _configured, _access
    if _configured and stream is None:
        return
    _configured = True
    _access = AccessLog(stream or sys.stderr)
    shared = _shared()
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(),
        ],
        # One write() per line (PrintLogger writes the newline apart): lines of
        # several workers sharing one stderr never interleave.
        logger_factory=structlog.WriteLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.processors.JSONRenderer(), foreign_pre_chain=shared
        )
    )
    root = logging.getLogger("lockgate")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


class RequestLogs:
    """Log each request as one JSON line when it ends."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Reads ``LOCKGATE_SERVICE`` and ``LOCKGATE_ACCESS_LOG`` (True)."""
        if "lockgate.logs" in app.extensions:
            raise RuntimeError("lockgate.RequestLogs is already registered on this app")
        settle(app)
        app.extensions["lockgate.logs"] = self
        configure_logging()
        service = service_name(app)
        if not app.config["LOCKGATE_ACCESS_LOG"]:
            return

        @app.before_request
        def start() -> None:
            g.lockgate_started = time.perf_counter()

        @app.after_request
        def log(response: Response) -> Response:
            now = time.time()
            elapsed = time.perf_counter() - g.get("lockgate_started", time.perf_counter())
            found = request_version()
            version = None if found is None else found.version
            _access.write(
                {
                    "timestamp": _access.timestamp(now),
                    "level": "info",
                    "event": "request",
                    "request_id": request_id(),
                    "trace_id": trace_id(),
                    "service": service,
                    "version": None if version is None else version.label.text,
                    "deprecated": found is not None and found.deprecated,
                    "client": client_label(),
                    "method": request.method,
                    "route": route_template() or request.path,
                    "status": response.status_code,
                    "duration": round(elapsed, 6),
                    "duration_ms": round(elapsed * 1000, 3),
                }
            )
            return response
