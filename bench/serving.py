"""HTTP throughput of the served fleet, side by side in one run (wrk on loopback).

Each case starts `lockgate serve` on 127.0.0.1 with its own settings, seeds
100 users, warms up, then runs wrk for a fixed time (the fleet's requests with
a bearer token of a client the run makes); ratios compare cases of
the same run. Requires wrk and a Redis at $REDIS_URL (default the local one).

    python bench/serving.py [--seconds 4] [--rounds 3] [--connections 16]
                            [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from report import write_section

ROOT = Path(__file__).resolve().parent.parent
LOCKGATE = Path(sys.executable).parent / "lockgate"
HIGH = "100000000/minute"  # limits on, never reached


@dataclass
class Case:
    name: str
    path: str
    server: str = "gunicorn"
    workers: int = 2
    env: dict[str, str] = field(default_factory=dict)
    #: More ``lockgate serve`` options.
    options: tuple[str, ...] = ()
    #: ``None``: the fleet (``lockgate serve``); else a peer of bench/peers/.
    peer: str | None = None


#: Every piece of the runtime on: request id, the JSON access log, metrics,
#: the limit check (never reached) and the cache.
EVERYTHING = {"LOCKGATE_ACCESS_LOG": "true"}
#: The read every peer serves too: 10 users from SQLite.
READ = "/api/v2/users?limit=10"
#: How each peer is served: the same 2 workers (and threads) as the fleet.
PEER_APPS = {
    "flask": "bench.peers.flask_app:app",
    "drf": "bench.peers.drf_app:application",
    "cadwyn": "bench.peers.cadwyn_app:app",
}


def peer_command(case: Case, port: int) -> list[str]:
    """The server command line of a peer: gunicorn as ``lockgate serve`` runs it
    (gthread, 8 threads), granian (2 blocking threads) or uvicorn."""
    target = PEER_APPS[str(case.peer)]
    bin_ = Path(sys.executable).parent
    workers = str(case.workers)
    if case.server == "gunicorn":
        return [str(bin_ / "gunicorn"), "-w", workers, "-k", "gthread", "--threads", "8",
                "-b", f"127.0.0.1:{port}", "--access-logfile", "-", target]  # fmt: skip
    if case.server == "granian":
        # Granian's ASGI side runs on its event loop: blocking threads are WSGI's.
        interface = ["--interface", "asgi"] if case.peer == "cadwyn" else [
            "--interface", "wsgi", "--blocking-threads", "2"]  # fmt: skip
        return [str(bin_ / "granian"), *interface, "--workers", workers, "--host",
                "127.0.0.1", "--port", str(port), "--no-ws", target]  # fmt: skip
    if case.server == "uvicorn":
        return [str(bin_ / "uvicorn"), "--workers", workers, "--host", "127.0.0.1",
                "--port", str(port), target]  # fmt: skip
    raise ValueError(case.server)


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seconds_of(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run_case(case: Case, data_dir: Path, args: argparse.Namespace) -> Result:
    port = free_port()
    env = {
        **os.environ,
        "LOCKGATE_DATA_DIR": str(data_dir),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"),
        "LOCKGATE_RATE_LIMIT": HIGH,
        "LOCKGATE_RATE_LIMIT_DEPRECATED": HIGH,
        "LOCKGATE_ACCESS_LOG": "false",
        **case.env,
    }
    command = [
        str(LOCKGATE),
        "serve",
        "--server",
        case.server,
        "--workers",
        str(case.workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--drain-delay",
        "0",
        *case.options,
    ]
    probe = "/healthz"
    if case.peer is not None:
        command, probe = peer_command(case, port), case.path
        env["LOCKGATE_BENCH_DB"] = str(database(data_dir))
    with open(data_dir / "serve.log", "a") as log:
        log.write(f"\n== {case.name}: {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}{probe}", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
            if time.monotonic() > deadline or process.poll() is not None:
                raise NotStarted(f"{case.name}: server did not start (its log is in serve.log)")
        # The fleet's reads need a token (users:read); the peers ignore it.
        auth = (
            []
            if case.peer is not None
            else ["-H", f"Authorization: Bearer {token(base, data_dir)}"]
        )
        subprocess.run(
            ["wrk", "-t1", "-c4", "-d1s", *auth, f"{base}{case.path}"], capture_output=True
        )
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{args.connections}",
                f"-d{args.seconds}s",
                "--latency",
                *auth,
                f"{base}{case.path}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        stop(process)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = seconds_of(re.search(r"^\s+50%\s+(\S+)", out, re.M)[1]) * 1000  # type: ignore[index]
    p99 = seconds_of(re.search(r"^\s+99%\s+(\S+)", out, re.M)[1]) * 1000  # type: ignore[index]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Result(rps, p50, p99, int(errors[1]) if errors else 0)


class NotStarted(Exception):
    """A case's server did not come up: the case is reported, the run goes on."""


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server we started (by its PID); SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def database(data_dir: Path) -> Path:
    """The users service's SQLite file, which the peers read too."""
    found = sorted(data_dir.glob("*.db"))
    if not found:
        raise SystemExit(f"no SQLite database in {data_dir}")
    return next((path for path in found if "users" in path.name), found[0])


def bench_client(data_dir: Path) -> tuple[str, str]:
    """The benchmark's OAuth client in the fleet's auth database (made once):
    the fleet's reads need a token since identity, and the figures include
    verifying it (cached by digest, as in production)."""
    path = data_dir / "bench-client.json"
    if not path.exists():
        made = subprocess.run(
            [
                str(LOCKGATE),
                "clients",
                "create",
                "bench",
                "--scopes",
                "users:read,users:write",
                "--json",
            ],
            cwd=ROOT,
            env={**os.environ, "LOCKGATE_DATA_DIR": str(data_dir)},
            capture_output=True,
            text=True,
            check=True,
        )
        path.write_text(made.stdout)
    found = json.loads(path.read_text())
    return found["client_id"], found["client_secret"]


def token(base: str, data_dir: Path) -> str:
    """An access token from the server at ``base`` (its issuer is its own address)."""
    answer = httpx.post(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=bench_client(data_dir),  # Basic
        timeout=10,
    )
    answer.raise_for_status()
    found: str = answer.json()["access_token"]
    return found


def seed(data_dir: Path) -> None:
    """100 users in the SQLite store every case reads."""
    env = {**os.environ, "LOCKGATE_DATA_DIR": str(data_dir), "LOCKGATE_RATE_LIMIT": HIGH}
    port = free_port()
    process = subprocess.Popen(
        [str(LOCKGATE), "run", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(300):
                try:
                    client.get("/healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            bearer = token(f"http://127.0.0.1:{port}", data_dir)
            client.headers["Authorization"] = f"Bearer {bearer}"
            for index in range(100):
                body = {
                    "first_name": f"User{index}",
                    "last_name": "Bench",
                    "email": f"user{index}@bench.example",
                }
                assert client.post("/api/v2/users", json=body).status_code == 201
    finally:
        stop(process)


COMPARISONS = [
    ("granian vs gunicorn, GET /api/v2/users", "granian (2 workers)", "gunicorn (2 workers)", 2.0),
    ("cached vs uncached list of 100", "list of 100, cached", "list of 100, uncached", 3.0),
    ("limiter on vs off", "limiter on", "limiter off", 0.9),
    ("2 workers vs 1", "gunicorn (2 workers)", "gunicorn (1 worker)", 1.7),
    ("deprecated v1 read vs v2 read", "v1 read (deprecated)", "gunicorn (2 workers)", None),
    # The peers: the same read of 10 users from SQLite.
    (
        "fleet, every piece on, vs plain Flask (gunicorn)",
        "fleet, gunicorn",
        "plain Flask, gunicorn",
        0.85,
    ),
    (
        "access log on vs off",
        "fleet, gunicorn",
        "fleet, gunicorn, access log off",
        0.95,
    ),
    ("fleet vs Cadwyn (granian)", "fleet, granian", "Cadwyn, granian", 2.0),
    ("fleet vs DRF (granian)", "fleet, granian", "DRF, granian", 3.0),
    ("fleet vs Cadwyn (gunicorn vs uvicorn)", "fleet, gunicorn", "Cadwyn, uvicorn", None),
    ("fleet vs DRF (gunicorn)", "fleet, gunicorn", "DRF, gunicorn", None),
    ("fleet: uWSGI vs gunicorn", "fleet, uWSGI", "fleet, gunicorn", None),
]


def goal_text(goal: float | None) -> str:
    if goal is None:
        return "-"
    return f"≥ {goal:.2f}x" + (f" (≤ {(1 - goal) * 100:.0f} % cost)" if goal < 1 else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument(
        "--rounds", type=int, default=3, help="every case once per round; the median is kept"
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--only", nargs="*", help="cases whose name holds one of these words")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (make bench installs it)")
    cases = [
        Case("gunicorn (2 workers)", "/api/v2/users"),
        Case("granian (2 workers)", "/api/v2/users", server="granian"),
        Case("gunicorn (1 worker)", "/api/v2/users", workers=1),
        Case("limiter on", "/api/v2/users?limit=5"),
        Case(
            "limiter off",
            "/api/v2/users?limit=5",
            env={"LOCKGATE_RATE_LIMIT": "", "LOCKGATE_RATE_LIMIT_DEPRECATED": ""},
        ),
        Case("list of 100, cached", "/api/v2/users?limit=100"),
        Case(
            "list of 100, uncached",
            "/api/v2/users?limit=100",
            env={"LOCKGATE_CACHE_ENABLED": "false"},
        ),
        Case("v1 read (deprecated)", "/api/v1/users?limit=20"),
        # The peer table: the same read everywhere, every runtime piece on.
        Case("plain Flask, gunicorn", READ, peer="flask"),
        Case("fleet, gunicorn", READ, env=EVERYTHING),
        Case("fleet, gunicorn, access log off", READ),
        Case("fleet, granian", READ, server="granian", env=EVERYTHING),
        Case("fleet, uWSGI", READ, server="uwsgi", env=EVERYTHING),
        Case("DRF, gunicorn", READ, peer="drf"),
        Case("DRF, granian", READ, server="granian", peer="drf"),
        Case("Cadwyn, uvicorn", READ, server="uvicorn", peer="cadwyn"),
        Case("Cadwyn, granian", READ, server="granian", peer="cadwyn"),
    ]
    if args.only:
        cases = [case for case in cases if any(word in case.name for word in args.only)]
    runs: dict[str, list[Result]] = {case.name: [] for case in cases}
    failed: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="lockgate-bench-") as folder:
        data_dir = Path(folder)
        seed(data_dir)
        # Rounds rather than one long run per case: a slow minute of the shared
        # machine then costs every case a round, not one case its figure.
        for round_ in range(1, args.rounds + 1):
            for case in cases:
                try:
                    r = run_case(case, data_dir, args)
                except NotStarted as error:
                    print(f"round {round_}: {error}", flush=True)
                    failed.add(case.name)
                    continue
                runs[case.name].append(r)
                print(
                    f"round {round_}: {case.name:28} {r.rps:9.0f} req/s  p50 {r.p50_ms:6.2f} ms "
                    f" p99 {r.p99_ms:7.2f} ms  non-2xx {r.errors}",
                    flush=True,
                )
    results = {
        name: sorted(found, key=lambda r: r.rps)[len(found) // 2]
        for name, found in runs.items()
        if found
    }
    lines = [
        "| case | req/s (median round) | p50 ms | p99 ms | non-2xx | req/s of every round |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name in runs:
        if name not in results:
            lines.append(f"| {name} | did not start | | | | |")
            continue
        r = results[name]
        every = " / ".join(f"{x.rps:.0f}" for x in runs[name])
        if name in failed:
            every += " (some rounds did not start)"
        lines.append(
            f"| {name} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {every} |"
        )
    lines += ["", "| comparison | ratio (req/s) | goal | met |", "|---|---:|---|---|"]
    for title, a, b, goal in COMPARISONS:
        if a not in results or b not in results:
            if a in runs and b in runs:
                lines.append(f"| {title} | - | {goal_text(goal)} | not measured |")
            continue
        ratio = results[a].rps / results[b].rps
        met = "-" if goal is None else ("yes" if ratio >= goal else "NO")
        lines.append(f"| {title} | {ratio:.2f}x | {goal_text(goal)} | {met} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        write(args.write, table, args)
    return 0


def write(path: Path, table: str, args: argparse.Namespace) -> None:
    write_section(
        path,
        "## Serving (wrk on loopback)",
        f"Command: `make bench` (`python bench/serving.py --seconds {args.seconds} "
        f"--connections {args.connections} --rounds {args.rounds}`), wrk -t2 "
        f"-c{args.connections} on 127.0.0.1, {args.seconds} s per case and round, every case "
        f"once per round, the median round kept, "
        f"the fleet on SQLite with Redis for limits and cache, {os.cpu_count()} cores shared "
        f"by wrk and the server, measured {datetime.now(UTC):%Y-%m-%d}.\n\n{table}",
    )


if __name__ == "__main__":
    sys.exit(main())
