"""Request ids, JSON log lines, metrics and deprecated usage, in one process."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from tests.runtime.conftest import ops


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_request_id_is_echoed_when_sane(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    sane = client.get("/api/v2/things", headers={"X-Request-ID": "abc-123.x:y"})
    assert sane.headers["X-Request-ID"] == "abc-123.x:y"
    for insane in ("", "has space", "x" * 129, "semi;colon", "new\\nline"):
        response = client.get("/api/v2/things", headers={"X-Request-ID": insane})
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"]), insane
    made = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(made) == 3


def test_one_json_line_per_request(make_app: Callable[..., Flask], logs: io.StringIO) -> None:
    client = make_app().test_client()
    client.get("/api/things", headers={"X-Request-ID": "req-1", "User-Agent": "curl/8.5.0"})
    client.get("/api/v2/nothing", headers={"X-Request-ID": "req-2"})
    records = {r["request_id"]: r for r in lines(logs) if r.get("event") == "request"}
    first = records["req-1"]
    assert first["service"] == "things"
    assert first["version"] == "2"
    assert first["client"] == "127.0.0.1"  # no token: the address
    assert first["method"] == "GET"
    assert first["route"] == "/api/v2/things"
    assert first["status"] == 200
    assert first["duration_ms"] >= 0
    assert first["duration"] * 1000 == pytest.approx(first["duration_ms"], abs=0.01)
    assert first["level"] == "info"
    assert records["req-2"]["status"] == 404


def test_app_log_lines_carry_the_request_id(
    make_app: Callable[..., Flask], logs: io.StringIO
) -> None:
    import structlog

    app = make_app()

    @app.get("/talk")
    def talk() -> dict[str, bool]:
        structlog.get_logger("app").info("hello")
        return {"ok": True}

    app.test_client().get("/talk", headers={"X-Request-ID": "talk-1"})
    hello = [r for r in lines(logs) if r.get("event") == "hello"]
    assert hello[0]["request_id"] == "talk-1"
    assert hello[0]["service"] == "things"


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics(make_app: Callable[..., Flask]) -> None:
    client = make_app(LOCKGATE_SERVICE="metrics-test").test_client()
    before = client.get("/metrics", headers=ops()).get_data(as_text=True)
    for _ in range(3):
        client.get("/api/v1/things", environ_overrides={"REMOTE_ADDR": "192.0.2.7"})
    client.get("/api/v2/nothing")
    text = client.get("/metrics", headers=ops()).get_data(as_text=True)
    labels = {"service": "metrics-test", "version": "1", "route": "/api/v1/things"}
    assert (
        metric(text, "http_requests_total", **labels, status="200")
        - metric(before, "http_requests_total", **labels, status="200")
        == 3
    )
    assert metric(text, "http_request_duration_seconds_count", **labels) >= 3
    deprecated = {"service": "metrics-test", "version": "1", "client": "192.0.2.7"}
    assert (
        metric(text, "api_deprecated_requests_total", **deprecated)
        - metric(before, "api_deprecated_requests_total", **deprecated)
        == 3
    )
    assert metric(text, "api_deprecated_requests_total", service="metrics-test", version="2") == 0


def test_refused_requests_are_counted_under_the_route_they_asked_for(
    make_app: Callable[..., Flask],
) -> None:
    client = make_app(LOCKGATE_SERVICE="refused-test").test_client()
    assert client.get("/api/v0/things").status_code == 410
    assert client.get("/api/v0/nothing").status_code == 410
    text = client.get("/metrics", headers=ops()).get_data(as_text=True)
    service = {"service": "refused-test"}
    assert metric(text, "http_requests_total", **service, route="/api/v0/things", status="410") == 1
    assert metric(text, "http_requests_total", **service, route="unmatched", status="410") == 1
    assert "/_lockgate/refused" not in text


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_deprecated_usage_report(
    make_app: Callable[..., Flask], request: pytest.FixtureRequest, backend: str
) -> None:
    config = {"REDIS_URL": request.getfixturevalue("redis_url")} if backend == "redis" else {}
    client = make_app(**config).test_client()
    # Without a token, a client is its address.
    for address, count in (("192.0.2.1", 3), ("192.0.2.2", 1)):
        for _ in range(count):
            client.get("/api/v1/things", environ_overrides={"REMOTE_ADDR": address})
    client.get("/api/v2/things", environ_overrides={"REMOTE_ADDR": "192.0.2.3"})
    rows = client.get("/usage", headers=ops()).get_json()
    assert [(r["service"], r["version"], r["client"], r["calls"]) for r in rows] == [
        ("things", "1", "192.0.2.1", 3),
        ("things", "1", "192.0.2.2", 1),
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["last_seen"]) for r in rows)


def test_invented_methods_are_one_metric_label(make_app: Callable[..., Flask]) -> None:
    client = make_app(LOCKGATE_SERVICE="methods-test").test_client()
    for index in range(30):
        client.open("/api/v2/things", method=f"BREW{index}")
    client.get("/api/v2/things")
    text = client.get("/metrics", headers=ops()).get_data(as_text=True)
    methods = {
        dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))["method"]
        for line in text.splitlines()
        if line.startswith("http_requests_total{") and 'service="methods-test"' in line
    }
    assert methods == {"GET", "other"}
    assert metric(text, "http_requests_total", service="methods-test", method="other") == 30


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_usage_rows_are_bounded_per_version(
    make_app: Callable[..., Flask], request: pytest.FixtureRequest, backend: str
) -> None:
    service = f"bounded-{backend}"
    config: dict[str, Any] = {"LOCKGATE_USAGE_MAX_CLIENTS": 5, "LOCKGATE_SERVICE": service}
    if backend == "redis":
        config["REDIS_URL"] = request.getfixturevalue("redis_url")
    client = make_app(**config).test_client()
    for index in range(30):
        client.get("/api/v1/things", environ_overrides={"REMOTE_ADDR": f"192.0.2.{index}"})
    client.get("/api/v1/things", environ_overrides={"REMOTE_ADDR": "192.0.2.0"})
    rows = {row["client"]: row["calls"] for row in client.get("/usage", headers=ops()).get_json()}
    first = {f"192.0.2.{n}": 1 for n in range(1, 5)}
    assert rows == {"192.0.2.0": 2, **first, "other": 25}
    text = client.get("/metrics", headers=ops()).get_data(as_text=True)
    clients = {
        dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))["client"]
        for line in text.splitlines()
        if line.startswith("api_deprecated_requests_total{") and f'service="{service}"' in line
    }
    assert clients == {f"192.0.2.{n}" for n in range(5)} | {"other"}
