"""What lockgate's versioning adds to a request, measured in-process.

The same JSON route is called straight through WSGI: on plain Flask (one
blueprint registered by hand at /api/v1 and /api/v2, as Flask users do), then
through lockgate by URL, by header and as a deprecated version. The cases take
turns request by request (plain, URL, header, deprecated, plain, ...), so
whatever the shared machine does at a moment hits all four alike, and each
request is timed on its own. The figure judged against the target is the
median request of each case (noise lands in the tail, not the middle); the
10th percentile is printed beside it.

    python bench/versioning.py [--requests 30000] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask
from werkzeug.test import EnvironBuilder

from lockgate import Version, Versioning

sys.path.insert(0, str(Path(__file__).parent))
from report import write_section

TARGET_US = 8.0
BODY = {"id": 1, "name": "Ada Lovelace", "email": "ada@example.com"}


def plain_app() -> Flask:
    """What Flask users do today: the same blueprint mounted at /api/v1 and /api/v2."""
    app = Flask("plain")
    users = Blueprint("users", __name__)

    @users.get("/users/<int:id>")
    def get_user(id: int) -> dict[str, Any]:
        return BODY

    app.register_blueprint(users, url_prefix="/api/v1", name="users_v1")
    app.register_blueprint(users, url_prefix="/api/v2", name="users_v2")
    return app


def lockgate_app() -> Flask:
    app = Flask("versioned")
    now = datetime(2026, 6, 1, tzinfo=UTC)
    versioning = Versioning(
        app,
        versions=[
            Version(
                "1",
                deprecated="2026-01-01",
                sunset="2027-06-30T23:59:59Z",
                policy="https://example.com/v1",
                successor="2",
            ),
            Version("2"),
        ],
        vendor="bench",
        clock=lambda: now,
    )
    users = Blueprint("users", __name__)

    @users.get("/users/<int:id>")
    def get_user(id: int) -> dict[str, Any]:
        return BODY

    versioning.register_blueprint(users, versions=("1", "2"))
    return app


def caller(app: Flask, path: str, headers: dict[str, str] | None = None) -> Callable[[], None]:
    base = EnvironBuilder(path=path, headers=headers or {}).get_environ()

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
        assert status.startswith("200"), status

    def call() -> None:
        for _ in app.wsgi_app(dict(base), start_response):
            pass

    return call


def measure(cases: dict[str, Callable[[], None]], requests: int) -> dict[str, list[int]]:
    """Nanoseconds of each request, the cases taking turns request by request."""
    clock = time.perf_counter_ns
    samples: dict[str, list[int]] = {name: [] for name in cases}
    pairs = [(call, samples[name]) for name, call in cases.items()]
    for _ in range(requests):
        for call, times in pairs:
            started = clock()
            call()
            times.append(clock() - started)
    return samples


def percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[int(fraction * (len(ordered) - 1))] / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30000, help="per case")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()

    plain, versioned = plain_app(), lockgate_app()
    cases = {
        "plain Flask blueprints": caller(plain, "/api/v2/users/1"),
        "lockgate, URL (/api/v2/users/1)": caller(versioned, "/api/v2/users/1"),
        "lockgate, header (API-Version: 2)": caller(
            versioned, "/api/users/1", {"API-Version": "2"}
        ),
        "lockgate, deprecated v1 (URL)": caller(versioned, "/api/v1/users/1"),
    }
    measure(cases, 3000)  # warm up
    samples = measure(cases, args.requests)
    medians = {name: percentile(values, 0.5) for name, values in samples.items()}
    lows = {name: percentile(values, 0.1) for name, values in samples.items()}
    base, base_low = medians["plain Flask blueprints"], lows["plain Flask blueprints"]
    lines = [
        "| case | µs/request (median) | added µs (median) | ratio to plain | added µs (p10) "
        "| < 8 µs added |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, value in medians.items():
        added = value - base
        verdict = (
            "" if name == "plain Flask blueprints" else ("met" if added < TARGET_US else "NOT met")
        )
        lines.append(
            f"| {name} | {value:.1f} | {added:+.1f} | {value / base:.2f}x "
            f"| {lows[name] - base_low:+.1f} | {verdict} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.write:
        write(args.write, table, args)
    return 0


def write(path: Path, table: str, args: argparse.Namespace) -> None:
    write_section(
        path,
        "## Versioning overhead (in-process WSGI)",
        f"Command: `make bench` (`python bench/versioning.py --requests {args.requests}`): "
        f"{args.requests} requests per case, the four cases taking turns request by "
        "request, each request timed alone (wall clock); the median request is judged, "
        f"the 10th percentile shown beside it. Python {platform.python_version()} on "
        f"{platform.machine()}, "
        f"measured {datetime.now(UTC):%Y-%m-%d}.\n\n{table}",
    )


if __name__ == "__main__":
    sys.exit(main())
