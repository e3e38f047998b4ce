"""What serving an older version through version changes costs, measured in-process.

One head implementation (v3) serves three versions: v2 through one change,
v1 through two. Each change renames or drops a field of the item schema and
carries a request migration and a by-schema response migration, as a real
service's changes do. Three kinds of request are made in every version: one
item (``GET /api/v{3,2,1}/items/1``), a page of ten items in an envelope
(``GET /api/v{3,2,1}/items``) and a create (``POST /api/v{3,2,1}/items``, a
small JSON body in that version's shape, 201). The targets (issue 9): a
request in a version one change away costs at most 15 % more than the same
request in the head version (v2/v3 ≤ 1.15x), and each further change at most
5 % more (v1/v2 ≤ 1.05x).

Only versioning and the migrations are on the app (no lockgate Runtime: no
ETags, cache, limits or logs), and no version is deprecated, so the lifecycle
headers do not enter the ratios. Measured as ``versioning.py`` measures
(``inprocess.py``): wall clock with the nine cases taking turns request by
request, the median request judged; instructions under callgrind in a fixed
environment, in several memory layouts (the median layout judged), the first
layout run twice. Under callgrind a kind's three versions run in one process
(one after another, each counted in its own dump after all three warmed up),
so the cases compared share a heap and a layout, and the count takes three
runs a layout rather than nine: starting Python and importing under valgrind
is most of a run's time.

    python bench/changes.py [--requests 10000] [--callgrind-requests 200]
                            [--layouts 3] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, jsonify
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.test import EnvironBuilder

from lockgate import (
    RequestInfo,
    ResponseInfo,
    Version,
    VersionChange,
    Versioning,
    field,
    operation,
)
from lockgate import request as migrate_request
from lockgate import response as migrate_response
from lockgate.bodies import read_json

sys.path.insert(0, str(Path(__file__).parent))
import inprocess
from inprocess import Counts, measure, median_us
from report import write_section

#: A version one change away over the head.
ONE_CHANGE = 1.15
#: Each further change over the version one change newer.
FURTHER_CHANGE = 1.05
HEAD, ONE, TWO = "3", "2", "1"
LABELS = (HEAD, ONE, TWO)
#: Where this benchmark's callgrind profiles stay (``callgrind.<case>.<layout>.<run>.1``).
FOLDER = inprocess.WORK / "changes"
FALLBACK_EMAIL = "unknown@example.com"


# -- the app: head v3, v2 one change away, v1 two ------------------------------


class ItemOut(BaseModel):
    id: int
    full_name: str
    email: str
    archived: bool = False


class ItemPage(BaseModel):
    items: list[ItemOut]
    total: int


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full_name: str = Field(min_length=1, max_length=50)
    email: str = Field(min_length=3, max_length=100)


class RenameName(VersionChange):
    """`name` became `full_name`, in items and in the bodies that create them."""

    schemas = [
        field(ItemOut, "full_name").renamed(from_="name"),
        field(ItemIn, "full_name").renamed(from_="name"),
    ]

    @migrate_request(ItemIn)
    def upgrade(req: RequestInfo) -> None:
        req.body["full_name"] = req.body.pop("name")

    @migrate_response(ItemOut)
    def downgrade(res: ResponseInfo) -> None:
        res.body["name"] = res.body.pop("full_name")


class RequireEmail(VersionChange):
    """Items have an `email`, and creating one needs it."""

    schemas = [field(ItemIn, "email").added(), field(ItemOut, "email").added()]

    @migrate_request(ItemIn)
    def fill_email(req: RequestInfo) -> None:
        req.body["email"] = FALLBACK_EMAIL

    @migrate_response(ItemOut)
    def drop_email(res: ResponseInfo) -> None:
        res.body.pop("email", None)


def item(number: int) -> dict[str, Any]:
    return {
        "id": number,
        "full_name": f"Ada Lovelace {number}",
        "email": f"ada{number}@example.com",
        "archived": False,
    }


def head_blueprint() -> Blueprint:
    """The head (v3) implementation, serving all three versions."""
    bp = Blueprint("items", __name__, url_prefix="/items")
    items = {number: item(number) for number in range(1, 11)}

    @bp.get("")
    @operation(response=ItemPage)
    def list_items() -> Any:
        return jsonify(items=list(items.values()), total=len(items))

    @bp.post("")
    @operation(request=ItemIn, response=ItemOut, status=201)
    def create_item() -> Any:
        body = read_json(ItemIn)
        # Not stored: every request of a case does the same work.
        created = {"id": 11, "full_name": body.full_name, "email": body.email, "archived": False}
        return jsonify(created), 201

    @bp.get("/<int:item_id>")
    @operation(response=ItemOut)
    def get_item(item_id: int) -> Any:
        return jsonify(items[item_id])

    return bp


def bench_app() -> Flask:
    app = Flask("changes")
    now = datetime(2026, 6, 1, tzinfo=UTC)
    versions = [
        Version(TWO),
        Version(ONE, changes=[RenameName]),
        Version(HEAD, changes=[RequireEmail]),
    ]
    Versioning(app, versions=versions, head=head_blueprint(), clock=lambda: now)
    return app


# -- the cases -----------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One kind of request, made in every version."""

    name: str
    method: str
    path: str
    status: str
    #: The body in each version's shape, by label; ``None`` for none.
    bodies: dict[str, dict[str, Any]] | None = None

    def case(self, label: str) -> str:
        return f"{self.name}, v{label}"


KINDS = [
    Kind("GET one item", "GET", "/items/1", "200"),
    Kind("GET 10 items (envelope)", "GET", "/items", "200"),
    Kind(
        "POST one item",
        "POST",
        "/items",
        "201",
        {
            HEAD: {"full_name": "Grace Hopper", "email": "grace@example.com"},
            ONE: {"full_name": "Grace Hopper"},
            TWO: {"name": "Grace Hopper"},
        },
    ),
]
CASES = {kind.case(label): (kind, label) for kind in KINDS for label in LABELS}
#: Counted together under callgrind: a kind's three versions, in turn, in one process.
GROUPS = [[kind.case(label) for label in LABELS] for kind in KINDS]


def caller(app: Flask, kind: Kind, label: str) -> Callable[[], None]:
    """One request of ``kind`` in version ``label`` through ``app``'s WSGI callable,
    on a copy of a prebuilt environ (and a fresh stream of the same body bytes)."""
    body = None if kind.bodies is None else kind.bodies[label]
    builder = EnvironBuilder(method=kind.method, path=f"/api/v{label}{kind.path}", json=body)
    base = builder.get_environ()
    data = base["wsgi.input"].read()
    expected = kind.status

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
        assert status.startswith(expected), status

    def call() -> None:
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(data)
        for _ in app.wsgi_app(environ, start_response):
            pass

    return call


def callers(names: list[str]) -> dict[str, Callable[[], None]]:
    app = bench_app()
    return {name: caller(app, *CASES[name]) for name in names}


def check(app: Flask) -> None:
    """Each version answers in its own shape (the benchmark measures real migrations)."""
    client = app.test_client()
    one = {label: client.get(f"/api/v{label}/items/1").get_json() for label in LABELS}
    assert set(one[HEAD]) == {"id", "full_name", "email", "archived"}, one[HEAD]
    assert set(one[ONE]) == {"id", "full_name", "archived"}, one[ONE]
    assert set(one[TWO]) == {"id", "name", "archived"}, one[TWO]
    page = client.get(f"/api/v{TWO}/items").get_json()
    assert page["total"] == 10 and all(set(i) == set(one[TWO]) for i in page["items"]), page
    post = KINDS[2].bodies
    assert post is not None
    created = client.post(f"/api/v{TWO}/items", json=post[TWO])
    assert created.status_code == 201 and created.get_json()["name"] == "Grace Hopper"
    created = client.post(f"/api/v{ONE}/items", json=post[ONE])
    assert created.status_code == 201 and "email" not in created.get_json(), created.get_json()


# -- the report ----------------------------------------------------------------


@dataclass(frozen=True)
class Ratio:
    kind: Kind
    newer: str
    older: str
    target: float
    wall: float
    ir: list[float]

    @property
    def ir_median(self) -> float:
        return inprocess.middle(self.ir)

    @property
    def what(self) -> str:
        steps = "one change over the head" if self.newer == HEAD else "a further change"
        return f"v{self.older}/v{self.newer} ({steps})"


def ratios(medians: dict[str, float], counts: dict[str, Counts]) -> list[Ratio]:
    found = []
    for kind in KINDS:
        for newer, older, target in ((HEAD, ONE, ONE_CHANGE), (ONE, TWO, FURTHER_CHANGE)):
            mine, theirs = kind.case(older), kind.case(newer)
            wall = medians[mine] / medians[theirs]
            found.append(
                Ratio(kind, newer, older, target, wall, counts[mine].ratios(counts[theirs]))
            )
    return found


def twice(found: Counts) -> str:
    """How far the second run of the first layout landed from the first.

    Where a body is validated, the two runs can differ by a few instructions in
    millions, inside pydantic-core's compiled code (which links ahash's
    randomly seeded hash maps); a larger difference would mean the benchmark
    itself is not deterministic.
    """
    delta = found.again - found.first[0]
    return f"{delta:+,} Ir in {found.first[0]:,} ({delta / found.first[0] * 1e6:+.2f} ppm)"


def tables(medians: dict[str, float], counts: dict[str, Counts], cg_requests: int) -> str:
    lines = [
        "| case | µs/request (median) | Ir/request (median layout) | Ir/request in each layout "
        "| run twice |",
        "|---|---:|---:|---|---|",
    ]
    for name in CASES:
        found = counts[name]
        each = " / ".join(f"{total / cg_requests:,.0f}" for total in found.first)
        same = "identical" if found.deterministic else twice(found)
        lines.append(
            f"| {name} | {medians[name]:.1f} | {found.median / cg_requests:,.0f} | {each} "
            f"| {same} |"
        )
    lines += [
        "",
        "| request | ratio | target | wall clock | met (wall) | Ir (median layout) "
        "| Ir in each layout | met (Ir) |",
        "|---|---|---|---:|---|---:|---|---|",
    ]
    for ratio in ratios(medians, counts):
        each = " / ".join(f"{value:.3f}" for value in ratio.ir)
        lines.append(
            f"| {ratio.kind.name} | {ratio.what} | ≤ {ratio.target:.2f}x | {ratio.wall:.3f}x "
            f"| {inprocess.verdict(ratio.wall, ratio.target)} | {ratio.ir_median:.3f}x | {each} "
            f"| {inprocess.verdict(ratio.ir_median, ratio.target)} |"
        )
    return "\n".join(lines)


def main() -> int:
    args = inprocess.arguments(__doc__.splitlines()[0], requests=10000, callgrind_requests=200)
    if args.callgrind_child:
        calls = callers(args.callgrind_child)
        inprocess.counted(list(calls.values()), args.callgrind_requests, args.toggle_library)
        return 0

    source, state = inprocess.source_digest(), inprocess.source_state()
    check(bench_app())
    cases = callers(list(CASES))
    measure(cases, 2000)  # warm up
    samples = measure(cases, args.requests)
    medians = {name: median_us(values) for name, values in samples.items()}
    for kind in KINDS:
        head = medians[kind.case(HEAD)]
        for label in LABELS:
            value = medians[kind.case(label)]
            print(f"wall clock: {kind.case(label):32} {value:7.1f} µs  {value / head:.3f}x of v3")
    if args.no_callgrind:
        return 0
    counts = inprocess.instruction_counts(
        Path(__file__), GROUPS, args.callgrind_requests, args.layouts, FOLDER
    )
    result = tables(medians, counts, args.callgrind_requests)
    print(result)
    if inprocess.source_digest() != source:
        print("src/ changed during the run: these figures mix two versions of the code")
        return 1
    if args.write:
        write(args.write, result, args, state)
    return 0


def write(path: Path, result: str, args: argparse.Namespace, state: str) -> None:
    write_section(
        path,
        "## Version changes (in-process WSGI)",
        f"Command: `make bench` (`python bench/changes.py --requests {args.requests} "
        f"--callgrind-requests {args.callgrind_requests} --layouts {args.layouts}`). "
        "Target (issue 9): a request in a version served through one change costs at most "
        "15 % more than the same request in the head version (v2/v3 ≤ 1.15x), and each "
        "further change at most 5 % more (v1/v2 ≤ 1.05x). The app: one head implementation "
        "(v3) of an item schema; v2 one change away (`email` dropped from items, filled in "
        "on create), v1 two (`full_name` renamed `name` as well), each change with a "
        "request migration and a by-schema response migration; versioning only (no "
        "lockgate Runtime), no version deprecated. Requests: `GET /api/v{3,2,1}/items/1`, "
        "`GET /api/v{3,2,1}/items` (an envelope of 10 items), `POST /api/v{3,2,1}/items` "
        "(a small JSON body in each version's shape, 201). Wall clock: "
        f"{args.requests} requests per case through the WSGI callable on a prebuilt "
        "environ (a fresh body stream each time), the nine cases taking turns request by "
        "request, each request timed alone; the median request is judged. Instructions: "
        "under `valgrind --tool=callgrind --instr-atstart=no`, one run per request kind, "
        f"its three versions warmed up with {inprocess.WARM_UP} uninstrumented requests "
        f"each, then {args.callgrind_requests} requests of each version counted in turn "
        "(one dump each), in a fixed environment (hash seed 0, no address "
        f"randomisation), in {args.layouts} memory layouts (the environment padded "
        "differently; the ratio of the median layout is judged); the first layout is run "
        "twice and its two totals of `Ir` must be identical, or where a body is validated "
        "differ by under a part per million (inside pydantic-core's compiled code). "
        f"Code measured: {state}. Python {platform.python_version()} on "
        f"{platform.machine()}, measured {datetime.now(UTC):%Y-%m-%d}.\n\n{result}",
    )


if __name__ == "__main__":
    sys.exit(main())
