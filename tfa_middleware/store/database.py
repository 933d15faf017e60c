"""The database: one engine, its connections, the schema's readiness.

SQLAlchemy 2 Core builds the statements and migrates the schema; the service's statements run
on the driver's own connection (``driver.py`` says why): asyncpg for PostgreSQL, for several
processes; aiosqlite for SQLite, for one. Database failures become :class:`StoreUnavailable`
here, once, so callers fail closed on one exception type. The queries live beside this module,
one module per table.

Three ways in, each one connection from the pool: :meth:`Store.transaction` (statements that
commit together), :meth:`Store.statement` (statements that each commit alone: on PostgreSQL no
``BEGIN`` and ``COMMIT``, two round trips fewer; for one that decides alone, an
``UPDATE … WHERE … RETURNING``) and :meth:`Store.reading` (reads only).

**Dead connections.** Nothing is pinged on every checkout (SQLAlchemy's ``pool_pre_ping`` is
three round trips on asyncpg). A connection that sat idle in the pool for
``IDLE_PING_SECONDS`` (when servers, proxies and failovers drop them) is pinged first and replaced
if dead; one that dies while in use fails its statement, which becomes :class:`StoreUnavailable`
(fail closed), and every idle connection of the pool is dropped with it, so the next request
gets a new one.

**SQLite** allows one writer at a time; a second connection that wants to write waits in
SQLite's busy handler, which sleeps in steps of up to 100 ms. The transactions of one event loop
therefore queue on an ``asyncio.Lock`` instead, and SQLite's busy wait is left to other
processes (a CLI beside the server). Reads do not queue: WAL lets them run beside the writer.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Table, event, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .. import schema
from ..errors import SchemaOutdated, StoreUnavailable
from ..settings import PoolSettings, Settings
from .driver import Connection
from .pool import Pool

log = logging.getLogger("tfa_middleware")

# A pooled connection idle this long is pinged before use (see the module's docstring).
IDLE_PING_SECONDS = 10.0
# How long a process waits for another that is migrating the same database.
MIGRATION_WAIT_SECONDS = 15.0


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
        self.pool_settings = pool or PoolSettings()
        self.idle_ping_seconds = IDLE_PING_SECONDS
        self._ready = False
        self._ready_lock = asyncio.Lock()
        sqlite = self.engine.dialect.name == "sqlite"
        # Per event loop: its connections (asyncpg's belong to the loop that made them) and, on
        # SQLite, the lock its writers queue on.
        # Held, not weakly: a pool whose loop has gone is still closed by close().
        self._pools: dict[asyncio.AbstractEventLoop, Pool] = {}
        self._writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] | None = (
            weakref.WeakKeyDictionary() if sqlite else None
        )
        # A database in memory is one shared connection: even a read must wait its turn.
        database = self.engine.url.database or ""
        self._reads_queue = sqlite and (database in ("", ":memory:") or "mode=memory" in str(self.engine.url))
        if sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """The database of ``settings``, with its pool and ``auto_migrate``; nothing else is built."""
        return cls(
            settings.database_url.reveal(), auto_migrate=settings.auto_migrate, pool=settings.database_pool
        )

    async def close(self) -> None:
        """Close every connection: this loop's, and those other loops made (a WSGI server's loop
        thread, a test's loop), each where it can be closed."""
        pools, self._pools = self._pools, {}
        for loop, pool in pools.items():
            await _close(pool, loop)
        await self.engine.dispose()

    def pooled(self) -> int:
        """Connections open in this event loop's pool, idle or in use (0 once closed)."""
        pool = self._pools.get(asyncio.get_running_loop())
        return pool.count if pool is not None else 0

    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        """A transaction: the statements of the query functions handed its connection commit
        together. Any database failure leaves as StoreUnavailable (never a traceback page)."""
        return self._use(write=True, alone=False)

    def statement(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for exactly one statement, which commits by itself (an UPDATE … WHERE
        that decides alone, an INSERT of an event): one round trip on PostgreSQL."""
        return self._use(write=True, alone=True)

    def reading(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for reads only; each statement sees what was committed when it ran."""
        return self._use(write=False, alone=True)

    @asynccontextmanager
    async def _use(self, *, write: bool, alone: bool) -> AsyncIterator[Connection]:
        if not self._ready:
            await self._ready_or_unavailable()
        async with AsyncExitStack() as stack:
            if self._writers is not None and (write or self._reads_queue):
                await stack.enter_async_context(self._writer_lock())
            pool = await self._pool()
            pooled = await _guarded(pool.acquire())
            discard = False
            try:
                if not alone:
                    await _guarded(pooled.begin())
                yield Connection(pooled, self.engine.dialect, self.engine)
                if write:
                    await _guarded(pooled.commit())
            except BaseException as exc:
                # A connection that died takes the idle ones with it (a restart killed them all);
                # one interrupted mid-statement is not used again either.
                dead = _disconnected(exc)
                discard = dead or isinstance(exc, asyncio.CancelledError)
                if dead:
                    await pool.drop_idle()
                elif not discard:
                    await _quietly(pooled.rollback())
                if isinstance(exc, _DRIVER_ERRORS):
                    raise _unavailable(exc) from exc
                raise
            finally:
                await pool.release(pooled, broken=discard)

    async def _pool(self) -> Pool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:  # a new loop: the pools of loops that have ended are closed first
            for gone in [other for other in self._pools if other.is_closed()]:
                await _close(self._pools.pop(gone), gone)
        if pool is None or pool.engine is not self.engine:
            settings = self.pool_settings
            keep, size = (
                (settings.size, settings.size + settings.max_overflow) if not self._reads_queue else (1, 1)
            )
            old, pool = (
                pool,
                Pool(
                    self.engine,
                    size,
                    keep,
                    settings.timeout_seconds,
                    settings.recycle_seconds,
                    self.idle_ping_seconds,
                ),
            )
            self._pools[loop] = pool
            if old is not None:  # the engine was replaced: its connections go with it
                await old.close()
        return pool

    async def _ready_or_unavailable(self) -> None:
        try:
            self._check_sqlite_folder()
            await self._prepare_schema()
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"database error: {type(exc).__name__}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"database unreachable: {exc.strerror or exc}") from exc

    def _writer_lock(self) -> asyncio.Lock:
        assert self._writers is not None
        loop = asyncio.get_running_loop()
        lock = self._writers.get(loop)
        if lock is None:
            lock = self._writers[loop] = asyncio.Lock()
        return lock

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
                    # Another process may be migrating at the same moment (workers starting
                    # together on a new SQLite file): when it reaches this release, all is well.
                    if not await self._reaches_head(MIGRATION_WAIT_SECONDS):
                        raise
            found = await self._revision()
            if found != schema.head():
                raise SchemaOutdated(
                    f"the database schema is at {found or 'nothing (no tables)'} but this release "
                    f"needs {schema.head()}: run `tfa-middleware db upgrade --config FILE`"
                )
            self._ready = True

    async def _reaches_head(self, seconds: float) -> bool:
        deadline = asyncio.get_running_loop().time() + seconds
        while await self._revision() != schema.head():
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

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
        self._check_sqlite_folder()  # a missing folder: said plainly, and no aiosqlite thread left behind
        try:
            return await self._revision()
        except (SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"database unreachable: {type(exc).__name__}") from exc

    async def ping(self) -> None:
        async with self.reading() as conn:
            await conn.execute(select(1))


# What the drivers raise: SQLAlchemy's (a connection being made), asyncpg's, sqlite3's, the
# sockets'. Anything else is a bug of ours and keeps its traceback.
_DRIVER_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, sqlite3.Error, OSError, TimeoutError)
try:  # asyncpg is the postgres extra's
    import asyncpg  # type: ignore[import-untyped]

    _DRIVER_ERRORS += (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
except ImportError:  # pragma: no cover (installed with the tests)
    asyncpg = None


async def _close(pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
    """Close a pool from this loop. aiosqlite's connections close from any loop; asyncpg's only
    from their own: while it runs, there; once it has ended, their sockets are dropped."""
    try:
        if loop is asyncio.get_running_loop() or not pool.postgresql:
            await pool.close()
        elif loop.is_running():
            done = asyncio.run_coroutine_threadsafe(pool.close(), loop)
            await asyncio.wait_for(asyncio.wrap_future(done), timeout=10)
        else:
            pool.abandon()
    except Exception:  # the connections are lost either way; closing must not fail the caller
        log.warning("database connections of another event loop could not be closed", exc_info=True)


async def _guarded(step: Any) -> Any:
    """Await a step of the driver's; its failure becomes StoreUnavailable."""
    try:
        return await step
    except _DRIVER_ERRORS as exc:
        raise _unavailable(exc) from exc


def _unavailable(exc: BaseException) -> BaseException:
    if isinstance(exc, StoreUnavailable):
        return exc
    if isinstance(exc, OSError | TimeoutError) or _disconnected(exc):
        return StoreUnavailable(f"database unreachable: {type(exc).__name__}")
    return StoreUnavailable(f"database error: {type(exc).__name__}")


def _disconnected(exc: BaseException) -> bool:
    """True when the connection itself is gone or in a state nobody knows (not a statement that
    the server refused on a sound connection)."""
    cause = exc.__cause__ if isinstance(exc, StoreUnavailable) else exc
    if isinstance(cause, OSError | TimeoutError | ConnectionError):
        return True
    if asyncpg is not None:
        if isinstance(cause, asyncpg.PostgresError):
            return isinstance(cause, asyncpg.PostgresConnectionError | asyncpg.CannotConnectNowError)
        if isinstance(cause, asyncpg.InterfaceError | asyncpg.InternalClientError):
            return True  # closed, or its protocol lost (the server ended it between two uses)
    # sqlite3: "Cannot operate on a closed database."
    return isinstance(cause, sqlite3.ProgrammingError) and "closed" in str(cause)


async def _quietly(step: Any) -> None:
    try:
        await step
    except Exception:
        return


def connection(db: Store | Connection) -> AbstractAsyncContextManager[Connection]:
    """The connection to run a query function's statements on: the caller's, inside its
    transaction, or a transaction of their own."""
    return _callers_or(db, "transaction")


def alone(db: Store | Connection) -> AbstractAsyncContextManager[Connection]:
    """The connection for a query function of one statement: the caller's, or one that commits
    it alone."""
    return _callers_or(db, "statement")


def reading(db: Store | Connection) -> AbstractAsyncContextManager[Connection]:
    """The connection for a query function that only reads: the caller's, or a reading one."""
    return _callers_or(db, "reading")


@asynccontextmanager
async def _callers_or(db: Store | Connection, way: str) -> AsyncIterator[Connection]:
    if isinstance(db, Connection):
        yield db
    else:
        async with getattr(db, way)() as conn:
            yield conn


def upsert(conn: Connection, table: Table) -> Any:
    """``INSERT … ON CONFLICT`` in the connection's dialect (SQLite's and PostgreSQL's agree)."""
    return upsert_for(conn.dialect.name, table)


def upsert_for(dialect: str, table: Table) -> Any:
    """``INSERT … ON CONFLICT`` in the dialect named, for a statement built once."""
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)


def _engine_options(url: str, pool: PoolSettings) -> dict[str, Any]:
    # Statement parameters hold phone numbers and (in the sandbox outbox) codes: never in logs.
    if url.startswith("sqlite"):
        # The timeout lets a second process (a CLI next to the server) wait for a writer's lock.
        return {"connect_args": {"timeout": 15}, "hide_parameters": True}
    return {
        # No pool_pre_ping: a connection is pinged only after it sat idle (driver.Pool).
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
