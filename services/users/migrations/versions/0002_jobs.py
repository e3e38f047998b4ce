"""The users service's jobs and their outbox (lockgate.jobs).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

from lockgate.jobs import create_job_tables, drop_job_tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_job_tables(op, "users")


def downgrade() -> None:
    drop_job_tables(op, "users")
