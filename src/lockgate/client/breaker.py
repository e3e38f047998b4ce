"""A circuit breaker and a retry budget per target, shared by every worker through Redis.

Our own small Lua scripts, not pybreaker: pybreaker's Redis storage reads
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


# Every key of a target shares the hash tag {target}: one Redis Cluster slot.
def _keys(target: str) -> tuple[str, str, str]:
    base = f"lockgate:client:{{{target}}}"
    return f"{base}:state", f"{base}:trial", f"{base}:w:"


_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local second = math.floor(now / 1000)
"""

# KEYS: state, trial lease. ARGV: first call (1/0), lease ms, lease token,
# bucket prefix, bucket ttl, reset ms.
# Returns {admitted, state, ms until a call may pass, is the trial}.
_ADMIT = (
    _PRELUDE
    + """
local state = redis.call('HGET', KEYS[1], 's')
if state == 'open' then
  local reopen = tonumber(redis.call('HGET', KEYS[1], 'u')) or 0
  if now < reopen then return {0, 2, reopen - now, 0} end
  redis.call('HSET', KEYS[1], 's', 'half_open')
  state = 'half_open'
end
if state == 'half_open' then
  if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[2]) then
    return {1, 1, 0, 1}
  end
  local left = redis.call('PTTL', KEYS[2])
  return {0, 1, math.max(math.min(left, tonumber(ARGV[6])), 1), 0}
end
if ARGV[1] == '1' then
  local bucket = ARGV[4] .. second
  redis.call('HINCRBY', bucket, 'c', 1)
  redis.call('EXPIRE', bucket, ARGV[5])
end
return {1, 0, 0, 0}
"""
)

# KEYS: state, trial lease. ARGV: failed (1/0), lease token or '', failures,
# rate, window s, min calls, reset ms, bucket prefix, bucket ttl, state ttl.
# Returns {state, ms until half-open}.
_RECORD = (
    _PRELUDE
    + """
local failed = ARGV[1] == '1'
local window = tonumber(ARGV[5])
local reset = tonumber(ARGV[7])
local prefix = ARGV[8]
local bucket = prefix .. second
redis.call('HINCRBY', bucket, 'n', 1)
if failed then redis.call('HINCRBY', bucket, 'f', 1) end
redis.call('EXPIRE', bucket, ARGV[9])
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[2])
  if failed then
    redis.call('HSET', KEYS[1], 's', 'open', 'u', now + reset, 'k', 0)
    redis.call('EXPIRE', KEYS[1], ARGV[10])
    return {2, reset}
  end
  redis.call('HSET', KEYS[1], 's', 'closed', 'k', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[10])
  for s = second - window + 1, second do redis.call('HDEL', prefix .. s, 'n', 'f') end
  return {0, 0}
end
local state = redis.call('HGET', KEYS[1], 's')
if state == 'open' then
  local reopen = tonumber(redis.call('HGET', KEYS[1], 'u')) or now
  return {2, math.max(reopen - now, 0)}
elseif state == 'half_open' then
  return {1, 0}
end
if not failed then
  if (tonumber(redis.call('HGET', KEYS[1], 'k')) or 0) > 0 then
    redis.call('HSET', KEYS[1], 'k', 0)
  end
  return {0, 0}
end
local opened = redis.call('HINCRBY', KEYS[1], 'k', 1) >= tonumber(ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[10])
if not opened then
  local n, f = 0, 0
  for s = second - window + 1, second do
    local v = redis.call('HMGET', prefix .. s, 'n', 'f')
    n = n + (tonumber(v[1]) or 0)
    f = f + (tonumber(v[2]) or 0)
  end
  opened = n >= tonumber(ARGV[6]) and f > tonumber(ARGV[4]) * n
end
if opened then
  redis.call('HSET', KEYS[1], 's', 'open', 'u', now + reset, 'k', 0)
  return {2, reset}
end
return {0, 0}
"""
)

# ARGV: bucket prefix, ratio, floor, window s, bucket ttl. Returns 1 (take it) or 0.
_WITHDRAW = (
    _PRELUDE
    + """
local prefix = ARGV[1]
local calls, retries = 0, 0
for s = second - tonumber(ARGV[4]) + 1, second do
  local v = redis.call('HMGET', prefix .. s, 'c', 'r')
  calls = calls + (tonumber(v[1]) or 0)
  retries = retries + (tonumber(v[2]) or 0)
end
if retries >= tonumber(ARGV[3]) + tonumber(ARGV[2]) * calls then return 0 end
local bucket = prefix .. second
redis.call('HINCRBY', bucket, 'r', 1)
redis.call('EXPIRE', bucket, ARGV[5])
return 1
"""
)

_STATE = (
    _PRELUDE
    + """
local state = redis.call('HGET', KEYS[1], 's')
if state == 'open' then
  if now < (tonumber(redis.call('HGET', KEYS[1], 'u')) or 0) then return 2 end
  return 1
end
if state == 'half_open' then return 1 end
return 0
"""
)


class RedisBreaker:
    """Breakers and budgets in one Redis, seen alike by every worker and replica."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._admit = client.register_script(_ADMIT)
        self._record = client.register_script(_RECORD)
        self._withdraw = client.register_script(_WITHDRAW)
        self._state = client.register_script(_STATE)
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
        state, trial, prefix = _keys(target)
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
        state, lease, prefix = _keys(target)
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
        prefix = _keys(target)[2]
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
            return int(self._state(keys=[_keys(target)[0]]))
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
