"""Exact rate limits per client, shared by every worker through Redis.

Counting is a fixed window. On Redis one Lua script increments the counter,
gives a new counter its expiry and returns count and TTL in a single round
trip, so N concurrent requests over any number of workers admit exactly the
limit and no key lives without a TTL. (The ``limits`` library, which
Flask-Limiter sits on, does the same in three round trips per request: its
script returns no TTL. We use ``limits`` for parsing and for the in-process
counters; Flask-Limiter's headers give an epoch reset and its defaults are per
route, where the IETF ``RateLimit-*`` fields want seconds and we want one
budget per client and version kind.)

Buckets: a request to a deprecated version counts against
``LOCKGATE_RATE_LIMIT_DEPRECATED``, any other against ``LOCKGATE_RATE_LIMIT``;
``LOCKGATE_RATE_LIMIT_VERSIONS`` (``{"1": "50/minute"}``) sets a version's own,
and :func:`limit` a route's own. Redis down: requests are let through (fail
open), a warning is logged, and ``/readyz`` reports Redis as failing.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from flask import Flask, Response, current_app, g, request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage

from ..problems import Problem
from ..versioning import request_version
from ..versioning.middleware import ERROR_PATH
from .callers import client_key
from .redis import redis_client
from .settings import service_name, settle

__all__ = ["RateLimits", "Rider", "limit", "refund", "ride", "spend"]

F = TypeVar("F", bound=Callable[..., Any])
#: Another extension's Redis reads for this request: the keys to ``MGET`` and
#: what to do with their values, or ``None`` when it needs nothing.
Rider = Callable[[], tuple[list[str], Callable[[list[Any]], None]] | None]
#: ``(item, key, keys to MGET alongside) -> (count, seconds left, their values)``.
Counter = Callable[[RateLimitItem, str, list[str]], tuple[int, int, list[Any]]]
#: ``(item, key)``: give one request back to ``key``'s budget (see :func:`refund`).
Refund = Callable[[RateLimitItem, str], None]
LIMIT_ATTR = "_lockgate_rate_limit"
logger = logging.getLogger("lockgate.ratelimit")


def limit(value: str) -> Callable[[F], F]:
    """Give a view its own limit (``"10/minute"``), counted apart from the defaults."""
    parse(value)  # fail at import time on a typo

    def decorate(view: F) -> F:
        setattr(view, LIMIT_ATTR, value)
        return view

    return decorate


@dataclass
class _LimitState:
    count: Counter
    service: str
    default: RateLimitItem | None
    deprecated: RateLimitItem | None
    versions: dict[str, RateLimitItem]
    routes: dict[str, RateLimitItem] = field(default_factory=dict)
    warned_at: float = 0.0
    riders: list[Rider] = field(default_factory=list)
    shared: bool = False
    refund: Refund | None = None


def ride(app: Flask, rider: Rider) -> bool:
    """Let another extension's Redis reads travel in the limiter's round trip.

    A cached read pays one round trip instead of two. Only on Redis (the
    in-process counters have no round trip to share); returns whether the
    rider was taken. A request the limiter does not count runs no riders: their
    owners read on their own then.
    """
    state: _LimitState = app.extensions["lockgate.ratelimit"]
    if state.shared:
        state.riders.append(rider)
    return state.shared


class RateLimits:
    """Per-client limits with ``RateLimit-*`` headers and 429 problem+json."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Set limits up on ``app``.

        Reads ``REDIS_URL`` (none: in-process counters), ``LOCKGATE_SERVICE``
        (key namespace, default the app name), ``LOCKGATE_RATE_LIMIT``
        (``"6000/minute"``; empty turns limits off), ``LOCKGATE_RATE_LIMIT_DEPRECATED``
        (``None``: half of ``LOCKGATE_RATE_LIMIT``, same window; empty: no
        bucket of its own), ``LOCKGATE_RATE_LIMIT_VERSIONS`` (``{}``).
        """
        if "lockgate.ratelimit" in app.extensions:
            raise RuntimeError("lockgate.RateLimits is already registered on this app")
        settle(app)
        config = app.config
        service = service_name(app)
        client = redis_client(app)
        prefix = f"lockgate:rl:{service}"
        if client is not None:
            count, refund = _redis_counter(client, prefix), _redis_refund(client, prefix)
        else:
            count, refund = _memory_counter_and_refund()
        deprecated = config["LOCKGATE_RATE_LIMIT_DEPRECATED"]
        app.extensions["lockgate.ratelimit"] = _LimitState(
            count=count,
            refund=refund,
            shared=client is not None,
            service=service,
            default=(default := _item(config["LOCKGATE_RATE_LIMIT"])),
            deprecated=_half(default) if deprecated is None else _item(deprecated),
            versions={k: parse(v) for k, v in config["LOCKGATE_RATE_LIMIT_VERSIONS"].items()},
        )
        app.before_request(_check)
        app.after_request(_headers)


_INCR = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


def _redis_counter(client: redis.Redis, prefix: str) -> Counter:
    """Count on Redis: the script and the riders' ``MGET`` written in one send
    on a pooled connection, their two replies read back.

    Below redis-py's pipeline on purpose: this runs on every request, and the
    pipeline's command stack, callbacks and retry wrapper cost about half the
    client-side CPU of the round trip (measured: 150 against 85 µs per call on
    a loaded 2-core machine). ``EVAL``, not ``EVALSHA``: no ``NOSCRIPT`` dance
    after a Redis restart, and Redis caches the compiled script by its digest.
    """
    pool = client.connection_pool

    def count(item: RateLimitItem, key: str, also: list[str]) -> tuple[int, int, list[Any]]:
        window = item.get_expiry()
        commands: list[tuple[Any, ...]] = [
            ("EVAL", _INCR, 1, f"{prefix}:{item.amount}/{window}:{key}", window)
        ]
        if also:
            commands.append(("MGET", *also))
        connection = pool.get_connection()
        try:
            connection.send_packed_command(connection.pack_commands(commands))  # type: ignore[no-untyped-call]
            found = connection.read_response()
            values = connection.read_response() if also else []
        except BaseException:
            # A reply may be left unread on the socket: never reuse it.
            connection.disconnect()  # type: ignore[no-untyped-call]
            raise
        finally:
            pool.release(connection)
        return int(found[0]), int(found[1]), list(values)

    return count


_DECR = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end
return 0
"""


def _redis_refund(client: redis.Redis, prefix: str) -> Refund:
    def refund(item: RateLimitItem, key: str) -> None:
        name = f"{prefix}:{item.amount}/{item.get_expiry()}:{key}"
        # Only a live counter (which keeps its TTL): a DECR of one that expired
        # would leave a key without a TTL.
        client.eval(_DECR, 1, name)

    return refund


def _memory_counter_and_refund() -> tuple[Counter, Refund]:
    storage = MemoryStorage()

    def count(item: RateLimitItem, key: str, also: list[str]) -> tuple[int, int, list[Any]]:
        full = item.key_for(key)
        found = storage.incr(full, item.get_expiry())
        return found, max(0, math.ceil(storage.get_expiry(full) - time.time())), []

    def refund(item: RateLimitItem, key: str) -> None:
        storage.decr(item.key_for(key))

    return count, refund


def _half(item: RateLimitItem | None) -> RateLimitItem | None:
    """The default for deprecated versions: half the normal budget, same window."""
    if item is None:
        return None
    return type(item)(max(1, item.amount // 2), item.multiples)


def _item(value: str | None) -> RateLimitItem | None:
    return parse(value) if value else None


def _choose(state: _LimitState) -> tuple[RateLimitItem, str] | None:
    """The limit that applies to this request, and its bucket name."""
    if request.url_rule is not None and request.url_rule.rule == ERROR_PATH:
        # Refused by versioning (retired, brownout, bad version): costs nothing
        # to answer, and a client out of budget must still learn it is a 410.
        return None
    view = current_app.view_functions.get(request.endpoint or "")
    own = getattr(view, LIMIT_ATTR, None)
    if own is not None:
        item = state.routes.get(own) or state.routes.setdefault(own, parse(own))
        return item, f"route:{request.endpoint}"
    found = request_version()
    version = None if found is None else found.version
    if found is None or version is None:
        return None  # neutral routes (health, docs) are not limited
    label = version.label.text
    if label in state.versions:
        return state.versions[label], f"v{label}"
    # The status versioning decided when the request arrived: the same the
    # headers carry, never a second reading of the clock.
    if found.deprecated and state.deprecated is not None:
        return state.deprecated, "deprecated"
    return (state.default, "default") if state.default is not None else None


def _check() -> None:
    state: _LimitState = current_app.extensions["lockgate.ratelimit"]
    chosen = _choose(state)
    if chosen is None:
        return
    item, bucket = chosen
    key = client_key()
    reads = [found for rider in state.riders if (found := rider()) is not None]
    try:
        count, reset, values = state.count(
            item, f"{bucket}:{key}", [k for keys, _ in reads for k in keys]
        )
    except Exception as error:  # Redis down: fail open, loudly
        now = time.monotonic()
        if now - state.warned_at > 10:
            state.warned_at = now
            logger.warning("rate limiting is off, its storage failed: %s", error)
        return
    for keys, accept in reads:
        accept(values[: len(keys)])
        values = values[len(keys) :]
    remaining = max(0, item.amount - count)
    g.lockgate_rate_limit = (item.amount, remaining, reset)
    if count > item.amount:
        raise Problem(
            429,
            f"rate limit of {item} exceeded; retry in {reset} s",
            code="RateLimited",
            headers={"Retry-After": str(max(1, reset)), **_fields(item.amount, 0, reset)},
        )


def refund(value: str, key: str) -> None:
    """Give back the request :func:`spend` counted against ``key``'s budget of
    ``value``: for budgets of failures, spend before the attempt (so parallel
    tries cannot all pass one look) and refund the ones that succeeded."""
    state: _LimitState = current_app.extensions["lockgate.ratelimit"]
    item = state.routes.get(value) or state.routes.setdefault(value, parse(value))
    if state.refund is None:
        return
    try:
        state.refund(item, f"spend:{key}")
    except Exception as error:  # Redis down: fail open, loudly
        logger.warning("rate limiting is off, its storage failed: %s", error)


def _spent_problem(item: RateLimitItem, reset: int) -> Problem:
    return Problem(
        429,
        f"rate limit of {item} exceeded; retry in {max(1, reset)} s",
        code="RateLimited",
        headers={"Retry-After": str(max(1, reset)), **_fields(item.amount, 0, reset)},
    )


def spend(value: str, key: str) -> None:
    """Count this request against ``key``'s own budget of ``value`` (``"20/minute"``).

    For budgets a view keys itself, as the token endpoint does per client id
    and per address: on the app's counters (Redis when shared), failing open
    as the limiter does.

    :raises Problem: 429 ``RateLimited`` with ``Retry-After`` once it is spent.
    """
    state: _LimitState = current_app.extensions["lockgate.ratelimit"]
    item = state.routes.get(value) or state.routes.setdefault(value, parse(value))
    try:
        count, reset, _ = state.count(item, f"spend:{key}", [])
    except Exception as error:  # Redis down: fail open, loudly
        logger.warning("rate limiting is off, its storage failed: %s", error)
        return
    if count > item.amount:
        raise _spent_problem(item, reset)


def _fields(limit_: int, remaining: int, reset: int) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(limit_),
        "RateLimit-Remaining": str(remaining),
        "RateLimit-Reset": str(reset),
    }


def _headers(response: Response) -> Response:
    stats = g.get("lockgate_rate_limit")
    if stats is not None:
        for name, value in _fields(*stats).items():
            response.headers.setdefault(name, value)
    return response
