"""Who is calling: the id limits and usage reports are kept per.

The authenticated client id (a verified bearer token, through
:func:`lockgate.auth.current_client`, or one :func:`set_client` recorded),
else the address (behind ``ProxyFix`` the real client's, not the proxy's),
for limits and for the usage report alike.
"""

from __future__ import annotations

import re
import threading

from flask import g, request

from ..auth import current_client

__all__ = [
    "OTHER",
    "BoundedLabels",
    "client_key",
    "client_label",
    "set_client",
    "user_agent_family",
]

#: The label every client past the bound is counted under.
OTHER = "other"

_PRODUCT = re.compile(r"\s*([A-Za-z][A-Za-z0-9._-]{0,63})")


def set_client(client_id: str) -> None:
    """Record the authenticated client of this request (called by auth)."""
    g.lockgate_client = client_id


def user_agent_family(user_agent: str | None) -> str:
    """The first product token: ``curl/8.5`` -> ``curl``; ``unknown`` when absent."""
    match = _PRODUCT.match(user_agent or "")
    return match[1] if match else "unknown"


def _client_id() -> str | None:
    """The authenticated client: one set by :func:`set_client`, else the
    verified bearer token's (``lockgate.auth``, verified once per request)."""
    found = g.get("lockgate_client")
    if found:
        return str(found)
    client = current_client()
    return None if client is None else client.client_id


def client_key() -> str:
    """Rate-limit identity: ``client:<id>`` when authenticated, else ``ip:<address>``."""
    client = _client_id()
    if client:
        return f"client:{client}"
    return f"ip:{request.remote_addr or 'unknown'}"


def client_label() -> str:
    """Usage-report identity: the authenticated id, else the address (as for
    limits: behind ``ProxyFix``, the real client's)."""
    client = _client_id()
    return client if client else (request.remote_addr or "unknown")


class BoundedLabels:
    """The first ``limit`` distinct clients per group keep their name; later ones
    are :data:`OTHER`, so callers cannot grow a metric or a report without bound."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: dict[str, set[str]] = {}
        self.lock = threading.Lock()

    def label(self, group: str, client: str) -> str:
        names = self.seen.get(group)
        if names is not None and client in names:
            return client
        with self.lock:
            names = self.seen.setdefault(group, set())
            if client in names:
                return client
            if len(names) >= self.limit:
                return OTHER
            names.add(client)
            return client
