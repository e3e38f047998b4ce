"""What an issuer's client registry offers the ``lockgate clients`` commands.

The CLI (``lockgate.fleet``) may not import a service; the fleet's auth
service puts an object of this shape at ``app.extensions[REGISTRY]``, and the
CLI finds it there through the manifest.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from flask import Flask

__all__ = ["REGISTRY", "ClientRegistry", "RegisteredClient", "client_registry"]

#: The key of ``app.extensions`` an issuer keeps its registry under.
REGISTRY = "lockgate.auth.clients"


class RegisteredClient(Protocol):
    """One OAuth 2.0 client as the registry knows it (never its secret)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def scopes(self) -> frozenset[str]: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def revoked_at(self) -> datetime | None: ...


class ClientRegistry(Protocol):
    """Create, list and revoke clients."""

    def create(self, name: str, scopes: frozenset[str]) -> tuple[RegisteredClient, str]:
        """A new client and its secret: the only time the secret is seen."""
        ...

    def list(self) -> list[RegisteredClient]: ...

    def revoke(self, client_id: str) -> bool:
        """``False`` when there is no such client."""
        ...


def client_registry(app: Flask) -> ClientRegistry:
    """The registry of an issuer's app.

    :raises LookupError: ``app`` issues no tokens.
    """
    found: ClientRegistry | None = app.extensions.get(REGISTRY)
    if found is None:
        raise LookupError(f"{app.name} keeps no client registry")
    return found
