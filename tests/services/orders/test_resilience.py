"""Orders calling users across processes: the breaker, the deadline, retries, the trace.

Real servers: users and auth under `lockgate serve` (gunicorn, 2 workers),
orders under its own `lockgate serve` (gunicorn, 4 workers), both on Redis.
Between orders and users stands a small fault-injecting HTTP proxy on
127.0.0.1 (a Toxiproxy in a few lines): it forwards to users, counts what it
forwards, and can answer 503, drop the connection, or wait first, so "users
is down" or "slow" is a switch, and "counted at users" is its counter.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import (
    LOCKGATE,
    ROOT,
    create_client,
    free_port,
    stop,
    token_for,
    unique_email,
    wait_until_up,
)

pytestmark = pytest.mark.server

TIMEOUT = 15
ITEMS = [{"sku": "tea", "quantity": 1, "unit_price_cents": 450}]
#: Orders' client settings for these tests: a short deadline and a quick breaker.
DEADLINE = 2.0
RESET = 3.0


class Proxy:
    """Forwards to ``target``; ``mode`` is ``up``, ``fail`` (503), ``drop`` or ``slow``."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.mode = "up"
        self.delay = 0.0
        self.forwarded: list[str] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    proxy.forwarded.append(self.path)
                    mode, delay = proxy.mode, proxy.delay
                if mode == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "fail":
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if mode == "slow":
                    time.sleep(delay)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                answer = httpx.request(
                    self.command,
                    proxy.target + self.path,
                    headers=headers,
                    content=body,
                    timeout=TIMEOUT,
                )
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PATCH = do_DELETE = handle_any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, prefix: str = "/api/v2/users/") -> int:
        with self.lock:
            return sum(path.startswith(prefix) for path in self.forwarded)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Served:
    base: str
    log: Path
    process: subprocess.Popen[str]


@contextmanager
def serving(
    tmp: Path, name: str, manifest: Path, workers: int, env: dict[str, str]
) -> Iterator[Served]:
    port = free_port()
    log_path = tmp / f"{name}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                str(LOCKGATE),
                "serve",
                "--manifest",
                str(manifest),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--drain-delay",
                "0",
                "--graceful-timeout",
                "5",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        served = Served(f"http://127.0.0.1:{port}", log_path, process)
        try:
            wait_until_up(process, served.base, log_path)
            yield served
        finally:
            stop(process)


def manifest(tmp: Path, name: str, services: dict[str, dict[str, Any]]) -> Path:
    lines = [f'[fleet]\nname = "{name}"\n']
    for service, table in services.items():
        lines.append(f"[services.{service}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in table.items())
        lines.append("")
    path = tmp / f"{name}.toml"
    path.write_text("\n".join(lines))
    return path


def lines(log: Path) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            with suppress(ValueError):
                found.append(json.loads(line))
    return found


@dataclass
class Pair:
    users: Served
    orders: Served
    proxy: Proxy
    headers: dict[str, str]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("resilience")
    redis_db = 14  # one no other test empties
    base_env = {
        **os.environ,
        "LOCKGATE_DATA_DIR": str(tmp / "data"),
        "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "PYTHONPATH": str(ROOT),
        "LOCKGATE_METRICS_PUBLIC": "true",
    }
    base_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    import redis

    redis.Redis.from_url(base_env["REDIS_URL"]).flushdb()
    identity = manifest(
        tmp,
        "identity",
        {
            "users": {
                "app": "services.users:create_app",
                "paths": ["/users"],
                "migrations": str(ROOT / "services/users/migrations"),
            },
            "auth": {
                "app": "services.auth:create_app",
                "root_paths": ["/oauth", "/.well-known"],
                "migrations": str(ROOT / "services/auth/migrations"),
            },
        },
    )
    with serving(tmp, "users", identity, 2, base_env) as users:
        proxy = Proxy(users.base)

        def client(name: str, scopes: str) -> tuple[str, str]:
            return create_client(base_env, name, scopes, identity)

        orders_id, orders_secret = client("service:orders", "users:read")
        tester = client("tester", "users:write,orders:read,orders:write")
        only_orders = manifest(
            tmp,
            "orders",
            {
                "orders": {
                    "app": "services.orders:create_app",
                    "paths": ["/orders"],
                    "migrations": str(ROOT / "services/orders/migrations"),
                }
            },
        )
        env = {
            **base_env,
            "LOCKGATE_SERVICE_URL_USERS": proxy.url,
            "LOCKGATE_AUTH_ISSUER": users.base,
            "LOCKGATE_AUTH_JWKS_URL": f"{users.base}/.well-known/jwks.json",
            "LOCKGATE_ORDERS_CLIENT_ID": orders_id,
            "LOCKGATE_ORDERS_CLIENT_SECRET": orders_secret,
            "LOCKGATE_CLIENT_DEADLINE": str(DEADLINE),
            "LOCKGATE_CLIENT_BREAKER_FAILURES": "3",
            "LOCKGATE_CLIENT_BREAKER_RESET": str(RESET),
        }
        try:
            with serving(tmp, "orders", only_orders, 4, env) as orders:
                token = token_for(users.base, *tester)
                yield Pair(users, orders, proxy, {"Authorization": f"Bearer {token}"})
        finally:
            proxy.close()


def new_user(pair: Pair) -> int:
    body = {"first_name": "Grace", "last_name": "Hopper", "email": unique_email("res")}
    made = httpx.post(
        f"{pair.users.base}/api/v2/users", json=body, headers=pair.headers, timeout=TIMEOUT
    )
    assert made.status_code == 201, made.text
    user_id: int = made.json()["id"]
    return user_id


def order(pair: Pair, user_id: int, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{pair.orders.base}/api/v2/orders",
        json={"user_id": user_id, "items": ITEMS},
        headers={**pair.headers, **headers},
        timeout=TIMEOUT,
    )


def test_an_order_goes_through_users_with_the_trace(pair: Pair) -> None:
    user_id = new_user(pair)
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    made = order(
        pair,
        user_id,
        **{"X-Request-ID": "trace-check-1", "traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
    )
    assert made.status_code == 201, made.text
    time.sleep(0.5)  # the access lines are written as the answers go
    for served in (pair.orders, pair.users):
        mine = [r for r in lines(served.log) if r.get("request_id") == "trace-check-1"]
        assert mine, served.log.read_text()[-3000:]
        assert {r.get("trace_id") for r in mine} == {trace}, mine
    # Without a traceparent, orders starts the trace, and users logs the same one.
    made = order(pair, user_id, **{"X-Request-ID": "trace-check-2"})
    assert made.status_code == 201, made.text
    time.sleep(0.5)
    found = set()
    for served in (pair.orders, pair.users):
        mine = [r for r in lines(served.log) if r.get("request_id") == "trace-check-2"]
        assert mine, served.log.read_text()[-3000:]
        found |= {r.get("trace_id") for r in mine}
    assert len(found) == 1 and len(found.pop() or "") == 32


def test_users_down_opens_the_breaker_one_trial_then_it_closes(pair: Pair) -> None:
    user_id = new_user(pair)
    assert order(pair, user_id).status_code == 201
    # Users dies: every connection is dropped without an answer.
    pair.proxy.mode = "drop"
    try:
        first = [order(pair, user_id) for _ in range(6)]
        assert all(r.status_code in (502, 503) for r in first), [r.text for r in first]
        # Open now: answers come fast, and none reaches users.
        before = pair.proxy.count()
        started = time.monotonic()
        fast = [order(pair, user_id) for _ in range(10)]
        elapsed = time.monotonic() - started
        assert [r.status_code for r in fast] == [503] * 10
        assert all(r.json()["code"] == "UpstreamUnavailable" for r in fast)
        assert all(1 <= int(r.headers["Retry-After"]) <= RESET + 1 for r in fast)
        assert pair.proxy.count() == before
        assert elapsed < 3.0, elapsed
        # After the reset timeout, 24 orders at once over 4 workers: one trial reaches users.
        time.sleep(RESET + 0.5)
        before = pair.proxy.count()
        with ThreadPoolExecutor(max_workers=24) as pool:
            burst = list(pool.map(lambda _: order(pair, user_id), range(24)))
        assert all(r.status_code in (502, 503) for r in burst)
        assert pair.proxy.count() - before == 1  # the trial failed: open again
    finally:
        pair.proxy.mode = "up"
    time.sleep(RESET + 0.5)
    assert order(pair, user_id).status_code == 201  # the trial succeeds: closed
    assert [order(pair, user_id).status_code for _ in range(5)] == [201] * 5


def test_users_slower_than_the_deadline_is_a_504_in_time(pair: Pair) -> None:
    user_id = new_user(pair)
    pair.proxy.mode, pair.proxy.delay = "slow", DEADLINE * 3
    try:
        started = time.monotonic()
        slow = order(pair, user_id)
        elapsed = time.monotonic() - started
    finally:
        pair.proxy.mode = "up"
    assert slow.status_code == 504, slow.text
    assert slow.headers["content-type"] == "application/problem+json"
    assert slow.json()["code"] == "UpstreamTimeout"
    assert elapsed <= DEADLINE * 1.1, elapsed


def test_fifty_orders_with_one_key_across_four_workers_make_one(pair: Pair) -> None:
    user_id = new_user(pair)
    key = f'"order-{user_id}"'

    def place(_: int) -> httpx.Response:
        return order(pair, user_id, **{"Idempotency-Key": key})

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(place, range(50)))
    statuses = sorted({r.status_code for r in answers})
    assert set(statuses) <= {201, 409}, [r.text for r in answers if r.status_code not in (201, 409)]
    made = [r for r in answers if r.status_code == 201]
    assert made and len({r.json()["id"] for r in made}) == 1  # replays of the one order
    assert len({r.headers["Location"] for r in made}) == 1
    assert all(r.json()["code"] == "IdempotencyKeyInUse" for r in answers if r.status_code == 409)
    listed = httpx.get(
        f"{pair.orders.base}/api/v2/orders",
        params={"user_id": user_id},
        headers=pair.headers,
        timeout=TIMEOUT,
    ).json()
    assert len(listed["data"]) == 1
    # A repeat now is the replay, byte for byte, saying so.
    again = place(0)
    assert again.status_code == 201 and again.content == made[0].content
    assert again.headers["Idempotent-Replayed"] == "true"
