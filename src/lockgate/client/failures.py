"""How a call that could not be answered reaches the caller: as problem+json.

Both are :class:`~lockgate.problems.Problem`, so a view that lets them
propagate answers its own client with the right status and never a 500:
503 ``UpstreamUnavailable`` (the breaker is open, or the target could not be
reached) with ``Retry-After``, 504 ``UpstreamTimeout`` (the deadline, or the
caller's remaining budget, ran out).
"""

from __future__ import annotations

import math

from ..problems import Problem

__all__ = ["UpstreamTimeout", "UpstreamUnavailable"]


class UpstreamUnavailable(Problem):
    """503: the target is down or its breaker is open; try again after ``retry_after``.

    :param target: the service that could not be called.
    :param retry_after: seconds until the breaker lets a call through again
        (rounded up, at least 1), sent as ``Retry-After``.
    """

    def __init__(self, target: str, detail: str, *, retry_after: float = 1.0) -> None:
        #: Whole seconds, as ``Retry-After`` carries them.
        self.retry_after = max(1, math.ceil(retry_after))
        #: The service that could not be called.
        self.target = target
        super().__init__(
            503,
            detail,
            title="Upstream unavailable",
            code="UpstreamUnavailable",
            headers={"Retry-After": str(self.retry_after)},
        )


class UpstreamTimeout(Problem):
    """504: the target did not answer within the deadline or the caller's budget.

    :param target: the service that was too slow.
    """

    def __init__(self, target: str, detail: str) -> None:
        #: The service that was too slow.
        self.target = target
        super().__init__(504, detail, title="Upstream timeout", code="UpstreamTimeout")
