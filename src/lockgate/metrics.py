"""Prometheus metrics, correct across gunicorn workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``lockgate serve`` sets it, wipes it at
start and marks exited workers dead), ``/metrics`` sums every worker's files;
otherwise it reads this process's registry.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from .clients import client_label
from .dispatch import route_template
from .state import NEUTRAL_ATTR, cache_control, current_version, get_state
from .versions import VersionStatus

__all__ = ["DEPRECATED", "LATENCY", "REQUESTS", "Metrics"]

REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered",
    ["service", "version", "method", "route", "status"],
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["service", "version", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DEPRECATED = Counter(
    "api_deprecated_requests_total",
    "Requests to deprecated API versions, by client",
    ["service", "version", "client"],
)


class Metrics:
    """Count and time every request; serve ``/metrics``."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Reads ``LOCKGATE_SERVICE`` and ``LOCKGATE_METRICS_URL`` (``/metrics``)."""
        if "lockgate.metrics" in app.extensions:
            raise RuntimeError("lockgate.Metrics is already registered on this app")
        app.extensions["lockgate.metrics"] = True
        app.config.setdefault("LOCKGATE_METRICS_URL", "/metrics")
        app.add_url_rule(app.config["LOCKGATE_METRICS_URL"], "lockgate_metrics", metrics_view)

        @app.before_request
        def start() -> None:
            g.lockgate_metrics_started = time.perf_counter()

        @app.after_request
        def observe(response: Response) -> Response:
            if request.endpoint == "lockgate_metrics":
                return response
            service = current_app.config.get("LOCKGATE_SERVICE") or current_app.name
            version = current_version()
            label = "none" if version is None else version.label.text
            route = route_template() or "unmatched"
            started = g.get("lockgate_metrics_started", time.perf_counter())
            REQUESTS.labels(service, label, request.method, route, str(response.status_code)).inc()
            LATENCY.labels(service, label, request.method, route).observe(
                time.perf_counter() - started
            )
            if version is not None and is_deprecated(version.label.text):
                DEPRECATED.labels(service, label, client_label()).inc()
            return response


def is_deprecated(label: str) -> bool:
    """Whether the served version is deprecated now (by the app's clock)."""
    state = get_state()
    version = state.bundle.get(label)  # type: ignore[arg-type]
    if version is None:
        return False
    status = state.bundle.snapshot(state.clock()).statuses[version.label]
    return status is VersionStatus.DEPRECATED


def metrics_view() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        data = generate_latest(registry)
    else:
        data = generate_latest()
    # generate_latest writes the 0.0.4 text format; say so, as Prometheus expects.
    return Response(data, content_type=CONTENT_TYPE_PLAIN_0_0_4)


setattr(metrics_view, NEUTRAL_ATTR, True)
cache_control("no-store")(metrics_view)
