"""A pending number set by a manager is binding: the user confirms it, and cannot swap it for one
of their own on the enroll page (with only a password, that would be a takeover).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tfa_enrollment") as batch:
        batch.add_column(
            sa.Column("pending_assigned", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("tfa_enrollment") as batch:
        batch.drop_column("pending_assigned")
