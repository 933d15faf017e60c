"""The database schema's version: upgrade it, read it, compare it with this release's.

Migrations are Alembic scripts shipped in ``tfa_middleware/migrations``, recorded in their own
version table so that a shop whose database already uses Alembic keeps its history apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from .tables import metadata

VERSION_TABLE = "tfa_alembic_version"
_SCRIPTS = Path(__file__).with_name("migrations")


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    """The revision this release of tfa-middleware needs."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


def current(connection: Connection) -> str | None:
    """The revision the database is at (None: no tfa-middleware tables yet)."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(connection: Connection, revision: str = "head") -> None:
    if connection.dialect.name == "postgresql":
        # Several workers starting at once: one migrates, the others wait and then find it done.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7347200613)")
    command.upgrade(_config(connection), revision)


def downgrade(connection: Connection, revision: str) -> None:
    """Back to an earlier revision (for tests and a release rolled back; not a CLI command)."""
    command.downgrade(_config(connection), revision)


def differences(connection: Connection) -> list[Any]:
    """What the database lacks or has beyond this release's models (empty when they agree)."""
    from alembic.autogenerate import compare_metadata

    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return [d for d in compare_metadata(context, metadata) if not _ignored(d)]


def _ignored(diff: Any) -> bool:
    # Alembic's own version table is not one of our models.
    return isinstance(diff, tuple) and diff[0] == "remove_table" and diff[1].name == VERSION_TABLE
