"""Passkeys: a ``webauthn`` factor row keeps its credential (id, public key, transports) in a new
``credential`` column, and its ``value`` (the SHA-256 of the credential id) is unique among the
passkeys, so one credential never belongs to two users (WebAuthn's registration ceremony: a
credential id already registered is refused). A public key does not fit ``value`` (an RSA key, as
Windows Hello makes, is longer than its 255 characters), hence a column of its own.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_PASSKEYS = sa.text("kind = 'webauthn'")


def upgrade() -> None:
    with op.batch_alter_table("tfa_factor") as batch:
        batch.add_column(sa.Column("credential", sa.Text(), nullable=True))
    op.create_index(
        "uq_tfa_factor_passkey",
        "tfa_factor",
        ["value"],
        unique=True,
        sqlite_where=_PASSKEYS,
        postgresql_where=_PASSKEYS,
    )


def downgrade() -> None:
    op.drop_index("uq_tfa_factor_passkey", table_name="tfa_factor")
    # Without their credential the passkeys are no factor at all.
    op.execute("DELETE FROM tfa_factor WHERE kind = 'webauthn'")
    with op.batch_alter_table("tfa_factor") as batch:
        batch.drop_column("credential")
