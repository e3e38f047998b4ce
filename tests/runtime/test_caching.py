"""ETags, 304s, Cache-Control and server-side cached reads."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from tests.runtime.conftest import ops


@pytest.fixture(params=["memory", "redis", "memcached"])
def client(request: pytest.FixtureRequest, make_app: Callable[..., Flask]) -> Any:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        return make_app(REDIS_URL=url).test_client()
    if request.param == "memcached":
        # Cached reads on Memcached, limits on Redis; each test its own namespace.
        return make_app(
            REDIS_URL=request.getfixturevalue("redis_url"),
            LOCKGATE_CACHE_URL=request.getfixturevalue("memcached_url"),
            LOCKGATE_SERVICE=f"things-{uuid.uuid4().hex[:8]}",
        ).test_client()
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
        assert client.get(probe, headers=ops()).headers["Cache-Control"] == "no-store", probe
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
    make_app: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limiter's count and the cache's two reads go in one send: counted on
    this process's connections (the server's own statistics are shared with
    whatever else runs on it)."""
    from redis.connection import Connection

    client = make_app(REDIS_URL=redis_url, LOCKGATE_RATE_LIMIT="50/minute").test_client()
    client.get("/api/v2/things")  # stores the entry
    sends: list[bytes] = []
    original = Connection.send_packed_command

    def counting(self: Connection, command: Any, check_health: bool = True) -> None:
        chunks = command if isinstance(command, list) else [command]
        sends.append(b"".join(bytes(chunk) for chunk in chunks))
        original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counting)
    for _ in range(5):
        hit = client.get("/api/v2/things")
        assert hit.headers["X-Cache"] == "hit"
        assert hit.headers["RateLimit-Remaining"]
    monkeypatch.undo()
    # one send per read, holding the EVAL and the MGET: no second round trip
    assert len(sends) == 5
    assert all(b"EVAL" in sent and b"MGET" in sent and b"EVALSHA" not in sent for sent in sends)
    # and a write still shows at once
    assert client.post("/api/v2/things").status_code == 201
    fresh = client.get("/api/v2/things")
    assert fresh.headers["X-Cache"] == "miss"
    assert fresh.get_json()["count"] == 1


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


def _one_view_app(name: str, path: str, view: Callable[[], Any], clock: Any, redis_url: str) -> Any:
    """An app serving ``view`` at ``/api/v1{path}`` in one version, with the
    runtime on Redis; returns its test client and runtime state."""
    from flask import Blueprint

    from lockgate import Version, Versioning
    from lockgate.runtime import Runtime

    app = Flask(name)
    app.config.update(TESTING=True, REDIS_URL=redis_url, LOCKGATE_SERVICE=name)
    versioning = Versioning(app, versions=[Version("1")], clock=clock)
    api = Blueprint("api", __name__)
    api.add_url_rule(path, view_func=view, methods=["GET"])
    versioning.register_blueprint(api, version="1")
    return app.test_client(), Runtime().init_app(app)


def test_a_weak_etag_stays_weak_when_served_from_the_cache(clock: Any, redis_url: str) -> None:
    from flask import jsonify

    from lockgate.runtime import cached

    @cached("doc")
    def doc() -> Any:
        response = jsonify(revision=7)
        response.set_etag("rev-7", weak=True)
        return response

    client, state = _one_view_app("weak", "/doc", doc, clock, redis_url)
    miss, hit = client.get("/api/v1/doc"), client.get("/api/v1/doc")
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("miss", "hit")
    assert miss.headers["ETag"] == hit.headers["ETag"] == 'W/"rev-7"'
    state.close()


def test_memcached_holds_the_reads_and_redis_the_limits(
    make_app: Callable[..., Flask], redis_url: str, memcached_url: str
) -> None:
    import redis
    from pymemcache.client.base import Client

    service = f"split-{uuid.uuid4().hex[:8]}"
    app = make_app(REDIS_URL=redis_url, LOCKGATE_CACHE_URL=memcached_url, LOCKGATE_SERVICE=service)
    client = app.test_client()
    assert client.get("/api/v2/things").headers["X-Cache"] == "miss"
    hit = client.get("/api/v2/things")
    assert hit.headers["X-Cache"] == "hit"
    assert hit.headers["RateLimit-Limit"] == "6000"
    host, port = memcached_url.removeprefix("memcached://").split(":")
    memcached = Client((host, int(port)))
    assert memcached.get(f"lockgate:cache:{service}:v2:/api/v2/things?") is not None
    server = redis.Redis.from_url(redis_url)
    assert not list(server.scan_iter(f"lockgate:cache:{service}:*"))  # no entry on Redis
    assert list(server.scan_iter(f"lockgate:rl:{service}:*"))  # the limits are there
    server.close()
    memcached.close()
    # A write bumps the generation on Memcached (created on first use): no stale read.
    assert client.post("/api/v2/things").status_code == 201
    assert client.get("/api/v2/things").headers["X-Cache"] == "miss"
    assert client.get("/api/v2/things").get_json()["count"] == 1


def test_memcached_down_is_a_miss_not_a_500(make_app: Callable[..., Flask]) -> None:
    from .conftest import memcached_server

    with memcached_server() as url:
        client = make_app(LOCKGATE_CACHE_URL=url, LOCKGATE_SERVICE="down").test_client()
        assert client.get("/api/v2/things").headers["X-Cache"] == "miss"
        assert client.get("/api/v2/things").headers["X-Cache"] == "hit"
    # The server is stopped now.
    for _ in range(2):
        response = client.get("/api/v2/things")
        assert response.status_code == 200
        assert response.headers["X-Cache"] == "miss"
    assert client.post("/api/v2/things").status_code == 201


def test_memcached_keys_stay_valid_for_any_path_and_query(
    make_app: Callable[..., Flask], memcached_url: str
) -> None:
    client = make_app(LOCKGATE_CACHE_URL=memcached_url, LOCKGATE_SERVICE="keys").test_client()
    long = "x" * 400
    for query in (f"?junk={long}", "?q=a%20b%0Ac"):
        assert client.get(f"/api/v2/things{query}").headers["X-Cache"] == "miss"
        assert client.get(f"/api/v2/things{query}").headers["X-Cache"] == "hit"


def test_a_missing_generation_is_created_on_invalidate(memcached_url: str) -> None:
    from lockgate.runtime.memcached import memcached_cache

    cache = memcached_cache(memcached_url, f"gen-{uuid.uuid4().hex[:8]}:", 30)
    assert cache.get("gen:users") is None
    assert cache.inc("gen:users") == 1
    assert cache.inc("gen:users") == 2
    assert cache.get_many("gen:users", "nothing") == [2, None]
    cache.close()


def test_junk_parameters_do_not_multiply_entries(clock: Any, redis_url: str) -> None:
    """The entry key holds only the parameters the view declares it reads."""
    import redis
    from flask import jsonify, request
    from pydantic import BaseModel

    from lockgate import operation
    from lockgate.runtime import cached

    class Page(BaseModel):
        limit: int = 10

    @cached("items")
    @operation(query=Page)
    def items() -> Any:
        return jsonify(limit=Page.model_validate(dict(request.args)).limit)

    client, state = _one_view_app("junk", "/items", items, clock, redis_url)
    assert client.get("/api/v1/items?limit=5").headers["X-Cache"] == "miss"
    for junk in range(20):
        response = client.get(f"/api/v1/items?limit=5&junk{junk}=x&utm={junk}")
        assert response.headers["X-Cache"] == "hit"
        assert response.get_json() == {"limit": 5}
    assert client.get("/api/v1/items?limit=6").headers["X-Cache"] == "miss"
    server = redis.Redis.from_url(redis_url)
    entries = [k for k in server.scan_iter("lockgate:cache:junk:v1:*")]
    assert len(entries) == 2
    server.close()
    state.close()
