"""The auth service: an OAuth 2.0 authorization server for the fleet's clients.

The client credentials grant issues short-lived RFC 9068 access tokens signed
with Ed25519 keys from the data directory (``auth-keys/``, or
``LOCKGATE_AUTH_KEYS_DIR``); clients and their scrypt-hashed secrets live in
the service's database. Every other service verifies the tokens with
:class:`lockgate.auth.Auth` against ``/.well-known/jwks.json``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask

from lockgate.auth import KeyStore
from lockgate.auth.verify import MAX_LEEWAY
from lockgate.config import environment_settings
from lockgate.fleet.database import data_dir, database_url, normalize_url

from . import web
from .store import ClientStore, make_engine

__all__ = ["SCOPES", "create_app"]

#: The scopes the fleet's services check.
SCOPES = frozenset({"users:read", "users:write", "orders:read", "orders:write", "ops:read"})


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the auth service.

    Keys: ``DATABASE_URL`` (default SQLite in ``$LOCKGATE_DATA_DIR``),
    ``LOCKGATE_AUTH_ISSUER`` (``iss``; default ``http://127.0.0.1:8080``),
    ``LOCKGATE_AUTH_TOKEN_TTL`` (600 s), ``LOCKGATE_AUTH_KEYS_DIR``.
    """
    app = Flask(__name__)
    app.config.from_mapping(
        DATABASE_URL=None,
        LOCKGATE_SERVICE="auth",
        LOCKGATE_AUTH_ISSUER="http://127.0.0.1:8080",
        LOCKGATE_AUTH_TOKEN_TTL=600,
        LOCKGATE_AUTH_KEYS_DIR=None,
        LOCKGATE_AUTH_SCOPES=SCOPES,
    )
    app.config.update(environment_settings(extra=("DATABASE_URL",)))
    if test_config is not None:
        app.config.from_mapping(test_config)
    url = normalize_url(app.config["DATABASE_URL"] or database_url("auth"))
    app.extensions["auth.clients"] = ClientStore(make_engine(url))
    keys_dir = app.config["LOCKGATE_AUTH_KEYS_DIR"] or os.environ.get("LOCKGATE_AUTH_KEYS_DIR")
    directory = Path(keys_dir) if keys_dir else data_dir() / "auth-keys"
    ttl = int(app.config["LOCKGATE_AUTH_TOKEN_TTL"])
    # A retired key is published until the last token it signed has expired.
    app.extensions["auth.keys"] = KeyStore(directory, retain=timedelta(seconds=ttl + MAX_LEEWAY))
    app.register_blueprint(web.bp)
    return app
