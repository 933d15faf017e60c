"""Alembic's entry point. It is only ever run by tfa_middleware.schema, which hands over an open
connection in ``config.attributes["connection"]``; there is no alembic.ini."""

from __future__ import annotations

from alembic import context

from tfa_middleware.schema import VERSION_TABLE
from tfa_middleware.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    # SQLite alters tables by copying them; later migrations that alter columns need batch mode.
    render_as_batch=context.config.attributes.get("batch", False),
)
with context.begin_transaction():
    context.run_migrations()
