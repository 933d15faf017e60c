"""Issue 17's policy: managers' exemptions of one user for a while, the enrollment grace's count
of skipped logins, report mode's one record per user and UTC day, and the proofs spent on a
step-up rule of max_age_seconds 0.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_USER = 320  # tables.MAX_USER_ID_LENGTH, as it was when this revision was written


def upgrade() -> None:
    op.create_table(
        "tfa_exemption",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("interface", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(_USER), nullable=False),
        sa.Column("until", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("created_by", sa.String(_USER)),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float()),
    )
    op.create_index("ix_tfa_exemption_user", "tfa_exemption", ["interface", "user_id"])
    op.create_table(
        "tfa_grace",
        sa.Column("interface", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(_USER), primary_key=True),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "tfa_policy_report",
        sa.Column("interface", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(_USER), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_table(
        "tfa_step_up_spent",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("interface", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(_USER), nullable=False),
        sa.Column("spent_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_tfa_step_up_spent_at", "tfa_step_up_spent", ["spent_at"])


def downgrade() -> None:
    op.drop_index("ix_tfa_step_up_spent_at", table_name="tfa_step_up_spent")
    op.drop_table("tfa_step_up_spent")
    op.drop_table("tfa_policy_report")
    op.drop_table("tfa_grace")
    op.drop_index("ix_tfa_exemption_user", table_name="tfa_exemption")
    op.drop_table("tfa_exemption")
