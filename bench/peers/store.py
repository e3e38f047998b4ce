"""The one read every peer makes, the usual way for each: the first users of the
fleet's own SQLite file (``$LOCKGATE_BENCH_DB``), through SQLAlchemy Core as
the fleet's store does (the DRF peer uses Django's ORM instead)."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, create_engine, select

users = Table(
    "users",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("first_name", String(100)),
    Column("last_name", String(100)),
    Column("email", String(320)),
)


@cache
def engine() -> Engine:
    """One engine (and connection pool) per process, created on first use."""
    return create_engine(f"sqlite:///{os.environ['LOCKGATE_BENCH_DB']}")


def first_users(limit: int) -> list[dict[str, Any]]:
    query = select(users.c.id, users.c.first_name, users.c.last_name, users.c.email)
    with engine().connect() as connection:
        rows = connection.execute(query.order_by(users.c.id).limit(limit)).mappings().all()
    return [dict(row) for row in rows]


def limit_of(raw: str | None) -> int:
    try:
        return max(1, min(100, int(raw or 20)))
    except ValueError:
        return 20
