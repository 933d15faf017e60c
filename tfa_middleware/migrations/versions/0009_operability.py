"""The manage page's traffic: a send's audit event keeps its destination's region (``GB``, never
the number) in a ``country`` column, and one index on (kind, at, interface, country) answers the
page's counts (sends and verifies per hour, sends per country, the latest lockouts) from the
index alone. The events written before this have no region (shown as unknown).

The column is added without rebuilding the table (``ALTER TABLE … ADD COLUMN`` on both
databases): the events table is the largest one.

Revision ID: 0009
Revises: 0008 (policy)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tfa_event", sa.Column("country", sa.String(2), nullable=True))
    op.create_index("ix_tfa_event_kind_at", "tfa_event", ["kind", "at", "interface", "country"])


def downgrade() -> None:
    op.drop_index("ix_tfa_event_kind_at", table_name="tfa_event")
    with op.batch_alter_table("tfa_event") as batch:
        batch.drop_column("country")
