"""HTTP throughput of the served fleet, side by side in one run (wrk on loopback).

Each case starts `lockgate serve` on 127.0.0.1 with its own settings, seeds
100 users, warms up, then runs wrk for a fixed time; ratios compare cases of
the same run. Requires wrk and a Redis at $REDIS_URL (default the local one).

    python bench/serving.py [--seconds 4] [--rounds 3] [--connections 16]
                            [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
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
    with open(data_dir / "serve.log", "a") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"{case.name}: server did not start; see {data_dir}/serve.log")
        subprocess.run(["wrk", "-t1", "-c4", "-d1s", f"{base}{case.path}"], capture_output=True)
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{args.connections}",
                f"-d{args.seconds}s",
                "--latency",
                f"{base}{case.path}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = seconds_of(re.search(r"^\s+50%\s+(\S+)", out, re.M)[1]) * 1000  # type: ignore[index]
    p99 = seconds_of(re.search(r"^\s+99%\s+(\S+)", out, re.M)[1]) * 1000  # type: ignore[index]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Result(rps, p50, p99, int(errors[1]) if errors else 0)


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
            for index in range(100):
                body = {
                    "first_name": f"User{index}",
                    "last_name": "Bench",
                    "email": f"user{index}@bench.example",
                }
                assert client.post("/api/v2/users", json=body).status_code == 201
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


COMPARISONS = [
    ("granian vs gunicorn, GET /api/v2/users", "granian (2 workers)", "gunicorn (2 workers)", 2.0),
    ("cached vs uncached list of 100", "list of 100, cached", "list of 100, uncached", 3.0),
    ("limiter on vs off", "limiter on", "limiter off", 0.9),
    ("2 workers vs 1", "gunicorn (2 workers)", "gunicorn (1 worker)", 1.7),
    ("deprecated v1 read vs v2 read", "v1 read (deprecated)", "gunicorn (2 workers)", None),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument(
        "--rounds", type=int, default=3, help="every case once per round; the median is kept"
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--write", type=Path)
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
    ]
    runs: dict[str, list[Result]] = {case.name: [] for case in cases}
    with tempfile.TemporaryDirectory(prefix="lockgate-bench-") as folder:
        data_dir = Path(folder)
        seed(data_dir)
        # Rounds rather than one long run per case: a slow minute of the shared
        # machine then costs every case a round, not one case its figure.
        for round_ in range(1, args.rounds + 1):
            for case in cases:
                r = run_case(case, data_dir, args)
                runs[case.name].append(r)
                print(
                    f"round {round_}: {case.name:28} {r.rps:9.0f} req/s  p50 {r.p50_ms:6.2f} ms "
                    f" p99 {r.p99_ms:7.2f} ms  non-2xx {r.errors}",
                    flush=True,
                )
    results = {
        name: sorted(found, key=lambda r: r.rps)[len(found) // 2] for name, found in runs.items()
    }
    lines = [
        "| case | req/s (median round) | p50 ms | p99 ms | non-2xx | req/s of every round |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, r in results.items():
        every = " / ".join(f"{x.rps:.0f}" for x in runs[name])
        lines.append(
            f"| {name} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {every} |"
        )
    lines += ["", "| comparison | ratio (req/s) | goal | met |", "|---|---:|---|---|"]
    for title, a, b, goal in COMPARISONS:
        ratio = results[a].rps / results[b].rps
        goal_text = (
            "-" if goal is None else (f"≥ {goal:.1f}x" if goal >= 1 else "≥ 0.9x (≤ 10 % cost)")
        )
        met = "-" if goal is None else ("yes" if ratio >= goal else "NO")
        lines.append(f"| {title} | {ratio:.2f}x | {goal_text} | {met} |")
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
