"""``Idempotency-Key`` on ``@idempotent`` views, in process and on real Redis:
first runs, repeats replay, another request is 422, a repeat in flight is 409."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from flask import Blueprint, Flask, jsonify, request
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from lockgate import Problem, Version, Versioning
from lockgate.auth import Auth
from lockgate.runtime import Runtime, idempotent
from tests.runtime.conftest import keys
from tests.servers import free_port
from tests.tokens import ISSUER, mint

ORDERS = "/api/v1/orders"
#: Headers the runtime gives each request of its own: never part of a replay.
PER_REQUEST = {"x-request-id", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"}


@dataclass
class Probe:
    """What the test app's views did: calls per view, and a gate to hold one."""

    calls: Counter[str] = field(default_factory=Counter)
    #: Set by a held view once it runs; it then waits for ``release``.
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    hold: bool = False


def build(probe: Probe, **config: Any) -> Flask:
    app = Flask("idempotency-test")
    app.config.update({"TESTING": True, "LOCKGATE_SERVICE": "shop", **config})
    versioning = Versioning(app, versions=[Version("1")])
    bp = Blueprint("orders", __name__)

    @bp.post("/orders")
    @idempotent()
    def create_order() -> Any:
        probe.calls["create"] += 1
        number = probe.calls["create"]
        if probe.hold and number == 1:
            probe.entered.set()
            assert probe.release.wait(timeout=10)
        body = request.get_json(silent=True) or {}
        if body.get("item") == "sold-out":
            raise Problem(409, "the item is sold out", code="OutOfStock")
        location = f"{ORDERS}/{number}"
        return jsonify(id=number, item=body.get("item")), 201, {"Location": location}

    @bp.post("/baskets")
    @idempotent()
    def create_basket() -> Any:
        probe.calls["basket"] += 1
        return jsonify(id=probe.calls["basket"]), 201

    @bp.post("/payments")
    @idempotent(required=True)
    def pay() -> Any:
        probe.calls["pay"] += 1
        return jsonify(paid=True), 201

    @bp.post("/flaky")
    @idempotent()
    def flaky() -> Any:
        probe.calls["flaky"] += 1
        if probe.calls["flaky"] == 1:
            raise Problem(503, "the warehouse is away", code="Unavailable")
        if probe.calls["flaky"] == 2:
            return jsonify(error="broken"), 500
        if probe.calls["flaky"] == 3:
            raise RuntimeError("the worker fell over")
        if probe.calls["flaky"] == 4:
            raise Problem(429, "the warehouse's budget is spent", code="RateLimited")
        return jsonify(id=probe.calls["flaky"]), 201

    versioning.register_blueprint(bp, version="1")
    Auth(app, issuer=ISSUER, audience="shop", jwks=keys().jwks)
    Runtime(app)
    return app


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "redis":
        return {"REDIS_URL": request.getfixturevalue("redis_url")}
    return {}


@pytest.fixture
def make(backend: dict[str, str]) -> Iterator[Callable[..., tuple[FlaskClient, Probe]]]:
    """Test apps on the parametrized backend; their connections closed afterwards."""
    apps: list[Flask] = []

    def start(**config: Any) -> tuple[FlaskClient, Probe]:
        probe = Probe()
        apps.append(build(probe, **{**backend, **config}))
        return apps[-1].test_client(), probe

    yield start
    for app in apps:
        app.extensions["lockgate.runtime"].close()


def post(
    client: FlaskClient, key: str | None, body: Any = None, path: str = ORDERS, **kw: Any
) -> TestResponse:
    headers = dict(kw.pop("headers", {}))
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(path, json={"item": "tea"} if body is None else body, headers=headers, **kw)


def replayable(response: TestResponse) -> dict[str, str]:
    """The headers a replay repeats: all but the runtime's own per request."""
    return {k: v for k, v in response.headers.items() if k.lower() not in PER_REQUEST}


def test_the_first_runs_and_a_repeat_replays_it_exactly(make: Callable[..., Any]) -> None:
    client, probe = make()
    first = post(client, '"8e03978e-40d5-43e8-bc93-6894a57f9324"')
    assert first.status_code == 201
    assert first.headers["Location"] == f"{ORDERS}/1"
    assert "Idempotent-Replayed" not in first.headers
    again = post(client, '"8e03978e-40d5-43e8-bc93-6894a57f9324"')
    assert probe.calls["create"] == 1  # the view ran once
    assert again.status_code == 201
    assert again.data == first.data
    assert again.headers["Idempotent-Replayed"] == "true"
    assert replayable(again) == {**replayable(first), "Idempotent-Replayed": "true"}
    assert again.headers["X-Request-Id"] != first.headers["X-Request-Id"]  # its own
    # Another key is another request.
    other = post(client, '"another"')
    assert other.status_code == 201
    assert other.headers["Location"] == f"{ORDERS}/2"
    assert probe.calls["create"] == 2


def test_a_4xx_answer_is_kept_and_replayed(make: Callable[..., Any]) -> None:
    client, probe = make()
    first = post(client, '"sold"', {"item": "sold-out"})
    assert first.status_code == 409
    assert first.get_json()["code"] == "OutOfStock"
    again = post(client, '"sold"', {"item": "sold-out"})
    assert (again.status_code, again.data) == (409, first.data)
    assert again.mimetype == "application/problem+json"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert probe.calls["create"] == 1


def test_the_key_with_another_request_is_422(make: Callable[..., Any]) -> None:
    client, probe = make()
    assert post(client, '"k"', {"item": "tea"}).status_code == 201
    tea = {"json": {"item": "tea"}}
    for changed in (
        {"json": {"item": "coffee"}},  # another body
        {"data": '{ "item": "tea" }', "content_type": "application/json"},  # other bytes
        {**tea, "query_string": {"express": "1"}},  # another query
    ):
        refused = client.post(ORDERS, headers={"Idempotency-Key": '"k"'}, **changed)
        assert refused.status_code == 422, changed
        assert refused.mimetype == "application/problem+json"
        assert refused.get_json()["code"] == "IdempotencyKeyReused"
    assert probe.calls["create"] == 1


def test_a_repeat_while_the_first_runs_is_409(make: Callable[..., Any]) -> None:
    client, probe = make()
    probe.hold = True
    answers: list[TestResponse] = []
    first = threading.Thread(target=lambda: answers.append(post(client, '"slow"')))
    first.start()
    try:
        assert probe.entered.wait(timeout=10)
        busy = post(client, '"slow"')
        assert busy.status_code == 409
        assert busy.get_json()["code"] == "IdempotencyKeyInUse"
        assert busy.headers["Retry-After"] == "1"
        # Another request with the key is wrong whether or not the first is done.
        assert post(client, '"slow"', {"item": "coffee"}).status_code == 422
    finally:
        probe.release.set()
        first.join(timeout=10)
    assert answers[0].status_code == 201
    replay = post(client, '"slow"')
    assert (replay.status_code, replay.data) == (201, answers[0].data)
    assert probe.calls["create"] == 1


def test_many_at_once_run_once(make: Callable[..., Any]) -> None:
    client, probe = make()
    barrier = threading.Barrier(20)
    statuses: list[int] = []

    def one() -> None:
        barrier.wait(timeout=10)
        statuses.append(post(client, '"burst"').status_code)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(statuses) == 20
    assert set(statuses) <= {201, 409}
    assert probe.calls["create"] == 1


def test_keys_are_kept_per_client_and_per_route(make: Callable[..., Any]) -> None:
    client, probe = make()
    for address in ("10.0.0.1", "10.0.0.2"):
        answer = post(client, '"shared"', environ_base={"REMOTE_ADDR": address})
        assert answer.status_code == 201
        assert "Idempotent-Replayed" not in answer.headers
    assert probe.calls["create"] == 2
    for client_id in ("client-a", "client-b"):
        token = mint(keys(), aud="shop", sub=client_id, client_id=client_id)
        answer = post(client, '"shared"', headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 201
        assert "Idempotent-Replayed" not in answer.headers
    assert probe.calls["create"] == 4
    # The same client's own repeat is a replay; the key on another route is another.
    token = mint(keys(), aud="shop", sub="client-a", client_id="client-a")
    again = post(client, '"shared"', headers={"Authorization": f"Bearer {token}"})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert post(client, '"shared"', path="/api/v1/baskets").status_code == 201
    assert (probe.calls["create"], probe.calls["basket"]) == (4, 1)


def test_5xx_429_and_exceptions_are_not_kept(make: Callable[..., Any]) -> None:
    client, probe = make()
    path = "/api/v1/flaky"
    assert post(client, '"f"', path=path).status_code == 503  # raised
    assert post(client, '"f"', path=path).status_code == 500  # returned
    with pytest.raises(RuntimeError, match="fell over"):  # TESTING propagates it
        post(client, '"f"', path=path)
    assert post(client, '"f"', path=path).status_code == 429  # "not now", no outcome
    done = post(client, '"f"', path=path)
    assert done.status_code == 201
    assert "Idempotent-Replayed" not in done.headers
    replay = post(client, '"f"', path=path)
    assert (replay.status_code, replay.data) == (201, done.data)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert probe.calls["flaky"] == 5


@pytest.mark.parametrize(
    "value",
    [
        "",
        '""',
        '"open',
        'close"',
        "two words",
        "a,b",
        '"a", "b"',
        '"tab\there"',
        '"caf\xe9"',
        '"back\\slash"',  # an escape of something but " or \
        f'"{"x" * 256}"',
        "x" * 256,
        '"k";Upper=1',  # parameter keys are lowercase
    ],
)
def test_malformed_keys_are_400(make: Callable[..., Any], value: str) -> None:
    client, probe = make()
    refused = post(client, value)
    assert refused.status_code == 400, value
    assert refused.mimetype == "application/problem+json"
    assert refused.get_json()["code"] == "InvalidIdempotencyKey"
    assert probe.calls["create"] == 0


def test_two_fields_are_400(make: Callable[..., Any]) -> None:
    client, probe = make()
    headers = [("Idempotency-Key", '"a"'), ("Idempotency-Key", '"b"')]
    refused = client.post(ORDERS, json={"item": "tea"}, headers=headers)
    assert refused.status_code == 400
    assert refused.get_json()["code"] == "InvalidIdempotencyKey"
    assert probe.calls["create"] == 0


def test_the_forms_of_one_key(make: Callable[..., Any]) -> None:
    """Quoted, bare, with parameters or escapes: the string is the key."""
    client, probe = make()
    assert post(client, '"abc-1"').status_code == 201
    for same in ("abc-1", ' "abc-1" ', '"abc-1";v=1', '"abc-1"; a="x";b=?1;c=tok;d=:AA==:'):
        assert post(client, same).headers.get("Idempotent-Replayed") == "true", same
    assert post(client, '"say \\"hi\\" \\\\"').status_code == 201
    assert post(client, '"say \\"hi\\" \\\\"').headers["Idempotent-Replayed"] == "true"
    assert post(client, '"say \\"hi\\" \\\\";x').headers["Idempotent-Replayed"] == "true"
    longest = f'"{"k" * 255}"'
    assert post(client, longest).status_code == 201
    assert post(client, "k" * 255).headers["Idempotent-Replayed"] == "true"
    assert probe.calls["create"] == 3


def test_without_a_key_every_request_runs(make: Callable[..., Any]) -> None:
    client, probe = make()
    answers = [post(client, None) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert all("Idempotent-Replayed" not in a.headers for a in answers)
    assert probe.calls["create"] == 3


def test_a_required_key(make: Callable[..., Any]) -> None:
    client, probe = make()
    refused = post(client, None, path="/api/v1/payments")
    assert refused.status_code == 400
    assert refused.get_json()["code"] == "IdempotencyKeyMissing"
    assert probe.calls["pay"] == 0
    assert post(client, '"p"', path="/api/v1/payments").status_code == 201
    assert post(client, '"p"', path="/api/v1/payments").headers["Idempotent-Replayed"] == "true"
    assert probe.calls["pay"] == 1


def test_a_lost_first_attempt_frees_its_key_after_the_lock_ttl(
    make: Callable[..., Any],
) -> None:
    """A first attempt that never finishes (its worker died) holds the key for
    LOCKGATE_IDEMPOTENCY_LOCK_TTL only; the retry after it runs and is kept."""
    client, probe = make(LOCKGATE_IDEMPOTENCY_LOCK_TTL=1)
    probe.hold = True
    lost = threading.Thread(target=lambda: post(client, '"crash"'))
    lost.start()
    try:
        assert probe.entered.wait(timeout=10)
        started = time.monotonic()
        assert post(client, '"crash"').status_code == 409
        time.sleep(max(0.0, 1.2 - (time.monotonic() - started)))
        retry = post(client, '"crash"')
        assert retry.status_code == 201
        assert retry.headers["Location"] == f"{ORDERS}/2"
    finally:
        probe.release.set()
        lost.join(timeout=10)
    # The attempt that lost its reservation did not overwrite the retry's answer.
    replay = post(client, '"crash"')
    assert (replay.headers["Location"], replay.data) == (f"{ORDERS}/2", retry.data)
    assert probe.calls["create"] == 2


def test_an_answer_past_the_lock_ttl_is_kept_if_no_repeat_took_the_key(
    make: Callable[..., Any],
) -> None:
    client, probe = make(LOCKGATE_IDEMPOTENCY_LOCK_TTL=0.5)
    probe.hold = True
    answers: list[TestResponse] = []
    slow = threading.Thread(target=lambda: answers.append(post(client, '"late"')))
    slow.start()
    try:
        assert probe.entered.wait(timeout=10)
        time.sleep(0.7)
    finally:
        probe.release.set()
        slow.join(timeout=10)
    assert answers[0].status_code == 201
    replay = post(client, '"late"')
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.data == answers[0].data
    assert probe.calls["create"] == 1


def test_answers_are_kept_a_day_in_redis(redis_url: str) -> None:
    probe = Probe()
    app = build(probe, REDIS_URL=redis_url)
    try:
        assert post(app.test_client(), '"day"').status_code == 201
        store = redis.Redis.from_url(redis_url)
        found = list(store.scan_iter("lockgate:idem:shop:*"))
        assert len(found) == 1
        assert 86_000 < store.ttl(found[0]) <= 86_400
        store.close()
    finally:
        app.extensions["lockgate.runtime"].close()


def test_redis_down_refuses_keyed_requests_and_runs_none() -> None:
    """No key store, no keyed request: 503 before the view runs, so a retry
    cannot create twice; requests without a key still run."""
    probe = Probe()
    app = build(probe, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    try:
        client = app.test_client()
        refused = post(client, '"down"')
        assert refused.status_code == 503
        assert refused.get_json()["code"] == "IdempotencyUnavailable"
        assert refused.headers["Retry-After"] == "5"
        assert probe.calls["create"] == 0
        assert post(client, None).status_code == 201
        assert probe.calls["create"] == 1
    finally:
        app.extensions["lockgate.runtime"].close()
