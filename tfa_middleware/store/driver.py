"""Statements run on the driver's own connection: asyncpg for PostgreSQL, aiosqlite for SQLite.

SQLAlchemy builds every statement (Core), compiles it, opens the connections (with the engine's
connect arguments and ``connect`` events) and runs the migrations; it does not execute the
service's statements. On this machine a statement through SQLAlchemy's async engine costs about
220 µs of CPU and a pooled connection about 190 µs more, where asyncpg alone costs 75 µs: a verify
is five statements, so SQLAlchemy's execution was most of its cost. Through aiosqlite,
SQLAlchemy's adapter makes four thread hand-overs a statement (cursor, execute, fetch, close),
each about 100 µs; here a statement is one. So:

- a statement is compiled once per dialect (``Compiled``, cached on the statement object, which
  the query modules build once, at import), then only bound: its parameters in the order of the
  compiled SQL, the settings' constants already in place;
- :class:`Connection` runs it and gives back rows that read like SQLAlchemy's (``row.name``,
  ``first()``, ``scalar()``, ``rowcount``);
- :class:`Pool` keeps the connections of one event loop, made through the engine and then
  detached from SQLAlchemy's pool.

SQLAlchemy's ``before_cursor_execute`` listeners on the engine still hear every statement (the
tests and benchmarks count queries with them).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Insert, Table, bindparam, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement

from ..errors import StoreUnavailable

Parameters = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement compiled for one dialect: its SQL and how to bind it."""

    sql: str
    names: tuple[str | None, ...]  # per position: the parameter to take, or None for a constant
    constants: tuple[Any, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    row: Any  # the row class (a named tuple of the result columns), or None: no rows
    results: tuple[Callable[[Any], Any] | None, ...]

    def bind(self, parameters: Parameters | None) -> list[Any]:
        given = parameters or {}
        values = []
        for name, constant, process in zip(self.names, self.constants, self.processors, strict=True):
            value = given[name] if name is not None else constant
            values.append(process(value) if process is not None and value is not None else value)
        return values

    def rows(self, raw: Sequence[Any]) -> list[Any]:
        if self.results and any(self.results):
            return [self.row(*(p(v) if p else v for p, v in zip(self.results, r, strict=True))) for r in raw]
        return [self.row(*r) for r in raw]


def inserting(table: Table, *columns: str) -> Insert:
    """An INSERT of one row built once, its values bound per call by the columns' names."""
    return insert(table).values({name: bindparam(name) for name in columns})


_COMPILED: WeakKeyDictionary[ClauseElement, dict[str, Compiled]] = WeakKeyDictionary()


def compiled(statement: ClauseElement, dialect: Dialect) -> Compiled:
    """The statement compiled for ``dialect``, once for each statement object."""
    per_dialect = _COMPILED.get(statement)
    if per_dialect is None:
        per_dialect = _COMPILED[statement] = {}
    found = per_dialect.get(dialect.name)
    if found is None:
        found = per_dialect[dialect.name] = _compile(statement, dialect)
    return found


def _compile(statement: ClauseElement, dialect: Dialect) -> Compiled:
    columns = list(getattr(statement, "exported_columns", ()))
    if isinstance(statement, Insert) and not columns:
        statement = statement.inline()  # no RETURNING of the new key, which nobody reads
    done: Any = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    names: list[str | None] = []
    constants: list[Any] = []
    processors: list[Callable[[Any], Any] | None] = []
    expanded: dict[str, Any] | None = None
    for name in done.positiontup or ():
        bind = done.binds.get(name)
        if bind is None:  # one value of a literal IN list, rendered as parameters of their own
            expanded = done.construct_params() if expanded is None else expanded
            names.append(None)
            constants.append(expanded[name])
            processors.append(None)
            continue
        names.append(name if bind.required else None)
        constants.append(None if bind.required else bind.effective_value)
        processors.append(bind.type.dialect_impl(dialect).bind_processor(dialect))
    row: Any = None
    results: list[Callable[[Any], Any] | None] = []
    if columns:
        keys = [str(getattr(c, "key", None) or f"c{n}") for n, c in enumerate(columns)]
        row = _row_class(keys)
        # asyncpg gives Python's types; the sqlite3 module gives 0 and 1 for a Boolean.
        if dialect.name != "postgresql":
            results = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
    return Compiled(done.string, tuple(names), tuple(constants), tuple(processors), row, tuple(results))


def _row_class(keys: list[str]) -> Any:
    """Rows read by attribute like SQLAlchemy's: a named tuple of the statement's columns."""
    return namedtuple("Row", keys, rename=True)


class Result:
    """A statement's rows (or the number of rows it changed), read as SQLAlchemy's are."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return list(self._rows)

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise StoreUnavailable(f"database error: expected one row, got {len(self._rows)}")
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]


class Connection:
    """One driver connection, taken from the pool for a transaction, a statement or reads."""

    def __init__(self, pooled: Pooled, dialect: Dialect, engine: AsyncEngine) -> None:
        self._pooled = pooled
        self.dialect = dialect
        self._events = engine.sync_engine.dispatch

    async def execute(
        self, statement: ClauseElement, parameters: Parameters | Sequence[Parameters] | None = None
    ) -> Result:
        """Run ``statement`` with ``parameters``; with a list of them, once for each (no rows)."""
        found = compiled(statement, self.dialect)
        if isinstance(parameters, Sequence):
            many = [found.bind(p) for p in parameters]
            self._heard(found.sql, many, executemany=True)
            return Result([], await self._pooled.run_many(found.sql, many))
        values = found.bind(parameters)
        self._heard(found.sql, values, executemany=False)
        if found.row is None:
            return Result([], await self._pooled.run(found.sql, values))
        return Result(found.rows(await self._pooled.fetch(found.sql, values)), -1)

    def _heard(self, sql: str, values: Any, *, executemany: bool) -> None:
        if self._events.before_cursor_execute:
            self._events.before_cursor_execute(None, None, sql, values, None, executemany)


@dataclass
class Pooled:
    """A driver connection in a pool, with the times the pool decides by."""

    driver: Any
    postgresql: bool
    made_at: float = field(default_factory=time.monotonic)
    idle_since: float = field(default_factory=time.monotonic)

    async def fetch(self, sql: str, values: list[Any]) -> list[Any]:
        if self.postgresql:
            return list(await self.driver.fetch(sql, *values))
        return list(await self.driver.execute_fetchall(sql, values))

    async def run(self, sql: str, values: list[Any]) -> int:
        if self.postgresql:
            status = await self.driver.execute(sql, *values)
            last = str(status).rsplit(" ", 1)[-1]
            return int(last) if last.isdigit() else -1
        # The cursor is left unclosed: closing it is one more hand-over to aiosqlite's thread, and
        # the sqlite3 module has already reset its statement.
        cursor = await self.driver.execute(sql, values)
        return int(cursor.rowcount)

    async def run_many(self, sql: str, many: list[list[Any]]) -> int:
        if self.postgresql:
            await self.driver.executemany(sql, many)
            return len(many)
        cursor = await self.driver.executemany(sql, many)
        return int(cursor.rowcount)

    async def begin(self) -> None:
        # SQLite: the sqlite3 module opens the transaction itself before the first write.
        if self.postgresql:
            await self.driver.execute("BEGIN")

    async def commit(self) -> None:
        if self.postgresql:
            await self.driver.execute("COMMIT")
        elif self.driver.in_transaction:
            await self.driver.commit()

    async def rollback(self) -> None:
        if self.postgresql:
            await self.driver.execute("ROLLBACK")
        elif self.driver.in_transaction:
            await self.driver.rollback()

    async def ping(self) -> None:
        if self.postgresql:
            await self.driver.fetchval("SELECT 1")
        else:
            await self.driver.execute_fetchall("SELECT 1")

    def in_transaction(self) -> bool:
        if self.postgresql:
            return bool(self.driver.is_in_transaction())
        return bool(self.driver.in_transaction)

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.driver.close(), timeout=5)
        except Exception:
            return


class Pool:
    """The driver connections of one event loop (asyncpg's belong to the loop that made them).

    New ones are made through the engine (its connect arguments and ``connect`` events) and
    detached from SQLAlchemy's pool. At most ``size`` exist; a request waits ``timeout`` seconds
    for one, then fails closed. One idle for ``ping_after`` seconds is pinged before use, one
    older than ``recycle`` seconds replaced, and after a fork the parent's are dropped unclosed.
    """

    def __init__(
        self, engine: AsyncEngine, size: int, timeout: float, recycle: float, ping_after: float
    ) -> None:
        self.engine = engine
        self.postgresql = engine.dialect.name == "postgresql"
        self.size = size
        self.timeout = timeout
        self.recycle = recycle
        self.ping_after = ping_after
        self.idle: list[Pooled] = []
        self.count = 0  # made and not yet closed: idle and in use
        self.pid = os.getpid()
        self._freed = asyncio.Condition()

    async def acquire(self) -> Pooled:
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
        if broken or pooled.in_transaction():
            await self._discard(pooled)
        else:
            pooled.idle_since = time.monotonic()
            self.idle.append(pooled)
        async with self._freed:
            self._freed.notify()

    async def drop_idle(self) -> None:
        idle, self.idle = self.idle, []
        for pooled in idle:
            await self._discard(pooled)

    async def close(self) -> None:
        await self.drop_idle()

    async def _usable(self, pooled: Pooled) -> bool:
        now = time.monotonic()
        if now - pooled.made_at > self.recycle:
            await self._discard(pooled)
            return False
        if now - pooled.idle_since > self.ping_after:
            try:
                await pooled.ping()
            except Exception:
                await self._discard(pooled)
                return False
        return True

    async def _make(self) -> Pooled:
        fairy = await self.engine.raw_connection()
        driver = fairy.driver_connection
        fairy.detach()
        return Pooled(driver, self.postgresql)

    async def _discard(self, pooled: Pooled) -> None:
        self.count -= 1
        await pooled.close()
