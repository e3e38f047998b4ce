"""Everything a production service needs, wired with one line: ``Runtime(app)``.

Request ids and JSON logs, Prometheus metrics, health and readiness (Redis
checked when configured), ETags and cached reads, exact rate limits, usage of
deprecated versions, and ``ProxyFix`` for ``LOCKGATE_TRUSTED_PROXIES`` hops.
Each piece is its own extension and can be used alone.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .caching import Caching, prefetch
from .health import Health
from .logs import RequestLogs
from .metrics import Metrics
from .ratelimit import RateLimits, ride
from .requestid import RequestIds
from .usage import Usage

__all__ = ["ENV_KEYS", "Runtime"]

#: Settings read from the environment when the app's config does not set them.
ENV_KEYS = (
    "REDIS_URL",
    "LOCKGATE_RATE_LIMIT",
    "LOCKGATE_RATE_LIMIT_DEPRECATED",
    "LOCKGATE_RATE_LIMIT_VERSIONS",
    "LOCKGATE_TRUSTED_PROXIES",
    "LOCKGATE_CACHE_ENABLED",
    "LOCKGATE_CACHE_TTL",
    "LOCKGATE_CACHE_CONTROL",
    "LOCKGATE_ACCESS_LOG",
    "LOCKGATE_USAGE_RETENTION_DAYS",
)


def _parse(value: str) -> Any:
    """``30`` -> 30, ``{"1": "5/minute"}`` -> a dict, anything else stays text."""
    try:
        return json.loads(value)
    except ValueError:
        return value


class Runtime:
    """Wire request ids, logs, metrics, health, caching, limits and usage.

    Reads ``REDIS_URL``, ``LOCKGATE_SERVICE`` and ``LOCKGATE_TRUSTED_PROXIES``
    (0: ``X-Forwarded-For`` is ignored) besides each piece's own keys.
    """

    def __init__(self, app: Flask | None = None, **config: Any) -> None:
        self.config = config
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Set every piece up; settings come from ``config``, then the environment
        (:data:`ENV_KEYS`), then each piece's defaults."""
        for key, value in self.config.items():
            app.config.setdefault(key, value)
        for key in ENV_KEYS:
            if key in os.environ and key not in app.config:
                app.config[key] = _parse(os.environ[key])
        hops = int(app.config.setdefault("LOCKGATE_TRUSTED_PROXIES", 0))
        if hops:
            # Only this many proxies' X-Forwarded-For entries are believed.
            app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
        RequestIds(app)
        RequestLogs(app)
        Metrics(app)
        Health(app)
        if app.config.get("REDIS_URL"):
            Health.add_check(app, "redis", _redis_check(app.config["REDIS_URL"]))
        Caching(app)
        RateLimits(app)
        if app.config.get("REDIS_URL"):
            # Cache and limiter share the Redis: a cached read's lookups
            # travel with the limiter's count, one round trip for both.
            ride(app, prefetch)
        Usage(app)


def _redis_check(url: str) -> Any:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)

    def check() -> None:
        client.ping()

    return check
