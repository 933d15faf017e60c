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
- ``pool.py`` keeps the connections of one event loop, made through the engine and then
  detached from SQLAlchemy's pool.

SQLAlchemy's ``before_cursor_execute`` listeners on the engine still hear every statement (the
tests and benchmarks count queries with them).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Insert, Table, bindparam, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement

from ..errors import StoreUnavailable
from .pool import Pooled

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

    def scalar_one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise StoreUnavailable(f"database error: expected at most one row, got {len(self._rows)}")
        return self._rows[0][0] if self._rows else None

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]


class Connection:
    """One driver connection, taken from the pool for a transaction, a statement or reads."""

    def __init__(self, pooled: Pooled, dialect: Dialect, engine: AsyncEngine) -> None:
        self._pooled = pooled
        self.dialect = dialect
        # Looked up once a connection: most engines have no listener, and asking costs.
        listeners = engine.sync_engine.dispatch.before_cursor_execute
        self._listeners = listeners if listeners else None

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
        if self._listeners is not None:
            self._listeners(None, None, sql, values, None, executemany)
