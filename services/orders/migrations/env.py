"""Alembic environment of the orders service (run by ``lockgate db upgrade``)."""

from __future__ import annotations

from alembic import context
from services.orders.store import metadata
from sqlalchemy import create_engine

#: Its own: the fleet's services may share one database (one DATABASE_URL),
#: and each keeps its own revision history.
VERSION_TABLE = "alembic_version_orders"
url = context.config.get_main_option("sqlalchemy.url")
assert url, "lockgate db upgrade sets sqlalchemy.url"

if context.is_offline_mode():
    context.configure(
        url=url, target_metadata=metadata, literal_binds=True, version_table=VERSION_TABLE
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=metadata, version_table=VERSION_TABLE
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
