"""The shop's send budget as counters: one row counting the codes of the current clock hour and UTC
day, which each send takes a unit of by one conditional upsert, instead of counting the whole
send log under a lock that every send in the shop waited for.

The row starts from the log: the sends already made this hour and this day count against the
budget as before. Downgrade drops it (the log still holds every send).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

HOUR = 3600.0
DAY = 24 * HOUR


def upgrade() -> None:
    budget = op.create_table(
        "tfa_send_budget",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("hour_start", sa.Float(), nullable=False),
        sa.Column("hour_count", sa.Integer(), nullable=False),
        sa.Column("day_start", sa.Float(), nullable=False),
        sa.Column("day_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope"),
    )
    now = time.time()
    hour, day = now - now % HOUR, now - now % DAY
    log = sa.table("tfa_send", sa.column("at", sa.Float()))

    def since(start: float) -> int:
        counted = op.get_bind().execute(sa.select(sa.func.count()).where(log.c.at >= start)).scalar()
        return int(counted or 0)

    row = {"scope": "all", "hour_start": hour, "hour_count": since(hour), "day_start": day}
    op.bulk_insert(budget, [{**row, "day_count": since(day)}])


def downgrade() -> None:
    op.drop_table("tfa_send_budget")
