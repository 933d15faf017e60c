"""Revoked logins: the session digests a shop signed out one by one (TwoFactor.sign_out with a
session id), kept until every proof they could void has expired.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tfa_revoked_session",
        sa.Column("interface", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=320), nullable=False),
        sa.Column("session_digest", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("interface", "user_id", "session_digest"),
    )
    op.create_index("ix_tfa_revoked_session_expires", "tfa_revoked_session", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_tfa_revoked_session_expires", table_name="tfa_revoked_session")
    op.drop_table("tfa_revoked_session")
