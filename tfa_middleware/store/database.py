"""The database: one engine, its transactions, the schema's readiness.

SQLAlchemy 2 Core over an async engine: SQLite (aiosqlite) for one process, PostgreSQL (asyncpg)
for several. Database failures become :class:`StoreUnavailable` here, once, so callers fail
closed on one exception type. The queries live beside this module, one module per table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Table, event, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .. import schema
from ..errors import SchemaOutdated, StoreUnavailable
from ..settings import PoolSettings, Settings


class Store:
    """One database, one engine. On first use the schema is checked against this release's
    migrations: brought up to date when ``auto_migrate`` (SQLite's default), otherwise an old
    schema fails closed with a message naming the command that upgrades it."""

    def __init__(
        self,
        url: str,
        *,
        engine: AsyncEngine | None = None,
        auto_migrate: bool | None = None,
        pool: PoolSettings | None = None,
    ) -> None:
        self.engine = engine or create_async_engine(url, **_engine_options(url, pool or PoolSettings()))
        self.auto_migrate = self.engine.dialect.name == "sqlite" if auto_migrate is None else auto_migrate
        self._ready = False
        self._ready_lock = asyncio.Lock()
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """The database of ``settings``, with its pool and ``auto_migrate``; nothing else is built."""
        return cls(
            settings.database_url.reveal(), auto_migrate=settings.auto_migrate, pool=settings.database_pool
        )

    async def close(self) -> None:
        await self.engine.dispose()

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A transaction: the statements of the query functions handed its connection commit
        together. Any database failure leaves as StoreUnavailable (never a traceback page)."""
        return self._begin()

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        try:
            if not self._ready:
                self._check_sqlite_folder()
                await self._prepare_schema()
            async with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"database error: {type(exc).__name__}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"database unreachable: {exc.strerror or exc}") from exc

    def _check_sqlite_folder(self) -> None:
        # SQLite cannot create a file in a folder that does not exist; asking aiosqlite to try
        # leaves its worker thread reporting to an event loop that may be gone by then.
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            folder = Path(url.database).expanduser().resolve().parent
            if not folder.is_dir():
                raise StoreUnavailable(f"database unreachable: the folder {folder} does not exist")

    async def _prepare_schema(self) -> None:
        async with self._ready_lock:
            if self._ready:
                return
            if self.auto_migrate:
                try:
                    async with self.engine.begin() as conn:
                        await conn.run_sync(schema.upgrade)
                except SQLAlchemyError:
                    # Another process may have migrated at the same moment; if so, all is well.
                    if await self._revision() != schema.head():
                        raise
            found = await self._revision()
            if found != schema.head():
                raise SchemaOutdated(
                    f"the database schema is at {found or 'nothing (no tables)'} but this release "
                    f"needs {schema.head()}: run `tfa-middleware db upgrade --config FILE`"
                )
            self._ready = True

    async def _revision(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(schema.current)

    async def upgrade_schema(self) -> tuple[str | None, str]:
        """Bring the schema up to this release; (revision before, revision now)."""
        try:
            before = await self._revision()
            async with self.engine.begin() as conn:
                await conn.run_sync(schema.upgrade)
            return before, schema.head()
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"database error: {type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"database unreachable: {exc.strerror or exc}") from exc

    async def schema_revision(self) -> str | None:
        try:
            return await self._revision()
        except (SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"database unreachable: {type(exc).__name__}") from exc

    async def ping(self) -> None:
        async with self._begin() as conn:
            await conn.execute(select(1))


@asynccontextmanager
async def connection(db: Store | AsyncConnection) -> AsyncIterator[AsyncConnection]:
    """The connection to run a query function's statements on: the caller's, inside its
    transaction, or a transaction of their own."""
    if isinstance(db, AsyncConnection):
        yield db
    else:
        async with db.transaction() as conn:
            yield conn


def upsert(conn: AsyncConnection, table: Table) -> Any:
    """``INSERT … ON CONFLICT`` in the connection's dialect (SQLite's and PostgreSQL's agree)."""
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def _engine_options(url: str, pool: PoolSettings) -> dict[str, Any]:
    # Statement parameters hold phone numbers and (in the sandbox outbox) codes: never in logs.
    if url.startswith("sqlite"):
        # The timeout lets a second process (a CLI next to the server) wait for a writer's lock.
        return {"connect_args": {"timeout": 15}, "hide_parameters": True}
    return {
        # A connection that died with the server (an outage, a failover) is noticed and replaced.
        "pool_pre_ping": True,
        "pool_size": pool.size,
        "max_overflow": pool.max_overflow,
        "pool_timeout": pool.timeout_seconds,
        "pool_recycle": pool.recycle_seconds,
        "connect_args": {"timeout": pool.connect_timeout_seconds},
        "hide_parameters": True,
    }


class _HideDriverArguments(logging.Filter):
    """aiosqlite logs every call with its arguments at DEBUG; keep the line, drop the arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = str(record.msg).split("%")[0].strip() + " (arguments hidden by tfa-middleware)"
            record.args = ()
        return True


logging.getLogger("aiosqlite").addFilter(_HideDriverArguments())


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL's usual companion: commits are durable across a crash of the process, and the file is
    # never corrupted; a power cut may lose the last moments of counters, not the database.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()
