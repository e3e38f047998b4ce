"""A circuit breaker and a retry budget per target, shared by every worker through Redis.

Our own small Lua scripts (:mod:`.scripts`), not pybreaker: pybreaker's Redis storage reads
and writes the state in separate commands, so two workers that both see
"half-open" both send a trial. Here one script decides "may I call" and
another records the outcome, each a single round trip, and the half-open
trial is a lease taken with ``SET NX PX`` inside the admitting script: of all
processes and replicas exactly one gets it, and a trial whose process dies
frees it when the lease expires. Time is Redis's own (``TIME``), so replicas
with skewed clocks agree on when the breaker half-opens.

State per target: ``closed`` (calls flow; ``failures`` consecutive failures,
or a failure rate over ``rate`` in the last ``window`` seconds with at least
``min_calls`` outcomes, open it), ``open`` (calls fail fast for ``reset``
seconds), ``half_open`` (one trial: success closes and forgets the window,
failure reopens). Outcomes are counted in one-second buckets.

The retry budget rides on the same buckets: a retry is allowed while the
retries of the last :data:`BUDGET_WINDOW` seconds stay under
:data:`BUDGET_RATIO` of the calls plus :data:`BUDGET_FLOOR`, so a full outage
adds at most about 10 % load, and a single failed call at low traffic can
still retry.

Redis down: the breaker fails open (every call is let through, none is
recorded) and a warning is logged at most once per 10 s; retries then draw
on this process's own budget (:class:`LocalBreaker`'s), so they stay capped.
After a failure Redis is left alone for :data:`REDIS_PAUSE` seconds, so one
call a second, not every call, pays the Redis client's own timeouts and
retries (redis-py 8 retries ten times with backoff by default).
Without Redis at all, :class:`LocalBreaker` keeps the same state in process:
correct for a single process only, each worker then has its own breaker.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

from . import scripts
from .scripts import keys as target_keys
from .settings import BreakerSettings

__all__ = [
    "BUDGET_FLOOR",
    "BUDGET_RATIO",
    "BUDGET_WINDOW",
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "STATE_NAMES",
    "Admission",
    "Breaker",
    "LocalBreaker",
    "RedisBreaker",
    "breaker_for",
]

#: The states, as the ``circuit_breaker_state`` gauge reports them.
CLOSED, HALF_OPEN, OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", HALF_OPEN: "half_open", OPEN: "open"}
#: Retries may be at most this share of the calls of the window...
BUDGET_RATIO = 0.1
#: ...plus this many, so one failed call at low traffic may still retry.
BUDGET_FLOOR = 3
#: The retry budget's sliding window, in seconds.
BUDGET_WINDOW = 10
#: After Redis failed, calls go through without asking it for this long.
REDIS_PAUSE = 1.0
#: A state kept this long after its last change (an idle target's state expires).
STATE_TTL = 86400
logger = logging.getLogger("lockgate.client")


@dataclass(frozen=True, slots=True)
class Admission:
    """The breaker's answer to "may I call?"."""

    allowed: bool
    #: :data:`CLOSED`, :data:`HALF_OPEN` or :data:`OPEN`.
    state: int
    #: Refused: seconds until a call may be let through again.
    wait: float = 0.0
    #: Admitted as the half-open trial: the lease's token, to hand back to :meth:`Breaker.record`.
    trial: str | None = None


class Breaker(Protocol):
    """Breaker state and retry budget for any number of targets."""

    def admit(
        self, target: str, settings: BreakerSettings, *, first: bool, lease: float
    ) -> Admission:
        """May a call (``first``) or a retry go to ``target`` now? ``lease``: seconds
        the half-open trial may take before another process may try."""
        ...

    def record(
        self, target: str, settings: BreakerSettings, *, failed: bool, trial: str | None
    ) -> int:
        """Count an outcome; returns the state after it."""
        ...

    def withdraw(self, target: str) -> bool:
        """Take one retry from ``target``'s budget; ``False``: none left."""
        ...

    def state(self, target: str) -> int:
        """The state now (an open breaker past its reset reads as half-open)."""
        ...


def _keep(settings: BreakerSettings) -> int:
    """Seconds a bucket lives: the longer of the two windows, and a margin."""
    return max(settings.window_seconds, BUDGET_WINDOW) + 2


class RedisBreaker:
    """Breakers and budgets in one Redis, seen alike by every worker and replica."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._admit = client.register_script(scripts.ADMIT)
        self._record = client.register_script(scripts.RECORD)
        self._withdraw = client.register_script(scripts.WITHDRAW)
        self._state = client.register_script(scripts.STATE)
        #: Used while Redis is down, for the retry budget only.
        self.fallback = LocalBreaker()
        self._warned_at = float("-inf")
        self._paused_until = float("-inf")

    def _usable(self) -> bool:
        return time.monotonic() >= self._paused_until

    def _down(self, error: Exception) -> None:
        now = time.monotonic()
        self._paused_until = now + REDIS_PAUSE
        if now - self._warned_at >= 10:
            self._warned_at = now
            logger.warning(
                "the client's circuit breakers are off (calls go through), their Redis failed: %s",
                error,
            )

    def admit(
        self, target: str, settings: BreakerSettings, *, first: bool, lease: float
    ) -> Admission:
        if not self._usable():
            return self._open_admission(target, first)
        state, trial, prefix = target_keys(target)
        token = uuid.uuid4().hex
        try:
            found: Any = self._admit(
                keys=[state, trial],
                args=[
                    int(first),
                    max(1, math.ceil(lease * 1000)),
                    token,
                    prefix,
                    _keep(settings),
                    math.ceil(settings.reset * 1000),
                ],
            )
        except redis.RedisError as error:
            self._down(error)
            return self._open_admission(target, first)
        allowed, code, wait, is_trial = (int(v) for v in found)
        return Admission(bool(allowed), code, wait / 1000, token if is_trial else None)

    def _open_admission(self, target: str, first: bool) -> Admission:
        """Redis is down: let the call through, and count it for the local budget."""
        if first:
            self.fallback.deposit(target)
        return Admission(True, CLOSED)

    def record(
        self, target: str, settings: BreakerSettings, *, failed: bool, trial: str | None
    ) -> int:
        if not self._usable():
            return CLOSED
        state, lease, prefix = target_keys(target)
        try:
            found: Any = self._record(
                keys=[state, lease],
                args=[
                    int(failed),
                    trial or "",
                    settings.failures,
                    settings.rate,
                    settings.window_seconds,
                    settings.min_calls,
                    math.ceil(settings.reset * 1000),
                    prefix,
                    _keep(settings),
                    STATE_TTL,
                ],
            )
        except redis.RedisError as error:
            self._down(error)
            return CLOSED
        return int(found[0])

    def withdraw(self, target: str) -> bool:
        if not self._usable():
            return self.fallback.withdraw(target)
        prefix = target_keys(target)[2]
        try:
            found: Any = self._withdraw(
                args=[prefix, BUDGET_RATIO, BUDGET_FLOOR, BUDGET_WINDOW, BUDGET_WINDOW + 2]
            )
        except redis.RedisError as error:
            self._down(error)
            return self.fallback.withdraw(target)
        return bool(int(found))

    def state(self, target: str) -> int:
        if not self._usable():
            return CLOSED
        try:
            return int(self._state(keys=[target_keys(target)[0]]))
        except redis.RedisError as error:
            self._down(error)
            return CLOSED


@dataclass(slots=True)
class _Target:
    state: int = CLOSED
    #: Monotonic time the open breaker half-opens.
    reopen: float = 0.0
    consecutive: int = 0
    lease: str | None = None
    lease_until: float = 0.0
    #: Second -> [calls, retries, outcomes, failures].
    buckets: dict[int, list[int]] = field(default_factory=dict)


class LocalBreaker:
    """The same breakers and budgets in this process (one worker's view only)."""

    def __init__(self) -> None:
        self._targets: dict[str, _Target] = {}
        self._lock = threading.Lock()
        _locals.add(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a lock held at fork time would never be released

    def _target(self, target: str, now: float, keep: int) -> _Target:
        found = self._targets.get(target)
        if found is None:
            found = self._targets[target] = _Target()
        oldest = int(now) - keep
        for second in [s for s in found.buckets if s < oldest]:
            del found.buckets[second]
        return found

    @staticmethod
    def _bucket(found: _Target, now: float) -> list[int]:
        return found.buckets.setdefault(int(now), [0, 0, 0, 0])

    def admit(
        self, target: str, settings: BreakerSettings, *, first: bool, lease: float
    ) -> Admission:
        with self._lock:
            now = time.monotonic()
            found = self._target(target, now, _keep(settings))
            if found.state == OPEN:
                if now < found.reopen:
                    return Admission(False, OPEN, found.reopen - now)
                found.state = HALF_OPEN
            if found.state == HALF_OPEN:
                if found.lease is None or now >= found.lease_until:
                    found.lease = uuid.uuid4().hex
                    found.lease_until = now + lease
                    return Admission(True, HALF_OPEN, trial=found.lease)
                return Admission(False, HALF_OPEN, min(found.lease_until - now, settings.reset))
            if first:
                self._bucket(found, now)[0] += 1
            return Admission(True, CLOSED)

    def deposit(self, target: str) -> None:
        """Count a call for the retry budget only."""
        with self._lock:
            now = time.monotonic()
            self._bucket(self._target(target, now, BUDGET_WINDOW + 2), now)[0] += 1

    def record(
        self, target: str, settings: BreakerSettings, *, failed: bool, trial: str | None
    ) -> int:
        with self._lock:
            now = time.monotonic()
            found = self._target(target, now, _keep(settings))
            bucket = self._bucket(found, now)
            bucket[2] += 1
            bucket[3] += int(failed)
            if trial is not None and trial == found.lease and now < found.lease_until:
                found.lease = None
                found.consecutive = 0
                if failed:
                    found.state, found.reopen = OPEN, now + settings.reset
                else:
                    found.state = CLOSED
                    for counts in found.buckets.values():
                        counts[2] = counts[3] = 0
                return found.state
            if found.state != CLOSED:
                return found.state
            if not failed:
                found.consecutive = 0
                return CLOSED
            found.consecutive += 1
            recent = [c for s, c in found.buckets.items() if s > int(now) - settings.window_seconds]
            outcomes = sum(c[2] for c in recent)
            failures = sum(c[3] for c in recent)
            if found.consecutive >= settings.failures or (
                outcomes >= settings.min_calls and failures > settings.rate * outcomes
            ):
                found.state, found.reopen, found.consecutive = OPEN, now + settings.reset, 0
            return found.state

    def withdraw(self, target: str) -> bool:
        with self._lock:
            now = time.monotonic()
            found = self._target(target, now, BUDGET_WINDOW + 2)
            recent = [c for s, c in found.buckets.items() if s > int(now) - BUDGET_WINDOW]
            calls = sum(c[0] for c in recent)
            retries = sum(c[1] for c in recent)
            if retries >= BUDGET_FLOOR + BUDGET_RATIO * calls:
                return False
            self._bucket(found, now)[1] += 1
            return True

    def state(self, target: str) -> int:
        with self._lock:
            found = self._targets.get(target)
            if found is None:
                return CLOSED
            if found.state == OPEN and time.monotonic() >= found.reopen:
                return HALF_OPEN
            return found.state


_local: LocalBreaker | None = None
_shared: weakref.WeakKeyDictionary[redis.Redis, RedisBreaker] = weakref.WeakKeyDictionary()
_made = threading.Lock()
_locals: weakref.WeakSet[LocalBreaker] = weakref.WeakSet()


def _after_fork() -> None:
    global _made
    _made = threading.Lock()
    for breaker in list(_locals):
        breaker._after_fork()


os.register_at_fork(after_in_child=_after_fork)


def breaker_for(client: redis.Redis | None) -> Breaker:
    """The breaker on ``client``'s Redis (one per client), or this process's own."""
    global _local
    with _made:
        if client is None:
            if _local is None:
                _local = LocalBreaker()
            return _local
        found = _shared.get(client)
        if found is None:
            found = _shared[client] = RedisBreaker(client)
        return found
