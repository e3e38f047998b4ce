"""Every runtime setting and its default, in one place.

Each piece settles these with :func:`lockgate.config.apply_settings`, so a
piece used alone and the whole :class:`~lockgate.runtime.Runtime` read the
same keys in the same order (arguments > ``app.config`` > ``LOCKGATE_*``
environment > these defaults).
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from ..config import apply_settings

__all__ = ["DEFAULTS", "enabled", "service_name", "settle"]

DEFAULTS: dict[str, Any] = {
    # Shared state across workers: limits, cached reads, usage, readiness.
    "REDIS_URL": None,
    # Name in metrics, logs, usage and Redis keys (default: the app's name).
    "LOCKGATE_SERVICE": None,
    # X-Forwarded-For hops believed (ProxyFix); 0 ignores the header.
    "LOCKGATE_TRUSTED_PROXIES": 0,
    # Host names this service answers for; None: any (Flask's TRUSTED_HOSTS).
    "LOCKGATE_TRUSTED_HOSTS": None,
    "LOCKGATE_ACCESS_LOG": True,
    "LOCKGATE_METRICS_URL": "/metrics",
    # False: /metrics needs a token with ops:read (`lockgate run` sets it true).
    "LOCKGATE_METRICS_PUBLIC": False,
    "LOCKGATE_HEALTH_URL": "/healthz",
    "LOCKGATE_READY_URL": "/readyz",
    "LOCKGATE_CACHE_ENABLED": True,
    # Where cached reads live: redis://, memcached://host:port; default REDIS_URL.
    "LOCKGATE_CACHE_URL": None,
    "LOCKGATE_CACHE_TTL": 30,
    "LOCKGATE_CACHE_CONTROL": "no-cache",
    "LOCKGATE_RATE_LIMIT": "6000/minute",
    # None: half of LOCKGATE_RATE_LIMIT, same window.
    "LOCKGATE_RATE_LIMIT_DEPRECATED": None,
    "LOCKGATE_RATE_LIMIT_VERSIONS": {},
    "LOCKGATE_USAGE_URL": "/usage",
    # False: /usage needs a token with ops:read (who calls what is for operators).
    "LOCKGATE_USAGE_PUBLIC": False,
    "LOCKGATE_USAGE_RETENTION_DAYS": 90,
    # Distinct clients kept per version; later ones are counted as "other".
    "LOCKGATE_USAGE_MAX_CLIENTS": 100,
    # Idempotency-Key on @idempotent views: seconds a finished answer is replayed,
    # and seconds a running request holds its key (past the longest a request runs).
    "LOCKGATE_IDEMPOTENCY_TTL": 86400,
    "LOCKGATE_IDEMPOTENCY_LOCK_TTL": 60,
}


def settle(app: Flask, given: dict[str, Any] | None = None) -> None:
    """Fill ``app.config`` with every runtime key (idempotent)."""
    apply_settings(app, DEFAULTS, given or {}, extra=("REDIS_URL",))


def service_name(app: Flask) -> str:
    """The service's name: ``LOCKGATE_SERVICE`` or the app's name."""
    return str(app.config.get("LOCKGATE_SERVICE") or app.name)


def enabled(value: Any) -> bool:
    """A switch from config or the environment: ``true``/``1``/``yes`` (any case)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)
