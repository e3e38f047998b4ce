"""The runtime: everything a production service needs, wired with ``Runtime(app)``.

Request ids and JSON logs, Prometheus metrics, health and readiness (Redis
checked when configured), ETags and cached reads, exact rate limits, usage of
deprecated versions, ``Idempotency-Key`` replays on the views marked
:func:`idempotent`, ``ProxyFix`` for ``LOCKGATE_TRUSTED_PROXIES`` hops and
the allowed hosts of ``LOCKGATE_TRUSTED_HOSTS``. Each piece is its own
extension and can be used alone.

The rule of this folder: it reads versioning only through
:func:`lockgate.versioning.request_version` (and the route template), never
the clock or the bundle; it knows nothing of serving, the fleet or services.
All of its pieces share the app's one Redis client (:mod:`.redis`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from cachelib import BaseCache, RedisCache
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .caching import Caching, cache_control, cached, invalidate, prefetch
from .callers import set_client
from .health import Health
from .idempotency import Idempotency, idempotent
from .logs import RequestLogs
from .memcached import MemcachedCache
from .metrics import Metrics
from .ratelimit import RateLimits, limit, refund, ride, spend
from .redis import redis_client
from .requestid import RequestIds, request_id, trace_id
from .security import Security
from .settings import DEFAULTS, settle
from .usage import Usage

__all__ = [
    "DEFAULTS",
    "Caching",
    "Health",
    "Idempotency",
    "Metrics",
    "RateLimits",
    "RequestIds",
    "RequestLogs",
    "Runtime",
    "RuntimeState",
    "Security",
    "Usage",
    "cache_control",
    "cached",
    "idempotent",
    "invalidate",
    "limit",
    "refund",
    "request_id",
    "set_client",
    "spend",
    "trace_id",
]


@dataclass(frozen=True, slots=True)
class RuntimeState:
    """The pieces of one app's runtime, at ``app.extensions["lockgate.runtime"]``."""

    redis: redis.Redis | None
    request_ids: RequestIds
    logs: RequestLogs
    metrics: Metrics
    health: Health
    caching: Caching
    limits: RateLimits
    usage: Usage
    idempotency: Idempotency
    #: Where cached reads live (the Redis client's cache, Memcached or in process).
    cache: BaseCache

    def close(self) -> None:
        """Close the connections: at shutdown, or when a test drops the app."""
        if isinstance(self.cache, MemcachedCache):
            self.cache.close()
        elif isinstance(self.cache, RedisCache) and self.cache._read_client is not self.redis:
            self.cache._read_client.close()  # a LOCKGATE_CACHE_URL Redis of its own
        if self.redis is not None:
            self.redis.close()


class Runtime:
    """Wire request ids, logs, metrics, health, caching, limits, usage and idempotency keys.

    :param settings: any key of :data:`DEFAULTS` (``REDIS_URL``,
        ``LOCKGATE_RATE_LIMIT``, ...); these win over ``app.config``, which
        wins over ``LOCKGATE_*`` environment variables, which win over the
        defaults.
    """

    def __init__(self, app: Flask | None = None, **settings: Any) -> None:
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"Runtime got unknown settings: {', '.join(sorted(unknown))}")
        self.settings = settings
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, **settings: Any) -> RuntimeState:
        """Set every piece up on ``app``; returns its :class:`RuntimeState`.

        :raises RuntimeError: the runtime is already registered on ``app``.
        """
        if "lockgate.runtime" in app.extensions:
            raise RuntimeError("lockgate.Runtime is already registered on this app")
        settle(app, {**self.settings, **settings})
        hops = int(app.config["LOCKGATE_TRUSTED_PROXIES"])
        if hops:
            # Only this many proxies' X-Forwarded-For entries are believed.
            app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
        # Trusted hosts, relative router redirects, nosniff around everything above.
        Security(app)
        client = redis_client(app)
        health = Health(app)
        if client is not None:
            health.add_check("redis", client.ping)
        state = RuntimeState(
            redis=client,
            request_ids=RequestIds(app),
            logs=RequestLogs(app),
            metrics=Metrics(app),
            health=health,
            caching=Caching(app),
            limits=RateLimits(app),
            usage=Usage(app),
            idempotency=Idempotency(app),
            cache=app.extensions["lockgate.caching"],
        )
        if client is not None and state.caching.on_redis(app):
            # Cache and limiter share the Redis: a cached read's lookups
            # travel with the limiter's count, one round trip for both.
            ride(app, prefetch)
        app.extensions["lockgate.runtime"] = state
        return state
