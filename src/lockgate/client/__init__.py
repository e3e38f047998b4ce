"""Service-to-service calls: one :class:`ServiceClient` per target service.

A view calls ``users.get("/api/v2/users/5")`` and gets the answer; under it
(:mod:`.transport`) every call has connect and read timeouts and an overall
deadline cut to the caller's remaining budget (:mod:`.deadline`), retries
with full-jitter backoff where they are safe and the retry budget allows
(:mod:`.breaker`), a circuit breaker per target whose state lives in Redis
so every worker and replica sees the same one, the request id, the trace
context (:mod:`.tracing`), the target's API version and this service's own
token (:mod:`.tokens`), and metrics (:mod:`.metrics`). A call that cannot be
answered raises a problem: 503 :class:`UpstreamUnavailable` or 504
:class:`UpstreamTimeout`.

The rule of this folder: it imports the shared leaves (``errors``,
``problems``, ``config``) and :mod:`lockgate.runtime` (the request id, the
app's Redis, the metric label of a method), nothing else of lockgate; the
runtime, versioning and auth never import it. It is not an extension: it
reads ``app.config`` and the app's Redis client, and keeps nothing of its own
on the app.
"""

from __future__ import annotations

from .breaker import BUDGET_FLOOR, BUDGET_RATIO, BUDGET_WINDOW
from .deadline import HEADER as DEADLINE_HEADER
from .deadline import remaining_budget
from .failures import UpstreamTimeout, UpstreamUnavailable
from .service import ServiceClient
from .settings import DEFAULTS, BreakerSettings, Timeouts
from .tokens import ClientCredentials
from .tracing import trace_id

__all__ = [
    "BUDGET_FLOOR",
    "BUDGET_RATIO",
    "BUDGET_WINDOW",
    "DEADLINE_HEADER",
    "DEFAULTS",
    "BreakerSettings",
    "ClientCredentials",
    "ServiceClient",
    "Timeouts",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "remaining_budget",
    "trace_id",
]
