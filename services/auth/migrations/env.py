"""Alembic environment of the auth service (run by ``lockgate db upgrade``)."""

from __future__ import annotations

from alembic import context
from services.auth.store import metadata
from sqlalchemy import create_engine

url = context.config.get_main_option("sqlalchemy.url")
assert url, "lockgate db upgrade sets sqlalchemy.url"

if context.is_offline_mode():
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
