"""The driver connections of one event loop: how each driver runs a statement, and the pool.

**PostgreSQL**: asyncpg, a connection per transaction; ``BEGIN`` and ``COMMIT`` sent only for a
transaction (a statement alone commits by itself).

**SQLite**: the sqlite3 connection is used from the event loop's own thread. aiosqlite runs each
call in a thread of the connection's and hands the result back: on a busy server (the loop
always has work) each hand-over waits for the GIL, and a verify, eight of them, spent more CPU
and time on that than on SQLite's work, a few microseconds a statement on a local file in WAL
mode (benchmarks/RESULTS.md). Nothing here may wait on SQLite's lock while holding the loop, so
the connections run with ``busy_timeout = 0``: a write transaction opens with ``BEGIN
IMMEDIATE``, and when another process (a CLI beside the server) holds the lock, it is retried
after an ``asyncio.sleep`` until ``BUSY_SECONDS``, then fails closed; the writers of this loop
queue before that (``Store``'s lock). In WAL mode nothing else waits: readers never wait for the
writer, and a commit needs no other lock.

The pool makes connections through the engine (its connect arguments and ``connect`` events: the
tests' schemas, SQLite's pragmas) and detaches them from SQLAlchemy's pool; for SQLite it keeps
aiosqlite's sqlite3 connection (``_conn``, which SQLAlchemy's adapter uses too), opened with
``check_same_thread=False`` by SQLAlchemy's dialect.

Why not asyncpg's own pool: it would do for PostgreSQL with its reset on release turned off (by
default every release sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
ALL``, a round trip a transaction), but it connects by itself, without the engine's arguments and
``connect`` events (the URL's options as SQLAlchemy's dialect reads them, the tests' schemas), and
SQLite needs the same pool anyway; so one small pool serves both drivers.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import StoreUnavailable

BUSY_SECONDS = 15.0  # as long as SQLAlchemy's connections wait (the engine's sqlite timeout)
EXTRA_IDLE_SECONDS = 30.0
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class Pooled:
    """A driver connection in a pool, with the times the pool decides by."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.made_at = self.idle_since = time.monotonic()

    async def fetch(self, sql: str, values: list[Any]) -> list[Any]:
        raise NotImplementedError

    async def run(self, sql: str, values: list[Any]) -> int:
        """A statement without rows; the rows it changed."""
        raise NotImplementedError

    async def run_many(self, sql: str, many: list[list[Any]]) -> int:
        raise NotImplementedError

    async def begin(self) -> None:
        raise NotImplementedError

    async def commit(self) -> None:
        raise NotImplementedError

    async def rollback(self) -> None:
        raise NotImplementedError

    async def ping(self) -> None:
        await self.fetch("SELECT 1", [])

    def in_transaction(self) -> bool:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def abandon(self) -> None:
        """Drop it without awaiting anything (its event loop has ended)."""


class AsyncpgPooled(Pooled):
    async def fetch(self, sql: str, values: list[Any]) -> list[Any]:
        return list(await self.driver.fetch(sql, *values))

    async def run(self, sql: str, values: list[Any]) -> int:
        status = await self.driver.execute(sql, *values)  # "UPDATE 1"
        last = str(status).rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else -1

    async def run_many(self, sql: str, many: list[list[Any]]) -> int:
        await self.driver.executemany(sql, many)
        return len(many)

    async def begin(self) -> None:
        await self.driver.execute("BEGIN")

    async def commit(self) -> None:
        await self.driver.execute("COMMIT")

    async def rollback(self) -> None:
        await self.driver.execute("ROLLBACK")

    def in_transaction(self) -> bool:
        return bool(self.driver.is_in_transaction())

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.driver.close(), timeout=5)
        except Exception:  # a connection that cannot even close is dropped all the same
            self.driver.terminate()

    def abandon(self) -> None:
        try:
            self.driver.terminate()
        except Exception:  # its loop is closed: the socket goes with the process
            return


class SqlitePooled(Pooled):
    """aiosqlite's connection, whose sqlite3 connection this loop's thread uses directly."""

    def __init__(self, driver: Any) -> None:
        super().__init__(driver)
        self.db: sqlite3.Connection = driver._conn  # see the module's docstring
        self.db.isolation_level = None  # we say BEGIN and COMMIT
        self.db.execute("PRAGMA busy_timeout = 0")

    async def fetch(self, sql: str, values: list[Any]) -> list[Any]:
        return list(await _unless_busy(lambda: self.db.execute(sql, values).fetchall()))

    async def run(self, sql: str, values: list[Any]) -> int:
        return int(await _unless_busy(lambda: self.db.execute(sql, values).rowcount))

    async def run_many(self, sql: str, many: list[list[Any]]) -> int:
        return int(await _unless_busy(lambda: self.db.executemany(sql, many).rowcount))

    async def begin(self) -> None:
        await _unless_busy(lambda: self.db.execute("BEGIN IMMEDIATE"))

    async def commit(self) -> None:
        if self.db.in_transaction:
            await _unless_busy(lambda: self.db.execute("COMMIT"))

    async def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def in_transaction(self) -> bool:
        return self.db.in_transaction

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.driver.close(), timeout=5)
        except Exception:  # a connection that cannot even close is dropped all the same
            return


async def _unless_busy(step: Any) -> Any:
    """Run a step of SQLite's; while another process holds the lock, wait for it off the loop."""
    deadline = time.monotonic() + BUSY_SECONDS
    pause = 0.001
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) not in _BUSY or time.monotonic() > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)


class Pool:
    """The driver connections of one event loop (asyncpg's belong to the loop that made them).

    At most ``size`` exist (``database_pool.size + max_overflow``); beyond ``keep``
    (``database_pool.size``), those idle for ``EXTRA_IDLE_SECONDS`` are closed: a busy server keeps
    the ones it needs instead of opening and closing one a request. A request waits ``timeout``
    seconds for a connection, then fails closed. One idle for ``ping_after`` seconds is pinged
    before use, one older than ``recycle`` seconds replaced, and after a fork the parent's are
    dropped unclosed.
    """

    def __init__(
        self, engine: AsyncEngine, size: int, keep: int, timeout: float, recycle: float, ping_after: float
    ) -> None:
        self.engine = engine
        self.postgresql = engine.dialect.name == "postgresql"
        self.kind: type[Pooled] = AsyncpgPooled if self.postgresql else SqlitePooled
        self.size = size
        self.keep = keep
        self.timeout = timeout
        self.recycle = recycle
        self.ping_after = ping_after
        self.idle: list[Pooled] = []
        self.count = 0  # made and not yet closed: idle and in use
        self.pid = os.getpid()
        self.closed = False
        self._freed = asyncio.Condition()

    async def acquire(self) -> Pooled:
        if self.closed:
            raise StoreUnavailable("the database connections are closed")
        if self.pid != os.getpid():  # a forked child: the parent's connections are not ours
            self.idle, self.count, self.pid = [], 0, os.getpid()
        deadline = time.monotonic() + self.timeout
        while True:
            while self.idle:
                pooled = self.idle.pop()
                if await self._usable(pooled):
                    return pooled
            if self.count < self.size:
                self.count += 1
                try:
                    return await self._make()
                except BaseException:
                    self.count -= 1
                    raise
            async with self._freed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreUnavailable(f"no database connection free within {self.timeout:g} s")
                try:
                    await asyncio.wait_for(self._freed.wait(), left)
                except TimeoutError:
                    continue

    async def release(self, pooled: Pooled, *, broken: bool = False) -> None:
        now = time.monotonic()
        if broken or self.closed or pooled.in_transaction():
            await self._discard(pooled)
        else:
            pooled.idle_since = now
            self.idle.append(pooled)  # the oldest idle first, the next one to use last
        while len(self.idle) > self.keep and now - self.idle[0].idle_since > EXTRA_IDLE_SECONDS:
            await self._discard(self.idle.pop(0))
        async with self._freed:
            self._freed.notify()

    async def drop_idle(self) -> None:
        idle, self.idle = self.idle, []
        for pooled in idle:
            await self._discard(pooled)

    async def close(self) -> None:
        """Close the idle connections now, and those in use when they come back."""
        self.closed = True
        await self.drop_idle()

    def abandon(self) -> None:
        """Their event loop has ended: nothing can be awaited on them any more; drop them."""
        self.closed = True
        idle, self.idle = self.idle, []
        for pooled in idle:
            self.count -= 1
            pooled.abandon()

    async def _usable(self, pooled: Pooled) -> bool:
        now = time.monotonic()
        if now - pooled.made_at > self.recycle:
            await self._discard(pooled)
            return False
        if now - pooled.idle_since > self.ping_after:
            try:
                await pooled.ping()
            except Exception:  # whatever the driver raises, the connection is dead
                await self._discard(pooled)
                return False
        return True

    async def _make(self) -> Pooled:
        fairy = await self.engine.raw_connection()
        driver = fairy.driver_connection
        fairy.detach()
        return self.kind(driver)

    async def _discard(self, pooled: Pooled) -> None:
        self.count -= 1
        await pooled.close()
