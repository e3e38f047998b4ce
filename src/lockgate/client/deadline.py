"""Deadlines that travel: ``X-Request-Deadline-Ms`` carries what is left.

Every call sends the milliseconds remaining of its deadline, relative, so the
callee's clock never has to agree with ours. A callee that is itself a
lockgate service gives its own calls at most that much, measured from when
its request arrived: a chain of calls never waits longer than its first
caller would. The arrival is ``request.environ["lockgate.arrived"]`` (a
``time.monotonic()`` value, set by whoever sees the request first) when
present, else the first time the budget is asked for in the request.
"""

from __future__ import annotations

import time

from flask import g, has_request_context, request

__all__ = ["ARRIVED_KEY", "HEADER", "inbound_deadline", "remaining_budget"]

HEADER = "X-Request-Deadline-Ms"
#: Where a server may record the request's arrival (``time.monotonic()``).
ARRIVED_KEY = "lockgate.arrived"
#: Budgets above a day are not believed (and the digits are bounded before ``int``).
_MAX_MS = 86_400_000
_UNSET = object()


def _arrived(now: float) -> float:
    found = request.environ.get(ARRIVED_KEY)
    # Only a plausible monotonic reading of this process: not in the future, not stale.
    if isinstance(found, int | float) and now - 3600 < found <= now:
        return float(found)
    return now


def inbound_deadline() -> float | None:
    """The ``time.monotonic()`` by which the current request's caller wants an
    answer; ``None`` outside a request or when the caller sent no budget."""
    if not has_request_context():
        return None
    found = g.get("lockgate_deadline", _UNSET)
    if found is _UNSET:
        raw = request.headers.get(HEADER, "").strip()
        found = None
        if raw.isascii() and raw.isdigit() and len(raw) <= 9:
            found = _arrived(time.monotonic()) + min(int(raw), _MAX_MS) / 1000
        g.lockgate_deadline = found
    return found if isinstance(found, float) else None


def remaining_budget() -> float | None:
    """Seconds left of the budget the current request's caller gave it
    (``X-Request-Deadline-Ms``), never negative; ``None`` outside a request or
    when the caller gave none.

    A view can skip work it has no time left for, or pass the budget on to
    something that is not a :class:`~lockgate.client.ServiceClient`.
    """
    deadline = inbound_deadline()
    return None if deadline is None else max(0.0, deadline - time.monotonic())
