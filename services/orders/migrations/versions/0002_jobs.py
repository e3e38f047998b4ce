"""The orders service's jobs, their outbox (lockgate.jobs), and order events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lockgate.jobs import create_job_tables, drop_job_tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    create_job_tables(op, "orders")
    op.create_table(
        "order_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("order_id", Id, sa.ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_order_events_order_id", "order_events", ["order_id"])


def downgrade() -> None:
    op.drop_table("order_events")
    drop_job_tables(op, "orders")
