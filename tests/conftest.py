"""Shared fixtures: a versioned test app with a fixed, movable clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Blueprint, Flask, jsonify, request
from pydantic import BaseModel

from lockgate import Version, Versioning, current_version, operation

from .servers import Fleet, postgres_schema, running_fleet

#: 2026-06-01: v1 deprecated, v0 retired, v1's brownout and sunset still ahead.
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
BROWNOUT = ("2027-03-01T00:00:00Z", "2027-03-01T02:00:00Z")
POLICY = "https://example.com/deprecations/v1"


class Clock:
    """A clock the tests move by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def example_versions() -> list[Version]:
    return [
        Version("0", sunset="2025-06-30T23:59:59Z", successor="2"),
        Version(
            "1",
            deprecated="2026-01-01",
            sunset="2027-06-30T23:59:59Z",
            policy=POLICY,
            successor="2",
            brownouts=[BROWNOUT],
        ),
        Version("2"),
        Version("3", status="preview"),
    ]


class UserIn(BaseModel):
    name: str


class UserOut(BaseModel):
    id: int
    name: str


def build_app(clock: Clock, **options: Any) -> tuple[Flask, Versioning]:
    """An app with users in v1, v2 and v3, orders only in v2, and neutral routes."""
    app = Flask("testapp")
    app.config["TESTING"] = True
    options.setdefault("versions", example_versions())
    options.setdefault("vendor", "myapp")
    versioning = Versioning(app, clock=clock, **options)

    users = Blueprint("users", __name__, url_prefix="/users")

    @users.get("")
    @operation(response=list[UserOut], summary="List users")
    def list_users() -> Any:
        version = current_version()
        return {
            "version": None if version is None else str(version),
            "self": versioning.url_for("users.get_user", id=7),
        }

    @users.post("")
    @operation(request=UserIn, response=UserOut, status=201, responses={422: "Invalid"})
    def create_user() -> Any:
        """Create a user.

        The name is required.
        """
        return jsonify(id=1, name=(request.get_json(silent=True) or {}).get("name")), 201

    @users.get("/<int:id>")
    def get_user(id: int) -> Any:
        return jsonify(id=id, version=str(current_version()))

    orders = Blueprint("orders", __name__)

    @orders.get("/orders")
    def list_orders() -> Any:
        return jsonify([])

    @versioning.neutral
    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok", version=current_version())

    @versioning.neutral
    @app.get("/api/ping")
    def ping() -> Any:
        return jsonify(pong=True, version=current_version())

    versioning.register_blueprint(users, versions=("1", "2", "3"))
    versioning.register_blueprint(orders, version="2")
    return app, versioning


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app_factory(clock: Clock) -> Callable[..., Flask]:
    def make(**options: Any) -> Flask:
        return build_app(clock, **options)[0]

    return make


@pytest.fixture
def app_and_versioning(clock: Clock) -> tuple[Flask, Versioning]:
    """The test app and its extension, to register more blueprints on."""
    return build_app(clock)


@pytest.fixture
def app(app_factory: Callable[..., Flask]) -> Flask:
    return app_factory()


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)]
)
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """The fleet on SQLite, then the same suite on PostgreSQL."""
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "sqlite":
        with running_fleet(tmp) as fleet:
            yield fleet
    else:
        with postgres_schema() as url, running_fleet(tmp, {"DATABASE_URL": url}) as fleet:
            yield fleet


@pytest.fixture
def start_fleet(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """Start extra fleets with their own environment, stopped after the test."""
    with ExitStack() as stack:

        def start(env: dict[str, str] | None = None) -> Fleet:
            return stack.enter_context(running_fleet(tmp_path / uuid.uuid4().hex[:8], env))

        yield start


REDIS = "redis://127.0.0.1:6379"


@pytest.fixture(scope="session")
def worker_redis_url() -> str:
    """This pytest-xdist worker's Redis database (tests in a worker run one at
    a time), so parallel workers never empty each other's data; for a server
    a module shares, which ``redis_url`` empties around each test."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return f"{REDIS}/{1 + int(worker.removeprefix('gw') or 0) % 15}"


@pytest.fixture
def redis_url(worker_redis_url: str) -> Iterator[str]:
    """A Redis database of the test's own, emptied before and after it."""
    url = worker_redis_url
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()
