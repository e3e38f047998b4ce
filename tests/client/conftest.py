"""Targets served for real (werkzeug in a thread, or gunicorn with several
workers), and a Redis server of these tests' own.

Their own Redis, not the shared one of ``tests/conftest.py``: breaker state
must survive a whole test, and another run of the suite on the same machine
empties the shared databases whenever its tests start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import redis
from flask import Flask
from werkzeug.serving import make_server

from tests.servers import free_port, stop, wait_until_up

from .target import create_app

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).parent / "gunicorn"


@contextmanager
def serve_in_thread(app: Flask, port: int | None = None) -> Iterator[str]:
    """``app`` on werkzeug's threaded server at 127.0.0.1; its base URL."""
    server = make_server("127.0.0.1", port or free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class Gunicorn:
    """The target under gunicorn (sync workers: no keep-alive, so a stopped
    server refuses at once); :meth:`start` and :meth:`stop` by PID."""

    def __init__(self, redis_url: str, log: Path, workers: int = 2) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.redis_url = redis_url
        self.log = log
        self.workers = workers
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        output = self.log.open("a")
        self.process = subprocess.Popen(
            [
                str(GUNICORN),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                "--graceful-timeout",
                "2",
                "tests.client.target:create_app()",
            ],
            cwd=ROOT,
            env={**os.environ, "TARGET_REDIS_URL": self.redis_url},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        output.close()
        wait_until_up(self.process, self.base, self.log)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, timeout=10)
            self.process = None


@pytest.fixture(scope="session")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server on a free port for this session, stopped by its PID."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        stop(process, timeout=5)


@pytest.fixture
def redis_url(own_redis: str) -> Iterator[str]:
    """This session's Redis, emptied before and after each test."""
    client = redis.Redis.from_url(own_redis)
    client.flushdb()
    yield own_redis
    client.flushdb()
    client.close()


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def name() -> str:
    """A target name of the test's own (breakers and budgets are per target)."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def target(redis_url: str) -> Iterator[str]:
    """The target app on werkzeug in a thread; its base URL."""
    with serve_in_thread(create_app(redis_url)) as base:
        yield base


@pytest.fixture
def served(redis_url: str) -> Iterator[Callable[..., str]]:
    """Serve the target app with extra config (``LOCKGATE_CLIENT_*``...)."""
    with ExitStack() as stack:

        def serve(**config: object) -> str:
            return stack.enter_context(serve_in_thread(create_app(redis_url, **config)))

        yield serve


@pytest.fixture
def gunicorn(redis_url: str, tmp_path: Path) -> Iterator[Gunicorn]:
    server = Gunicorn(redis_url, tmp_path / "gunicorn.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
