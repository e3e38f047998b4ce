"""The orders service: v2 (the head) and v1 (deprecated), served from one implementation.

Orders are written in the change style (:mod:`.versions`): the views are
v2's, and v1's bodies, fields and routes come from one
:class:`~lockgate.VersionChange`. Making an order asks the users service
whether the user exists, through :class:`lockgate.client.ServiceClient` with
a client-credentials token of the service's own (``LOCKGATE_ORDERS_CLIENT_ID``
and ``LOCKGATE_ORDERS_CLIENT_SECRET``, which ``lockgate run`` and ``serve``
make for it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from lockgate import Versioning
from lockgate.auth import Auth
from lockgate.config import environment_settings
from lockgate.fleet.database import database_url, make_engine, normalize_url
from lockgate.jobs import Jobs
from lockgate.jobs import blueprint as jobs_blueprint
from lockgate.runtime import Runtime

from . import confirmation
from .store import OrderStore
from .versions import orders_versions
from .web import head_blueprint

__all__ = ["create_app"]


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the orders service.

    Config, later wins: the defaults below, then ``LOCKGATE_*``,
    ``DATABASE_URL`` and ``REDIS_URL`` from the environment, then
    ``test_config``. Keys: ``DATABASE_URL`` (default SQLite in
    ``$LOCKGATE_DATA_DIR``), ``LOCKGATE_AUTH_ISSUER`` (who issues the tokens
    orders verifies and the one it fetches), ``LOCKGATE_ORDERS_CLIENT_ID`` /
    ``LOCKGATE_ORDERS_CLIENT_SECRET`` (its own client, scope ``users:read``),
    the client's ``LOCKGATE_CLIENT_*`` timeouts and breaker settings, and the
    runtime's keys.
    """
    app = Flask(__name__)
    app.config.from_mapping(
        DATABASE_URL=None,
        MAX_CONTENT_LENGTH=1024 * 1024,
        LOCKGATE_TITLE="lockgate orders",
        LOCKGATE_VENDOR="lockgate",
        LOCKGATE_SERVICE="orders",
        LOCKGATE_AUTH_ISSUER="http://127.0.0.1:8080",
        LOCKGATE_ORDERS_CLIENT_ID=None,
        LOCKGATE_ORDERS_CLIENT_SECRET=None,
    )
    app.config.update(environment_settings(extra=("DATABASE_URL", "REDIS_URL")))
    if test_config is not None:
        app.config.from_mapping(test_config)
    url = normalize_url(app.config["DATABASE_URL"] or database_url("orders"))
    engine = make_engine(url)
    store = OrderStore(engine)
    app.extensions["orders.store"] = store
    Auth(app)
    versioning = Versioning(app, versions=orders_versions(), head=head_blueprint())
    versioning.register_blueprint(jobs_blueprint(), versions=["1", "2"])
    runtime = Runtime().init_app(app)
    runtime.health.add_check("database", store.ping)
    users = app.extensions["orders.users"] = _users_client(app)
    jobs = Jobs(app, engine=engine)
    confirmation.declare(jobs, store, users)
    return app


def _users_client(app: Flask) -> Any:
    """The client orders calls users with: its own token, the v2 API."""
    from lockgate.client import ClientCredentials, ServiceClient

    client_id = app.config["LOCKGATE_ORDERS_CLIENT_ID"]
    secret = app.config["LOCKGATE_ORDERS_CLIENT_SECRET"]
    credentials = None
    if client_id and secret:
        token_url = app.config.get("LOCKGATE_AUTH_TOKEN_URL") or (
            f"{str(app.config['LOCKGATE_AUTH_ISSUER']).rstrip('/')}/oauth/token"
        )
        credentials = ClientCredentials(token_url, str(client_id), str(secret), scope="users:read")
    return ServiceClient("users", version="2", credentials=credentials)
