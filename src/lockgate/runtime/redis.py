"""The app's one Redis client: limits, cached reads, usage and readiness share
its connection pool, so a worker holds one pool, not four."""

from __future__ import annotations

import redis
from flask import Flask

__all__ = ["REDIS_KEY", "redis_client"]

#: Where the client lives: ``app.extensions["lockgate.redis"]``.
REDIS_KEY = "lockgate.redis"


def redis_client(app: Flask) -> redis.Redis | None:
    """The app's Redis client for ``REDIS_URL``, made on first use; ``None``
    without ``REDIS_URL``."""
    if REDIS_KEY not in app.extensions:
        url = app.config.get("REDIS_URL")
        # Short timeouts: a request waits at most this long on a sick Redis,
        # then limits fail open and the cache is skipped.
        app.extensions[REDIS_KEY] = (
            redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1) if url else None
        )
    client: redis.Redis | None = app.extensions[REDIS_KEY]
    return client
