"""The initial schema: enrollments, sandbox codes, the send log and its locks, outbox, events.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tfa_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("interface", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=320), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("attempts_left", sa.Integer(), nullable=False),
        sa.Column("used_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tfa_code_user", "tfa_code", ["interface", "user_id", "purpose"], unique=False)
    op.create_table(
        "tfa_enrollment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("interface", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=320), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("pending_phone", sa.String(length=20), nullable=True),
        sa.Column("provider_user_id", sa.String(length=64), nullable=True),
        sa.Column("pending_provider_user_id", sa.String(length=64), nullable=True),
        sa.Column("require_enrollment", sa.Boolean(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("last_verified_at", sa.Float(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("locked_until", sa.Float(), nullable=False),
        sa.Column("hour_started_at", sa.Float(), nullable=False),
        sa.Column("hour_failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("interface", "user_id", name="uq_tfa_enrollment_user"),
    )
    op.create_table(
        "tfa_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("interface", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tfa_event_at", "tfa_event", ["at"], unique=False)
    op.create_index("ix_tfa_event_user", "tfa_event", ["interface", "user_id", "at"], unique=False)
    op.create_table(
        "tfa_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "tfa_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("interface", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=320), nullable=False),
        sa.Column("to_masked", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "tfa_send",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("interface", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=320), nullable=False),
        sa.Column("phone_key", sa.String(length=64), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tfa_send_at", "tfa_send", ["at"], unique=False)
    op.create_index("ix_tfa_send_ip", "tfa_send", ["ip", "at"], unique=False)
    op.create_index("ix_tfa_send_phone", "tfa_send", ["phone_key", "at"], unique=False)
    op.create_index("ix_tfa_send_user", "tfa_send", ["interface", "user_id", "at"], unique=False)
    op.create_table(
        "tfa_send_lock",
        sa.Column("scope", sa.String(length=96), nullable=False),
        sa.Column("touched_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("scope"),
    )


def downgrade() -> None:
    op.drop_table("tfa_send_lock")
    op.drop_index("ix_tfa_send_user", table_name="tfa_send")
    op.drop_index("ix_tfa_send_phone", table_name="tfa_send")
    op.drop_index("ix_tfa_send_ip", table_name="tfa_send")
    op.drop_index("ix_tfa_send_at", table_name="tfa_send")
    op.drop_table("tfa_send")
    op.drop_table("tfa_outbox")
    op.drop_table("tfa_meta")
    op.drop_index("ix_tfa_event_user", table_name="tfa_event")
    op.drop_index("ix_tfa_event_at", table_name="tfa_event")
    op.drop_table("tfa_event")
    op.drop_table("tfa_enrollment")
    op.drop_index("ix_tfa_code_user", table_name="tfa_code")
    op.drop_table("tfa_code")
