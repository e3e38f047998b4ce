"""One JSON line per request (structlog), and the request's context in every line.

Fields: ``request_id``, ``service``, ``version``, ``client``, ``method``,
``route``, ``status``, ``duration`` (seconds, the unit of the latency metric)
and ``duration_ms``. Any ``structlog`` logger used while a request runs
carries the request id, service and version too; :func:`logging_config`
puts the server's own lines (gunicorn's) in the same shape.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import structlog
from flask import Flask, Response, current_app, g, request

from ..versioning import request_version
from ..versioning.middleware import route_template
from .callers import client_label
from .requestid import request_id

__all__ = ["RequestLogs", "configure_logging", "logging_config"]

_configured = False


def _shared() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def logging_config(*loggers: str) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dict writing ``loggers`` as JSON lines
    on stderr: for servers that configure logging themselves (gunicorn's
    ``logconfig_dict``), so one log stream has one format."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
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
    global _configured
    if _configured and stream is None:
        return
    _configured = True
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
        app.config.setdefault("LOCKGATE_ACCESS_LOG", True)
        app.extensions["lockgate.logs"] = structlog.get_logger("lockgate.access")
        configure_logging()

        @app.before_request
        def bind() -> None:
            g.lockgate_started = time.perf_counter()
            found = request_version()
            version = None if found is None else found.version
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(
                request_id=request_id(),
                service=current_app.config.get("LOCKGATE_SERVICE") or current_app.name,
                version=None if version is None else version.label.text,
            )

        @app.after_request
        def log(response: Response) -> Response:
            if current_app.config["LOCKGATE_ACCESS_LOG"]:
                elapsed = time.perf_counter() - g.get("lockgate_started", time.perf_counter())
                found = request_version()
                version = None if found is None else found.version
                current_app.extensions["lockgate.logs"].info(
                    "request",
                    request_id=request_id(),
                    service=current_app.config.get("LOCKGATE_SERVICE") or current_app.name,
                    version=None if version is None else version.label.text,
                    client=client_label(),
                    method=request.method,
                    route=route_template() or request.path,
                    status=response.status_code,
                    duration=round(elapsed, 6),
                    duration_ms=round(elapsed * 1000, 3),
                )
            return response

        @app.teardown_request
        def unbind(_: BaseException | None) -> None:
            structlog.contextvars.clear_contextvars()
