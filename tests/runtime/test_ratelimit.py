"""Per-client limits: headers, 429 problems, buckets, proxies, TTLs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from flask import Flask


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "redis":
        return {"REDIS_URL": request.getfixturevalue("redis_url")}
    return {}


def test_headers_and_the_429(make_app: Callable[..., Flask], backend: dict[str, str]) -> None:
    client = make_app(LOCKGATE_RATE_LIMIT="3/minute", **backend).test_client()
    remaining = []
    for _ in range(3):
        response = client.get("/api/v2/things")
        assert response.status_code == 200
        assert response.headers["RateLimit-Limit"] == "3"
        assert 0 < int(response.headers["RateLimit-Reset"]) <= 60
        remaining.append(int(response.headers["RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    refused = client.get("/api/v2/things")
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    assert refused.get_json()["code"] == "RateLimited"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["API-Version"] == "2"


def test_a_retired_version_answers_410_whatever_the_budget(
    make_app: Callable[..., Flask], backend: dict[str, str]
) -> None:
    client = make_app(LOCKGATE_RATE_LIMIT="2/minute", **backend).test_client()
    assert [client.get("/api/v2/things").status_code for _ in range(3)] == [200, 200, 429]
    for _ in range(3):
        retired = client.get("/api/v0/things")
        assert retired.status_code == 410
        assert retired.get_json()["code"] == "ApiVersionSunset"
        assert "RateLimit-Limit" not in retired.headers


def test_deprecated_versions_have_their_own_lower_budget(
    make_app: Callable[..., Flask], backend: dict[str, str]
) -> None:
    client = make_app(
        LOCKGATE_RATE_LIMIT="5/minute", LOCKGATE_RATE_LIMIT_DEPRECATED="2/minute", **backend
    ).test_client()
    statuses = [client.get("/api/v1/things").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert client.get("/api/v1/things").headers["RateLimit-Limit"] == "2"
    # the current version's budget is untouched
    assert client.get("/api/v2/things").headers["RateLimit-Remaining"] == "4"


def test_route_and_version_limits(make_app: Callable[..., Flask], backend: dict[str, str]) -> None:
    client = make_app(
        LOCKGATE_RATE_LIMIT="100/minute", LOCKGATE_RATE_LIMIT_VERSIONS={"1": "1/minute"}, **backend
    ).test_client()
    assert [client.get("/api/v2/scarce").status_code for _ in range(3)] == [200, 200, 429]
    assert [client.get("/api/v1/things").status_code for _ in range(2)] == [200, 429]


def test_neutral_routes_are_not_limited(make_app: Callable[..., Flask]) -> None:
    client = make_app(LOCKGATE_RATE_LIMIT="1/minute").test_client()
    assert all(client.get("/healthz").status_code == 200 for _ in range(5))
    assert "RateLimit-Limit" not in client.get("/healthz").headers


def test_clients_are_counted_apart(make_app: Callable[..., Flask]) -> None:
    client = make_app(LOCKGATE_RATE_LIMIT="1/minute").test_client()
    one = {"REMOTE_ADDR": "10.0.0.1"}
    two = {"REMOTE_ADDR": "10.0.0.2"}
    assert client.get("/api/v2/things", environ_base=one).status_code == 200
    assert client.get("/api/v2/things", environ_base=one).status_code == 429
    assert client.get("/api/v2/things", environ_base=two).status_code == 200


def test_a_forged_forwarded_for_does_not_reset_the_limit(make_app: Callable[..., Flask]) -> None:
    client = make_app(LOCKGATE_RATE_LIMIT="2/minute", LOCKGATE_TRUSTED_PROXIES=1).test_client()
    proxy = {"REMOTE_ADDR": "10.9.9.9"}
    statuses = []
    for forged in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        # the trusted proxy appends the address it saw; the client's own entry is forged
        headers = {"X-Forwarded-For": f"{forged}, 203.0.113.7"}
        statuses.append(
            client.get("/api/v2/things", headers=headers, environ_base=proxy).status_code
        )
    assert statuses == [200, 200, 429]
    # another real client behind the same proxy has its own budget
    other = {"X-Forwarded-For": "203.0.113.8"}
    assert client.get("/api/v2/things", headers=other, environ_base=proxy).status_code == 200


def test_without_trusted_proxies_the_header_is_ignored(make_app: Callable[..., Flask]) -> None:
    client = make_app(LOCKGATE_RATE_LIMIT="1/minute").test_client()
    assert client.get("/api/v2/things", headers={"X-Forwarded-For": "1.1.1.1"}).status_code == 200
    assert client.get("/api/v2/things", headers={"X-Forwarded-For": "2.2.2.2"}).status_code == 429


def test_every_limiter_key_has_a_ttl(make_app: Callable[..., Flask], redis_url: str) -> None:
    client = make_app(LOCKGATE_RATE_LIMIT="5/minute", REDIS_URL=redis_url).test_client()
    for path in ("/api/v2/things", "/api/v1/things", "/api/v2/scarce", "/api/v2/scarce"):
        client.get(path)
    store = redis.Redis.from_url(redis_url)
    keys = list(store.scan_iter("lockgate:rl:*"))
    assert len(keys) >= 3
    assert all(0 < store.ttl(key) <= 60 for key in keys)
    store.close()


def test_deprecated_default_is_half_the_normal_limit(make_app: Callable[..., Flask]) -> None:
    client = make_app(LOCKGATE_RATE_LIMIT="10/minute").test_client()
    assert client.get("/api/v1/things").headers["RateLimit-Limit"] == "5"
    assert client.get("/api/v2/things").headers["RateLimit-Limit"] == "10"
