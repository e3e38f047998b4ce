"""The machinery of the in-process benchmarks (``versioning.py``, ``changes.py``).

Two ways of measuring a request through an app's WSGI callable:

- Wall clock (:func:`measure`): the cases take turns request by request, so
  whatever the shared machine does at a moment hits all alike, and each
  request is timed on its own; the median request of each case is judged.
- Instructions (:func:`instruction_counts`): a case, or a small group of cases
  counted in turn, runs in a child process under ``valgrind --tool=callgrind
  --instr-atstart=no``; the child (the benchmark script itself, started with
  ``--callgrind-child NAME`` once per case) warms up uninstrumented, then
  :func:`counted` counts exactly N requests of each case between two client
  requests (``callgrind_toggle.c``, built here with ``cc``), one dump each. The
  environment is fixed (hash seed 0, no address randomisation, a collected
  heap before counting), so the first layout, run twice, agrees to the
  instruction; every case runs in several layouts (the environment padded
  differently) and the median layout is judged.

A script that uses the counts adds ``--callgrind-child`` (repeated),
``--callgrind-requests`` and ``--toggle-library`` to its arguments and, given
``--callgrind-child``, calls :func:`counted` with those cases' requests.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOGGLE_SOURCE = Path(__file__).with_name("callgrind_toggle.c")
#: Where the callgrind runs keep their library, bytecode cache and outputs.
WORK = ROOT / ".lockgate" / "bench-callgrind"
#: Uninstrumented requests before a callgrind child starts counting.
WARM_UP = 300

Call = Callable[[], None]


def measure(cases: dict[str, Call], requests: int) -> dict[str, list[int]]:
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


def middle(values: Sequence[float]) -> float:
    """The median of an odd number of values (the upper middle of an even one)."""
    return sorted(values)[len(values) // 2]


def verdict(ratio: float, target: float) -> str:
    return "met" if ratio <= target else f"NOT met (+{(ratio - target) * 100:.1f} points)"


def source_digest() -> str:
    """A digest of the library's source: the same before and after a run, or the
    run measured two versions of the code (others edit the tree as it runs)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def code_digest() -> str:
    """The library's source and the services': what a server benchmark runs."""
    digest = hashlib.sha256(source_digest().encode())
    for path in sorted((ROOT / "services").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def free_port() -> int:
    """A port free on loopback now, for a server the benchmark starts."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def source_state() -> str:
    """The commit measured, and the files of ``src/`` that differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout

    commit = git("rev-parse", "--short", "HEAD").strip()
    edited = [line[3:] for line in git("status", "--porcelain", "--", "src").splitlines()]
    if not edited:
        return f"commit {commit}"
    return f"commit {commit} with uncommitted edits to {', '.join(f'`{f}`' for f in edited)}"


# -- instruction counts ------------------------------------------------------


def arguments(description: str, *, requests: int, callgrind_requests: int) -> argparse.Namespace:
    """The command line both in-process benchmarks take (and their callgrind children)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--requests", type=int, default=requests, help="per case, wall clock")
    parser.add_argument(
        "--callgrind-requests",
        type=int,
        default=callgrind_requests,
        help="per case and callgrind run",
    )
    parser.add_argument(
        "--layouts", type=int, default=3, help="memory layouts counted (the first run twice)"
    )
    parser.add_argument("--write", type=Path)
    parser.add_argument("--no-callgrind", action="store_true", help="wall clock only")
    parser.add_argument("--callgrind-child", action="append", help=argparse.SUPPRESS)
    parser.add_argument("--toggle-library", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


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


def counted(calls: Sequence[Call], requests: int, library: Path) -> None:
    """Inside valgrind: warm up, then count exactly ``requests`` calls of each of
    ``calls`` in turn, each in its own dump (``<out>.1``, ``<out>.2``, ...)."""
    toggle = ctypes.CDLL(str(library))
    for call in calls:
        for _ in range(WARM_UP):
            call()
    for call in calls:
        gc.collect()  # the collector's counters start from zero on every count
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


def child_command(script: Path, names: Sequence[str], requests: int, library: Path) -> list[str]:
    return [
        sys.executable,
        str(script.resolve()),
        *(arg for name in names for arg in ("--callgrind-child", name)),
        "--callgrind-requests",
        str(requests),
        "--toggle-library",
        str(library),
    ]


def count_instructions(
    script: Path, names: Sequence[str], requests: int, library: Path, out: Path, layout: int
) -> list[int]:
    """Total ``Ir`` of ``requests`` requests of each case of ``names``, counted in
    turn in one callgrind run (their profiles left in ``out``.1, ``out``.2, ...)."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        *child_command(script, names, requests, library),
    ]
    if shutil.which("setarch"):  # the same addresses on every run: dicts keyed by id agree
        command = ["setarch", platform.machine(), "-R", *command]
    subprocess.run(command, env=child_env(layout), check=True, capture_output=True, cwd=ROOT)
    return [_total(Path(f"{out}.{dump}")) for dump in range(1, len(names) + 1)]


def _total(profile: Path) -> int:
    for line in profile.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {profile}")


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

    def ratios(self, base: Counts) -> list[float]:
        """This case's count over ``base``'s, layout by layout."""
        return [mine / theirs for mine, theirs in zip(self.first, base.first, strict=True)]


def instruction_counts(
    script: Path,
    groups: Sequence[Sequence[str]],
    requests: int,
    layouts: int,
    folder: Path = WORK,
) -> dict[str, Counts]:
    """Every group of cases of ``script`` in each layout, and the first layout twice,
    a callgrind run per group (its cases counted in turn); as many runs at a time as
    there are cores (counts do not depend on load). The profiles stay in ``folder``
    as ``callgrind.<group>.<layout>.<run>.<case in the group, from 1>``."""
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed (make bench-tools installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("callgrind.*"):
        old.unlink()
    library = build_toggle(folder)
    # Natively, once: fills the bytecode cache (the client requests do nothing here).
    subprocess.run(
        child_command(script, groups[0], 1, library), env=child_env(), check=True, cwd=ROOT
    )
    jobs = [(group, layout, 1) for layout in range(layouts) for group in range(len(groups))]
    jobs += [(group, 0, 2) for group in range(len(groups))]

    def run(job: tuple[int, int, int]) -> list[int]:
        group, layout, again = job
        out = folder / f"callgrind.{group}.{layout}.{again}"
        return count_instructions(script, groups[group], requests, library, out, layout)

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        totals = dict(zip(jobs, pool.map(run, jobs), strict=True))
    found = {
        (name, layout, again): total
        for (group, layout, again), group_totals in totals.items()
        for name, total in zip(groups[group], group_totals, strict=True)
    }
    names = [name for group in groups for name in group]
    return {
        name: Counts([found[name, layout, 1] for layout in range(layouts)], found[name, 0, 2])
        for name in names
    }
