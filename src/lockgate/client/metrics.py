"""Prometheus metrics of the calls to other services.

``upstream_requests_total{target,method,outcome}`` counts every attempt once.
``outcome`` is the answer's status class (``2xx`` ... ``5xx``), ``timeout``,
``connect_error`` or ``error`` (another transport failure) for the attempt
that ended the call; an attempt that was followed by a retry is counted as
``retried`` instead, and a call refused without touching the network as
``breaker_open`` or ``deadline`` (no time left). So the outcomes other than
``retried`` sum to the calls made, and ``retried`` is the extra load.
``upstream_request_duration_seconds{target}`` times whole calls as their
caller waited for them, retries and backoff included.
``circuit_breaker_state{target}`` is 0 closed, 1 half-open, 2 open.

The families are made on first use, not at import (as in
:mod:`lockgate.runtime.metrics`), so ``PROMETHEUS_MULTIPROC_DIR`` set by the
server before the first request is honoured. The gauge's multiprocess mode is
``livemostrecent``: the state lives in Redis and every worker sees the same
one, so the freshest worker's reading is the truth, where ``livemax`` would
keep reporting "open" from an idle worker that last looked while it was.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["count", "observe", "ready", "show_state"]


@dataclass(frozen=True, slots=True)
class _Families:
    requests: Counter
    duration: Histogram
    state: Gauge


_families: _Families | None = None
_lock = threading.Lock()


def _made() -> _Families:
    global _families
    if _families is None:
        with _lock:
            if _families is None:
                _families = _Families(
                    requests=Counter(
                        "upstream_requests_total",
                        "Attempts to call another service, by outcome",
                        ["target", "method", "outcome"],
                    ),
                    duration=Histogram(
                        "upstream_request_duration_seconds",
                        "Time a call to another service took, retries included",
                        ["target"],
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                    ),
                    state=Gauge(
                        "circuit_breaker_state",
                        "A target's circuit breaker: 0 closed, 1 half-open, 2 open",
                        ["target"],
                        multiprocess_mode="livemostrecent",
                    ),
                )
    return _families


def ready() -> None:
    """Make the families now (a client is being built, in its worker), so
    ``/metrics`` names them before the first call."""
    _made()


def count(target: str, method: str, outcome: str) -> None:
    _made().requests.labels(target, method, outcome).inc()


def observe(target: str, seconds: float) -> None:
    _made().duration.labels(target).observe(seconds)


def show_state(target: str, state: int) -> None:
    _made().state.labels(target).set(state)
