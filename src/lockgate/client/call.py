"""One call's policy and progress, carried from :class:`~.service.ServiceClient`
to the transport and the token flow in ``request.extensions``.

The pooled ``httpx.Client`` is shared by every target on one base URL, so
nothing about a target lives on it: each request brings its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .breaker import Breaker
from .settings import BreakerSettings, Timeouts

__all__ = ["CALL_KEY", "Call"]

#: The key of :class:`Call` in ``httpx.Request.extensions``.
CALL_KEY = "lockgate.call"


@dataclass(slots=True)
class Call:
    """What one :meth:`~.service.ServiceClient.request` may do, and what it did."""

    target: str
    #: The method as a metric label (``other`` for an invented one).
    method: str
    breaker: Breaker
    settings: BreakerSettings
    timeouts: Timeouts
    #: ``time.monotonic()`` by which the call must be over.
    deadline: float
    #: An idempotent method, or a request with an ``Idempotency-Key``.
    retryable: bool
    #: When the client's own deadline ends; later than :attr:`deadline` when
    #: the caller's budget (``X-Request-Deadline-Ms``) is the tighter one.
    own_deadline: float = float("inf")
    #: The half-open trial lease the current attempt holds, if it is the trial.
    trial: str | None = None
    #: The last attempt's outcome, as the ``outcome`` label counts it.
    outcome: str = ""
    attempts: int = 0

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once it has passed)."""
        return self.deadline - time.monotonic()

    def cut_by_caller(self, left: float) -> bool:
        """Whether an attempt given ``left`` seconds had less time than the
        client's own settings allow, because the caller's budget was shorter: its
        timeout then says nothing of the target's health (and a caller sending
        ``X-Request-Deadline-Ms: 1`` must not open the breaker for everyone)."""
        own = min(self.own_deadline - time.monotonic(), self.timeouts.read)
        return self.deadline < self.own_deadline and left < own
