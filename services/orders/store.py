"""The orders and their items, in the orders service's own database.

An order and its items are written in one transaction; ``user_id`` is the
users service's id, checked through its API when the order is made (no
foreign key across services). Status moves ``pending`` -> ``confirmed`` or
``cancelled``; a cancelled order is never confirmed (the update says so in
its ``WHERE``), and each move writes an ``order_events`` row with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)

metadata = MetaData()
#: 64-bit ids on PostgreSQL; SQLite's INTEGER PRIMARY KEY is 64-bit already.
Id = BigInteger().with_variant(Integer(), "sqlite")

orders = Table(
    "orders",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", BigInteger, nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("total_cents", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
order_items = Table(
    "order_items",
    metadata,
    Column("order_id", Id, ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("sku", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price_cents", BigInteger, nullable=False),
)

#: What happened to an order, one row per change: the confirmation job's
#: effect is written here in the transaction that finishes the job.
order_events = Table(
    "order_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("order_id", Id, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
    Column("event", String(32), nullable=False),
    Column("job_id", String(64), nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

STATUSES = ("pending", "confirmed", "cancelled")
#: The largest id (and keyset position) both databases hold: 64-bit signed.
BIGINT_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Item:
    sku: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    user_id: int
    items: tuple[Item, ...]
    total_cents: int
    status: str
    created_at: datetime


class OrderStore:
    """Create, read, page through and change the status of orders."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(select(1))

    def create(
        self,
        user_id: int,
        items: list[Item],
        then: Callable[[Connection, int], object] | None = None,
    ) -> Order:
        """Write an order and its items; ``then(connection, order_id)`` runs in
        the same transaction (accepting its confirmation job)."""
        now = datetime.now(UTC)
        total = sum(item.quantity * item.unit_price_cents for item in items)
        with self.engine.begin() as connection:
            inserted = connection.execute(
                insert(orders).values(
                    user_id=user_id, status="pending", total_cents=total, created_at=now
                )
            ).inserted_primary_key
            assert inserted is not None
            order_id = inserted[0]
            connection.execute(
                insert(order_items),
                [
                    {
                        "order_id": order_id,
                        "position": position,
                        "sku": item.sku,
                        "quantity": item.quantity,
                        "unit_price_cents": item.unit_price_cents,
                    }
                    for position, item in enumerate(items)
                ],
            )
            if then is not None:
                then(connection, int(order_id))
        return Order(int(order_id), user_id, tuple(items), total, "pending", now)

    def get(self, order_id: int) -> Order | None:
        if not 0 <= order_id <= BIGINT_MAX:
            return None  # no such id can be stored, and SQLite would overflow
        found = self._load(select(orders).where(orders.c.id == order_id))
        return found[0] if found else None

    def page(self, *, after: int, limit: int, user_id: int | None) -> list[Order]:
        """Orders by id after ``after``, ``limit`` of them (keyset pagination)."""
        query = select(orders).where(orders.c.id > after)
        if user_id is not None:
            query = query.where(orders.c.user_id == user_id)
        return self._load(query.order_by(orders.c.id).limit(limit))

    def cancel(self, order_id: int) -> Order | None:
        """Cancel a pending order (a confirmed or cancelled one stays as it is)."""
        if not 0 <= order_id <= BIGINT_MAX:
            return None
        with self.engine.begin() as connection:
            self.change(connection, order_id, "cancelled")
        return self.get(order_id)

    def change(
        self, connection: Connection, order_id: int, status: str, job_id: str | None = None
    ) -> bool:
        """Move a pending order to ``status`` in ``connection``'s transaction,
        with its event; ``False`` if it is not pending (cancelled, confirmed)."""
        done = connection.execute(
            update(orders)
            .where(orders.c.id == order_id, orders.c.status == "pending")
            .values(status=status)
        )
        if done.rowcount != 1:
            return False
        connection.execute(
            insert(order_events).values(
                order_id=order_id, event=status, job_id=job_id, at=datetime.now(UTC)
            )
        )
        return True

    def events(self, order_id: int) -> list[tuple[str, str | None]]:
        """(event, job id) of an order, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(order_events.c.event, order_events.c.job_id)
                .where(order_events.c.order_id == order_id)
                .order_by(order_events.c.id)
            ).all()
        return [(row[0], row[1]) for row in rows]

    def _load(self, query: Any) -> list[Order]:
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
            if not rows:
                return []
            ids = [row.id for row in rows]
            lines = connection.execute(
                select(order_items)
                .where(order_items.c.order_id.in_(ids))
                .order_by(order_items.c.order_id, order_items.c.position)
            ).all()
        items: dict[int, list[Item]] = {}
        for line in lines:
            items.setdefault(line.order_id, []).append(
                Item(line.sku, line.quantity, line.unit_price_cents)
            )
        return [
            Order(
                row.id,
                row.user_id,
                tuple(items.get(row.id, ())),
                row.total_cents,
                row.status,
                row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC),
            )
            for row in rows
        ]
