"""Retries: only where safe, with full-jitter backoff, honouring Retry-After, under a budget.

Every count is taken at the target (in Redis), never from the client itself.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from lockgate.client import (
    BUDGET_FLOOR,
    BUDGET_RATIO,
    BreakerSettings,
    ServiceClient,
    Timeouts,
    UpstreamUnavailable,
)
from tests.servers import free_port

from .target import call_times, calls

#: A breaker that never opens, to watch the retries alone.
NO_BREAKER = BreakerSettings(failures=1_000_000, min_calls=1_000_000)


def client(name: str, base: str, store: redis.Redis, **options: object) -> ServiceClient:
    options.setdefault("breaker", NO_BREAKER)
    return ServiceClient(name, base_url=base, redis=store, **options)  # type: ignore[arg-type]


def test_a_get_that_fails_once_succeeds_with_exactly_one_retry(
    target: str, store: redis.Redis, name: str
) -> None:
    response = client(name, target, store).get(f"/flaky/{name}", params={"fail": 1})
    assert response.status_code == 200
    assert calls(store, name) == 2


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_other_idempotent_methods_are_retried(
    target: str, store: redis.Redis, name: str, method: str
) -> None:
    response = client(name, target, store).request(method, f"/flaky/{name}?fail=1")
    assert response.status_code == 200
    assert calls(store, name) == 2


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_post_or_patch_without_a_key_is_never_retried(
    target: str, store: redis.Redis, name: str, method: str
) -> None:
    response = client(name, target, store).request(method, f"/flaky/{name}?fail=1")
    assert response.status_code == 503  # the answer, handed back as it came
    assert calls(store, name) == 1


def test_a_post_with_an_idempotency_key_is_retried_with_the_same_key(
    target: str, store: redis.Redis, name: str
) -> None:
    response = client(name, target, store).post(
        f"/flaky/{name}?fail=1", json={"a": 1}, idempotency_key='k-1 "quoted"'
    )
    assert response.status_code == 200
    assert calls(store, name) == 2
    # An RFC 8941 string: quoted, the inner quotes escaped.
    assert response.json()["key"] == '"k-1 \\"quoted\\""'


def test_at_most_two_retries(target: str, store: redis.Redis, name: str) -> None:
    response = client(name, target, store).get(f"/flaky/{name}?fail=10&status=502")
    assert response.status_code == 502
    assert calls(store, name) == 3


def test_a_500_or_a_404_is_an_answer_not_retried(
    target: str, store: redis.Redis, name: str
) -> None:
    users = client(name, target, store)
    assert users.get(f"/flaky/{name}?fail=1&status=500").status_code == 500
    assert calls(store, name) == 1
    assert users.get(f"/flaky/{name}-404?fail=1&status=404").status_code == 404
    assert calls(store, f"{name}-404") == 1


def test_429_waits_as_long_as_retry_after_says(target: str, store: redis.Redis, name: str) -> None:
    response = client(name, target, store).get(f"/flaky/{name}?fail=1&status=429&retry_after=1")
    assert response.status_code == 200
    first, second = call_times(store, name)
    assert 1.0 <= second - first < 1.0 + 0.2 + 0.3  # Retry-After, the jitter, slack


def test_a_retry_after_beyond_the_deadline_answers_at_once(
    target: str, store: redis.Redis, name: str
) -> None:
    users = client(name, target, store, timeouts=Timeouts(deadline=2.0))
    started = time.monotonic()
    response = users.get(f"/flaky/{name}?fail=1&status=503&retry_after=30")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    # No wait at all: waiting would be the 30 s asked for; the bound is the
    # deadline, not a guess at the machine's speed (one call took 1.5 s in CI).
    assert time.monotonic() - started < 2.0
    assert calls(store, name) == 1


def test_a_target_that_refuses_connections_is_503_after_the_retries(
    store: redis.Redis, name: str
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UpstreamUnavailable) as raised:
        client(name, nobody, store).get("/anything")
    assert raised.value.code == 503
    assert raised.value.problem_code == "UpstreamUnavailable"
    assert raised.value.extra_headers["Retry-After"] == "1"
    assert "could not be reached" in str(raised.value.description)


def test_the_retry_budget_caps_retries_in_a_full_outage(
    target: str, store: redis.Redis, name: str
) -> None:
    """200 calls to a target answering 503 to all: retries stay within 10 % of
    the calls plus the floor, instead of tripling the load."""
    users = client(name, target, store)
    started = time.monotonic()
    for _ in range(200):
        assert users.get(f"/flaky/{name}?fail=100000").status_code == 503
    assert time.monotonic() - started < 10  # one budget window
    reached = calls(store, name)
    assert 200 < reached <= 200 + 200 * BUDGET_RATIO + BUDGET_FLOOR


class ClosingServer:
    """An HTTP/1.1 server on a loopback port that answers the first request
    of each connection, keep-alive, and closes the connection when the next
    one arrives, unanswered: a server closing a kept-alive connection just as
    a request goes out on it (``reset``: with an RST instead of a FIN)."""

    def __init__(self, *, reset: bool) -> None:
        self.reset = reset
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _read_request(self, stream: Any) -> bytes | None:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = stream.readline()
            if not line:
                return None
            head += line
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        return head + (stream.read(int(length[1])) if length else b"")

    def _answer(self, connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as stream:
            first = self._read_request(stream)
            if first is None:
                return
            self.requests.append(first)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            second = self._read_request(stream)
            if second is None:
                return
            self.requests.append(second)
            if self.reset:
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(params=["closed", "reset"])
def closing(request: pytest.FixtureRequest) -> Iterator[ClosingServer]:
    server = ClosingServer(reset=request.param == "reset")
    yield server
    server.close()


def test_a_get_on_a_kept_alive_connection_closed_under_it_is_sent_again(
    closing: ClosingServer, store: redis.Redis, name: str
) -> None:
    users = client(name, closing.base, store)
    assert users.get("/first").status_code == 200
    # Sent on the kept-alive connection, which the server closes unanswered:
    # sent again on a new one (RFC 9112 9.3.1), never a 503 for the caller.
    response = users.get("/second")
    assert response.status_code == 200, response.text
    assert [r.split(b" ")[1] for r in closing.requests] == [b"/first", b"/second", b"/second"]


def test_a_post_without_a_key_on_a_closed_connection_is_not_sent_again(
    closing: ClosingServer, store: redis.Redis, name: str
) -> None:
    users = client(name, closing.base, store)
    assert users.get("/first").status_code == 200
    with pytest.raises(UpstreamUnavailable):
        users.post("/orders", json={"n": 1})
    assert len(closing.requests) == 2  # the server may have acted on it: once only
    # With a key it may be sent again: on a kept-alive connection again first.
    assert users.get("/warm").status_code == 200
    keyed = users.post("/orders", json={"n": 2}, idempotency_key="order-2")
    assert keyed.status_code == 200
    sent = closing.requests[3:]
    assert [r.split(b"\r\n\r\n")[1] for r in sent] == [b'{"n":2}'] * 2, sent
    assert all(b'idempotency-key: "order-2"' in r.lower() for r in sent), sent
