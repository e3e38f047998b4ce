"""What orders' call to users adds to an orders POST, beyond the users request itself.

The target (issue 11): a call from orders to users over loopback adds at
most 2 ms at p50 to an orders POST beyond the users request itself, measured
in one run with a direct call to users.

The fleet as ``lockgate serve`` runs it (gunicorn, 1 worker, 8 threads, on
127.0.0.1; users, auth and orders in one process behind one address, SQLite
in a fresh data folder), once per backend of the client's breaker, the
limiter and the cache: in process (no ``REDIS_URL``) and Redis
(``REDIS_URL=redis://127.0.0.1:6379/13``, a database the test suite's two
workers do not use, emptied at the start and the end of a run only). The
limits are set too high to be reached, the cache TTL to an hour (every users
read of the run is a hit), the access log is on (the service's default). The benchmark makes a
client of its own (``lockgate clients create``), takes one token, makes one
user, and then, over one keep-alive ``httpx.Client`` per server, sends:

- (A) ``POST /api/v2/orders`` for that user (one line item): orders checks
  the user with ``GET /api/v2/users/<id>`` through its
  ``lockgate.client.ServiceClient`` (its own token, cached; the breaker;
  tenacity's retries; trace, request id and deadline headers; the pooled
  keep-alive ``httpx`` client), over loopback to the same server, then
  stores the order. 201.
- (B) the same users request made directly: ``GET /api/v2/users/<id>`` with
  the benchmark's token and ``API-Version: 2`` (as orders sends it). 200,
  served from the users cache, as orders' calls are.

A server's two cases take turns in rounds of A, A, B, B, each request timed
alone, in :data:`BLOCKS` blocks per server; the servers take turns block by
block (the one going first changing from block to block), after a warm-up of
every case (the first call fetches orders' token and fills the caches). Not
A, B, A, B: a request that follows a POST runs slower than one that follows
a GET (the POST's tail work shares the two cores), so there B alone would
always follow a POST; in rounds of A, A, B, B each case follows each case
equally often. Nor the two servers' cases in one rotation: a request that
follows the other server's runs slower still (measured once while writing
this: 0.3 to 1 ms at p50), as in ``auth.py``. Every request carries an
``X-Request-ID`` of its own, which orders passes on to users, so each
access line is tied to the request that caused it.

What the call costs orders, request by request: the client's own latency
histogram, ``upstream_request_duration_seconds{target="users"}``, read from
the server's Prometheus multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, a
folder of this run) after every POST. Its ``_sum`` grows by the exact
duration of that POST's one call (``ServiceClient.request`` times it with
``time.monotonic()``, from just after checking its arguments to its
``finally``: settings, headers, breaker, token, retries, the socket and the
body all inside), and its
``_count`` by one (checked). Nothing in the POST but the call changes when
the call goes away, so the call's duration is what it adds to the POST.

The figure judged: added = p50(the call, as orders timed it) - p50(B, as the
benchmark timed it): the call's cost beyond the same users request made
directly by a plain keep-alive client over loopback. Alongside it:

- p50 of A and of B, at the benchmark, and p50(A) - p50(B);
- orders' own work, p50(A - the call) per request (the POST without the call);
- users' own handling of each request, the ``duration_ms`` of its access line
  (from the access log's ``before_request`` to its ``after_request``), for orders'
  calls and for B, and the hop beyond that handling: p50(call - handling)
  through orders' client, p50(B - handling) through the plain one, and their
  difference (a cross-check of the judged figure that does not depend on
  users handling both requests alike);
- the judged figure in each block, to show its spread on a shared machine.

The servers are started and stopped by their PIDs; only 127.0.0.1 is used.

    python bench/orders.py [--requests 2000] [--warm-up 300] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import redis
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

sys.path.insert(0, str(Path(__file__).parent))
import inprocess
from report import write_section

ROOT = Path(__file__).resolve().parent.parent
LOCKGATE = Path(sys.executable).parent / "lockgate"
TARGET_MS = 2.0
REDIS_URL = "redis://127.0.0.1:6379/13"
HIGH = "100000000/minute"  # limits on, never reached
BACKENDS = ("in process", "Redis")
#: The measured requests of a case are split into this many blocks.
BLOCKS = 10
SCOPES = "users:read,users:write,orders:read,orders:write"
ORDER_ITEMS = [{"sku": "bench-1", "quantity": 1, "unit_price_cents": 100}]
CALL_SUM = "upstream_request_duration_seconds_sum"
CALL_COUNT = "upstream_request_duration_seconds_count"
#: A token of the benchmark's is taken again when it is this old (they live 10 minutes).
TOKEN_AGE = 300.0


# -- the servers ---------------------------------------------------------------


@dataclass
class Server:
    """One ``lockgate serve`` of the fleet, and the benchmark's client of it."""

    backend: str
    folder: Path
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    http: httpx.Client = field(init=False)
    user_id: int = 0
    client: tuple[str, str] = ("", "")
    token_at: float = float("-inf")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "serve.log"

    @property
    def metrics(self) -> Path:
        return self.folder / "metrics"

    @property
    def tag(self) -> str:
        return "redis" if self.backend == "Redis" else "local"


def environment(backend: str, folder: Path) -> dict[str, str]:
    """The server's environment: none of the caller's ``LOCKGATE_*`` settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LOCKGATE_", "OTEL_EXPORTER_OTLP"))
        and key not in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")
    }
    env.update(
        {
            "LOCKGATE_DATA_DIR": str(folder / "data"),
            "PROMETHEUS_MULTIPROC_DIR": str(folder / "metrics"),
            "LOCKGATE_RATE_LIMIT": HIGH,
            "LOCKGATE_RATE_LIMIT_DEPRECATED": HIGH,
            "LOCKGATE_ACCESS_LOG": "true",
            # No cached read expires during a run: every users read is a hit.
            "LOCKGATE_CACHE_TTL": "3600",
        }
    )
    if backend == "Redis":
        env["REDIS_URL"] = REDIS_URL
    return env


def start(backend: str, folder: Path) -> Server:
    """``lockgate serve`` (gunicorn, 1 worker, 8 threads), up and answering ``/healthz``."""
    folder.mkdir(parents=True)
    (folder / "data").mkdir()
    port = inprocess.free_port()
    env = environment(backend, folder)
    command = [
        str(LOCKGATE), "serve", "--server", "gunicorn", "--workers", "1", "--threads", "8",
        "--bind", f"127.0.0.1:{port}", "--drain-delay", "0", "--graceful-timeout", "5",
    ]  # fmt: skip
    with (folder / "serve.log").open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    server = Server(backend, folder, port, env, process)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{server.base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
        if time.monotonic() > deadline or process.poll() is not None:
            stop(server)
            raise SystemExit(f"{backend}: the server did not start; its log: {server.log}")
    server.http = httpx.Client(base_url=server.base, timeout=10, trust_env=False)
    return server


def stop(server: Server) -> None:
    """SIGTERM to the server we started (by its PID); SIGKILL if it lingers."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def prepare(server: Server) -> None:
    """The benchmark's own client (every scope it uses), a token, and one user."""
    made = subprocess.run(
        [str(LOCKGATE), "clients", "create", "bench", "--scopes", SCOPES, "--json"],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    body = json.loads(made.stdout)
    server.client = (body["client_id"], body["client_secret"])
    refresh_token(server)
    person = {"first_name": "Ada", "last_name": "Bench", "email": "ada@bench.example"}
    response = server.http.post("/api/v2/users", json=person)
    assert response.status_code == 201, response.text
    server.user_id = response.json()["id"]


def refresh_token(server: Server) -> None:
    """A token of the benchmark's client, taken again once :data:`TOKEN_AGE` old."""
    if time.monotonic() - server.token_at < TOKEN_AGE:
        return
    response = server.http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=server.client
    )
    assert response.status_code == 200, response.text
    server.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    server.token_at = time.monotonic()


def call_total(server: Server) -> tuple[float, float]:
    """The sum and count of orders' calls to users, from the multiprocess files."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(server.metrics))  # type: ignore[no-untyped-call]
    found = registry.get_sample_value(CALL_SUM, {"target": "users"})
    count = registry.get_sample_value(CALL_COUNT, {"target": "users"})
    return found or 0.0, count or 0.0


# -- the cases -----------------------------------------------------------------


@dataclass
class Samples:
    """One server's measured requests, in the order they were sent."""

    post_ns: list[int] = field(default_factory=list)
    call_s: list[float] = field(default_factory=list)
    post_ids: list[str] = field(default_factory=list)
    direct_ns: list[int] = field(default_factory=list)
    direct_ids: list[str] = field(default_factory=list)


class Cases:
    """A and B of every server, each request timed alone."""

    def __init__(self, servers: list[Server]) -> None:
        self.totals = {server.backend: call_total(server) for server in servers}
        self.sent = 0

    def post(self, server: Server, request_id: str, samples: Samples | None) -> None:
        body = {"user_id": server.user_id, "items": ORDER_ITEMS}
        headers = {"X-Request-ID": request_id}
        started = time.perf_counter_ns()
        response = server.http.post("/api/v2/orders", json=body, headers=headers)
        elapsed = time.perf_counter_ns() - started
        assert response.status_code == 201, (response.status_code, response.text)
        before_sum, before_count = self.totals[server.backend]
        after_sum, after_count = self.totals[server.backend] = call_total(server)
        assert after_count == before_count + 1, (before_count, after_count)
        if samples is not None:
            samples.post_ns.append(elapsed)
            samples.call_s.append(after_sum - before_sum)
            samples.post_ids.append(request_id)

    def direct(self, server: Server, request_id: str, samples: Samples | None) -> None:
        headers = {"X-Request-ID": request_id, "API-Version": "2"}
        started = time.perf_counter_ns()
        response = server.http.get(f"/api/v2/users/{server.user_id}", headers=headers)
        elapsed = time.perf_counter_ns() - started
        assert response.status_code == 200, (response.status_code, response.text)
        assert response.headers.get("X-Cache") == "hit", response.headers
        if samples is not None:
            samples.direct_ns.append(elapsed)
            samples.direct_ids.append(request_id)

    def block(self, server: Server, requests: int, prefix: str, found: Samples | None) -> None:
        """``requests`` (even) of each of ``server``'s cases, in rounds of A, A, B, B:
        each case follows each case equally often (a request that follows a POST
        runs slower than one that follows a GET), and the read of the metrics
        after each POST precedes one request of each case."""
        for _ in range(requests // 2):
            self.sent += 1
            for kind, name in ((self.post, "a1"), (self.post, "a2")):
                kind(server, f"{prefix}-{server.tag}-{name}-{self.sent}", found)
            for kind, name in ((self.direct, "b1"), (self.direct, "b2")):
                kind(server, f"{prefix}-{server.tag}-{name}-{self.sent}", found)


def handling(server: Server) -> dict[str, float]:
    """Users' own milliseconds for each request id, from its access lines."""
    found = {}
    for line in server.log.read_text().splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "request" and record.get("service") == "users":
            found[str(record["request_id"])] = float(record["duration_ms"])
    return found


# -- the report ----------------------------------------------------------------


def p50(values: list[float]) -> float:
    return float(statistics.median(values))


@dataclass(frozen=True)
class Figures:
    """One server's figures, in milliseconds (p50 unless named otherwise)."""

    backend: str
    post: float
    direct: float
    call: float
    own_work: float
    users_call: float
    users_direct: float
    hop_call: float
    hop_direct: float
    added_blocks: list[float]

    @property
    def added(self) -> float:
        return self.call - self.direct

    @property
    def added_hop(self) -> float:
        return self.hop_call - self.hop_direct


def figures(backend: str, samples: Samples, users: dict[str, float]) -> Figures:
    post = [ns / 1e6 for ns in samples.post_ns]
    direct = [ns / 1e6 for ns in samples.direct_ns]
    call = [seconds * 1e3 for seconds in samples.call_s]
    users_call = [users[request_id] for request_id in samples.post_ids]
    users_direct = [users[request_id] for request_id in samples.direct_ids]
    size = len(call) // BLOCKS
    blocks = [
        p50(call[i * size : (i + 1) * size]) - p50(direct[i * size : (i + 1) * size])
        for i in range(BLOCKS)
    ]
    return Figures(
        backend=backend,
        post=p50(post),
        direct=p50(direct),
        call=p50(call),
        own_work=p50([a - c for a, c in zip(post, call, strict=True)]),
        users_call=p50(users_call),
        users_direct=p50(users_direct),
        hop_call=p50([c - u for c, u in zip(call, users_call, strict=True)]),
        hop_direct=p50([b - u for b, u in zip(direct, users_direct, strict=True)]),
        added_blocks=blocks,
    )


def verdict(added: float) -> str:
    if added <= TARGET_MS:
        return f"met ({TARGET_MS - added:.2f} ms to spare)"
    return f"NOT met (+{added - TARGET_MS:.2f} ms)"


def tables(found: list[Figures]) -> str:
    lines = [
        "| backend | A: orders POST | B: users GET, direct | A - B | the call, as orders "
        "timed it | added: call - B | target | met | added in each block |",
        "|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for f in found:
        each = " / ".join(f"{value:.2f}" for value in f.added_blocks)
        lines.append(
            f"| {f.backend} | {f.post:.2f} | {f.direct:.2f} | {f.post - f.direct:.2f} "
            f"| {f.call:.2f} | {f.added:+.2f} | ≤ {TARGET_MS:.0f} ms | {verdict(f.added)} "
            f"| {each} |"
        )
    lines += [
        "",
        "| backend | orders' own work (A - call) | users' handling of the call "
        "| users' handling of B | call - its handling | B - its handling | difference |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for f in found:
        lines.append(
            f"| {f.backend} | {f.own_work:.2f} | {f.users_call:.2f} | {f.users_direct:.2f} "
            f"| {f.hop_call:.2f} | {f.hop_direct:.2f} | {f.added_hop:+.2f} |"
        )
    return "\n".join(lines)


def summary(found: list[Figures]) -> str:
    """One sentence per backend on the target, for the section's end."""
    said = []
    for f in found:
        state = "met" if f.added <= TARGET_MS else "not met"
        margin = abs(TARGET_MS - f.added)
        said.append(
            f"{f.backend}: **{state}**, the call adds {f.added:.2f} ms at p50 beyond the "
            f"direct users request ({margin:.2f} ms {'under' if state == 'met' else 'over'} "
            f"the {TARGET_MS:.0f} ms; by block {min(f.added_blocks):.2f} to "
            f"{max(f.added_blocks):.2f} ms; measured beyond users' own handling instead, "
            f"{f.added_hop:.2f} ms)"
        )
    return "Target: " + "; ".join(said) + "."


def measure(servers: list[Server], requests: int, warm_up: int) -> tuple[dict[str, Samples], int]:
    """Warm every case up, then measure in :data:`BLOCKS` blocks of each server,
    the servers taking turns block by block (the one going first changing)."""
    cases = Cases(servers)
    for server in servers:
        cases.block(server, warm_up + warm_up % 2, "warm", None)
    samples = {server.backend: Samples() for server in servers}
    per_block = requests // BLOCKS // 2 * 2
    for block in range(BLOCKS):
        for server in servers if block % 2 == 0 else servers[::-1]:
            refresh_token(server)
            cases.block(server, per_block, f"m{block}", samples[server.backend])
    return samples, per_block


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per case, measured")
    parser.add_argument("--warm-up", type=int, default=300, help="per case, not measured")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    if args.requests < 2 * BLOCKS:
        parser.error(f"--requests must be at least {2 * BLOCKS}")
    database = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        database.ping()
    except redis.RedisError as error:
        raise SystemExit(f"the Redis case needs Redis at {REDIS_URL}: {error}") from None
    database.flushdb()
    digest, state = inprocess.code_digest(), inprocess.source_state()
    servers: list[Server] = []
    try:
        with tempfile.TemporaryDirectory(prefix="lockgate-bench-orders-") as folder:
            try:
                for index, backend in enumerate(BACKENDS):
                    servers.append(start(backend, Path(folder) / str(index)))
                    prepare(servers[-1])
                samples, per_block = measure(servers, args.requests, args.warm_up)
            finally:
                for server in servers:
                    server.http.close()
                    stop(server)
            found = [
                figures(server.backend, samples[server.backend], handling(server))
                for server in servers
            ]
    finally:
        database.flushdb()
        database.close()
    result = tables(found)
    print(result)
    print(summary(found))
    if inprocess.code_digest() != digest:
        print("src/ or services/ changed during the run: these figures mix two versions")
        return 1
    if args.write:
        write(args.write, result, found, args, state, per_block * BLOCKS)
    return 0


def write(
    path: Path,
    result: str,
    found: list[Figures],
    args: argparse.Namespace,
    state: str,
    requests: int,
) -> None:
    write_section(
        path,
        "## Orders' call to users (loopback, gunicorn)",
        f"Command: `make bench` (`python bench/orders.py --requests {args.requests} "
        f"--warm-up {args.warm_up}`). Target (issue 11): a call from orders to users over "
        "loopback adds at most 2 ms at p50 to an orders POST beyond the users request "
        "itself. The fleet under `lockgate serve` (gunicorn, 1 worker, 8 threads, "
        "127.0.0.1; users, auth and orders in one process, SQLite), once in process (no "
        f"`REDIS_URL`) and once on Redis (`{REDIS_URL}`: breaker, limiter and cache), "
        "limits out of reach, a cache TTL of an hour, access log on. Cases, over one "
        "keep-alive `httpx.Client` per server: (A) `POST /api/v2/orders` for one user "
        "(201), in which orders calls `GET /api/v2/users/<id>` through its `ServiceClient` "
        "(own cached token, breaker, retries, trace, request id and deadline headers, "
        "pooled connections) to the same server; (B) that users request made directly by "
        "the benchmark, with its own token and `API-Version: 2` (200, `X-Cache: hit`, as "
        "orders' calls are). "
        f"{requests} requests per case after {args.warm_up} of warm-up, each request timed "
        "alone, a server's two cases taking turns in rounds of A, A, B, B (each case "
        "following each equally often: a request after a POST runs slower), in "
        f"{BLOCKS} blocks per server, the servers taking turns block by block (the one "
        "going first changing). The call as orders timed it: the "
        'client\'s `upstream_request_duration_seconds{target="users"}` histogram, read '
        "from the server's Prometheus multiprocess files after every POST (its `_sum` "
        "grows by exactly that POST's one call, its `_count` by one, checked). **Judged: "
        "added = p50(the call) - p50(B)**; the call is all that the POST would not do "
        "without it. Users' handling: the `duration_ms` of users' access line for each "
        "request (tied by `X-Request-ID`, which orders passes on). Milliseconds, p50 of "
        f"each case; code measured: {state}; {os.cpu_count()} cores shared with whatever "
        f"else ran; Python {platform.python_version()} on {platform.machine()}, measured "
        f"{datetime.now(UTC):%Y-%m-%d}.\n\n{result}\n\n{summary(found)}",
    )


if __name__ == "__main__":
    sys.exit(main())
