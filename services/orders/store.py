"""The orders and their items, in the orders service's own database.

An order and its items are written in one transaction; ``user_id`` is the
users service's id, checked through its API when the order is made (no
foreign key across services). Status moves ``pending`` -> ``confirmed`` or
``cancelled``; a cancelled order is never confirmed (the update says so in
its ``WHERE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
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

    def create(self, user_id: int, items: list[Item]) -> Order:
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
            connection.execute(
                update(orders)
                .where(orders.c.id == order_id, orders.c.status == "pending")
                .values(status="cancelled")
            )
        return self.get(order_id)

    def confirm(self, order_id: int) -> bool:
        """Confirm a pending order; ``False`` if it is not pending (cancelled)."""
        with self.engine.begin() as connection:
            done = connection.execute(
                update(orders)
                .where(orders.c.id == order_id, orders.c.status == "pending")
                .values(status="confirmed")
            )
        return done.rowcount > 0

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
