"""``ServiceClient``: one object per target service, as a view uses it."""

from __future__ import annotations

import time
import weakref
from typing import Any

import httpx
from flask import Flask, current_app, has_app_context, has_request_context
from opentelemetry.trace import StatusCode
from redis import Redis

from ..runtime import request_id
from ..runtime.metrics import method_label
from ..runtime.redis import redis_client
from . import metrics
from .breaker import STATE_NAMES, Breaker, breaker_for
from .call import CALL_KEY, Call
from .deadline import inbound_deadline
from .discovery import base_url, check_name
from .failures import UpstreamTimeout
from .settings import BreakerSettings, Timeouts, resolve
from .tokens import ClientCredentials
from .tracing import client_span
from .transport import IDEMPOTENT, pooled

__all__ = ["ServiceClient", "sf_string"]

#: Arguments of httpx's that the client decides itself.
_OURS = frozenset(("timeout", "auth", "extensions", "follow_redirects"))


def sf_string(value: str) -> str:
    """``value`` as a Structured Field string (RFC 8941 §3.3.3): quoted, with
    ``\\`` and ``"`` escaped; only printable ASCII is allowed.

    :raises ValueError: a character outside 0x20-0x7E.
    """
    if not all(0x20 <= ord(c) <= 0x7E for c in value):
        raise ValueError(f"an Idempotency-Key must be printable ASCII, not {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ServiceClient:
    """Calls to one service of the fleet, with timeouts, retries and a shared breaker.

    ::

        users = ServiceClient("users", version="2", credentials=ClientCredentials(...))
        response = users.get("/api/v2/users/5")   # any status: a 404 is an answer

    :param target: the service's name in the fleet; its base URL is
        ``$LOCKGATE_SERVICE_URL_<TARGET>``, else ``$LOCKGATE_FLEET_URL`` (the
        fleet's front, set by ``lockgate run`` and ``serve``; the name must
        then be a service of the manifest at ``$LOCKGATE_FLEET`` when that is
        set). Found on the first call, so an app can be built before the
        variables are set.
    :param version: the target's API version this code was written against,
        sent as ``API-Version`` on every call.
    :param credentials: this service's own client credentials; their token is
        sent as ``Authorization: Bearer``.
    :param timeouts: connect, read and overall deadline; the caller's
        remaining budget (``X-Request-Deadline-Ms``) cuts the deadline further.
    :param breaker: when the target's breaker opens and for how long.
    :param redis: where the breakers and retry budgets live. Default: inside
        a Flask app, the app's Redis (``REDIS_URL``, shared with the
        runtime); else in process, correct for a single process only.
    :param base_url: the target's URL, instead of the variables above.

    Config, read from ``current_app.config`` when a call runs inside an app,
    else ``LOCKGATE_CLIENT_*`` environment variables; the arguments above win
    over both, as a whole (a :class:`Timeouts` given replaces all three keys):

    - ``LOCKGATE_CLIENT_CONNECT_TIMEOUT`` (1.0 s): to open a connection.
    - ``LOCKGATE_CLIENT_READ_TIMEOUT`` (5.0 s): each read or write.
    - ``LOCKGATE_CLIENT_DEADLINE`` (10.0 s): a whole call, retries included.
    - ``LOCKGATE_CLIENT_BREAKER_FAILURES`` (5): consecutive failures that open the breaker.
    - ``LOCKGATE_CLIENT_BREAKER_RESET`` (5.0 s): how long it stays open.

    Every call sends ``X-Request-ID`` (the current request's), ``traceparent``
    and ``tracestate``, ``API-Version`` and ``X-Request-Deadline-Ms``.

    :raises UpstreamUnavailable: (from any call) the breaker is open, or the
        target could not be reached: 503 with ``Retry-After`` in a view.
    :raises UpstreamTimeout: (from any call) no answer within the deadline: 504.
    :raises ConfigurationError: (from the first call) no address for the target.
    """

    def __init__(
        self,
        target: str,
        *,
        version: str | None = None,
        credentials: ClientCredentials | None = None,
        timeouts: Timeouts | None = None,
        breaker: BreakerSettings | None = None,
        redis: Redis | None = None,
        base_url: str | None = None,
    ) -> None:
        #: The target service's name (its label in metrics, its key in Redis).
        self.target = check_name(target)
        self.version = version
        self.credentials = credentials
        self._timeouts = timeouts
        self._breaker = breaker
        self._redis = redis
        self._base_url = base_url.rstrip("/") if base_url else None
        self._settings: weakref.WeakKeyDictionary[Flask, tuple[Timeouts, BreakerSettings]] = (
            weakref.WeakKeyDictionary()
        )
        self._settings_outside: tuple[Timeouts, BreakerSettings] | None = None
        metrics.ready()

    def __repr__(self) -> str:
        return f"ServiceClient({self.target!r}, version={self.version!r})"

    @property
    def base_url(self) -> str:
        """Where calls go (see ``target``).

        :raises ConfigurationError: neither variable names an address.
        """
        if self._base_url is None:
            self._base_url = base_url(self.target)
        return self._base_url

    def settings(self) -> tuple[Timeouts, BreakerSettings]:
        """The timeouts and breaker settings a call made now would use."""
        if not has_app_context():
            if self._settings_outside is None:
                self._settings_outside = resolve(self._timeouts, self._breaker)
            return self._settings_outside
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        found = self._settings.get(app)
        if found is None:
            found = self._settings[app] = resolve(self._timeouts, self._breaker)
        return found

    def _breaker_store(self) -> Breaker:
        if self._redis is not None:
            return breaker_for(self._redis)
        return breaker_for(redis_client(current_app) if has_app_context() else None)

    def breaker_state(self) -> str:
        """The target's breaker now: ``closed``, ``half_open`` or ``open``."""
        return STATE_NAMES[self._breaker_store().state(self.target)]

    def request(
        self, method: str, path: str, *, idempotency_key: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send ``method path`` to the target and return its answer (any status).

        :param path: below the base URL (``/api/v2/users/5``).
        :param idempotency_key: sent as ``Idempotency-Key`` (an RFC 8941
            string), which lets a POST or PATCH be retried.
        :param kwargs: ``params``, ``headers``, ``json``, ``content``,
            ``data``, ``files`` or ``cookies``, as ``httpx`` takes them.
        :raises UpstreamUnavailable: breaker open, target unreachable, or no token.
        :raises UpstreamTimeout: the deadline or the caller's budget ran out.
        """
        given = _OURS & set(kwargs)
        if given:
            raise TypeError(f"ServiceClient decides {', '.join(sorted(given))} itself")
        method = method.upper()
        started = time.monotonic()
        timeouts, settings = self.settings()
        deadline = started + timeouts.deadline
        inbound = inbound_deadline()
        own_deadline = deadline
        if inbound is not None and inbound < deadline:
            deadline = inbound
        label = method_label(method)
        if deadline <= started:
            metrics.count(self.target, label, "deadline")
            raise UpstreamTimeout(
                self.target, f"the caller's budget was spent before {self.target} could be called"
            )
        headers = httpx.Headers(kwargs.pop("headers", None))
        if idempotency_key is not None:
            headers["Idempotency-Key"] = sf_string(idempotency_key)
        if self.version is not None and "API-Version" not in headers:
            headers["API-Version"] = self.version
        if has_request_context() and "X-Request-ID" not in headers:
            headers["X-Request-ID"] = request_id()
        call = Call(
            target=self.target,
            method=label,
            breaker=self._breaker_store(),
            settings=settings,
            timeouts=timeouts,
            deadline=deadline,
            own_deadline=own_deadline,
            retryable=method in IDEMPOTENT or "Idempotency-Key" in headers,
        )
        http = pooled(self.base_url)
        try:
            with client_span(method, self.target, f"{self.base_url}{path}", headers) as span:
                request = http.build_request(
                    method, path, headers=headers, extensions={CALL_KEY: call}, **kwargs
                )
                response = http.send(request, auth=self.credentials)
                if span.is_recording():
                    span.set_attribute("http.response.status_code", response.status_code)
                    if response.status_code >= 500:
                        span.set_status(StatusCode.ERROR)
        finally:
            metrics.observe(self.target, time.monotonic() - started)
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """``GET path``; retried on connect errors, 429, 502, 503 and 504."""
        return self.request("GET", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("HEAD", path, **kwargs)

    def options(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("OPTIONS", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def post(
        self, path: str, *, idempotency_key: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """``POST path``; retried only with an ``idempotency_key``."""
        return self.request("POST", path, idempotency_key=idempotency_key, **kwargs)

    def patch(
        self, path: str, *, idempotency_key: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """``PATCH path``; retried only with an ``idempotency_key``."""
        return self.request("PATCH", path, idempotency_key=idempotency_key, **kwargs)
