"""the study and trial number of an attempt that is a trial of a `kshot tune` search

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: an attempt that is no trial (every row written before this revision) has neither.
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("study", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("trial", sa.Integer(), nullable=True))
        batch.create_index("ix_attempts_study", ["study"])
        batch.create_unique_constraint("uq_attempt_study_trial", ["study", "trial"])


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_constraint("uq_attempt_study_trial", type_="unique")
        batch.drop_index("ix_attempts_study")
        batch.drop_column("trial")
        batch.drop_column("study")
