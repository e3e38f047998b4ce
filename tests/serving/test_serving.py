"""`lockgate serve` under real multi-worker servers: limits, drain, metrics, Redis loss.

Every behaviour is proven on each server (gunicorn, granian, uWSGI): the tests
take the ``server`` fixture. Every test talks to 127.0.0.1 only, bounds its
requests, and stops its servers (by PID, SIGTERM then SIGKILL).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from tests.servers import create_client, free_port, stop, token_for, unique_email, wait_until_up

LOCKGATE = Path(sys.executable).parent / "lockgate"
MANIFEST = Path(__file__).parent / "servefleet" / "fleet.toml"
ROOT = Path(__file__).resolve().parents[2]
SERVERS = ["gunicorn", "granian", "uwsgi"]
#: How each server logs a worker it starts, the worker's PID captured.
WORKER_STARTED = {
    "gunicorn": r"Booting worker with pid: (\d+)",
    "granian": r"Spawning worker-\d+ with PID: (\d+)",
    "uwsgi": r"spawned uWSGI worker \d+ \(pid: (\d+)",
}
#: Which logger writes the drain's line on SIGTERM: gunicorn's master, or the
#: supervisor around granian and uWSGI.
DRAIN_LOGGER = {
    "gunicorn": "gunicorn.error",
    "granian": "lockgate.serving",
    "uwsgi": "lockgate.serving",
}


class Served:
    def __init__(
        self, process: subprocess.Popen[str], base: str, log: Path, env: dict[str, str]
    ) -> None:
        self.process = process
        self.base = base
        self.log = log
        self.env = env

    def bearer(self, scopes: str = "users:read users:write") -> dict[str, str]:
        """Headers with a token of a client made for ``scopes`` (the reference fleet)."""
        token = token_for(self.base, *create_client(self.env, "tests", scopes.replace(" ", ",")))
        return {"Authorization": f"Bearer {token}"}


@contextmanager
def serving(
    tmp: Path, *args: str, env: dict[str, str] | None = None, manifest: Path = MANIFEST
) -> Iterator[Served]:
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / f"serve-{port}.log"
    log = log_path.open("w")
    environment = {
        **os.environ,
        "LOCKGATE_DATA_DIR": str(tmp / "data"),
        # Scraped without a token here; the token's case is the users service's test.
        "LOCKGATE_METRICS_PUBLIC": "true",
    }
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)  # only a test's own
    environment.update(env or {})
    process = subprocess.Popen(
        [
            str(LOCKGATE),
            "serve",
            "--manifest",
            str(manifest),
            "--bind",
            f"127.0.0.1:{port}",
            "--drain-delay",
            "1",
            "--graceful-timeout",
            "10",
            *args,
        ],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(process, f"http://127.0.0.1:{port}", log_path, environment)
    try:
        wait_until_up(process, served.base, log_path)
        yield served
    finally:
        stop(process)
        log.close()


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs once per server."""
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def plain(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One ``lockgate serve --server <server>`` on defaults, shared by the
    tests that only send it requests (starting one per test was most of
    their time)."""
    with serving(tmp_path_factory.mktemp(f"plain-{server}"), "--server", server) as served:
        yield served


@pytest.fixture(scope="module")
def two_workers(
    server: str, tmp_path_factory: pytest.TempPathFactory, worker_redis_url: str
) -> Iterator[tuple[Served, Path]]:
    """Two workers of the test fleet on Redis, and their metrics directory."""
    tmp = tmp_path_factory.mktemp(f"two-{server}")
    metrics = tmp / "metrics"
    env = {"REDIS_URL": worker_redis_url, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    with serving(tmp, "--server", server, "--workers", "2", env=env) as served:
        yield served, metrics


@pytest.fixture(scope="module")
def reference_fleet(
    server: str, tmp_path_factory: pytest.TempPathFactory, worker_redis_url: str
) -> Iterator[Served]:
    """The reference fleet on four workers sharing Redis."""
    tmp = tmp_path_factory.mktemp(f"fleet-{server}")
    env = {"REDIS_URL": worker_redis_url}
    with serving(
        tmp, "--server", server, "--workers", "4", env=env, manifest=ROOT / "fleet.toml"
    ) as served:
        yield served


@pytest.fixture
def serve(tmp_path: Path, server: str) -> Iterator[Callable[..., Served]]:
    """Start ``lockgate serve --server <server>``; stopped after the test."""
    with ExitStack() as stack:

        def start(*args: str, env: dict[str, str] | None = None, **kw: Path) -> Served:
            return stack.enter_context(serving(tmp_path, "--server", server, *args, env=env, **kw))

        yield start


def concurrently(count: int, call: Callable[[int], object]) -> list[object]:
    """Run ``call`` ``count`` times at once (a barrier releases them together)."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(index: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[index] = call(index)
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.server
def test_exact_limit_across_four_workers(
    serve: Callable[..., Served], server: str, redis_url: str
) -> None:
    served = serve(
        "--workers", "4", env={"REDIS_URL": redis_url, "LOCKGATE_RATE_LIMIT": "25/minute"}
    )

    def get(_: int) -> int:
        with httpx.Client(timeout=30) as client:
            return client.get(f"{served.base}/api/v1/fast").status_code

    statuses = concurrently(60, get)
    assert statuses.count(200) == 25, statuses
    assert statuses.count(429) == 35, statuses
    pids = set(re.findall(WORKER_STARTED[server], served.log.read_text()))
    assert len(pids) == 4
    store = redis.Redis.from_url(redis_url)
    keys = list(store.scan_iter("lockgate:rl:*"))
    assert keys
    assert all(0 < store.ttl(key) <= 60 for key in keys)
    store.close()


@pytest.mark.server
def test_sigterm_drains_in_flight_requests(
    serve: Callable[..., Served], server: str, redis_url: str
) -> None:
    served = serve("--workers", "2", "--threads", "16", env={"REDIS_URL": redis_url})
    results: list[object] = []

    def slow(_: int) -> int:
        with httpx.Client(timeout=30) as client:
            return client.get(f"{served.base}/api/v1/slow", params={"seconds": 2}).status_code

    store = redis.Redis.from_url(redis_url)
    worker = threading.Thread(target=lambda: results.extend(concurrently(20, slow)))
    worker.start()
    deadline = time.monotonic() + 20
    while int(store.get("slowservice:started") or 0) < 20:  # all 20 are in flight
        assert time.monotonic() < deadline, "the 20 slow requests did not all start"
        time.sleep(0.02)
    store.close()
    stopped_at = time.monotonic()
    served.process.send_signal(signal.SIGTERM)
    # "At once": readiness drops while the 2-second requests are still in flight.
    deadline = time.monotonic() + 1.2
    ready = httpx.get(f"{served.base}/readyz", timeout=5)
    while ready.status_code != 503 and time.monotonic() < deadline:
        time.sleep(0.05)
        ready = httpx.get(f"{served.base}/readyz", timeout=5)
    assert ready.status_code == 503, served.log.read_text()
    assert "draining" in ready.json()["failing"]
    assert worker.is_alive()
    worker.join(timeout=60)
    assert results.count(200) == 20, results
    assert served.process.wait(timeout=20) == 0
    assert time.monotonic() - stopped_at < 1 + 10 + 5  # drain delay + graceful timeout
    # One log stream, one format: the servers' own lines are JSON too, but for
    # uWSGI's, which are plain text (see lockgate.serving.uwsgi).
    lines = served.log.read_text().splitlines()
    banner = [line for line in lines if line.startswith("serving 'servefleet'")]
    assert len(banner) == 1  # the CLI's own line, on stdout
    rest = [line for line in lines if line not in banner]
    if server == "uwsgi":
        assert any("graceful shutdown triggered" in line for line in rest)
        rest = [line for line in rest if line.startswith("{")]
    records = [json.loads(line) for line in rest]
    assert any(r.get("logger") == DRAIN_LOGGER[server] and "SIGTERM" in r["event"] for r in records)
    assert sum(r["event"] == "request" and r["route"] == "/api/v1/slow" for r in records) == 20


@pytest.mark.server
def test_metrics_are_summed_across_workers(
    two_workers: tuple[Served, Path], redis_url: str
) -> None:
    served, _ = two_workers
    concurrently(40, lambda _: httpx.get(f"{served.base}/api/v1/fast", timeout=30).status_code)
    pattern = re.compile(
        r'^http_requests_total\{[^}]*route="/api/v1/fast"[^}]*status="200"[^}]*\} (\S+)$', re.M
    )
    for _ in range(4):  # whichever worker answers, the sum is the same
        text = httpx.get(f"{served.base}/metrics", timeout=10).text
        assert sum(float(value) for value in pattern.findall(text)) == 40


@pytest.mark.server
def test_a_dead_worker_leaves_the_live_sums(
    two_workers: tuple[Served, Path], redis_url: str
) -> None:
    """A worker killed outright is replaced and marked dead: its live gauge file goes."""
    served, metrics = two_workers

    def live() -> set[int]:
        return {int(path.stem.rpartition("_")[2]) for path in metrics.glob("gauge_livesum_*.db")}

    def workers_gauge() -> float:
        text = httpx.get(f"{served.base}/metrics", timeout=10).text
        return float(re.search(r"^slowservice_workers (\S+)$", text, re.M)[1])  # type: ignore[index]

    deadline = time.monotonic() + 30
    while len(live()) < 2:  # each worker creates its gauge when it builds the app
        assert time.monotonic() < deadline, served.log.read_text()
        time.sleep(0.1)
    assert workers_gauge() == 2
    victim = min(live())
    os.kill(victim, signal.SIGKILL)  # a worker of the server this test started
    deadline = time.monotonic() + 30
    while victim in live() or len(live()) < 2:  # marked dead, and replaced
        assert time.monotonic() < deadline, (live(), served.log.read_text())
        time.sleep(0.1)
    assert workers_gauge() == 2  # without the mark it would be 3


@pytest.mark.server
def test_reference_fleet_metrics_are_summed_across_workers(
    reference_fleet: Served, redis_url: str
) -> None:
    """The real fleet imports prometheus_client before the server sets its directory up."""
    served = reference_fleet
    headers = served.bearer("users:read")
    pattern = re.compile(
        r'^http_requests_total\{[^}]*route="/api/v1/users"[^}]*status="200"[^}]*\} (\S+)$', re.M
    )
    deprecated = re.compile(r'^api_deprecated_requests_total\{[^}]*version="1"[^}]*\} (\S+)$', re.M)

    def sums() -> tuple[float, float]:
        response = httpx.get(f"{served.base}/metrics", timeout=10)
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = response.text
        return (
            sum(float(value) for value in pattern.findall(text)),
            sum(float(value) for value in deprecated.findall(text)),
        )

    before = sums()  # the module's other tests may have counted some already
    statuses = concurrently(
        30,
        lambda _: httpx.get(f"{served.base}/api/v1/users", headers=headers, timeout=30).status_code,
    )
    assert statuses == [200] * 30
    for _ in range(4):  # whichever worker answers, the sum is the same
        assert sums() == (before[0] + 30, before[1] + 30)


def test_several_workers_need_redis(tmp_path: Path, server: str) -> None:
    environment = {**os.environ, "LOCKGATE_DATA_DIR": str(tmp_path)}
    environment.pop("REDIS_URL", None)
    result = subprocess.run(
        [str(LOCKGATE), "serve", "--manifest", str(MANIFEST), "--server", server, "--workers", "2"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--workers 2 needs REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert "serving" not in result.stdout  # refused before any server started


@pytest.mark.server
def test_redis_going_away(serve: Callable[..., Served], tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        client.close()
        served = serve(env={"REDIS_URL": f"redis://127.0.0.1:{port}/0"})
        assert httpx.get(f"{served.base}/readyz", timeout=5).status_code == 200
        assert httpx.get(f"{served.base}/api/v1/fast", timeout=5).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=10)
    ready = httpx.get(f"{served.base}/readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/problem+json"
    assert ready.json()["failing"] == ["redis"]
    for _ in range(3):  # fail open: served without limits or cache, never a 500
        assert httpx.get(f"{served.base}/api/v1/fast", timeout=10).status_code == 200
    assert "rate limiting is off" in served.log.read_text()


@pytest.mark.server
def test_a_read_after_a_write_is_fresh_on_every_worker(
    reference_fleet: Served, redis_url: str
) -> None:
    """The users fleet on 4 workers sharing a Redis cache: no worker serves stale data."""
    served = reference_fleet
    with httpx.Client(base_url=served.base, headers=served.bearer(), timeout=10) as client:
        body = {"first_name": "Cache", "last_name": "Test", "email": unique_email("cache")}
        user = client.post("/api/v2/users", json=body).json()
        url = f"/api/v2/users/{user['id']}"
        for round_ in range(25):
            for _ in range(4):  # warm every worker's view of the cached read
                assert client.get(url).status_code == 200
                client.get("/api/v1/users")
            name = f"Name{round_}"
            assert client.patch(url, json={"last_name": name}).status_code == 200
            assert client.get(url).json()["last_name"] == name
            listed = {u["id"]: u["name"] for u in client.get("/api/v1/users").json()}
            assert listed[user["id"]] == f"Cache {name}"
        hits = [client.get(url).headers.get("x-cache") for _ in range(8)]
        assert "hit" in hits  # the cache is in use, not bypassed


def raw_request(
    base: str, data: bytes, timeout: float = 10
) -> tuple[int | None, dict[str, str], bytes]:
    """Send ``data`` as is; the status (``None``: closed without one), headers, body."""
    host, _, port = base.removeprefix("http://").rpartition(":")
    received = b""
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1."):
        return None, {}, body
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def chunked_post(body: bytes) -> bytes:
    return (
        b"POST /api/v1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body
    )


@pytest.mark.server
def test_chunked_bodies(plain: Served) -> None:
    """A chunked body is read whole; one whose chunk size is not hex is a 400, never a 500."""
    served = plain
    status, headers, body = raw_request(
        served.base, chunked_post(b'6\r\n{"text\r\n7\r\n": "hi"\r\n1\r\n}\r\n0\r\n\r\n')
    )
    assert status == 200, body
    assert json.loads(body) == {"text": "hi"}
    status, headers, body = raw_request(
        served.base, chunked_post(b'zz\r\n{"text": "a"}\r\n0\r\n\r\n')
    )
    assert status == 400, body
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["status"] == 400
    assert headers["x-request-id"]
    logged = [
        json.loads(line) for line in served.log.read_text().splitlines() if '"request"' in line
    ]
    assert [r["status"] for r in logged if r.get("route") == "/api/v1/echo"] == [200, 400]


@pytest.mark.server
def test_server_header_names_no_version(plain: Served, server: str) -> None:
    """Gunicorn and granian name themselves, uWSGI sends none; no version, no Python."""
    served = plain
    response = httpx.get(f"{served.base}/healthz", timeout=10)
    assert response.status_code == 200
    expected = {"gunicorn": ["gunicorn"], "granian": ["granian"], "uwsgi": []}
    assert response.headers.get_list("server") == expected[server]


#: What each server answers, before the app sees the request, to a request line
#: or headers past its limits (docs/serving.md lists the same): status (None:
#: the connection closes with no answer) and Content-Type.
PRE_APP = {
    "gunicorn": {
        "line-5k": (414, "text/html"),
        "line-70k": (414, "text/html"),
        "header-9k": (431, "text/html"),
        "header-70k": (431, "text/html"),
        "headers-101": (431, "text/html"),
        "not-http": (400, "text/html"),
    },
    "granian": {
        "line-5k": (200, "application/json"),
        "line-70k": (414, None),
        "header-9k": (200, "application/json"),
        "header-70k": (200, "application/json"),
        "headers-101": (431, None),
        "not-http": (400, None),
    },
    "uwsgi": {
        "line-5k": (200, "application/json"),
        "line-70k": (None, None),
        "header-9k": (200, "application/json"),
        "header-70k": (None, None),
        "headers-101": (200, "application/json"),
        "not-http": (None, None),
    },
}


def pre_app_requests() -> dict[str, bytes]:
    end = b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n"
    return {
        "line-5k": b"GET /healthz?" + b"a" * 5000 + b" HTTP/1.1\r\n" + end,
        "line-70k": b"GET /healthz?" + b"a" * 70000 + b" HTTP/1.1\r\n" + end,
        "header-9k": b"GET /healthz HTTP/1.1\r\nX-Big: " + b"b" * 9000 + b"\r\n" + end,
        "header-70k": b"GET /healthz HTTP/1.1\r\nX-Big: " + b"b" * 70000 + b"\r\n" + end,
        "headers-101": b"GET /healthz HTTP/1.1\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(99))
        + end,
        "not-http": b"HELLO\r\n\r\n",
    }


@pytest.mark.server
def test_pre_app_errors_are_as_documented(plain: Served, server: str) -> None:
    served = plain
    answers = {}
    for name, data in pre_app_requests().items():
        status, headers, _ = raw_request(served.base, data)
        answers[name] = (status, headers.get("content-type"))
    assert answers == PRE_APP[server]
    assert httpx.get(f"{served.base}/healthz", timeout=10).status_code == 200  # still serving


@pytest.mark.server
def test_uds_serves_on_a_unix_socket_as_well(tmp_path: Path) -> None:
    path = tmp_path / "replica.sock"
    with serving(tmp_path, "--uds", str(path)) as served:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=10) as http:
            assert http.get("http://replica/readyz").status_code == 200
        assert httpx.get(f"{served.base}/readyz", timeout=10).status_code == 200
    assert not path.exists()  # gunicorn removes its socket when it stops


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--server", "granian", "--uds", "/tmp/x.sock"], "--uds needs --server gunicorn"),
        (["--server", "uwsgi", "--uds", "/tmp/x.sock"], "--uds needs --server gunicorn"),
        (["--uds", "/tmp/" + "x" * 120], "longer than the 107 bytes a Unix socket path can have"),
    ],
)
def test_uds_is_refused_where_it_cannot_work(tmp_path: Path, args: list[str], error: str) -> None:
    environment = {**os.environ, "LOCKGATE_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [str(LOCKGATE), "serve", "--manifest", str(MANIFEST), *args],
        env=environment, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert error in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
