"""Helpers that start real servers (`lockgate run`, `lockgate serve`) as subprocesses."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import sqlalchemy

from lockgate.fleet.database import normalize_url

ROOT = Path(__file__).resolve().parents[1]
LOCKGATE = Path(sys.executable).parent / "lockgate"
TEST_DATABASE_URL = normalize_url(
    os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


#: Every scope of the reference fleet.
ALL_SCOPES = "ops:read orders:read orders:write users:read users:write"


def token_for(base: str, client_id: str, secret: str, scope: str | None = None) -> str:
    """An access token of the client credentials grant from the fleet at ``base``."""
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    response = httpx.post(f"{base}/oauth/token", data=form, auth=(client_id, secret), timeout=10)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


class Fleet:
    """A running `lockgate run` and HTTP clients bound to it.

    ``http`` carries a token of the development client (every scope) that
    `lockgate run` printed on its first start; ``anonymous`` carries none.
    """

    def __init__(
        self, process: subprocess.Popen[str], base: str, log: Path, env: dict[str, str]
    ) -> None:
        self.process = process
        self.base = base
        #: The environment it runs in (its data directory, its database).
        self.env = env
        #: What the server printed (JSON access log lines among it).
        self.log = log
        self.client_id, self.client_secret = development_client(log.read_text())
        self.anonymous = httpx.Client(base_url=base, timeout=10)
        self.http = httpx.Client(
            base_url=base,
            timeout=10,
            headers={"Authorization": f"Bearer {self.token()}"},
        )

    def token(self, scope: str | None = None) -> str:
        """A fresh token of the development client, for ``scope`` (default: all)."""
        return token_for(self.base, self.client_id, self.client_secret, scope)

    def close(self) -> None:
        self.http.close()
        self.anonymous.close()

    def create_client(self, name: str, scopes: str) -> tuple[str, str]:
        """``lockgate clients create`` in the fleet's environment: (id, secret)."""
        return create_client(self.env, name, scopes)


def create_client(
    env: dict[str, str], name: str, scopes: str, manifest: Path | None = None
) -> tuple[str, str]:
    """``lockgate clients create NAME --scopes ... --json`` in ``env``: (id, secret)."""
    where = ["--manifest", str(manifest)] if manifest else []
    result = subprocess.run(
        [str(LOCKGATE), "clients", "create", name, "--scopes", scopes, "--json", *where],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    made = json.loads(result.stdout)
    return made["client_id"], made["client_secret"]


def development_client(output: str) -> tuple[str, str]:
    """The development client's id and secret, as `lockgate run` printed them."""
    found = dict(re.findall(r"^\s*(client_id|client_secret):\s+(\S+)$", output, re.MULTILINE))
    assert set(found) == {"client_id", "client_secret"}, output[-3000:]
    return found["client_id"], found["client_secret"]


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """``check()``'s first truthy answer, asked every 0.2 s for ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def wait_until_up(process: subprocess.Popen[str], base: str, log: Path) -> None:
    """Wait for ``base``/healthz to answer 200; fail with the server's output if it dies."""
    deadline = time.monotonic() + 60  # generous: CI machines are shared
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the server exited {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{base}/healthz did not answer within 60 s:\n{log.read_text()}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[str], timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_fleet(
    tmp: Path, env: dict[str, str] | None = None, *, jobs: bool = False
) -> Iterator[Fleet]:
    """`lockgate run` in ``tmp``; its job workers only with ``jobs`` (the suites
    that test jobs start their own, and the rest need none)."""
    port = free_port()
    environment = {
        **os.environ,
        "LOCKGATE_DATA_DIR": str(tmp / "data"),
        **(env or {}),
    }
    tmp.mkdir(parents=True, exist_ok=True)
    # A file, not a pipe: a pipe nobody reads fills up and stalls the server's logging.
    log = (tmp / "lockgate-run.log").open("w")
    process = subprocess.Popen(
        [
            str(LOCKGATE),
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--jobs" if jobs else "--no-jobs",
        ],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, base, tmp / "lockgate-run.log")
        fleet = Fleet(process, base, tmp / "lockgate-run.log", environment)
        try:
            yield fleet
        finally:
            fleet.close()
    finally:
        stop(process)
        log.close()


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema in the test database; its URL puts it first on the search path."""
    schema = f"lockgate_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(TEST_DATABASE_URL)
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
        separator = "&" if "?" in TEST_DATABASE_URL else "?"
        yield f"{TEST_DATABASE_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def schemathesis(
    document_url: str,
    *,
    seed: int,
    max_time: int,
    cwd: Path,
    token: str | None = None,
    missing_data: bool = False,
) -> str:
    """Run schemathesis's CLI on one OpenAPI document (every check, every phase,
    a fixed seed, a time budget, no example database), with ``token`` on every
    request (its ``ignored_auth`` check then also sends none, and wants a 401);
    assert it found nothing (``missing_data``: but for its warning that the
    ids it made up named nothing), and return its output for further checks."""
    command = [
        str(SCHEMATHESIS),
        "run",
        document_url,
        "--checks=all",
        f"--seed={seed}",
        f"--max-time={max_time}",
        "--workers=1",
        "--request-timeout=10",
        # Nothing is kept between runs: the same seed gives the same cases.
        "--generation-database=none",
        "--no-color",
        # DELETE of a job cancels it, and the job stays readable: its status
        # says it was cancelled (a job resource's contract, not a deletion).
        "--exclude-checks=use_after_free",
        *(["--header", f"Authorization: Bearer {token}"] if token else []),
    ]
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=max_time + 120
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-30000:]
    if missing_data:
        # Its generated ids rarely name data that exists (orders of users it
        # cannot know): that warning is expected; every case must still pass.
        assert "Missing test data" in output or "No issues found" in output, output[-5000:]
        assert re.search(r"(\d+) generated, \1 passed", output), output[-5000:]
    else:
        assert "No issues found" in output, output[-5000:]
    return output
