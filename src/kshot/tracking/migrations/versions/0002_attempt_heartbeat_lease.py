"""the lease of a running attempt (heartbeat_at, lease_expires_at) and when its job was queued (job_queued_at)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows written before this revision have no lease (reconciled by process id, as before) and no
    # queued job on record (never queued again by a reconciliation).
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("job_queued_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("job_queued_at")
        batch.drop_column("lease_expires_at")
        batch.drop_column("heartbeat_at")
