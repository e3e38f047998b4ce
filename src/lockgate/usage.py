"""Who still calls a deprecated version, how often and when last.

Kept in Redis when ``REDIS_URL`` is set (shared by workers and replicas;
hashes expire ``LOCKGATE_USAGE_RETENTION_DAYS``, 90, after the last call), else
in process. ``lockgate usage`` prints it, so an operator can tell whether a
sunset is safe.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from flask import Flask, Response, current_app, jsonify, request

from .clients import client_label
from .metrics import is_deprecated
from .state import NEUTRAL_ATTR, cache_control, current_version

__all__ = ["Usage", "UsageRow"]

logger = logging.getLogger("lockgate.usage")


@dataclass(frozen=True)
class UsageRow:
    service: str
    version: str
    client: str
    calls: int
    last_seen: float


class _Memory:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: dict[tuple[str, str, str], tuple[int, float]] = {}

    def record(self, service: str, version: str, client: str, now: float) -> None:
        with self.lock:
            calls, _ = self.rows.get((service, version, client), (0, 0.0))
            self.rows[(service, version, client)] = (calls + 1, now)

    def report(self) -> list[UsageRow]:
        with self.lock:
            return [UsageRow(*key, *value) for key, value in self.rows.items()]


class _Redis:
    def __init__(self, url: str, retention: int) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.retention = retention

    def record(self, service: str, version: str, client: str, now: float) -> None:
        calls, last = (
            f"lockgate:usage:{service}:{version}:calls",
            f"lockgate:usage:{service}:{version}:last",
        )
        pipe = self.client.pipeline()
        pipe.hincrby(calls, client, 1)
        pipe.hset(last, client, repr(now))
        pipe.expire(calls, self.retention)
        pipe.expire(last, self.retention)
        pipe.execute()

    def report(self) -> list[UsageRow]:
        rows = []
        for raw in self.client.scan_iter("lockgate:usage:*:calls"):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            _, _, service, version, _ = key.split(":")
            last = self.client.hgetall(key.removesuffix(":calls") + ":last")
            for client, calls in self.client.hgetall(key).items():
                seen = float(last.get(client, b"0"))
                name = client.decode() if isinstance(client, bytes) else str(client)
                rows.append(UsageRow(service, version, name, int(calls), seen))
        return rows


class Usage:
    """Record calls to deprecated versions per client; report them at ``/usage``."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Reads ``REDIS_URL``, ``LOCKGATE_SERVICE``, ``LOCKGATE_USAGE_RETENTION_DAYS``
        (90) and ``LOCKGATE_USAGE_URL`` (``/usage``)."""
        if "lockgate.usage" in app.extensions:
            raise RuntimeError("lockgate.Usage is already registered on this app")
        app.config.setdefault("LOCKGATE_USAGE_RETENTION_DAYS", 90)
        app.config.setdefault("LOCKGATE_USAGE_URL", "/usage")
        store: _Memory | _Redis
        if app.config.get("REDIS_URL"):
            days = int(app.config["LOCKGATE_USAGE_RETENTION_DAYS"])
            store = _Redis(app.config["REDIS_URL"], days * 86400)
        else:
            store = _Memory()
        app.extensions["lockgate.usage"] = store
        app.add_url_rule(app.config["LOCKGATE_USAGE_URL"], "lockgate_usage", usage_view)

        @app.after_request
        def record(response: Response) -> Response:
            version = current_version()
            if version is None or not is_deprecated(version.label.text):
                return response
            service = current_app.config.get("LOCKGATE_SERVICE") or current_app.name
            try:
                store.record(service, version.label.text, client_label(), time.time())
            except Exception as error:  # usage is best effort: never fail the request
                logger.warning("could not record deprecated usage: %s", error)
            return response


def report(app: Flask) -> list[UsageRow]:
    store: _Memory | _Redis = app.extensions["lockgate.usage"]
    return sorted(store.report(), key=lambda r: (r.service, r.version, -r.calls, r.client))


def usage_view() -> Response:
    rows = report(current_app._get_current_object())  # type: ignore[attr-defined]
    if request.args.get("service"):
        rows = [row for row in rows if row.service == request.args["service"]]
    return jsonify(
        [
            {
                "service": row.service,
                "version": row.version,
                "client": row.client,
                "calls": row.calls,
                "last_seen": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row.last_seen)),
            }
            for row in rows
        ]
    )


setattr(usage_view, NEUTRAL_ATTR, True)
cache_control("no-store")(usage_view)
