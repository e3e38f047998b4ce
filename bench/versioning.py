"""What lockgate's versioning adds to a request, measured in-process, two ways.

The same JSON route is called straight through the WSGI callable with a
prebuilt environ: on plain Flask (one blueprint registered by hand at /api/v1
and /api/v2, as Flask users do), then through lockgate by URL, by header, by
vendor media type and as a deprecated version. The target: versioning adds
at most 5 % to plain Flask on each of those paths.

- Wall clock: the cases take turns request by request (plain, URL, header,
  ..., plain, ...), so whatever the shared machine does at a moment hits all
  alike, and each request is timed on its own. The median request of each
  case is judged (noise lands in the tail, not the middle).
- Instructions: each case runs alone under ``valgrind --tool=callgrind``,
  the same N requests after the same warm-up, and the instructions executed
  (``Ir``) between two client requests (``callgrind_toggle.c``, built here
  with ``cc``) are counted; imports and warm-up run uninstrumented. The counts
  are deterministic (fixed environment and hash seed, no address randomisation,
  a collected heap before counting): the first layout runs twice and agrees to
  the instruction. Where things land in memory still moves a count by a few
  hundred instructions a request, so every case runs in three layouts (the
  environment padded differently) and the median layout's ratio is judged.

    python bench/versioning.py [--requests 30000] [--callgrind-requests 1000]
                               [--layouts 3] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask
from werkzeug.test import EnvironBuilder

from lockgate import Version, Versioning

sys.path.insert(0, str(Path(__file__).parent))
import inprocess
from inprocess import Counts, measure, median_us
from report import write_section

TARGET = 1.05
PLAIN = "plain Flask blueprints"
BODY = {"id": 1, "name": "Ada Lovelace", "email": "ada@example.com"}


@dataclass(frozen=True)
class Case:
    name: str
    app: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()


CASES = [
    Case(PLAIN, "plain", "/api/v2/users/1"),
    Case("lockgate, URL (/api/v2/users/1)", "lockgate", "/api/v2/users/1"),
    Case("lockgate, header (API-Version: 2)", "lockgate", "/api/users/1", (("API-Version", "2"),)),
    Case(
        "lockgate, media type (vnd.bench.v2+json)",
        "lockgate",
        "/api/users/1",
        (("Accept", "application/vnd.bench.v2+json"),),
    ),
    Case("lockgate, deprecated v1 (URL)", "lockgate", "/api/v1/users/1"),
]


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
    """One request through ``app``'s WSGI callable, on a copy of a prebuilt environ."""
    base = EnvironBuilder(path=path, headers=headers or {}).get_environ()

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
        assert status.startswith("200"), status

    def call() -> None:
        for _ in app.wsgi_app(dict(base), start_response):
            pass

    return call


def callers(cases: list[Case]) -> dict[str, Callable[[], None]]:
    apps = {"plain": plain_app(), "lockgate": lockgate_app()}
    return {case.name: caller(apps[case.app], case.path, dict(case.headers)) for case in cases}


# -- the report --------------------------------------------------------------


def verdict(ratio: float) -> str:
    return inprocess.verdict(ratio, TARGET)


def table(medians: dict[str, float], counts: dict[str, Counts], cg_requests: int) -> str:
    base_us, base = medians[PLAIN], counts[PLAIN]
    lines = [
        "| case | µs/request (median) | wall-clock ratio | ≤ 1.05x (wall) "
        "| Ir/request | Ir ratio (median layout) | ratio in each layout | ≤ 1.05x (Ir) "
        "| run twice |",
        "|---|---:|---:|---|---:|---:|---|---|---|",
    ]
    for case in CASES:
        us, found = medians[case.name], counts[case.name]
        ratios = found.ratios(base)
        ir_ratio = inprocess.middle(ratios)
        wall_ratio = us / base_us
        wall_verdict, ir_verdict = (
            ("", "") if case.name == PLAIN else (verdict(wall_ratio), verdict(ir_ratio))
        )
        each = " / ".join(f"{ratio:.3f}" for ratio in ratios)
        same = "identical" if found.deterministic else "DIFFER"
        lines.append(
            f"| {case.name} | {us:.1f} | {wall_ratio:.3f}x | {wall_verdict} "
            f"| {found.median / cg_requests:,.0f} | {ir_ratio:.3f}x | {each} | {ir_verdict} "
            f"| {same} |"
        )
    return "\n".join(lines)


def main() -> int:
    args = inprocess.arguments(__doc__.splitlines()[0], requests=30000, callgrind_requests=1000)
    if args.callgrind_child:
        calls = callers([case for case in CASES if case.name in args.callgrind_child])
        inprocess.counted(list(calls.values()), args.callgrind_requests, args.toggle_library)
        return 0

    cases = callers(CASES)
    measure(cases, 3000)  # warm up
    samples = measure(cases, args.requests)
    medians = {name: median_us(values) for name, values in samples.items()}
    for name, value in medians.items():
        print(f"wall clock: {name:42} {value:7.1f} µs  {value / medians[PLAIN]:.3f}x", flush=True)
    if args.no_callgrind:
        return 0
    counts = inprocess.instruction_counts(
        Path(__file__), [[case.name] for case in CASES], args.callgrind_requests, args.layouts
    )
    result = table(medians, counts, args.callgrind_requests)
    print(result)
    if args.write:
        write(args.write, result, args)
    return 0


def write(path: Path, result: str, args: argparse.Namespace) -> None:
    write_section(
        path,
        "## Versioning overhead (in-process WSGI)",
        f"Command: `make bench` (`python bench/versioning.py --requests {args.requests} "
        f"--callgrind-requests {args.callgrind_requests} --layouts {args.layouts}`). "
        "Target: versioning adds at most "
        "5 % to plain Flask blueprints (ratio ≤ 1.05x) on every path. Wall clock: "
        f"{args.requests} requests per case through the WSGI callable, the cases taking "
        "turns request by request, each request timed alone; the median request is "
        "judged. Instructions: each case alone under `valgrind --tool=callgrind "
        f"--instr-atstart=no`, {args.callgrind_requests} requests counted after "
        f"{inprocess.WARM_UP} "
        "uninstrumented ones, in a fixed environment (hash seed 0, no address "
        f"randomisation), in {args.layouts} memory layouts (the environment padded "
        "differently; the median layout's ratio is judged); the first layout is run "
        "twice and its two totals of `Ir` must be identical. "
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"measured {datetime.now(UTC):%Y-%m-%d}.\n\n{result}",
    )


if __name__ == "__main__":
    sys.exit(main())
