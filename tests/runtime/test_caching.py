"""ETags, 304s, Cache-Control and server-side cached reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask


@pytest.fixture(params=["memory", "redis"])
def client(request: pytest.FixtureRequest, make_app: Callable[..., Flask]) -> Any:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        return make_app(REDIS_URL=url).test_client()
    return make_app().test_client()


def test_strong_etag_and_304(client: Any) -> None:
    first = client.get("/api/v2/things")
    etag = first.headers["ETag"]
    assert etag.startswith('"')  # strong: no W/ prefix
    again = client.get("/api/v2/things", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.get_data() == b""
    assert again.headers["API-Version"] == "2"
    other = client.get("/api/v2/things", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200


def test_cache_control_per_route(client: Any) -> None:
    assert client.get("/api/v2/things").headers["Cache-Control"] == "public, max-age=30"
    assert client.get("/api/v1/things").headers["Cache-Control"] == "no-cache"
    for probe in ("/healthz", "/readyz", "/metrics", "/usage"):
        assert client.get(probe).headers["Cache-Control"] == "no-store", probe
    for document in ("/api/versions", "/api/v2/openapi.json"):
        assert client.get(document).headers["Cache-Control"] == "public, max-age=60"


def test_versions_never_share_an_entry(client: Any) -> None:
    assert client.get("/api/v1/things").get_json()["version"] == 1
    assert client.get("/api/v2/things").get_json()["version"] == 2
    assert client.get("/api/v1/things").headers["X-Cache"] == "hit"
    assert client.get("/api/v1/things").get_json()["version"] == 1
    assert client.get("/api/things", headers={"API-Version": "1"}).get_json()["version"] == 1


def test_a_write_invalidates_at_once(client: Any) -> None:
    assert client.get("/api/v2/things").get_json()["count"] == 0
    assert client.get("/api/v2/things").headers["X-Cache"] == "hit"
    for expected in (1, 2, 3):
        assert client.post("/api/v2/things").status_code == 201
        after = client.get("/api/v2/things")
        assert after.get_json()["count"] == expected
        assert after.headers["X-Cache"] == "miss"
        assert client.get("/api/v1/things").get_json()["count"] == expected


def test_query_is_canonical(client: Any) -> None:
    client.get("/api/v2/things?b=2&a=1")
    assert client.get("/api/v2/things?a=1&b=2").headers["X-Cache"] == "hit"
    assert client.get("/api/v2/things?a=1&b=3").headers["X-Cache"] == "miss"


def test_server_side_cache_can_be_turned_off(make_app: Any) -> None:
    client = make_app(LOCKGATE_CACHE_ENABLED=False).test_client()
    client.get("/api/v2/things")
    second = client.get("/api/v2/things")
    assert "X-Cache" not in second.headers
    assert second.headers["ETag"]  # HTTP revalidation still works


def test_on_redis_a_cached_read_shares_the_limiters_round_trip(
    make_app: Any, redis_url: str
) -> None:
    """The limiter's count and the cache's two reads go as one pipeline."""
    import redis

    client = make_app(REDIS_URL=redis_url, LOCKGATE_RATE_LIMIT="50/minute").test_client()
    client.get("/api/v2/things")  # stores the entry
    server = redis.Redis.from_url(redis_url)

    def calls(command: str) -> int:
        stats = server.info("commandstats").get(f"cmdstat_{command}", {})
        return int(stats.get("calls", 0))

    before = {name: calls(name) for name in ("eval", "evalsha", "mget")}
    for _ in range(5):
        hit = client.get("/api/v2/things")
        assert hit.headers["X-Cache"] == "hit"
        assert hit.headers["RateLimit-Remaining"]
    after = {name: calls(name) for name in ("eval", "evalsha", "mget")}
    # one pipelined EVAL + MGET per read: no separate EVALSHA, no second MGET
    assert after["eval"] - before["eval"] == 5
    assert after["mget"] - before["mget"] == 5
    assert after["evalsha"] == before["evalsha"]
    # and a write still shows at once
    assert client.post("/api/v2/things").status_code == 201
    fresh = client.get("/api/v2/things")
    assert fresh.headers["X-Cache"] == "miss"
    assert fresh.get_json()["count"] == 1
    server.close()


def test_an_unreadable_entry_is_a_miss_not_a_500(make_app: Any, redis_url: str) -> None:
    import redis

    for limits in ("50/minute", ""):  # with the limiter's shared round trip, and without
        client = make_app(REDIS_URL=redis_url, LOCKGATE_RATE_LIMIT=limits).test_client()
        server = redis.Redis.from_url(redis_url)
        server.set("lockgate:cache:things:v2:/api/v2/things?", b"!")  # not a pickle
        first = client.get("/api/v2/things")
        assert first.status_code == 200, limits
        assert first.headers["X-Cache"] == "miss"
        assert client.get("/api/v2/things").headers["X-Cache"] == "hit"  # rewritten
        server.close()


def test_a_weak_etag_stays_weak_when_served_from_the_cache(clock: Any, redis_url: str) -> None:
    from flask import Blueprint, Flask, jsonify

    from lockgate import Version, Versioning
    from lockgate.runtime import Runtime, cached

    app = Flask("weak")
    app.config.update(TESTING=True, REDIS_URL=redis_url, LOCKGATE_SERVICE="weak")
    versioning = Versioning(app, versions=[Version("1")], clock=clock)
    api = Blueprint("api", __name__)

    @api.get("/doc")
    @cached("doc")
    def doc() -> Any:
        response = jsonify(revision=7)
        response.set_etag("rev-7", weak=True)
        return response

    versioning.register_blueprint(api, version="1")
    Runtime(app)
    client = app.test_client()
    miss, hit = client.get("/api/v1/doc"), client.get("/api/v1/doc")
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("miss", "hit")
    assert miss.headers["ETag"] == hit.headers["ETag"] == 'W/"rev-7"'
