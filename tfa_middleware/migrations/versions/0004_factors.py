"""Factors as rows: the phones move from the user row (tfa_enrollment) to tfa_factor, so that the
next factors (an authenticator app, recovery codes, passkeys) are rows beside them.

The active phone becomes a confirmed ``sms`` factor with its provider id; the pending phone an
unconfirmed one, with its provider id and whether a manager assigned it. The user row keeps the
generation, the verify limits' state and require_enrollment. Downgrade puts the ``sms`` factors
back into the columns (there are no other kinds at this revision).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_PHONE_COLUMNS = (
    "phone",
    "pending_phone",
    "provider_user_id",
    "pending_provider_user_id",
    "pending_assigned",
)


def upgrade() -> None:
    op.create_table(
        "tfa_factor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("interface", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("provider_ref", sa.String(length=64), nullable=True),
        sa.Column("confirmed", sa.Boolean(), nullable=False),
        sa.Column("assigned_by_manager", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_used_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tfa_factor_user", "tfa_factor", ["interface", "user_id", "kind"], unique=False)
    # When a phone was set is not recorded at 0003: the row's creation stands in for the active
    # phone's, its last change for the pending one's. The active phone was last used at the last
    # verified code; the pending one never was.
    op.execute(
        "INSERT INTO tfa_factor (interface, user_id, kind, value, provider_ref, confirmed,"
        " assigned_by_manager, created_at, last_used_at)"
        " SELECT interface, user_id, 'sms', phone, provider_user_id, TRUE, FALSE, created_at,"
        " last_verified_at FROM tfa_enrollment WHERE phone IS NOT NULL"
    )
    op.execute(
        "INSERT INTO tfa_factor (interface, user_id, kind, value, provider_ref, confirmed,"
        " assigned_by_manager, created_at, last_used_at)"
        " SELECT interface, user_id, 'sms', pending_phone, pending_provider_user_id, FALSE,"
        " pending_assigned, updated_at, NULL FROM tfa_enrollment WHERE pending_phone IS NOT NULL"
    )
    with op.batch_alter_table("tfa_enrollment") as batch:
        for column in _PHONE_COLUMNS:
            batch.drop_column(column)


def downgrade() -> None:
    with op.batch_alter_table("tfa_enrollment") as batch:
        batch.add_column(sa.Column("phone", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("pending_phone", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("provider_user_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("pending_provider_user_id", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("pending_assigned", sa.Boolean(), nullable=False, server_default=sa.false())
        )

    user = sa.table(
        "tfa_enrollment", *(sa.column(name) for name in ("interface", "user_id", *_PHONE_COLUMNS))
    )
    factor = sa.table(
        "tfa_factor",
        *(sa.column(name) for name in ("id", "interface", "user_id", "kind", "confirmed")),
        sa.column("value"),
        sa.column("provider_ref"),
        sa.column("assigned_by_manager"),
    )

    def pick(column: str, confirmed: bool) -> sa.ScalarSelect[object]:
        return (
            sa.select(factor.c[column])
            .where(
                factor.c.interface == user.c.interface,
                factor.c.user_id == user.c.user_id,
                factor.c.kind == "sms",
                factor.c.confirmed == sa.literal(confirmed, sa.Boolean()),
            )
            .order_by(factor.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )

    op.execute(
        sa.update(user).values(
            phone=pick("value", True),
            provider_user_id=pick("provider_ref", True),
            pending_phone=pick("value", False),
            pending_provider_user_id=pick("provider_ref", False),
            pending_assigned=sa.func.coalesce(pick("assigned_by_manager", False), sa.false()),
        )
    )
    op.drop_index("ix_tfa_factor_user", table_name="tfa_factor")
    op.drop_table("tfa_factor")
