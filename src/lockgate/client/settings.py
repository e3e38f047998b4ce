"""The client's settings: timeouts, breaker thresholds, and where they come from.

Constructor arguments win over ``app.config`` (when a call runs inside a
Flask app), which wins over ``LOCKGATE_CLIENT_*`` environment variables,
which win over :data:`DEFAULTS`: the order of :mod:`lockgate.config`. The
client reads ``app.config`` and never writes it: it is not an extension.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from flask import current_app, has_app_context

from ..config import environment_settings
from ..errors import ConfigurationError

__all__ = ["DEFAULTS", "BreakerSettings", "Timeouts", "resolve"]

#: Every config key the client reads, with its default.
DEFAULTS: dict[str, float] = {
    # Seconds to open a TCP connection (and to wait for a pooled one).
    "LOCKGATE_CLIENT_CONNECT_TIMEOUT": 1.0,
    # Seconds to wait for each read (and write) on the socket.
    "LOCKGATE_CLIENT_READ_TIMEOUT": 5.0,
    # Seconds a whole call may take, retries and backoff included.
    "LOCKGATE_CLIENT_DEADLINE": 10.0,
    # Consecutive failures that open a target's breaker.
    "LOCKGATE_CLIENT_BREAKER_FAILURES": 5,
    # Seconds an open breaker stays open before one trial call is let through.
    "LOCKGATE_CLIENT_BREAKER_RESET": 5.0,
}


def _require(ok: bool, message: str, value: Any) -> None:
    if not ok:
        raise ConfigurationError(f"{message}, not {value!r}")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a call may take, in seconds.

    ``connect`` and ``read`` bound each attempt (each is also cut to what is
    left of the deadline); ``deadline`` bounds the whole call, retries and
    backoff included, and is itself cut to the caller's remaining budget.
    """

    connect: float = 1.0
    read: float = 5.0
    deadline: float = 10.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "deadline"):
            value = getattr(self, name)
            ok = isinstance(value, int | float) and math.isfinite(value) and value > 0
            _require(ok, f"Timeouts.{name} must be a positive number", value)


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When a target's breaker opens, and for how long.

    It opens after ``failures`` consecutive failures, or when more than
    ``rate`` of the calls of the last ``window`` seconds failed and there
    were at least ``min_calls`` of them; it stays open ``reset`` seconds,
    then lets exactly one trial call through.
    """

    failures: int = 5
    rate: float = 0.5
    window: float = 10.0
    min_calls: int = 20
    reset: float = 5.0

    def __post_init__(self) -> None:
        name = "BreakerSettings"
        failures, min_calls = self.failures, self.min_calls
        _require(
            isinstance(failures, int) and failures >= 1, f"{name}.failures must be >= 1", failures
        )
        _require(0 < self.rate <= 1, f"{name}.rate must be in (0, 1]", self.rate)
        _require(1 <= self.window <= 3600, f"{name}.window must be 1 to 3600 s", self.window)
        _require(
            isinstance(min_calls, int) and min_calls >= 1,
            f"{name}.min_calls must be >= 1",
            min_calls,
        )
        _require(0 < self.reset <= 3600, f"{name}.reset must be in (0, 3600] s", self.reset)

    @property
    def window_seconds(self) -> int:
        """The window in whole seconds (the breaker counts in one-second buckets)."""
        return max(1, math.ceil(self.window))


def _found(config: Mapping[str, Any], key: str, environment: Mapping[str, Any]) -> Any:
    if key in config:
        return config[key]
    return environment.get(key, DEFAULTS[key])


def _number(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{key} must be a number, not {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigurationError(f"{key} must be a positive number, not {value!r}")
    return number


def resolve(
    timeouts: Timeouts | None, breaker: BreakerSettings | None
) -> tuple[Timeouts, BreakerSettings]:
    """The settings a call uses: the given ones, else config, environment, defaults.

    :raises ConfigurationError: a key holds something that is not a positive number.
    """
    if timeouts is not None and breaker is not None:
        return timeouts, breaker
    config: Mapping[str, Any] = current_app.config if has_app_context() else {}
    environment = environment_settings()

    def number(key: str) -> float:
        return _number(key, _found(config, key, environment))

    if timeouts is None:
        timeouts = Timeouts(
            connect=number("LOCKGATE_CLIENT_CONNECT_TIMEOUT"),
            read=number("LOCKGATE_CLIENT_READ_TIMEOUT"),
            deadline=number("LOCKGATE_CLIENT_DEADLINE"),
        )
    if breaker is None:
        failures = number(key := "LOCKGATE_CLIENT_BREAKER_FAILURES")
        _require(failures == int(failures), f"{key} must be a whole number", failures)
        reset = number("LOCKGATE_CLIENT_BREAKER_RESET")
        breaker = replace(BreakerSettings(), failures=int(failures), reset=reset)
    return timeouts, breaker
