"""Liveness and readiness for orchestrators.

``/healthz`` says the process answers and checks nothing else. ``/readyz``
runs every registered check (the database, Redis when configured) and answers
503 problem+json naming each failing one; it also answers 503 at once while
the server drains after SIGTERM (the flag file named by ``LOCKGATE_DRAIN_FILE``,
which ``lockgate serve`` creates on SIGTERM).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, jsonify

from ..problems import problem_response
from ..views import cache_control, mark_neutral
from .settings import settle

__all__ = ["DRAIN_FILE_ENV", "Check", "Health", "is_draining"]

Check = Callable[[], object]
#: Environment variable naming the drain flag file, shared by master and workers.
DRAIN_FILE_ENV = "LOCKGATE_DRAIN_FILE"


def is_draining() -> bool:
    """Whether this server has been told to stop (``/readyz`` then answers 503)."""
    flag = os.environ.get(DRAIN_FILE_ENV)
    return bool(flag) and os.path.exists(flag)  # type: ignore[arg-type]


class Health:
    """``/healthz`` and ``/readyz``; checks are added with :meth:`add_check`.

    Checks belong to this instance: every app it is initialised on runs them.
    """

    def __init__(self, app: Flask | None = None) -> None:
        self.checks: dict[str, Check] = {}
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the two routes. Reads ``LOCKGATE_HEALTH_URL`` (``/healthz``)
        and ``LOCKGATE_READY_URL`` (``/readyz``)."""
        if "lockgate.health" in app.extensions:
            raise RuntimeError("lockgate.Health is already registered on this app")
        settle(app)
        app.extensions["lockgate.health"] = self
        for rule, endpoint, view in (
            (app.config["LOCKGATE_HEALTH_URL"], "lockgate_healthz", _healthz),
            (app.config["LOCKGATE_READY_URL"], "lockgate_readyz", _readyz),
        ):
            app.add_url_rule(rule, endpoint, view)

    def add_check(self, name: str, check: Check) -> None:
        """Add a readiness check: a callable that raises when ``name`` is not ready."""
        self.checks[name] = check


def _healthz() -> Response:
    return jsonify(status="ok")


def _readyz() -> Response:
    health: Health = current_app.extensions["lockgate.health"]
    results: dict[str, Any] = {}
    failing: list[str] = []
    if is_draining():
        failing.append("draining")
        results["draining"] = "the server is shutting down"
    for name, check in health.checks.items():
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
    mark_neutral(_view)
    cache_control("no-store")(_view)  # a probe must see now, never a copy
