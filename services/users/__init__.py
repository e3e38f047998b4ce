"""The users service: v0 (retired), v1 (deprecated) and v2 of one user store.

Version folders (``v1/``, ``v2/``) hold representation and validation only
(each a :class:`~.web.Representation`); the views in ``web``, the ``domain``
and the ``store`` beneath them are shared, so a user written through one
version reads back through the other.
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
from lockgate.runtime import Runtime, invalidate

from . import exports, guide, v1, v2
from .store import UserStore
from .versions import users_versions

__all__ = ["create_app"]


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the users service.

    Config, later wins: the defaults below, then ``LOCKGATE_*`` and
    ``DATABASE_URL`` from the environment, then ``test_config``. Keys:
    ``DATABASE_URL`` (default: SQLite in ``$LOCKGATE_DATA_DIR``),
    ``LOCKGATE_AUTH_ISSUER`` and the other keys of :class:`lockgate.auth.Auth`
    (tokens: ``users:read`` to read, ``users:write`` to write),
    ``LOCKGATE_PUBLIC_URL`` (makes the deprecation policy link absolute),
    ``MAX_CONTENT_LENGTH`` (1 MiB), ``LOCKGATE_LIFECYCLE_FILE``, and the
    runtime's keys (``REDIS_URL``, ``LOCKGATE_RATE_LIMIT``,
    ``LOCKGATE_TRUSTED_HOSTS``, ...; see
    :class:`lockgate.runtime.Runtime`).
    """
    app = Flask(__name__)
    app.config.from_mapping(
        DATABASE_URL=None,
        LOCKGATE_PUBLIC_URL="",
        MAX_CONTENT_LENGTH=1024 * 1024,
        LOCKGATE_TITLE="lockgate users",
        LOCKGATE_VENDOR="lockgate",
        LOCKGATE_SERVICE="users",
        # The fleet's auth service; `lockgate run` and `serve` set where it is.
        LOCKGATE_AUTH_ISSUER="http://127.0.0.1:8080",
    )
    app.config.update(environment_settings(extra=("DATABASE_URL", "REDIS_URL")))
    if test_config is not None:
        app.config.from_mapping(test_config)
    url = normalize_url(app.config["DATABASE_URL"] or database_url("users"))

    engine = make_engine(url)
    store = UserStore(engine, on_change=lambda: invalidate("users"))
    app.extensions["users.store"] = store
    jobs = Jobs(app, engine=engine)
    exports.declare(jobs, store)

    Auth(app)
    versioning = Versioning(app, versions=users_versions(app.config["LOCKGATE_PUBLIC_URL"]))
    versioning.register_blueprint(v1.bp, version="1")
    versioning.register_blueprint(v2.bp, version="2")
    versioning.register_blueprint(exports.blueprint(), version="2")
    versioning.register_blueprint(jobs_blueprint(), versions=["1", "2"])
    app.register_blueprint(versioning.neutral(guide.bp))
    runtime = Runtime().init_app(app)
    runtime.health.add_check("database", store.ping)
    return app
