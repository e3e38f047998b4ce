"""What the nginx edge costs and what its cache gives, side by side in one run.

The goals (issue 13's Speed section), each a ratio or a difference of cases
measured in this one run, the cases interleaved round by round:

- requests per second through nginx against direct to the service: ≥ 0.9x;
- the p50 latency nginx adds: ≤ 0.5 ms;
- a cached GET served from the edge against the same GET uncached: ≥ 5x.

One service process and one nginx, both on 127.0.0.1, for the whole run:

- the fleet under ``lockgate serve`` (gunicorn, 1 worker, 8 threads; users,
  auth and orders in one process; SQLite in a fresh data folder, the
  in-process cache and limiter, no ``REDIS_URL``), limits set too high to be
  reached, a cache TTL of an hour (every users read is a hit of the
  service's own cache), the access log on (the service's default);
- nginx with the config ``render_nginx`` makes from fleet.toml, every pool
  pointed at that one process, 1 worker process, its JSON access log on; the
  edge's own limit (``[gateway] rate``, ``burst``) set out of reach, still
  checked on every request.

The benchmark makes a client of its own (``lockgate clients create``), makes
one user with a ``users:write`` token, and reads with a ``users:read`` one:

- ``GET /api/v2/users/<id>`` with the bearer token, direct to the service and
  through nginx. Through nginx the edge also makes its ``auth_request`` to
  ``/oauth/verify``, cached per token, so after the first request it is a hit
  of the edge's verify cache (the service's access log counts the verify calls
  that reached it); the service still verifies the token itself. The users
  read is marked ``no-cache`` by the service, so nginx proxies every one.
- ``GET /api/v2/openapi.json``, public: through nginx it is served from the
  edge's cache (``X-Cache-Status: HIT``; ``proxy_cache_valid 200 10s``, so
  once every 10 s one request goes to the service while the others get the
  stale copy); direct, the service answers every one (uncached at the edge).

Each round runs wrk (``-t2``, ``--latency``) for a fixed time on each case, the
two cases of a comparison back to back, the one going first changing from
round to round; then a serial loop, one request at a time over one keep-alive
``httpx.Client`` per address, the users read direct and through nginx in
turns of A, B, B, A, each request timed alone. The median round's req/s of
each case is kept. The added p50 judged is the serial loop's p50(through
nginx) - p50(direct): wrk's p50 at many connections holds queueing as well.
From the edge's own access log: the cache status of every request, and how
many users reads nginx held (``request_time`` - ``upstream_response_time``,
the time at the edge beyond the service's answer) for :data:`HELD` s or more,
grouped by the nearest half second. Only 127.0.0.1 is used; every process is
stopped by its PID.

    python bench/gateway.py [--seconds 5] [--rounds 3] [--connections 16]
                            [--requests 1000] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import inprocess
from report import write_section

ROOT = Path(__file__).resolve().parent.parent
LOCKGATE = Path(sys.executable).parent / "lockgate"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HIGH = "100000000/minute"  # the services' limits: on, never reached
EDGE_RATE = 1_000_000  # the edge's, per second: on, never reached
SCOPES = "users:read,users:write"
READ = "/api/v2/users/{id}"
DOCUMENT = "/api/v2/openapi.json"
RPS_GOAL = 0.9
ADDED_GOAL_MS = 0.5
CACHE_GOAL = 5.0
#: A users read held this long at the edge beyond its upstream's time is counted.
HELD = 0.25
MARKER = "## The gateway: nginx in front of the fleet (wrk on loopback)"


def seconds_of(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


# -- the processes -------------------------------------------------------------


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to a process we started (by its PID); SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def wait_for(process: subprocess.Popen[bytes], url: str, log: Path, what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(f"{what} did not start; its log: {log}")


def environment(folder: Path) -> dict[str, str]:
    """The service's environment: none of the caller's ``LOCKGATE_*`` settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LOCKGATE_", "OTEL_EXPORTER_OTLP"))
        and key not in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")
    }
    env.update(
        {
            "LOCKGATE_DATA_DIR": str(folder / "data"),
            "LOCKGATE_RATE_LIMIT": HIGH,
            "LOCKGATE_RATE_LIMIT_DEPRECATED": HIGH,
            "LOCKGATE_ACCESS_LOG": "true",
            # No cached read expires during a run: every users read is a hit.
            "LOCKGATE_CACHE_TTL": "3600",
        }
    )
    return env


@dataclass
class Service:
    """``lockgate serve`` of the fleet, with the benchmark's client, tokens and user."""

    process: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]
    log: Path
    read_token: str = ""
    user_id: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_service(folder: Path) -> Service:
    """gunicorn, 1 worker, 8 threads, up and answering ``/healthz``."""
    (folder / "data").mkdir(parents=True)
    port = inprocess.free_port()
    env = environment(folder)
    command = [
        str(LOCKGATE), "serve", "--server", "gunicorn", "--workers", "1", "--threads", "8",
        "--bind", f"127.0.0.1:{port}", "--no-jobs", "--drain-delay", "0",
        "--graceful-timeout", "5",
    ]  # fmt: skip
    log = folder / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    service = Service(process, port, env, log)
    try:
        wait_for(process, f"{service.base}/healthz", log, "lockgate serve")
    except BaseException:
        stop(process)
        raise
    return service


def token(service: Service, client: tuple[str, str], scope: str) -> str:
    response = httpx.post(
        f"{service.base}/oauth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=client,
        timeout=10,
        trust_env=False,
    )
    assert response.status_code == 200, response.text
    found: str = response.json()["access_token"]
    return found


def prepare(service: Service) -> None:
    """The benchmark's own client, one user (a write token), and a read token."""
    made = subprocess.run(
        [str(LOCKGATE), "clients", "create", "bench", "--scopes", SCOPES, "--json"],
        cwd=ROOT,
        env=service.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    body = json.loads(made.stdout)
    client = (body["client_id"], body["client_secret"])
    person = {"first_name": "Ada", "last_name": "Bench", "email": "ada@bench.example"}
    response = httpx.post(
        f"{service.base}/api/v2/users",
        json=person,
        headers={"Authorization": f"Bearer {token(service, client, 'users:write')}"},
        timeout=10,
        trust_env=False,
    )
    assert response.status_code == 201, response.text
    service.user_id = int(response.json()["id"])
    service.read_token = token(service, client, "users:read")


@dataclass
class Edge:
    process: subprocess.Popen[bytes]
    port: int
    folder: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.folder / "run" / "access.log"


def start_nginx(folder: Path, service: Service) -> Edge:
    """nginx with the fleet's rendered config, every pool at ``service``."""
    # Rendering loads the services' apps (their versions): a data folder of its own.
    os.environ["LOCKGATE_DATA_DIR"] = str(folder / "render-data")
    from lockgate.fleet.gateway import pools, render_nginx
    from lockgate.fleet.manifest import load_manifest

    fleet = load_manifest(ROOT / "fleet.toml")
    port = inprocess.free_port()
    fleet = dataclasses.replace(
        fleet,
        gateway=dataclasses.replace(
            fleet.gateway, listen=f"127.0.0.1:{port}", rate=EDGE_RATE, burst=EDGE_RATE
        ),
    )
    address = service.base.removeprefix("http://")
    (folder / "run").mkdir(parents=True)
    conf = folder / "nginx.conf"
    conf.write_text(
        render_nginx(
            fleet,
            run_dir=str(folder / "run"),
            addresses={pool.name: [address] for pool in pools(fleet)},
            worker_processes="1",
            user="root" if os.geteuid() == 0 else None,
        )
    )
    process = subprocess.Popen(
        [NGINX, "-p", str(folder), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    edge = Edge(process, port, folder)
    try:
        wait_for(process, f"{edge.base}/healthz", folder / "run" / "error.log", "nginx")
    except BaseException:
        stop(process)
        raise
    return edge


# -- the cases -----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    url: str
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def wrk(case: Case, args: argparse.Namespace, seconds: int) -> Result:
    headers = [part for header in case.headers for part in ("-H", header)]
    load = [f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency"]
    out = subprocess.run(
        ["wrk", *load, *headers, case.url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = seconds_of(re.search(r"^\s+50%\s+(\S+)", out, re.M)[1]) * 1000  # type: ignore[index]
    p99 = seconds_of(re.search(r"^\s+99%\s+(\S+)", out, re.M)[1]) * 1000  # type: ignore[index]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Result(rps, p50, p99, int(errors[1]) if errors else 0)


def check(service: Service, edge: Edge) -> dict[str, str]:
    """Each case answers as described, before anything is measured."""
    bearer = {"Authorization": f"Bearer {service.read_token}"}
    read = READ.format(id=service.user_id)
    found = {}
    with httpx.Client(timeout=10, trust_env=False) as http:
        for base in (service.base, edge.base):
            response = http.get(f"{base}{read}", headers=bearer)
            assert response.status_code == 200, (base, response.status_code, response.text)
            assert response.json()["id"] == service.user_id
        for _ in range(2):
            proxied = http.get(f"{edge.base}{read}", headers=bearer)
        found["read"] = proxied.headers.get("X-Cache-Status", "")
        assert found["read"] != "HIT", proxied.headers  # proxied, never from the edge
        direct = http.get(f"{service.base}{DOCUMENT}")
        assert direct.status_code == 200 and "X-Cache-Status" not in direct.headers
        for _ in range(2):
            cached = http.get(f"{edge.base}{DOCUMENT}")
        assert cached.status_code == 200
        assert cached.headers["X-Cache-Status"] == "HIT", cached.headers
        assert cached.content == direct.content
        found["document_bytes"] = str(len(direct.content))
    return found


def serial(service: Service, edge: Edge, requests: int) -> tuple[list[float], list[float]]:
    """``requests`` reads each, direct (A) and through nginx (B), one at a time in
    turns of A, B, B, A; milliseconds of each request."""
    read = READ.format(id=service.user_id)
    headers = {"Authorization": f"Bearer {service.read_token}"}
    times: dict[str, list[float]] = {"direct": [], "edge": []}
    with (
        httpx.Client(base_url=service.base, headers=headers, timeout=10, trust_env=False) as a,
        httpx.Client(base_url=edge.base, headers=headers, timeout=10, trust_env=False) as b,
    ):
        clients = {"direct": a, "edge": b}
        for turn in range(requests):
            order = ("direct", "edge") if turn % 2 == 0 else ("edge", "direct")
            for name in order:
                started = time.perf_counter_ns()
                response = clients[name].get(read)
                elapsed = time.perf_counter_ns() - started
                assert response.status_code == 200, (name, response.status_code, response.text)
                times[name].append(elapsed / 1e6)
    return times["direct"], times["edge"]


#: (title, A, B, goal): the ratio A / B of req/s, the goal a lower bound.
COMPARISONS = [
    ("through nginx vs direct, GET /api/v2/users/<id>", "users read, through nginx",
     "users read, direct", RPS_GOAL),
    ("edge-cached vs uncached, GET /api/v2/openapi.json", "OpenAPI document, edge cache",
     "OpenAPI document, direct", CACHE_GOAL),
]  # fmt: skip


def measure(
    service: Service, edge: Edge, args: argparse.Namespace
) -> tuple[dict[str, list[Result]], list[tuple[list[float], list[float]]]]:
    bearer = (f"Authorization: Bearer {service.read_token}",)
    read = READ.format(id=service.user_id)
    cases = {
        case.name: case
        for case in (
            Case("users read, direct", f"{service.base}{read}", bearer),
            Case("users read, through nginx", f"{edge.base}{read}", bearer),
            Case("OpenAPI document, direct", f"{service.base}{DOCUMENT}"),
            Case("OpenAPI document, edge cache", f"{edge.base}{DOCUMENT}"),
        )
    }
    for case in cases.values():  # warm-up, not kept
        wrk(case, args, 1)
    serial(service, edge, 100)
    runs: dict[str, list[Result]] = {name: [] for name in cases}
    latencies = []
    # Rounds rather than one long run per case: a slow minute of the shared
    # machine then costs every case a round, not one case its figure.
    for round_ in range(1, args.rounds + 1):
        for _, a, b, _ in COMPARISONS:
            for name in (a, b) if round_ % 2 else (b, a):
                r = wrk(cases[name], args, args.seconds)
                runs[name].append(r)
                print(
                    f"round {round_}: {name:30} {r.rps:9.0f} req/s  p50 {r.p50_ms:6.2f} ms "
                    f" p99 {r.p99_ms:7.2f} ms  non-2xx {r.errors}",
                    flush=True,
                )
        direct, through = serial(service, edge, args.requests)
        latencies.append((direct, through))
        print(
            f"round {round_}: serial p50 direct {statistics.median(direct):.3f} ms, "
            f"through nginx {statistics.median(through):.3f} ms",
            flush=True,
        )
    return runs, latencies


# -- the report ----------------------------------------------------------------


def median_round(found: list[Result]) -> Result:
    return sorted(found, key=lambda r: r.rps)[len(found) // 2]


@dataclass
class EdgeLog:
    """What the edge's own access log says of the run."""

    #: The cache status of every request, by path.
    cache: dict[str, Counter[str]]
    #: Seconds each users read spent at the edge beyond its upstream's time
    #: (``request_time`` - ``upstream_response_time``).
    held: list[float]


def edge_log(edge: Edge, read: str) -> EdgeLog:
    found = EdgeLog({}, [])
    for line in edge.access_log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        path = str(record["uri"]).split("?")[0]
        found.cache.setdefault(path, Counter())[record["cache"] or "-"] += 1
        if path == read:
            times = str(record["upstream_time"]).replace(":", ",").split(",")
            upstream = sum(float(t) for t in times if t.strip() not in ("", "-"))
            found.held.append(float(record["request_time"]) - upstream)
    return found


def verify_calls(service: Service) -> int:
    """``/oauth/verify`` requests the service answered (its access lines)."""
    found = 0
    for line in service.log.read_text().splitlines():
        if line.startswith("{") and '"event": "request"' in line and "/oauth/verify" in line:
            found += 1
    return found


def met(value: float, goal: float, *, at_most: bool = False, unit: str = "x") -> str:
    ok = value <= goal if at_most else value >= goal
    margin = abs(value - goal)
    if unit == "x":
        return f"yes ({margin:.2f}x to spare)" if ok else f"**NO** ({margin:.2f}x short)"
    return f"yes ({margin:.2f} {unit} to spare)" if ok else f"**NO** ({margin:.2f} {unit} over)"


def report(
    runs: dict[str, list[Result]],
    latencies: list[tuple[list[float], list[float]]],
    log: EdgeLog,
    verifies: int,
    user_id: int,
) -> tuple[str, str]:
    results = {name: median_round(found) for name, found in runs.items()}
    lines = [
        "| case | req/s (median round) | p50 ms | p99 ms | non-2xx | req/s of every round |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, r in results.items():
        every = " / ".join(f"{x.rps:.0f}" for x in runs[name])
        lines.append(
            f"| {name} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {sum(x.errors for x in runs[name])} | {every} |"
        )
    lines += [
        "",
        "| comparison | ratio (req/s) | each round | goal | met |",
        "|---|---:|---|---|---|",
    ]
    said = []
    for title, a, b, goal in COMPARISONS:
        ratio = results[a].rps / results[b].rps
        each = " / ".join(f"{x.rps / y.rps:.2f}x" for x, y in zip(runs[a], runs[b], strict=True))
        verdict = met(ratio, goal)
        lines.append(f"| {title} | {ratio:.2f}x | {each} | ≥ {goal:.1f}x | {verdict} |")
        said.append(f"{title}: {ratio:.2f}x against ≥ {goal:.1f}x, {verdict.replace('**', '')}")
    direct = [ms for pair in latencies for ms in pair[0]]
    through = [ms for pair in latencies for ms in pair[1]]
    added = statistics.median(through) - statistics.median(direct)
    per_round = " / ".join(
        f"{statistics.median(t) - statistics.median(d):+.3f}" for d, t in latencies
    )
    verdict = met(added, ADDED_GOAL_MS, at_most=True, unit="ms")
    lines += [
        "",
        "| added p50 latency, GET /api/v2/users/<id> | direct | through nginx | added "
        "| each round | goal | met |",
        "|---|---:|---:|---:|---|---|---|",
        f"| serial, one request at a time ({len(direct)} each) "
        f"| {statistics.median(direct):.3f} ms | {statistics.median(through):.3f} ms "
        f"| {added:+.3f} ms | {per_round} | ≤ {ADDED_GOAL_MS} ms | {verdict} |",
    ]
    said.append(
        f"added p50 (serial): {added:+.3f} ms against ≤ {ADDED_GOAL_MS} ms, "
        f"{verdict.replace('**', '')}"
    )
    document = log.cache.get(DOCUMENT, Counter())
    reads = log.cache.get(READ.format(id=user_id), Counter())
    held = [seconds for seconds in log.held if seconds >= HELD]
    steps = Counter(round(seconds * 2) / 2 for seconds in held)
    lines += [
        "",
        "wrk's p50 at its connections (first table) holds queueing and is not judged. "
        f"The edge's own log: `{DOCUMENT}` {sum(document.values())} requests, "
        + ", ".join(f"{status} {n}" for status, n in document.most_common())
        + f"; the users read {sum(reads.values())} requests, "
        + ", ".join(f"{status} {n}" for status, n in reads.most_common())
        + f" (proxied every time), of which {len(held)} were held at the edge "
        f"{HELD} s or more beyond the service's own time (`request_time` - "
        "`upstream_response_time`)"
        + (
            ": " + ", ".join(f"{n} of about {step:.1f} s" for step, n in sorted(steps.items()))
            if held
            else ""
        )
        + f". `/oauth/verify` reached the service {verifies} time(s) in the whole run: "
        "every other edge check of the token was a hit of nginx's verify cache.",
    ]
    summary = "Goals: " + "; ".join(said) + "."
    return "\n".join(lines), summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="every case once per round; the median is kept"
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk's")
    parser.add_argument("--requests", type=int, default=1000, help="per case and round, serial")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (make bench installs it)")
    if not Path(NGINX).exists():
        raise SystemExit("nginx is not installed (make system-packages installs it)")
    digest, state = inprocess.code_digest(), inprocess.source_state()
    with tempfile.TemporaryDirectory(prefix="lockgate-bench-gateway-") as name:
        folder = Path(name)
        service = start_service(folder / "service")
        try:
            prepare(service)
            edge = start_nginx(folder / "nginx", service)
            try:
                seen = check(service, edge)
                runs, latencies = measure(service, edge, args)
            finally:
                stop(edge.process)
            log = edge_log(edge, READ.format(id=service.user_id))
        finally:
            stop(service.process)
        verifies = verify_calls(service)
        tables, summary = report(runs, latencies, log, verifies, service.user_id)
    print(tables)
    print(summary)
    if inprocess.code_digest() != digest:
        print("src/ or services/ changed during the run: these figures mix two versions")
        return 1
    if args.write:
        write(args.write, tables, summary, args, state, seen)
    return 0


def nginx_version() -> str:
    found = subprocess.run([NGINX, "-v"], capture_output=True, text=True, timeout=30)
    return (found.stderr or found.stdout).strip().rsplit(" ", 1)[-1]


def write(
    path: Path,
    tables: str,
    summary: str,
    args: argparse.Namespace,
    state: str,
    seen: dict[str, str],
) -> None:
    write_section(
        path,
        MARKER,
        f"Command: `make bench` (`python bench/gateway.py --seconds {args.seconds} "
        f"--rounds {args.rounds} --connections {args.connections} --threads {args.threads} "
        f"--requests {args.requests}`). Goals (issue 13): through nginx at least "
        f"{RPS_GOAL}x the requests per second of direct to the service, at most "
        f"{ADDED_GOAL_MS} ms added at p50, and a GET served from the edge's cache at least "
        f"{CACHE_GOAL:.0f}x the same GET uncached; each a ratio or difference of cases of "
        "this one run. One `lockgate serve` of the fleet (gunicorn, 1 worker, 8 threads; "
        "users, auth and orders in one process; SQLite, in-process cache and limiter; "
        "limits out of reach; cache TTL an hour; access log on) and one nginx "
        f"({nginx_version()}, the config `render_nginx` makes from fleet.toml, every pool at that "
        "process, 1 worker process, access log on, the edge limit raised out of reach but "
        "checked), both on 127.0.0.1 for the whole run. Cases: `GET /api/v2/users/<id>` "
        "with a `users:read` bearer token, direct and through nginx (the edge's "
        "`auth_request` to `/oauth/verify` is cached per token, so after the first request "
        "it is a verify-cache hit; the service marks the read `no-cache`, so nginx proxies "
        f"every one: `X-Cache-Status: {seen['read'] or 'none'}`; the service still verifies "
        f"the token itself); `GET {DOCUMENT}` ({seen['document_bytes']} bytes, public), "
        "through nginx served from the edge cache (`X-Cache-Status: HIT`, "
        "`proxy_cache_valid 200 10s`, so one request in 10 s goes to the service) and "
        f"direct (the service answers every one). wrk -t{args.threads} "
        f"-c{args.connections} --latency, {args.seconds} s per case and round, "
        f"{args.rounds} rounds, the two cases of a comparison back to back with the one "
        "going first changing each round, the median round kept; then in each round "
        f"{args.requests} serial requests of each users case over one keep-alive "
        "`httpx.Client` per address, in turns of A, B, B, A, each timed alone: the added "
        "p50 judged is p50(through nginx) - p50(direct) of those. wrk, nginx and the "
        f"service share {os.cpu_count()} cores with whatever else ran on this busy shared "
        "machine: the figures are noisy, read the spread of the rounds. Code measured: "
        f"{state}; Python {platform.python_version()} on {platform.machine()}, measured "
        f"{datetime.now(UTC):%Y-%m-%d}.\n\n{tables}\n\n{summary}",
    )


if __name__ == "__main__":
    sys.exit(main())
