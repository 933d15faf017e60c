"""More factors: an authenticator app's last accepted step and a name on every factor row, and
the remembered browsers.

``tfa_factor`` gains ``counter`` (a TOTP factor's last accepted time step: a code works once; a
passkey's sign counter later) and ``label`` (the user's name for a factor). Recovery codes are
factor rows too (``kind = 'recovery'``, one per code, the value a keyed hash): no column of their
own. ``tfa_remembered_browser`` holds one row per browser a user chose to remember.

Revision ID: 0006
Revises: 0005 (the send budget)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tfa_factor") as batch:
        batch.add_column(sa.Column("counter", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("label", sa.String(length=64), nullable=True))
    op.create_table(
        "tfa_remembered_browser",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("interface", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=320), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_seen_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index(
        "ix_tfa_remembered_browser_user", "tfa_remembered_browser", ["interface", "user_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_tfa_remembered_browser_user", table_name="tfa_remembered_browser")
    op.drop_table("tfa_remembered_browser")
    # The kinds 0004 does not know go with the columns that hold their state.
    op.execute("DELETE FROM tfa_factor WHERE kind <> 'sms'")
    with op.batch_alter_table("tfa_factor") as batch:
        batch.drop_column("label")
        batch.drop_column("counter")
