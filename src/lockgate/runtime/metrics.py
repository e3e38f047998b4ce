"""Prometheus metrics, correct across gunicorn, uWSGI and granian workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``lockgate serve`` sets it, wipes it at
start and marks exited workers dead), ``/metrics`` sums every worker's files;
otherwise it reads this process's registry. The metric objects are made when
the first app is set up, not at import: a server's master may import lockgate
before it points prometheus_client at the shared directory.

Label values are bounded: an unknown HTTP method is ``other``, a route is its
rule template (never a raw path), and the version a declared label.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from ..auth import check_scope
from ..versioning import request_version
from ..versioning.middleware import route_template
from ..views import cache_control, mark_neutral
from .callers import BoundedLabels, client_label
from .settings import enabled, service_name, settle

__all__ = ["COLLECTED", "METHODS", "Metrics", "method_label"]

#: Collectors computed when scraped, from shared state rather than this
#: process's counters (the job tables: every worker's jobs, whichever
#: process ran them); ``/metrics`` serves them after the process's own.
COLLECTED = CollectorRegistry(auto_describe=True)

#: The methods counted by name (RFC 9110 and PATCH); any other is ``other``.
METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
)


@dataclass(frozen=True, slots=True)
class _Families:
    requests: Counter
    latency: Histogram
    deprecated: Counter


_families: _Families | None = None


def _make_families() -> _Families:
    global _families
    if _families is None:
        _families = _Families(
            requests=Counter(
                "http_requests_total",
                "HTTP requests answered",
                ["service", "version", "method", "route", "status"],
            ),
            latency=Histogram(
                "http_request_duration_seconds",
                "Time to answer an HTTP request",
                ["service", "version", "method", "route"],
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            ),
            deprecated=Counter(
                "api_deprecated_requests_total",
                "Requests to deprecated API versions, by client",
                ["service", "version", "client"],
            ),
        )
    return _families


def method_label(method: str) -> str:
    """``GET`` stays ``GET``; an invented method is ``other``, so a caller
    cannot add label values."""
    return method if method in METHODS else "other"


class Metrics:
    """Count and time every request; serve ``/metrics``."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Reads ``LOCKGATE_SERVICE``, ``LOCKGATE_METRICS_URL`` (``/metrics``) and
        ``LOCKGATE_METRICS_PUBLIC`` (False: scraping needs a token with ``ops:read``)."""
        if "lockgate.metrics" in app.extensions:
            raise RuntimeError("lockgate.Metrics is already registered on this app")
        settle(app)
        families = _make_families()
        app.extensions["lockgate.metrics"] = self
        app.add_url_rule(app.config["LOCKGATE_METRICS_URL"], "lockgate_metrics", metrics_view)
        service = service_name(app)
        clients = BoundedLabels(int(app.config["LOCKGATE_USAGE_MAX_CLIENTS"]))
        children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}

        @app.before_request
        def start() -> None:
            g.lockgate_metrics_started = time.perf_counter()

        @app.after_request
        def observe(response: Response) -> Response:
            if request.endpoint == "lockgate_metrics":
                return response
            found = request_version()
            version = None if found is None else found.version
            label = "none" if version is None else version.label.text
            route = route_template() or "unmatched"
            method = method_label(request.method)
            started = g.get("lockgate_metrics_started", time.perf_counter())
            key = (label, method, route, response.status_code)
            series = children.get(key)
            if series is None:
                # Every label value is bounded (declared versions, rule templates,
                # known methods), so the children are looked up once and kept.
                series = children[key] = (
                    families.requests.labels(service, label, method, route, str(key[3])),
                    families.latency.labels(service, label, method, route),
                )
            series[0].inc()
            series[1].observe(time.perf_counter() - started)
            if found is not None and found.deprecated:
                client = clients.label(label, client_label())
                families.deprecated.labels(service, label, client).inc()
            return response


def metrics_view() -> Response:
    if not enabled(current_app.config["LOCKGATE_METRICS_PUBLIC"]):
        check_scope("ops:read")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        data = generate_latest(registry)
    else:
        data = generate_latest()
    data += generate_latest(COLLECTED)
    # generate_latest writes the 0.0.4 text format; say so, as Prometheus expects.
    return Response(data, content_type=CONTENT_TYPE_PLAIN_0_0_4)


mark_neutral(metrics_view)
cache_control("no-store")(metrics_view)
