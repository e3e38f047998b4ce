"""Who still calls a deprecated version, how often and when last.

Kept in Redis when ``REDIS_URL`` is set (shared by workers and replicas;
hashes expire ``LOCKGATE_USAGE_RETENTION_DAYS``, 90, after the last call), else
in process. ``lockgate usage`` prints it, so an operator can tell whether a
sunset is safe. A version keeps at most ``LOCKGATE_USAGE_MAX_CLIENTS`` rows:
the first clients seen keep their names and any later one is counted as
``other``, so callers cannot grow the report (a Lua script decides and
records in one round trip).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import redis
from flask import Flask, Response, current_app, jsonify, request

from ..auth import check_scope
from ..versioning import request_version
from ..views import cache_control, mark_neutral
from .callers import OTHER, client_label
from .redis import redis_client
from .settings import enabled, service_name, settle

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
    def __init__(self, max_clients: int) -> None:
        self.lock = threading.Lock()
        self.rows: dict[tuple[str, str, str], tuple[int, float]] = {}
        self.clients: dict[tuple[str, str], int] = {}
        self.max_clients = max_clients

    def record(self, service: str, version: str, client: str, now: float) -> None:
        with self.lock:
            key = (service, version, client)
            if key not in self.rows and client != OTHER:
                if self.clients.get((service, version), 0) >= self.max_clients:
                    key = (service, version, OTHER)
                else:
                    self.clients[(service, version)] = self.clients.get((service, version), 0) + 1
            calls, _ = self.rows.get(key, (0, 0.0))
            self.rows[key] = (calls + 1, now)

    def report(self) -> list[UsageRow]:
        with self.lock:
            return [UsageRow(*key, *value) for key, value in self.rows.items()]


#: KEYS: calls hash, last-seen hash; ARGV: client, now, retention, max clients.
#: ``other`` is not counted against the bound, so the report has at most N + 1 rows.
_RECORD = """
local client = ARGV[1]
if redis.call('HEXISTS', KEYS[1], client) == 0 and client ~= 'other' then
  local known = redis.call('HLEN', KEYS[1]) - redis.call('HEXISTS', KEYS[1], 'other')
  if known >= tonumber(ARGV[4]) then client = 'other' end
end
redis.call('HINCRBY', KEYS[1], client, 1)
redis.call('HSET', KEYS[2], client, ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return client
"""


class _Redis:
    def __init__(self, client: redis.Redis, retention: int, max_clients: int) -> None:
        self.client = client
        self.retention = retention
        self.max_clients = max_clients
        self.script = client.register_script(_RECORD)

    def record(self, service: str, version: str, client: str, now: float) -> None:
        keys = [
            f"lockgate:usage:{service}:{version}:calls",
            f"lockgate:usage:{service}:{version}:last",
        ]
        self.script(keys=keys, args=[client, repr(now), self.retention, self.max_clients])

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
        (90), ``LOCKGATE_USAGE_MAX_CLIENTS`` (100), ``LOCKGATE_USAGE_URL``
        (``/usage``) and ``LOCKGATE_USAGE_PUBLIC`` (False: the report needs a
        token with ``ops:read``, through :class:`lockgate.auth.Auth`)."""
        if "lockgate.usage" in app.extensions:
            raise RuntimeError("lockgate.Usage is already registered on this app")
        settle(app)
        store: _Memory | _Redis
        client = redis_client(app)
        max_clients = int(app.config["LOCKGATE_USAGE_MAX_CLIENTS"])
        if client is not None:
            days = int(app.config["LOCKGATE_USAGE_RETENTION_DAYS"])
            store = _Redis(client, days * 86400, max_clients)
        else:
            store = _Memory(max_clients)
        app.extensions["lockgate.usage"] = store
        app.add_url_rule(app.config["LOCKGATE_USAGE_URL"], "lockgate_usage", usage_view)
        service = service_name(app)

        @app.after_request
        def record(response: Response) -> Response:
            found = request_version()
            # Deprecated when the request arrived: what its headers said.
            if found is None or found.version is None or not found.deprecated:
                return response
            version = found.version
            try:
                store.record(service, version.label.text, client_label(), time.time())
            except Exception as error:  # usage is best effort: never fail the request
                logger.warning("could not record deprecated usage: %s", error)
            return response


def report(app: Flask) -> list[UsageRow]:
    store: _Memory | _Redis = app.extensions["lockgate.usage"]
    return sorted(store.report(), key=lambda r: (r.service, r.version, -r.calls, r.client))


def usage_view() -> Response:
    # Which clients call what: for operators only.
    if not enabled(current_app.config["LOCKGATE_USAGE_PUBLIC"]):
        check_scope("ops:read")
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


mark_neutral(usage_view)
cache_control("no-store")(usage_view)
