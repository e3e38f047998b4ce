"""The circuit breaker: opens on failures, fails fast, one trial across all processes, closes.

The state lives in Redis, so the callers here are separate processes (as
gunicorn workers and replicas are); what reaches the target is counted at
the target.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
from flask import Flask
from redis.backoff import ConstantBackoff
from redis.retry import Retry
from werkzeug.exceptions import HTTPException

from lockgate.client import BreakerSettings, ServiceClient, UpstreamUnavailable
from lockgate.problems import handle_http_exception
from tests.servers import free_port

from .conftest import ROOT, Gunicorn, serve_in_thread
from .target import calls


def breaker(failures: int = 3, reset: float = 1.0, **more: float) -> BreakerSettings:
    return BreakerSettings(failures=failures, reset=reset, **more)  # type: ignore[arg-type]


def refused(client: ServiceClient, path: str) -> tuple[UpstreamUnavailable, float]:
    started = time.perf_counter()
    with pytest.raises(UpstreamUnavailable) as raised:
        client.post(path)
    return raised.value, time.perf_counter() - started


def test_a_stopped_target_opens_the_breaker_and_calls_fail_fast_until_it_is_back(
    redis_url: str, store: redis.Redis, name: str, tmp_path: Path
) -> None:
    """users stopped: POSTs fail fast with 503 once the breaker opens; after the
    reset one trial goes through; users back: the breaker closes."""
    users = Gunicorn(redis_url, tmp_path / "users.log")
    users.start()
    try:
        client = ServiceClient(name, base_url=users.base, redis=store, breaker=breaker(reset=1.0))
        assert client.post(f"/switch/{name}").status_code == 200
        users.stop()
        for _ in range(3):  # connect errors: the target is down, not the breaker open
            error, _ = refused(client, f"/switch/{name}")
            assert "could not be reached" in str(error.description)
        assert client.breaker_state() == "open"
        timings = []
        for _ in range(20):
            error, took = refused(client, f"/switch/{name}")
            assert "circuit breaker is open" in str(error.description)
            timings.append(took)
            assert error.extra_headers["Retry-After"] == "1"
            assert error.code == 503
        assert sorted(timings)[len(timings) // 2] < 0.05, timings  # a Redis round trip
        users.start()  # back, on the same port
        time.sleep(1.0)  # the reset
        assert client.breaker_state() == "half_open"
        assert client.post(f"/switch/{name}").status_code == 200  # the trial
        assert client.breaker_state() == "closed"
        assert client.post(f"/switch/{name}").status_code == 200
    finally:
        users.stop()
    assert calls(store, name) == 3  # the first call, the trial, the one after


def test_an_open_breaker_fails_fast_without_reaching_the_target(
    target: str, store: redis.Redis, name: str
) -> None:
    """A target that takes 300 ms to fail: once open, calls take a Redis round
    trip and the target's count stands still."""
    store.set(f"mode:{name}", "down")
    client = ServiceClient(name, base_url=target, redis=store, breaker=breaker(reset=30))
    for _ in range(3):
        assert client.post(f"/switch/{name}?fail_after=0.3").status_code == 503
    assert client.breaker_state() == "open"
    timings = [refused(client, f"/switch/{name}?fail_after=0.3") for _ in range(50)]
    # A call that reached the target would take its 300 ms at least; a refusal
    # is a Redis round trip (bounds loose enough for a loaded machine).
    took = sorted(took for _, took in timings)
    assert took[-1] < 0.3, took
    assert took[len(took) // 2] < 0.05, took
    assert {e.extra_headers["Retry-After"] for e, _ in timings} <= {"29", "30"}
    assert calls(store, name) == 3


def test_a_failure_rate_over_the_window_opens_the_breaker(
    target: str, store: redis.Redis, name: str
) -> None:
    """Never 3 failures in a row, but 60 % of 20 calls: over the rate of 0.5."""
    client = ServiceClient(
        name,
        base_url=target,
        redis=store,
        breaker=breaker(failures=3, rate=0.5, window=10, min_calls=20, reset=30),
    )
    failing = {i for i in range(20) if i % 5 in (0, 1, 3)} | {19}  # 13 of 20, 2 in a row at most
    for i in range(20):
        assert client.breaker_state() == "closed"  # not before min_calls outcomes
        client.post(f"/flaky/{name}-{i}?fail={int(i in failing)}")
    assert client.breaker_state() == "open"


def test_a_failed_trial_reopens_the_breaker(target: str, store: redis.Redis, name: str) -> None:
    store.set(f"mode:{name}", "down")
    client = ServiceClient(name, base_url=target, redis=store, breaker=breaker(reset=0.5))
    for _ in range(3):
        client.post(f"/switch/{name}")
    time.sleep(0.5)
    assert client.post(f"/switch/{name}").status_code == 503  # the trial, failed
    assert client.breaker_state() == "open"
    refused(client, f"/switch/{name}")
    assert calls(store, name) == 4


def test_after_the_reset_exactly_one_trial_reaches_the_target_across_four_processes(
    gunicorn: Gunicorn, store: redis.Redis, redis_url: str, name: str
) -> None:
    """Four caller processes share one Redis. While the one trial is in flight
    (the target takes 1.5 s to answer it), every other call in every process
    is refused: the target sees exactly one."""
    reset = 1.0
    callers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.client.caller",
                gunicorn.base,
                redis_url,
                name,
                str(reset),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for caller in callers:
            assert caller.stdout is not None
            assert caller.stdout.readline().strip() == "ready"
        store.set(f"mode:{name}", "down")
        opener = ServiceClient(
            name, base_url=gunicorn.base, redis=store, breaker=breaker(failures=2, reset=reset)
        )
        for _ in range(2):
            assert opener.post(f"/switch/{name}").status_code == 503
        assert opener.breaker_state() == "open"
        opened = time.time()
        store.set(f"mode:{name}", "slow:1.5")  # back, but the trial takes a while
        store.set(f"calls:{name}", 0)
        # Calling from now (open: refused) to 0.8 s into half-open (the trial in flight).
        for caller in callers:
            assert caller.stdin is not None
            caller.stdin.write(f"go {opened + reset + 0.8}\n")
            caller.stdin.flush()
        results = []
        for caller in callers:
            out, _ = caller.communicate(timeout=30)
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for caller in callers:
            if caller.poll() is None:
                caller.kill()
                caller.wait()
    assert calls(store, name) == 1
    assert sum(r["ok"] for r in results) == 1
    assert sum(r["other"] for r in results) == 0
    assert all(r["unavailable"] > 10 for r in results)
    assert max(r["median_refusal"] for r in results) < 0.01  # a Redis round trip, no network
    # The trial succeeded: closed for everyone.
    store.delete(f"mode:{name}")
    assert opener.breaker_state() == "closed"
    assert opener.post(f"/switch/{name}").status_code == 200


def test_redis_down_the_breaker_fails_open_and_warns_once(
    target: str, store: redis.Redis, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Calls go through while Redis is down, and only one a second pays for
    trying it (here 2 retries 0.2 s apart: 0.4 s, once)."""
    dead = redis.Redis(
        port=free_port(), socket_connect_timeout=0.2, retry=Retry(ConstantBackoff(0.2), 2)
    )
    client = ServiceClient(name, base_url=target, redis=dead, breaker=breaker(failures=1))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="lockgate.client"):
        for _ in range(20):
            assert client.post(f"/flaky/{name}?fail=100").status_code == 503
    assert time.monotonic() - started < 0.4 + 0.5
    assert calls(store, name) == 20  # the target's own Redis is up: every call reached it
    assert client.breaker_state() == "closed"  # nothing could open it
    warnings = [r for r in caplog.records if "breakers are off" in r.getMessage()]
    assert len(warnings) == 1
    dead.close()


def test_without_redis_the_breaker_lives_in_the_process(target: str, name: str) -> None:
    client = ServiceClient(name, base_url=target, breaker=breaker(failures=2, reset=0.3))
    for _ in range(2):
        assert client.post(f"/flaky/{name}?fail=2").status_code == 503
    assert client.breaker_state() == "open"
    with pytest.raises(UpstreamUnavailable):
        client.post(f"/flaky/{name}?fail=2")
    time.sleep(0.3)
    assert client.post(f"/flaky/{name}?fail=2").status_code == 200
    assert client.breaker_state() == "closed"


def test_a_view_answers_503_problem_json_with_retry_after_while_the_breaker_is_open(
    redis_url: str, store: redis.Redis, name: str
) -> None:
    """The calling service's own client gets the problem, not a 500; and inside
    an app the breaker lives in the app's Redis (``REDIS_URL``)."""
    app = Flask("caller")
    app.config["REDIS_URL"] = redis_url
    app.register_error_handler(HTTPException, handle_http_exception)
    users = ServiceClient(
        name, base_url=f"http://127.0.0.1:{free_port()}", breaker=breaker(failures=1, reset=7)
    )

    @app.post("/orders")
    def orders() -> str:
        users.post("/api/v2/users")
        return "never"

    with serve_in_thread(app) as base:
        down = httpx.post(f"{base}/orders", timeout=10)
        assert down.status_code == 503
        assert "could not be reached" in down.json()["detail"]
        response = httpx.post(f"{base}/orders", timeout=10)
    assert response.status_code == 503
    # Refused by the open breaker, not by a second try at the address.
    assert "could not be reached" not in response.json()["detail"]
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Retry-After"] == "7"
    problem = response.json()
    assert problem["code"] == "UpstreamUnavailable"
    assert problem["status"] == 503
    assert problem["instance"] == "/orders"
    assert store.hget(f"lockgate:client:{{{name}}}:state", "s") == b"open"


def test_timeouts_cut_short_by_the_callers_budget_do_not_open_the_breaker(
    target: str, store: redis.Redis, name: str
) -> None:
    """A caller sending ``X-Request-Deadline-Ms: 50`` gets its 504, but the
    target (healthy, 300 ms) is not marked failing for every other caller;
    the same slowness against the client's own, full timeout does count."""
    from lockgate.client import DEADLINE_HEADER, Timeouts, UpstreamTimeout

    client = ServiceClient(name, base_url=target, redis=store, breaker=breaker(failures=3))
    app = Flask("budgeted")
    for _ in range(5):
        with (
            app.test_request_context(headers={DEADLINE_HEADER: "50"}),
            pytest.raises(UpstreamTimeout),
        ):
            client.get(f"/slow/{name}", params={"seconds": 0.3})
    assert client.breaker_state() == "closed"
    own = ServiceClient(
        name,
        base_url=target,
        redis=store,
        breaker=breaker(failures=3),
        timeouts=Timeouts(connect=1.0, read=0.05, deadline=5.0),
    )
    for _ in range(3):
        with pytest.raises(UpstreamTimeout):
            own.get(f"/slow/{name}", params={"seconds": 0.3})
    assert own.breaker_state() == "open"
