"""A versioned test app with the whole runtime, on real Redis or in process."""

from __future__ import annotations

import functools
import io
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask, jsonify

from lockgate import Version, Versioning
from lockgate.auth import Auth, KeyStore
from lockgate.runtime import Runtime, cached, invalidate, limit
from lockgate.runtime.logs import configure_logging
from tests.conftest import Clock
from tests.servers import free_port
from tests.tokens import ISSUER, mint


@functools.cache
def keys() -> KeyStore:
    """The test apps' issuer keys (one directory for the session)."""
    return KeyStore(Path(tempfile.mkdtemp(prefix="lockgate-keys-")), retain=timedelta(minutes=11))


def ops() -> dict[str, str]:
    """Headers of an operator: a token with ``ops:read`` (``/usage``, ``/metrics``)."""
    return {"Authorization": f"Bearer {mint(keys(), scope='ops:read', aud='things')}"}


@contextmanager
def memcached_server() -> Iterator[str]:
    """A real memcached (Debian's package) of the test's own, on a free port;
    stopped by its PID afterwards."""
    binary = shutil.which("memcached") or "/usr/bin/memcached"
    port = free_port()
    process = subprocess.Popen(
        [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16", "-u", "root"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"memcached did not start on port {port}") from None
                time.sleep(0.05)
        yield f"memcached://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def memcached_url() -> Iterator[str]:
    with memcached_server() as url:
        yield url


def build(clock: Clock, **config: Any) -> Flask:
    app = Flask("runtime-test")
    app.config.update({"TESTING": True, "LOCKGATE_SERVICE": "things", **config})
    versioning = Versioning(
        app,
        versions=[
            Version("0", sunset="2025-06-30", successor="2"),
            Version("1", deprecated="2026-01-01", successor="2"),
            Version("2"),
        ],
        clock=clock,
    )
    things = {"count": 0}
    v1, v2 = Blueprint("things", __name__), Blueprint("things", __name__)

    @v1.get("/things")
    @cached("things")
    def list_v1() -> Any:
        return jsonify(version=1, count=things["count"])

    @v2.get("/things")
    @cached("things", cache_control="public, max-age=30")
    def list_v2() -> Any:
        return jsonify(version=2, count=things["count"])

    @v2.post("/things")
    def add() -> Any:
        things["count"] += 1
        invalidate("things")
        return jsonify(count=things["count"]), 201

    @v2.get("/scarce")
    @limit("2/minute")
    def scarce() -> Any:
        return jsonify(ok=True)

    versioning.register_blueprint(v1, version="1")
    versioning.register_blueprint(v2, version="2")
    Auth(app, issuer=ISSUER, audience="things", jwks=keys().jwks)
    Runtime(app)
    return app


@pytest.fixture
def make_app(clock: Clock) -> Iterator[Callable[..., Flask]]:
    """Build test apps; their Redis and cache connections are closed afterwards."""
    apps: list[Flask] = []

    def make(**config: Any) -> Flask:
        apps.append(build(clock, **config))
        return apps[-1]

    yield make
    for app in apps:
        app.extensions["lockgate.runtime"].close()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Every JSON log line of the test, in a string."""
    stream = io.StringIO()
    configure_logging(stream)
    yield stream
    configure_logging(sys.stderr)
