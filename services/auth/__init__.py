"""The auth service: an OAuth 2.0 authorization server for the fleet's clients.

The client credentials grant issues short-lived RFC 9068 access tokens signed
with Ed25519 keys from the data directory (``auth-keys/``, or
``LOCKGATE_AUTH_KEYS_DIR``); clients and their scrypt-hashed secrets live in
the service's database. Every other service verifies the tokens with
:class:`lockgate.auth.Auth` against ``/.well-known/jwks.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException

from lockgate.auth import REGISTRY, KeyStore
from lockgate.auth.verify import MAX_LEEWAY
from lockgate.config import environment_settings
from lockgate.fleet.database import auth_keys_dir, database_url, make_engine, normalize_url
from lockgate.problems import handle_http_exception
from lockgate.runtime import Runtime

from . import web
from .store import ClientStore

__all__ = ["SCOPES", "create_app"]

#: The scopes the fleet's services check.
SCOPES = frozenset({"users:read", "users:write", "orders:read", "orders:write", "ops:read"})


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the auth service.

    Keys: ``DATABASE_URL`` (default SQLite in ``$LOCKGATE_DATA_DIR``),
    ``LOCKGATE_AUTH_ISSUER`` (``iss``; default ``http://127.0.0.1:8080``),
    ``LOCKGATE_AUTH_TOKEN_TTL`` (600 s), ``LOCKGATE_AUTH_KEYS_DIR``, and the
    token endpoint's budgets ``LOCKGATE_AUTH_TOKEN_RATE_LIMIT_CLIENT``
    (``"30/minute"`` per client id) and ``LOCKGATE_AUTH_TOKEN_RATE_LIMIT_IP``
    (``"120/minute"`` per address), counted on the runtime's Redis when
    ``REDIS_URL`` is set.
    """
    app = Flask(__name__)
    app.config.from_mapping(
        DATABASE_URL=None,
        LOCKGATE_SERVICE="auth",
        LOCKGATE_AUTH_ISSUER="http://127.0.0.1:8080",
        LOCKGATE_AUTH_TOKEN_TTL=600,
        LOCKGATE_AUTH_KEYS_DIR=None,
        LOCKGATE_AUTH_SCOPES=SCOPES,
        LOCKGATE_AUTH_TOKEN_RATE_LIMIT_CLIENT="30/minute",
        LOCKGATE_AUTH_TOKEN_RATE_LIMIT_IP="120/minute",
    )
    app.config.update(environment_settings(extra=("DATABASE_URL", "REDIS_URL")))
    if test_config is not None:
        app.config.from_mapping(test_config)
    url = normalize_url(app.config["DATABASE_URL"] or database_url("auth"))
    clients = ClientStore(make_engine(url))
    app.extensions["auth.clients"] = app.extensions[REGISTRY] = clients
    keys_dir = app.config["LOCKGATE_AUTH_KEYS_DIR"]
    directory = Path(keys_dir) if keys_dir else auth_keys_dir()
    ttl = int(app.config["LOCKGATE_AUTH_TOKEN_TTL"])
    # A retired key is published until the last token it signed has expired.
    app.extensions["auth.keys"] = KeyStore(directory, retain=timedelta(seconds=ttl + MAX_LEEWAY))
    app.register_blueprint(web.bp)
    # Every error is problem+json (a GET of /oauth/token is a 405, not a page);
    # the token endpoint's own errors stay RFC 6749 JSON (web._error).
    app.register_error_handler(HTTPException, handle_http_exception)
    runtime = Runtime().init_app(app)
    runtime.health.add_check("database", clients.ping)
    return app
