"""Deadlines: no call outlives its own deadline or its caller's budget, and the budget travels."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
import redis
from flask import Flask

from lockgate.client import (
    DEADLINE_HEADER,
    ServiceClient,
    Timeouts,
    UpstreamTimeout,
    remaining_budget,
)
from lockgate.client.deadline import ARRIVED_KEY

from .target import calls


def hop(base: str, name: str) -> float:
    """What a quick relay costs now, measured beside the timed call (the
    slowest of 3): the test's own way to the view and back, which the
    deadline does not cover, and the machine's load with it."""
    took = []
    for _ in range(3):
        started = time.monotonic()
        assert httpx.get(f"{base}/relay/{name}?to=echo", timeout=10).status_code == 200
        took.append(time.monotonic() - started)
    return max(took)


def test_a_target_slower_than_the_deadline_is_a_timeout_within_the_deadline(
    target: str, store: redis.Redis, name: str
) -> None:
    users = ServiceClient(name, base_url=target, redis=store, timeouts=Timeouts(deadline=1.0))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as raised:
        users.get(f"/slow/{name}", params={"seconds": 3})
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed <= 1.1
    assert raised.value.code == 504
    assert raised.value.problem_code == "UpstreamTimeout"
    assert calls(store, name) == 1  # a read timeout is not retried


def test_the_read_timeout_bounds_an_attempt_before_the_deadline(
    target: str, store: redis.Redis, name: str
) -> None:
    users = ServiceClient(
        name, base_url=target, redis=store, timeouts=Timeouts(read=0.3, deadline=5.0)
    )
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        users.get(f"/slow/{name}", params={"seconds": 2})
    assert 0.3 <= time.monotonic() - started < 0.6


def test_a_view_whose_callee_is_too_slow_answers_504_problem_json_within_the_deadline(
    served: Callable[..., str], store: redis.Redis, name: str
) -> None:
    """As orders does when users is slowed: the deadline comes from the app's
    ``LOCKGATE_CLIENT_DEADLINE``, and the view lets the problem propagate."""
    base = served(LOCKGATE_CLIENT_DEADLINE=1.0)
    way = hop(base, name)
    started = time.monotonic()
    response = httpx.get(f"{base}/relay/{name}?to=slow&seconds=3", timeout=10)
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "UpstreamTimeout"
    assert elapsed <= 1.0 * 1.1 + way, (elapsed, way)


def test_the_budget_decreases_along_a_chain(target: str, store: redis.Redis, name: str) -> None:
    """test -> relay (3000 ms, pauses 100 ms) -> echo: echo is given what the
    relay had left, never more."""
    response = httpx.get(
        f"{target}/relay/{name}?pause=0.1", headers={DEADLINE_HEADER: "3000"}, timeout=10
    )
    assert response.status_code == 200
    body = response.json()
    assert body["received"][DEADLINE_HEADER] == "3000"
    passed_on = int(body["downstream"][0][DEADLINE_HEADER])
    assert 0 < passed_on <= 3000 - 100
    assert 2.8 <= body["budget"] <= 3.0 - 0.1 + 0.01


def test_without_an_inbound_budget_the_own_deadline_is_passed_on(
    target: str, store: redis.Redis, name: str
) -> None:
    body = httpx.get(f"{target}/relay/{name}", timeout=10).json()
    assert body["budget"] is None
    assert 9000 < int(body["downstream"][0][DEADLINE_HEADER]) <= 10_000


def test_a_spent_inbound_budget_cuts_the_call_short(
    target: str, store: redis.Redis, name: str
) -> None:
    """Given 300 ms by its caller, the relay's call to a 2 s target ends as a 504
    after about 300 ms, though its own deadline is 10 s."""
    way = hop(target, name)
    started = time.monotonic()
    response = httpx.get(
        f"{target}/relay/{name}?to=slow&seconds=2", headers={DEADLINE_HEADER: "300"}, timeout=10
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    # The budget plus 10 %, plus this test's own way to the relay; the 2 s
    # target or the relay's own 10 s deadline is far off.
    assert 0.3 <= elapsed < 0.3 * 1.1 + way, (elapsed, way)


def test_no_budget_left_means_no_call_at_all(target: str, store: redis.Redis, name: str) -> None:
    response = httpx.get(
        f"{target}/relay/{name}?pause=0.05", headers={DEADLINE_HEADER: "10"}, timeout=10
    )
    assert response.status_code == 504
    assert calls(store, name) == 0  # the echo was never reached


def test_without_a_recorded_arrival_the_budget_counts_from_its_first_use() -> None:
    app = Flask("view")
    with app.test_request_context(headers={DEADLINE_HEADER: "2000"}):
        assert remaining_budget() == pytest.approx(2.0, abs=0.01)
        time.sleep(0.1)
        assert remaining_budget() == pytest.approx(1.9, abs=0.02)
    with app.test_request_context(
        headers={DEADLINE_HEADER: "2000"}, environ_base={ARRIVED_KEY: time.monotonic() - 0.5}
    ):
        assert remaining_budget() == pytest.approx(1.5, abs=0.02)
    for bad in ("-5", "1e3", "soon", "9" * 20):
        with app.test_request_context(headers={DEADLINE_HEADER: bad}):
            assert remaining_budget() is None
