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
import ctypes
import gc
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask
from werkzeug.test import EnvironBuilder

from lockgate import Version, Versioning

sys.path.insert(0, str(Path(__file__).parent))
from report import write_section

ROOT = Path(__file__).resolve().parent.parent
TOGGLE_SOURCE = Path(__file__).with_name("callgrind_toggle.c")
#: Where the callgrind runs keep their library, bytecode cache and outputs.
WORK = ROOT / ".lockgate" / "bench-callgrind"
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


def median_us(values: list[int]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] / 1000


# -- instruction counts ------------------------------------------------------


def build_toggle(folder: Path) -> Path:
    """Compile the client requests into a shared library ctypes can load."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not Path("/usr/include/valgrind/callgrind.h").exists():
        raise SystemExit("the callgrind count needs cc and valgrind's headers (make bench-tools)")
    library = folder / "callgrind_toggle.so"
    subprocess.run(
        [compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(TOGGLE_SOURCE)], check=True
    )
    return library


def callgrind_child(name: str, requests: int, library: Path) -> None:
    """Inside valgrind: warm up, then count exactly ``requests`` requests of one case."""
    toggle = ctypes.CDLL(str(library))
    call = callers([case for case in CASES if case.name == name])[name]
    for _ in range(300):
        call()
    gc.collect()  # the collector's counters start from zero on every run
    toggle.lockgate_callgrind_start()
    for _ in range(requests):
        call()
    toggle.lockgate_callgrind_stop()


def child_env(layout: int = 0) -> dict[str, str]:
    """The same few variables on every run of a layout.

    The environment sits at the top of the stack, so its size moves where
    things land in memory, and with them some dict orders and cache hits:
    a few hundred instructions of a request. Each layout pads it differently;
    the report takes the median layout.
    """
    return {
        "LOCKGATE_BENCH_LAYOUT": "x" * (layout * 1531 + layout * layout * 97),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PWD": str(ROOT),
        "PYTHONHASHSEED": "0",
        # Imports run uninstrumented; a bytecode cache outside the tree makes them
        # quick. Every counted run loads the same cached bytecode: code compiled in
        # the run interns other strings than code loaded from the cache.
        "PYTHONPYCACHEPREFIX": str(WORK / "pycache"),
    }


def child_command(name: str, requests: int, library: Path) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--callgrind-child",
        name,
        "--callgrind-requests",
        str(requests),
        "--toggle-library",
        str(library),
    ]


def count_instructions(
    name: str, requests: int, library: Path, folder: Path, layout: int, run: int
) -> int:
    """Total ``Ir`` of ``requests`` requests of case ``name``, in its own callgrind run."""
    out = folder / f"callgrind.{[case.name for case in CASES].index(name)}.{layout}.{run}"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        *child_command(name, requests, library),
    ]
    if shutil.which("setarch"):  # the same addresses on every run: dicts keyed by id agree
        command = ["setarch", platform.machine(), "-R", *command]
    subprocess.run(command, env=child_env(layout), check=True, capture_output=True, cwd=ROOT)
    for line in Path(f"{out}.1").read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {out}.1")


@dataclass
class Counts:
    """``Ir`` totals of one case: one per layout, and a second run of the first."""

    first: list[int]
    again: int

    @property
    def median(self) -> int:
        return sorted(self.first)[len(self.first) // 2]

    @property
    def deterministic(self) -> bool:
        return self.first[0] == self.again


def instruction_counts(requests: int, layouts: int) -> dict[str, Counts]:
    """Every case in each layout, and the first layout twice; two callgrind runs at
    a time (counts do not depend on load)."""
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed (make bench-tools installs it)")
    folder = WORK
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("callgrind.*"):
        old.unlink()
    library = build_toggle(folder)
    # Natively, once: fills the bytecode cache (the client requests do nothing here).
    subprocess.run(child_command(PLAIN, 1, library), env=child_env(), check=True, cwd=ROOT)
    jobs = [(case.name, layout, 1) for layout in range(layouts) for case in CASES]
    jobs += [(case.name, 0, 2) for case in CASES]
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        totals = list(
            pool.map(
                lambda job: count_instructions(job[0], requests, library, folder, *job[1:]), jobs
            )
        )
    found = dict(zip(jobs, totals, strict=True))
    return {
        case.name: Counts(
            [found[case.name, layout, 1] for layout in range(layouts)],
            found[case.name, 0, 2],
        )
        for case in CASES
    }


# -- the report --------------------------------------------------------------


def verdict(ratio: float) -> str:
    return "met" if ratio <= TARGET else f"NOT met (+{(ratio - TARGET) * 100:.1f} points)"


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
        ratios = [mine / plain for mine, plain in zip(found.first, base.first, strict=True)]
        ir_ratio = sorted(ratios)[len(ratios) // 2]
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30000, help="per case, wall clock")
    parser.add_argument(
        "--callgrind-requests", type=int, default=1000, help="per case and callgrind run"
    )
    parser.add_argument(
        "--layouts", type=int, default=3, help="memory layouts counted (each run twice)"
    )
    parser.add_argument("--write", type=Path)
    parser.add_argument("--no-callgrind", action="store_true", help="wall clock only")
    parser.add_argument("--callgrind-child", help=argparse.SUPPRESS)
    parser.add_argument("--toggle-library", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.callgrind_child:
        callgrind_child(args.callgrind_child, args.callgrind_requests, args.toggle_library)
        return 0

    cases = callers(CASES)
    measure(cases, 3000)  # warm up
    samples = measure(cases, args.requests)
    medians = {name: median_us(values) for name, values in samples.items()}
    for name, value in medians.items():
        print(f"wall clock: {name:42} {value:7.1f} µs  {value / medians[PLAIN]:.3f}x", flush=True)
    if args.no_callgrind:
        return 0
    counts = instruction_counts(args.callgrind_requests, args.layouts)
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
        f"--instr-atstart=no`, {args.callgrind_requests} requests counted after 300 "
        "uninstrumented ones, in a fixed environment (hash seed 0, no address "
        f"randomisation), in {args.layouts} memory layouts (the environment padded "
        "differently; the median layout's ratio is judged); the first layout is run "
        "twice and its two totals of `Ir` must be identical. "
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"measured {datetime.now(UTC):%Y-%m-%d}.\n\n{result}",
    )


if __name__ == "__main__":
    sys.exit(main())
