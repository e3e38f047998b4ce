"""Where each service keeps its data, and schema upgrades through Alembic.

Embedded default: one SQLite file per service in ``$LOCKGATE_DATA_DIR``
(``./.lockgate``). ``DATABASE_URL`` (``postgresql+psycopg://...``) points
every service at a real database instead, unchanged otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import DATA_DIR_ENV, data_dir
from .manifest import Fleet, Service

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = [
    "DATA_DIR_ENV",
    "KEYS_DIR_ENV",
    "auth_keys_dir",
    "data_dir",
    "database_url",
    "is_current",
    "make_engine",
    "normalize_url",
    "run_migrations",
    "upgrade",
    "upgrade_fleet",
]

#: Where the auth service's signing keys are, if not in the data directory.
KEYS_DIR_ENV = "LOCKGATE_AUTH_KEYS_DIR"


def auth_keys_dir() -> Path:
    """The auth service's signing keys: ``$LOCKGATE_AUTH_KEYS_DIR``, else the
    data directory's ``auth-keys/`` (never the repository)."""
    chosen = os.environ.get(KEYS_DIR_ENV)
    return Path(chosen).resolve() if chosen else data_dir() / "auth-keys"


def normalize_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` mean psycopg 3, the driver we ship."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def database_url(service: str) -> str:
    """``$DATABASE_URL``, else a SQLite file named after the service."""
    url = os.environ.get("DATABASE_URL")
    return normalize_url(url) if url else f"sqlite:///{data_dir() / service}.db"


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine for a service's database.

    SQLite: the threads of one process share the file, and a writer waits for
    another (30 s) instead of failing. Elsewhere: pooled connections checked
    before use, so a database restart costs no request.
    """
    from sqlalchemy import create_engine

    if url.startswith("sqlite"):
        return create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    return create_engine(url, pool_pre_ping=True)


def run_migrations(metadata: Any, version_table: str = "alembic_version") -> None:
    """The body of every service's Alembic ``env.py``: migrate the database
    ``lockgate db upgrade`` named, online or offline.

    :param version_table: the service's own revision table, so services
        sharing one database (one ``DATABASE_URL``) keep their histories apart.
    """
    from alembic import context
    from sqlalchemy import create_engine

    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("lockgate db upgrade sets sqlalchemy.url")
    options = {"target_metadata": metadata, "version_table": version_table}
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, **options)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


def upgrade(migrations: Path, url: str) -> None:
    """Bring the database at ``url`` to the newest revision in ``migrations``."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations))
    # configparser treats % as interpolation; URLs may hold %-escapes.
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    command.upgrade(config, "head")


def is_current(migrations: Path, url: str) -> bool:
    """Whether the database at ``url`` is at every head of ``migrations``, or
    at a revision newer than they know.

    Read the way ``alembic current`` reads it: through the service's own
    ``env.py``, so its revision table is the one it names.
    """
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    script = ScriptDirectory.from_config(config)
    found: set[str] = set()

    def read(revision: Any, context: Any) -> list[Any]:
        found.update(context.get_current_heads())
        return []

    with EnvironmentContext(config, script, fn=read, dont_mutate=True):
        script.run_env()
    known = {revision.revision for revision in script.walk_revisions()}
    if found and not found <= known:
        # Ahead of this code (a rollback of the code, not of the schema):
        # migrations are additive first, so the older code runs on it.
        return True
    return found == set(script.get_heads())


def upgrade_fleet(fleet: Fleet, only: set[str] | None = None) -> list[Service]:
    """Upgrade every service that has migrations (or those named in ``only``);
    returns those upgraded."""
    done = []
    for service in fleet.services:
        if only is not None and service.name not in only:
            continue
        if service.migrations is not None:
            upgrade(service.migrations, database_url(service.name))
            done.append(service)
    return done
