"""What verifying a bearer token adds to a cached read, measured in-process.

The request: ``GET /api/v2/users/1`` on the users service
(``services.users.create_app``), served from the cache (``X-Cache: hit``).
The target (issue 10): verifying the token adds at most 5 % to the same
cached read without verification (ratio ≤ 1.05x); the verifier caches
verified tokens by SHA-256 digest until their ``exp``, so a repeat token
should cost a hash and a dict lookup.

Two apps per cache backend, both from the same ``create_app(config)``:

- *token verified*: the service as it is. Its tokens come from a
  ``lockgate.auth.KeyStore`` in a folder of this run
  (``LOCKGATE_AUTH_JWKS_FILE`` is the store's ``jwks.json``); the request
  carries ``Authorization: Bearer <token>``, an EdDSA access token for
  ``users`` with the scope ``users:read``, minted as the auth service does
  and valid for the whole run. The rate limiter asks who is calling first
  (one verification a request), the blueprints' ``require_scope`` guard
  (one per blueprint, for reads and writes) then finds the verdict in the
  request's environ.
- *no verification* (the baseline): the same app with the scope guard taken
  out. Every function ``require_scope`` put in ``app.before_request_funcs``
  (the guard of the ``users_v1`` and of the ``users_v2`` blueprint) is
  removed, their then empty entries deleted, and
  ``app.extensions["lockgate.auth"]`` (the verifier) dropped, so nothing
  asks for or reads a token; the request carries no ``Authorization``
  header, and the limiter counts it by address instead of by client.

Backends: the in-process cache (cachelib's ``SimpleCache``, no
``REDIS_URL``; the limiter counts in process) and Redis
(``REDIS_URL=redis://127.0.0.1:6379/15``, a database no test uses, emptied
at the start and the end of a run only; the cached read rides the rate
limiter's round trip). Every other setting is the service's own, except:
the limit is set too high to be reached, the access log is off (as in
``serving.py``), and the cache TTL is an hour, so no entry expires during
the run and every measured request is a hit. Before measuring, both cases
of each backend are checked on the measured apps and requests: 200,
``X-Cache: hit`` and the same body; on the token app the token's digest is
in the verifier's cache, a token without ``users:read`` gets 403 and no
token 401; on the baseline no guard is left and the wrong token still gets
200 (nothing verifies).

Measured as ``versioning.py`` measures (``inprocess.py``), with one change
to the wall clock: a backend's two cases take turns request by request with
each other only, in ten blocks (the backends take turns block by block, and
the case that goes first changes from block to block); the median request
is judged. Not all four in one rotation: there, the case that follows the
other backend's runs measurably slower (likely the other code path leaving
the processor's caches and predictors cold), and the ratio follows the
order (measured once while writing this benchmark, 8,000 rounds an order:
0.99x with the baseline first, 1.17x in-process and 1.10x on Redis with
the token case first; a backend's two cases alone, 1.049x and 1.050x
in-process either way round).
Instructions under callgrind in a fixed environment, in several memory
layouts (the median layout judged), the first layout run twice. Under
callgrind a backend's two cases run in one process (each counted in its own
dump after both warmed up), so the cases compared share a heap and a layout.

    python bench/auth.py [--requests 20000] [--callgrind-requests 300]
                         [--layouts 3] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import redis
from cachelib import SimpleCache
from flask import Flask
from werkzeug.test import EnvironBuilder, run_wsgi_app

from lockgate.auth import KeyStore
from lockgate.fleet.database import upgrade
from lockgate.runtime import Caching
from services.users import create_app

sys.path.insert(0, str(Path(__file__).parent))
import inprocess
from inprocess import Counts, measure, median_us
from report import write_section

TARGET = 1.05
PATH = "/api/v2/users/1"
ISSUER = "http://127.0.0.1:8080/auth"
AUDIENCE = "users"
REDIS_URL = "redis://127.0.0.1:6379/15"
HIGH = "100000000/minute"  # limits on, never reached
#: Where this benchmark's callgrind profiles stay (``callgrind.<backend>.<layout>.<run>.<case>``).
FOLDER = inprocess.WORK / "auth"
#: The run's keys, SQLite file and token; made by the benchmark, read by its children.
STATE = FOLDER / "state"
#: The ``require_scope`` guard, as ``app.before_request_funcs`` holds it.
GUARD = ("lockgate.auth.extension", "_guard_blueprint.<locals>.guard")
BACKENDS = ("in-process cache", "Redis cache")
#: Wall clock: blocks of requests, a backend's two cases taking turns in each.
BLOCKS = 10


# -- the run's state: keys, a user, a token ------------------------------------


def keys() -> KeyStore:
    return KeyStore(STATE / "keys", retain=timedelta(minutes=11))


def mint(store: KeyStore, *, scope: str, lifetime: int) -> str:
    """An access token signed as the auth service signs (``tests/tokens.py``)."""
    key = store.current()
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "client-1",
        "client_id": "client-1",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        "scope": scope,
    }
    return jwt.encode(
        claims, key.private, algorithm="EdDSA", headers={"kid": key.kid, "typ": "at+jwt"}
    )


def database_url() -> str:
    return f"sqlite:///{STATE / 'users.db'}"


def prepare() -> None:
    """A fresh state folder: signing keys, a migrated SQLite file with user 1,
    and the token every case and child sends (one token, so every run hashes
    the same bytes)."""
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    store = keys()
    store.current()  # writes the public jwks.json the service reads
    upgrade(inprocess.ROOT / "services" / "users" / "migrations", database_url())
    app = make_app(BACKENDS[0], verified=True)
    with app.app_context():  # a write invalidates the cached reads
        user = app.extensions["users.store"].create("Ada", "Lovelace", "ada@example.com")
    assert user.id == 1, user
    (STATE / "token").write_text(mint(store, scope="users:read", lifetime=3 * 3600))


def token() -> str:
    return (STATE / "token").read_text()


# -- the apps --------------------------------------------------------------------


def make_app(backend: str, *, verified: bool) -> Flask:
    """The users service on ``backend``; without ``verified``, the scope guard taken out."""
    app = create_app(
        {
            "DATABASE_URL": database_url(),
            "LOCKGATE_AUTH_ISSUER": ISSUER,
            "LOCKGATE_AUTH_JWKS_FILE": str(keys().directory / "jwks.json"),
            "REDIS_URL": REDIS_URL if backend == BACKENDS[1] else None,
            "LOCKGATE_CACHE_URL": None,
            "LOCKGATE_CACHE_ENABLED": True,
            "LOCKGATE_CACHE_TTL": 3600,
            "LOCKGATE_RATE_LIMIT": HIGH,
            "LOCKGATE_RATE_LIMIT_DEPRECATED": HIGH,
            "LOCKGATE_ACCESS_LOG": False,
            "LOCKGATE_TRUSTED_PROXIES": 0,
            "LOCKGATE_TRUSTED_HOSTS": None,
        }
    )
    if not verified:
        without_verification(app)
    return app


def is_guard(function: Callable[..., Any]) -> bool:
    return (function.__module__, function.__qualname__) == GUARD


def without_verification(app: Flask) -> None:
    """Take the scope guard out: ``require_scope``'s before-request functions
    and the verifier go, so nothing reads or checks a token."""
    for name, functions in list(app.before_request_funcs.items()):
        kept = [function for function in functions if not is_guard(function)]
        if len(kept) != len(functions):
            assert name in ("users_v1", "users_v2"), name
            if kept:
                app.before_request_funcs[name] = kept
            else:
                del app.before_request_funcs[name]
    del app.extensions["lockgate.auth"]


# -- the cases -----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    backend: str
    verified: bool

    @property
    def name(self) -> str:
        return f"{self.backend}, {'token verified' if self.verified else 'no verification'}"


CASES = {case.name: case for b in BACKENDS for case in (Case(b, False), Case(b, True))}
#: Counted together under callgrind: a backend's two cases, in turn, in one process.
GROUPS = [[Case(b, False).name, Case(b, True).name] for b in BACKENDS]


def environ(bearer: str | None) -> dict[str, Any]:
    headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
    return EnvironBuilder(path=PATH, headers=headers).get_environ()


def caller(app: Flask, bearer: str | None) -> Callable[[], None]:
    """One ``GET /api/v2/users/1`` through ``app``'s WSGI callable, on a copy of a
    prebuilt environ."""
    base = environ(bearer)

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
        assert status.startswith("200"), status

    def call() -> None:
        for _ in app.wsgi_app(dict(base), start_response):
            pass

    return call


def apps(names: list[str]) -> dict[str, Flask]:
    return {name: make_app(CASES[name].backend, verified=CASES[name].verified) for name in names}


def callers(built: dict[str, Flask]) -> dict[str, Callable[[], None]]:
    bearer = token()
    return {
        name: caller(app, bearer if CASES[name].verified else None) for name, app in built.items()
    }


def alternate(cases: dict[str, Callable[[], None]], requests: int) -> dict[str, list[int]]:
    """:func:`inprocess.measure` of each backend's two cases, taking turns with each
    other, in :data:`BLOCKS` blocks: the backends take turns block by block and the
    case that goes first changes from one block to the next."""
    samples: dict[str, list[int]] = {name: [] for name in cases}
    for block in range(BLOCKS):
        for group in GROUPS:
            order = group if block % 2 == 0 else group[::-1]
            found = measure({name: cases[name] for name in order}, requests // BLOCKS)
            for name, times in found.items():
                samples[name] += times
    return samples


def respond(app: Flask, bearer: str | None) -> tuple[str, Any, bytes]:
    body, status, headers = run_wsgi_app(app.wsgi_app, environ(bearer), buffered=True)
    return status, headers, b"".join(body)


def guards(app: Flask) -> int:
    return sum(map(is_guard, (f for fs in app.before_request_funcs.values() for f in fs)))


def cache_of(app: Flask) -> Any:
    return app.extensions["lockgate.caching"]


def check(built: dict[str, Flask]) -> None:
    """Both cases of each backend serve the same cached body; the token case
    really verifies, the baseline verifies nothing."""
    bearer = token()
    wrong = mint(keys(), scope="users:write", lifetime=600)
    for backend in BACKENDS:
        plain, verified = built[Case(backend, False).name], built[Case(backend, True).name]
        bodies = []
        for app, sent in ((plain, None), (verified, bearer)):
            respond(app, sent)  # the first read may fill the cache
            status, headers, body = respond(app, sent)
            assert status.startswith("200"), (backend, status, body)
            assert headers["X-Cache"] == "hit", (backend, headers)
            bodies.append(body)
        assert bodies[0] == bodies[1], bodies
        assert b'"id":1' in bodies[0].replace(b" ", b""), bodies[0]
        for app in (plain, verified):
            on_redis = Caching.on_redis(app)
            assert on_redis if backend == BACKENDS[1] else isinstance(cache_of(app), SimpleCache)
        verifier = verified.extensions["lockgate.auth"]
        assert len(verifier.cache) == 1, verifier.cache  # the token's digest, until its exp
        status, headers, _ = respond(verified, wrong)
        assert status.startswith("403"), status
        assert "insufficient_scope" in headers["WWW-Authenticate"], headers
        assert respond(verified, None)[0].startswith("401")
        assert guards(verified) == 2  # one per blueprint (users_v1, users_v2), reads and writes
        assert "lockgate.auth" not in plain.extensions
        assert guards(plain) == 0
        assert respond(plain, wrong)[0].startswith("200")


# -- the report ----------------------------------------------------------------


@dataclass(frozen=True)
class Ratio:
    backend: str
    wall: float
    ir: list[float]

    @property
    def ir_median(self) -> float:
        return inprocess.middle(self.ir)


def ratios(medians: dict[str, float], counts: dict[str, Counts]) -> list[Ratio]:
    found = []
    for backend in BACKENDS:
        mine, theirs = Case(backend, True).name, Case(backend, False).name
        wall = medians[mine] / medians[theirs]
        found.append(Ratio(backend, wall, counts[mine].ratios(counts[theirs])))
    return found


def twice(found: Counts) -> str:
    """How far the second run of the first layout landed from the first.

    Not to the instruction: the service does work that follows the wall clock
    inside the counts. Above all the in-process rate limiter (``limits``'
    ``MemoryStorage``) starts a ``threading.Timer`` to expire its counters
    every 10 ms while requests come, and a run under valgrind, sharing the
    cores, takes longer some times than others; with the limiter off, the
    in-process cases' two runs agreed within 100 ppm.
    """
    if found.deterministic:
        return "identical"
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
        lines.append(
            f"| {name} | {medians[name]:.1f} | {found.median / cg_requests:,.0f} | {each} "
            f"| {twice(found)} |"
        )
    lines += [
        "",
        "| cache | ratio | target | wall clock | met (wall) | Ir (median layout) "
        "| Ir in each layout | met (Ir) | Ir added per request (medians) |",
        "|---|---|---|---:|---|---:|---|---|---:|",
    ]
    for ratio in ratios(medians, counts):
        each = " / ".join(f"{value:.3f}" for value in ratio.ir)
        added = (
            counts[Case(ratio.backend, True).name].median
            - counts[Case(ratio.backend, False).name].median
        ) / cg_requests
        lines.append(
            f"| {ratio.backend} | token verified / no verification | ≤ {TARGET:.2f}x "
            f"| {ratio.wall:.3f}x | {inprocess.verdict(ratio.wall, TARGET)} "
            f"| {ratio.ir_median:.3f}x | {each} | {inprocess.verdict(ratio.ir_median, TARGET)} "
            f"| {added:+,.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    args = inprocess.arguments(__doc__.splitlines()[0], requests=20000, callgrind_requests=300)
    if args.callgrind_child:
        calls = callers(apps(args.callgrind_child))
        inprocess.counted(list(calls.values()), args.callgrind_requests, args.toggle_library)
        return 0

    source, state = inprocess.source_digest(), inprocess.source_state()
    database = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        database.ping()
    except redis.RedisError as error:
        raise SystemExit(f"the Redis cases need Redis at {REDIS_URL}: {error}") from None
    database.flushdb()
    try:
        prepare()
        built = apps(list(CASES))
        check(built)
        cases = callers(built)
        alternate(cases, 2000)  # warm up
        samples = alternate(cases, args.requests)
        medians = {name: median_us(values) for name, values in samples.items()}
        for backend in BACKENDS:
            base = medians[Case(backend, False).name]
            for case in (Case(backend, False), Case(backend, True)):
                value = medians[case.name]
                print(f"wall clock: {case.name:36} {value:7.1f} µs  {value / base:.3f}x")
        if args.no_callgrind:
            return 0
        counts = inprocess.instruction_counts(
            Path(__file__), GROUPS, args.callgrind_requests, args.layouts, FOLDER
        )
    finally:
        database.flushdb()
        database.close()
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
        "## Token verification on a cached read (in-process WSGI)",
        f"Command: `make bench` (`python bench/auth.py --requests {args.requests} "
        f"--callgrind-requests {args.callgrind_requests} --layouts {args.layouts}`). "
        "Target (issue 10): verifying a token adds at most 5 % to a cached read of "
        f"`GET {PATH}` (token verified / no verification ≤ 1.05x). The app: the users "
        "service (`services.users.create_app`) as it is, the request carrying a valid "
        "EdDSA access token with `users:read` (verified once per request, the verifier "
        "caching verified tokens by SHA-256 digest until their `exp`); the baseline: the "
        "same app with the `require_scope` guard of each users blueprint removed from "
        '`app.before_request_funcs` and `app.extensions["lockgate.auth"]` dropped, the '
        "request carrying no `Authorization` header (the limiter then counts it by address). "
        "Both on the in-process cache (no `REDIS_URL`, in-process limiter) and on Redis "
        f"(`{REDIS_URL}`, the cached read riding the limiter's round trip); the limit out "
        "of reach, the access log off, a cache TTL of an hour; every measured request a "
        "200 `X-Cache: hit` with the same body in both cases (checked first, with a 403 "
        "for a token without the scope on the measured app). Wall clock: "
        f"{args.requests} requests per case through the WSGI callable on a prebuilt "
        "environ, each request timed alone, a cache's two cases taking turns request by "
        f"request in {BLOCKS} blocks (the caches taking turns block by block, the case "
        "going first changing from block to block: a case that follows the other "
        "cache's code path runs slower, so the four in one rotation would make the ratio "
        "depend on the order); the median request is judged. Instructions: under `valgrind "
        "--tool=callgrind --instr-atstart=no`, one run per cache, its two cases warmed up "
        f"with {inprocess.WARM_UP} uninstrumented requests each, then "
        f"{args.callgrind_requests} requests of each counted in turn (one dump each), in a "
        "fixed environment (hash seed 0, no address randomisation), in "
        f"{args.layouts} memory layouts (the environment padded differently; the ratio of "
        "the median layout is judged); the first layout is run twice, and its two totals "
        "differ by the parts per million shown: work that follows the wall clock runs "
        "inside the counts (above all the in-process limiter's timer thread, which "
        "`limits`' `MemoryStorage` starts every 10 ms while requests come). "
        f"Code measured: {state}. Python {platform.python_version()} on "
        f"{platform.machine()}, measured {datetime.now(UTC):%Y-%m-%d}.\n\n{result}",
    )


if __name__ == "__main__":
    sys.exit(main())
