"""Runtime(app, **settings): arguments > app.config > LOCKGATE_* environment > defaults,
one Redis client for every piece, and the pieces reachable on the app."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from flask import Blueprint, Flask

from lockgate import Version, Versioning
from lockgate.runtime import DEFAULTS, Health, Runtime, RuntimeState, cached


def make(**config: object) -> Flask:
    app = Flask("settings-test")
    app.config.update(config)
    Versioning(app, versions=[Version("1")])
    return app


def test_arguments_win_over_config_over_environment_over_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOCKGATE_CACHE_TTL", "11")
    monkeypatch.setenv("LOCKGATE_RATE_LIMIT", "7/minute")
    monkeypatch.setenv("LOCKGATE_USAGE_RETENTION_DAYS", "5")
    monkeypatch.setenv("LOCKGATE_RATE_LIMIT_VERSIONS", '{"1": "3/minute"}')
    app = make(LOCKGATE_RATE_LIMIT="8/minute", LOCKGATE_USAGE_RETENTION_DAYS=6)
    Runtime(app, LOCKGATE_USAGE_RETENTION_DAYS=9)
    assert app.config["LOCKGATE_USAGE_RETENTION_DAYS"] == 9  # argument
    assert app.config["LOCKGATE_RATE_LIMIT"] == "8/minute"  # config over environment
    assert app.config["LOCKGATE_CACHE_TTL"] == 11  # environment, JSON-decoded
    assert app.config["LOCKGATE_RATE_LIMIT_VERSIONS"] == {"1": "3/minute"}
    assert app.config["LOCKGATE_CACHE_CONTROL"] == DEFAULTS["LOCKGATE_CACHE_CONTROL"]


def test_environment_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/3")
    app = make()
    state = Runtime().init_app(app)
    assert state.redis is not None
    assert state.redis.connection_pool.connection_kwargs["db"] == 3


def test_init_app_arguments_win_over_the_constructor() -> None:
    app = make()
    Runtime(LOCKGATE_CACHE_TTL=5).init_app(app, LOCKGATE_CACHE_TTL=6)
    assert app.config["LOCKGATE_CACHE_TTL"] == 6


def test_a_misspelt_setting_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="LOCKGATE_CACHE_TLL"):
        Runtime(LOCKGATE_CACHE_TLL=5)


def test_registered_twice_is_an_error() -> None:
    app = make()
    Runtime(app)
    with pytest.raises(RuntimeError, match="already registered"):
        Runtime(app)


def redis_sockets() -> int:
    """TCP connections this process holds to port 6379 (from /proc)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port, state, inode = fields[2].rsplit(":", 1)[1], fields[3], fields[9]
            if remote_port == "18EB" and state == "01" and inode in inodes:  # 6379, ESTABLISHED
                count += 1
    return count


def test_the_pieces_share_one_redis_client(redis_url: str) -> None:
    app = Flask("one-redis")
    app.config.update(REDIS_URL=redis_url, LOCKGATE_SERVICE="one-redis", LOCKGATE_USAGE_PUBLIC=True)
    versioning = Versioning(app, versions=[Version("1", deprecated="2026-01-01"), Version("2")])
    bp = Blueprint("things", __name__)

    @bp.get("/things")
    @cached("things")
    def things() -> dict[str, bool]:
        return {"ok": True}

    versioning.register_blueprint(bp, version="1")
    state: RuntimeState = Runtime().init_app(app)
    assert state.redis is not None
    assert app.extensions["lockgate.caching"]._read_client is state.redis
    assert app.extensions["lockgate.usage"].client is state.redis
    client = app.test_client()
    before = redis_sockets()
    # Readiness, the limiter, a cached read (a miss, then a hit) and the usage of
    # a deprecated version, one request after another: one pool, one connection.
    assert client.get("/readyz").status_code == 200
    assert [client.get("/api/v1/things").headers["X-Cache"] for _ in range(2)] == ["miss", "hit"]
    assert client.get("/usage").get_json()[0]["calls"] == 2
    assert redis_sockets() - before == 1


def test_health_checks_belong_to_the_instance() -> None:
    app = make()
    state = Runtime().init_app(app)
    assert isinstance(state.health, Health)
    state.health.add_check("always-down", lambda: 1 / 0)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["failing"] == ["always-down"]
