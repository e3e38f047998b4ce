"""Alembic environment of the users service (run by ``lockgate db upgrade``)."""

from __future__ import annotations

from services.users.store import metadata

from lockgate.fleet.database import run_migrations

run_migrations(metadata)
