"""Who is calling: the id limits and usage reports are kept per.

The authenticated client id when an auth layer has set one
(:func:`set_client`), else the address (for limits: behind ``ProxyFix`` it is
the real client, not the proxy) or the ``User-Agent`` family (for usage).
"""

from __future__ import annotations

import re

from flask import g, request

__all__ = ["client_key", "client_label", "set_client", "user_agent_family"]

_PRODUCT = re.compile(r"\s*([A-Za-z][A-Za-z0-9._-]{0,63})")


def set_client(client_id: str) -> None:
    """Record the authenticated client of this request (called by auth)."""
    g.lockgate_client = client_id


def user_agent_family(user_agent: str | None) -> str:
    """The first product token: ``curl/8.5`` -> ``curl``; ``unknown`` when absent."""
    match = _PRODUCT.match(user_agent or "")
    return match[1] if match else "unknown"


def client_key() -> str:
    """Rate-limit identity: ``client:<id>`` when authenticated, else ``ip:<address>``."""
    client = g.get("lockgate_client")
    if client:
        return f"client:{client}"
    return f"ip:{request.remote_addr or 'unknown'}"


def client_label() -> str:
    """Usage-report identity: the authenticated id, else the User-Agent family."""
    client = g.get("lockgate_client")
    return str(client) if client else user_agent_family(request.headers.get("User-Agent"))
