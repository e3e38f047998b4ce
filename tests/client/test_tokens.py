"""The service's own token: fetched once, refreshed before it expires, renewed after a 401."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from lockgate.client import ClientCredentials, ServiceClient, UpstreamUnavailable

from .target import CLIENT_ID, CLIENT_SECRET, calls


def users(base: str, store: redis.Redis, name: str, secret: str = CLIENT_SECRET) -> ServiceClient:
    credentials = ClientCredentials(f"{base}/oauth/token", CLIENT_ID, secret, scope="users:read")
    return ServiceClient(name, base_url=base, redis=store, credentials=credentials)


def issued(store: redis.Redis) -> int:
    return int(store.get("tokens") or 0)


def test_one_token_serves_many_calls_and_is_refreshed_before_it_expires(
    target: str, store: redis.Redis, name: str
) -> None:
    """expires_in is 2 s: a call after 80 % of it (1.6 s) gets a new token while
    the old one is still valid; none before."""
    client = users(target, store, name)
    answer = client.get(f"/protected/{name}").json()
    fetched = time.monotonic()  # the token came before this, however slow the call
    for _ in range(19):
        assert answer == {"token": "tok-1", "scope": "users:read"}
        answer = client.get(f"/protected/{name}").json()
    assert answer == {"token": "tok-1", "scope": "users:read"}
    assert issued(store) == 1
    time.sleep(max(0.0, fetched + 1.7 - time.monotonic()))
    assert client.get(f"/protected/{name}").json()["token"] == "tok-2"
    assert store.exists("token:tok-1")  # refreshed while the issuer still held it valid
    assert issued(store) == 2
    assert calls(store, name) == 21  # never a 401 on the way


def test_a_401_drops_the_token_once_and_the_call_goes_again(
    target: str, store: redis.Redis, name: str
) -> None:
    client = users(target, store, name)
    assert client.get(f"/protected/{name}").status_code == 200
    store.delete("token:tok-1")  # revoked at the issuer's end
    response = client.get(f"/protected/{name}")
    assert response.status_code == 200
    assert response.json()["token"] == "tok-2"
    assert issued(store) == 2
    assert calls(store, name) == 3  # the first, the refused one, the one with the new token


def test_a_target_that_refuses_every_token_is_asked_twice_only(
    target: str, store: redis.Redis, name: str
) -> None:
    client = users(target, store, name)
    store.set(f"refuse:{name}", 1)
    # A 401 was refused before any work: safe to send again, even a POST without a key.
    response = client.post(f"/protected/{name}")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert issued(store) == 2  # the first token, and one fresh one after the 401
    assert calls(store, name) == 2


def test_wrong_credentials_are_a_503_for_the_caller(
    target: str, store: redis.Redis, name: str
) -> None:
    client = users(target, store, name, secret="wrong")
    with pytest.raises(UpstreamUnavailable) as raised:
        client.get(f"/protected/{name}")
    assert "token endpoint refused" in str(raised.value.description)
    assert calls(store, name) == 0
    assert int(store.get("token_requests") or 0) == 1
    # Failing fast for a moment: no queue of fetches behind a failing endpoint.
    with pytest.raises(UpstreamUnavailable):
        client.get(f"/protected/{name}")
    assert int(store.get("token_requests") or 0) == 1  # not asked again


def test_threads_starting_together_share_one_fetch(
    target: str, store: redis.Redis, name: str
) -> None:
    client = users(target, store, name)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: client.get(f"/protected/{name}"), range(16)))
    assert {a.json()["token"] for a in answers} == {"tok-1"}
    assert issued(store) == 1
