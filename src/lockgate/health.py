"""Liveness and readiness for orchestrators.

``/healthz`` says the process answers and checks nothing else. ``/readyz``
runs every registered check (the database, Redis when configured) and answers
503 problem+json naming each failing one; it also answers 503 at once while
the server drains after SIGTERM.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, jsonify

from .problems import problem_response
from .serving import is_draining
from .state import NEUTRAL_ATTR, cache_control

__all__ = ["Health"]

Check = Callable[[], object]


@dataclass
class _HealthState:
    checks: dict[str, Check] = field(default_factory=dict)


class Health:
    """``/healthz`` and ``/readyz``; checks are added with :meth:`add_check`."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the two routes. Reads ``LOCKGATE_HEALTH_URL`` (``/healthz``)
        and ``LOCKGATE_READY_URL`` (``/readyz``)."""
        if "lockgate.health" in app.extensions:
            raise RuntimeError("lockgate.Health is already registered on this app")
        app.extensions["lockgate.health"] = _HealthState()
        app.config.setdefault("LOCKGATE_HEALTH_URL", "/healthz")
        app.config.setdefault("LOCKGATE_READY_URL", "/readyz")
        for rule, endpoint, view in (
            (app.config["LOCKGATE_HEALTH_URL"], "lockgate_healthz", _healthz),
            (app.config["LOCKGATE_READY_URL"], "lockgate_readyz", _readyz),
        ):
            app.add_url_rule(rule, endpoint, view)

    @staticmethod
    def add_check(app: Flask, name: str, check: Check) -> None:
        """Add a readiness check: a callable that raises when ``name`` is not ready."""
        state: _HealthState = app.extensions["lockgate.health"]
        state.checks[name] = check


def _healthz() -> Response:
    return jsonify(status="ok")


def _readyz() -> Response:
    state: _HealthState = current_app.extensions["lockgate.health"]
    results: dict[str, Any] = {}
    failing: list[str] = []
    if is_draining():
        failing.append("draining")
        results["draining"] = "the server is shutting down"
    for name, check in state.checks.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as error:  # a check may fail in any way; report, do not raise
            failing.append(name)
            results[name] = f"{type(error).__name__}: {error}"
        else:
            results[name] = f"ok ({(time.perf_counter() - started) * 1000:.1f} ms)"
    if failing:
        return problem_response(
            503,
            f"not ready: {', '.join(failing)}",
            code="NotReady",
            failing=failing,
            checks=results,
        )
    return jsonify(status="ready", checks=results)


for _view in (_healthz, _readyz):
    setattr(_view, NEUTRAL_ATTR, True)
    cache_control("no-store")(_view)  # a probe must see now, never a copy
