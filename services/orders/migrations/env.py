"""Alembic environment of the orders service (run by ``lockgate db upgrade``)."""

from __future__ import annotations

from services.orders.store import metadata

from lockgate.fleet.database import run_migrations

# Its own revision table: the fleet's services may share one database.

run_migrations(metadata, version_table="alembic_version_orders")
