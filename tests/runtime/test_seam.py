"""One decision per request: headers, limit bucket, metrics, usage and the log
line agree on a request made exactly at a lifecycle instant.

Versioning reads the clock once per request; a runtime piece that read it
again (or asked the bundle) would see another instant. The clocks here make
every read after the first one see the other side of the instant, so any
second reading shows up as a disagreement. A version is deprecated from the
moment it has a deprecation date (announced before it arrives), so the
instant where its status flips is the sunset; both are tried.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Blueprint, Flask, jsonify

from lockgate import Version, Versioning
from lockgate.runtime import Runtime
from tests.conftest import Clock

DEPRECATION = datetime(2026, 1, 1, tzinfo=UTC)
SUNSET = datetime(2027, 6, 30, 23, 59, 59, tzinfo=UTC)
TICK = timedelta(microseconds=1)


def build(clock: Clock, **config: Any) -> Flask:
    app = Flask("seam-test")
    # No identity here: the reports are open, as a service without auth may choose.
    public = {"LOCKGATE_METRICS_PUBLIC": True, "LOCKGATE_USAGE_PUBLIC": True}
    app.config.update({"TESTING": True, **public, **config})
    versioning = Versioning(
        app,
        versions=[
            Version("1", deprecated=DEPRECATION, sunset=SUNSET, successor="2"),
            Version("2"),
        ],
        clock=clock,
    )
    bp = Blueprint("things", __name__)

    @bp.get("/things")
    def things() -> Any:
        return jsonify(ok=True)

    versioning.register_blueprint(bp, versions=("1", "2"))
    Runtime(app)
    return app


class SwitchingClock(Clock):
    """``first`` on the first read after :meth:`arm`, ``then`` on every later read."""

    def __init__(self, first: datetime, then: datetime) -> None:
        super().__init__(then)
        self.first, self.then, self.armed = first, then, False

    def arm(self) -> None:
        self.armed = True

    def __call__(self) -> datetime:
        if self.armed:
            self.armed = False
            return self.first
        return self.then


def deprecated_count(text: str, service: str) -> float:
    total = 0.0
    for line in text.splitlines():
        name, _, labels = line.partition("{")
        if name == "api_deprecated_requests_total" and f'service="{service}"' in labels:
            total += float(line.rsplit(" ", 1)[1]) if 'version="1"' in labels else 0
    return total


def one_request(clock: SwitchingClock, logs: io.StringIO, service: str) -> dict[str, Any]:
    """Make one v1 request whose versioning decision sees ``clock.first``; return
    what each piece recorded about it."""
    app: Flask = build(clock, LOCKGATE_SERVICE=service, LOCKGATE_RATE_LIMIT="10/minute")
    client = app.test_client()
    before = deprecated_count(client.get("/metrics").get_data(as_text=True), service)
    clock.arm()
    response = client.get("/api/v1/things", environ_overrides={"REMOTE_ADDR": "192.0.2.99"})
    after = deprecated_count(client.get("/metrics").get_data(as_text=True), service)
    usage = [row for row in client.get("/usage").get_json() if row["client"] == "192.0.2.99"]
    access = [
        json.loads(line)
        for line in logs.getvalue().splitlines()
        if '"event": "request"' in line and f'"{service}"' in line and "/api/v1/" in line
    ]
    assert len(access) == 1
    # Deprecated versions count against half the normal budget (5 of 10).
    buckets = {"5": "deprecated", "10": "default", None: None}
    return {
        "status": response.status_code,
        "headers say deprecated": "1" in response.headers.get("API-Deprecated-Versions", ""),
        "limit bucket": buckets[response.headers.get("RateLimit-Limit")],
        "deprecated metric": after - before == 1,
        "usage row": len(usage) == 1,
        "log line says deprecated": access[0]["deprecated"],
    }


DEPRECATED = {
    "status": 200,
    "headers say deprecated": True,
    "limit bucket": "deprecated",
    "deprecated metric": True,
    "usage row": True,
    "log line says deprecated": True,
}
#: A retired version answers 410: no budget spent, no deprecated call counted.
RETIRED = {
    "status": 410,
    "headers say deprecated": False,
    "limit bucket": None,
    "deprecated metric": False,
    "usage row": False,
    "log line says deprecated": False,
}


@pytest.mark.parametrize(
    ("first", "then", "expected"),
    [
        pytest.param(DEPRECATION, DEPRECATION, DEPRECATED, id="at-deprecation-fixed"),
        pytest.param(DEPRECATION, DEPRECATION - TICK, DEPRECATED, id="at-deprecation-then-before"),
        pytest.param(SUNSET, SUNSET, RETIRED, id="at-sunset-fixed"),
        pytest.param(SUNSET, SUNSET - TICK, RETIRED, id="at-sunset-then-before"),
        pytest.param(SUNSET - TICK, SUNSET, DEPRECATED, id="before-sunset-then-at"),
    ],
)
def test_every_piece_agrees_with_the_headers(
    logs: io.StringIO, first: datetime, then: datetime, expected: dict[str, Any]
) -> None:
    service = f"seam-{first.timestamp()}-{then.timestamp()}"
    assert one_request(SwitchingClock(first, then), logs, service) == expected


def test_the_clock_is_read_once_per_request() -> None:
    reads = []

    class CountingClock(Clock):
        def __call__(self) -> datetime:
            reads.append(1)
            return DEPRECATION

    client = build(CountingClock(), LOCKGATE_SERVICE="seam-count").test_client()
    client.get("/api/v1/things")  # the first request builds the route index
    reads.clear()
    client.get("/api/v1/things", headers={"User-Agent": "seam-count/1"})
    assert len(reads) == 1
