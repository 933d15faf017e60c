"""5: scale: a status look-up, a send and a verify with 1,000 and with 1,000,000 enrollments.

The enrollments are loaded in bulk (executemany batches on SQLite, COPY on PostgreSQL), then random
users are looked up, sent a code and verified through the service API, one after another. Each
statement the service ran at the largest size is then explained, so the table shows the index
each look-up uses instead of leaving it to be inferred from the timings.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table as SqlTable
from sqlalchemy import event, text

from tfa_middleware import TwoFactor
from tfa_middleware.service import SendStatus, VerifyStatus
from tfa_middleware.tables import enrollments, factors

from .common import (
    RecordingStore,
    Report,
    Table,
    bench_settings,
    median,
    p99,
    phone_number,
    postgres_store,
    postgres_url,
    service_on,
    sqlite_store,
    sqlite_url,
)

BATCH = 100_000
WHERE = re.compile(r"\bWHERE\b", re.IGNORECASE)
TABLE = re.compile(r"\b(?:FROM|UPDATE|INTO)\s+\"?(\w+)", re.IGNORECASE)


@dataclass
class Timings:
    status: list[float] = field(default_factory=list)
    send: list[float] = field(default_factory=list)
    verify: list[float] = field(default_factory=list)
    failures: int = 0


def user(n: int) -> str:
    return f"user-{n:07d}"


def full_row(table: SqlTable, values: dict[str, Any]) -> dict[str, Any]:
    """Every column of a row of ``table``, taking the table's own defaults for those not given.

    Bulk loads bypass SQLAlchemy's per-row defaults, so they are filled in from the table itself:
    a column added to the store later is loaded correctly without a change here.
    """
    row = {}
    for column in table.columns:
        if column.primary_key:
            continue
        if column.name in values:
            row[column.name] = values[column.name]
        elif column.default is not None and column.default.is_scalar:
            row[column.name] = column.default.arg  # type: ignore[attr-defined]
        elif column.nullable:
            row[column.name] = None
        else:
            raise SystemExit(f"no value for {table.name}.{column.name}: teach benchmarks/scale.py")
    return row


async def fill(store: RecordingStore, start: int, stop: int) -> None:
    """Enrollments ``start`` to ``stop - 1``, each with an active phone of its own, in bulk."""
    now = time.time()
    users = full_row(
        enrollments,
        {"interface": "admin", "user_id": "", "require_enrollment": False, "generation": 1}
        | {"created_at": now, "updated_at": now},
    )
    phones = full_row(
        factors,
        {"interface": "admin", "user_id": "", "kind": "sms", "value": "", "confirmed": True}
        | {"created_at": now},
    )
    for first in range(start, stop, BATCH):
        numbers = range(first, min(stop, first + BATCH))
        await _load(store, enrollments, [users | {"user_id": user(n)} for n in numbers])
        await _load(
            store, factors, [phones | {"user_id": user(n), "value": f"+1{phone_number(n)}"} for n in numbers]
        )
    if store.engine.dialect.name == "postgresql":
        async with store.engine.begin() as conn:  # what a bulk load is followed by in production too
            await conn.execute(text("ANALYZE tfa_enrollment"))
            await conn.execute(text("ANALYZE tfa_factor"))


async def _load(store: RecordingStore, table: SqlTable, dicts: list[dict[str, Any]]) -> None:
    columns = tuple(dicts[0])
    rows = [tuple(d.values()) for d in dicts]
    async with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            raw = await conn.get_raw_connection()
            await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                table.name, records=rows, columns=columns
            )
        else:
            names, marks = ", ".join(columns), ", ".join("?" for _ in columns)  # constants, not input
            await conn.exec_driver_sql(
                f"INSERT INTO {table.name} ({names}) VALUES ({marks})",  # noqa: S608
                rows,
            )


async def sample(
    service: TwoFactor, store: RecordingStore, size: int, samples: int, used: set[int]
) -> Timings:
    """Status, send and verify for random users not used before (a send starts a cooldown)."""
    rng = random.Random(size)
    numbers: list[int] = []
    while len(numbers) < min(size - len(used), samples + 5):
        n = rng.randrange(size)
        if n not in used:
            used.add(n)
            numbers.append(n)
    picks = [user(n) for n in numbers]
    timings = Timings()
    for index, user_id in enumerate(picks):
        start = time.perf_counter()
        await service.status("admin", user_id)
        looked_up = time.perf_counter()
        sent = await service.send_code("admin", user_id)
        sent_at = time.perf_counter()
        code = store.codes.get(("admin", user_id), "")
        verified = await service.verify_code("admin", user_id, code)
        done = time.perf_counter()
        if sent.status is not SendStatus.SENT or verified.status is not VerifyStatus.APPROVED:
            timings.failures += 1
        if index >= 5:  # the first few warm the connection pool and the caches
            timings.status.append((looked_up - start) * 1000)
            timings.send.append((sent_at - looked_up) * 1000)
            timings.verify.append((done - sent_at) * 1000)
    return timings


Opener = Callable[[], AbstractAsyncContextManager[RecordingStore]]


def databases(table: Table) -> list[tuple[str, Opener]]:
    """SQLite, and PostgreSQL when TFA_TEST_POSTGRES_URL is set (else a note in ``table``)."""
    found: list[tuple[str, Opener]] = [("SQLite", sqlite_store)]
    url = postgres_url()
    if url:
        found.append(("PostgreSQL", lambda: postgres_store(url)))
    else:
        table.notes.append("PostgreSQL skipped: set TFA_TEST_POSTGRES_URL to include it")
    return found


@contextmanager
def noting(store: RecordingStore, statements: dict[str, tuple[Any, ...]]) -> Iterator[None]:
    """Each statement run meanwhile, with its first parameters, into ``statements`` (for ``plans``)."""

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.setdefault(statement, tuple(parameters or ()))

    event.listen(store.engine.sync_engine, "before_cursor_execute", note)
    try:
        yield
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", note)


async def commit_cost(store: RecordingStore, times: int = 200) -> float:
    """The median time of a one-row UPDATE committed alone, as the service runs one (what the
    server's flush to disk costs here)."""
    async with store.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE tfa_bench_commit (n INTEGER)"))
        await conn.execute(text("INSERT INTO tfa_bench_commit VALUES (0)"))
    bump = text("UPDATE tfa_bench_commit SET n = n + 1")
    spent = []
    for _ in range(times):
        start = time.perf_counter()
        async with store.statement() as statement:
            await statement.execute(bump)
        spent.append((time.perf_counter() - start) * 1000)
    async with store.engine.begin() as conn:
        await conn.execute(text("DROP TABLE tfa_bench_commit"))
    return median(spent)


async def plans(store: RecordingStore, statements: dict[str, tuple[Any, ...]]) -> list[tuple[str, str]]:
    """(statement's verb and table, the plan's gist) for every look-up and update the service ran."""
    out = []
    async with store.engine.connect() as conn:
        for statement, parameters in statements.items():
            verb = statement.split(None, 1)[0].upper()
            if verb not in ("SELECT", "UPDATE", "DELETE"):
                continue
            found = TABLE.search(statement)
            where = found.group(1) if found else "?"
            if where == "tfa_meta" or not WHERE.search(statement):
                continue
            if conn.dialect.name == "sqlite":
                rows = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)).all()
                gist = "; ".join(str(row[-1]) for row in rows)
            else:
                rows = (await conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)).all()
                gist = "; ".join(str(r[0]).strip(" ->") for r in rows if "Scan" in str(r[0]))
            out.append((f"{verb} {where}", gist))
    return sorted(set(out))


async def run(report: Report, *, quick: bool) -> None:
    sizes, samples = ((100, 1_000), 10) if quick else ((1_000, 1_000_000), 200)
    table = Table(
        f"5. Scale: service calls with {' and '.join(f'{s:,}' for s in sizes)} enrollments "
        f"({samples} random users each, ms)",
        [
            "database",
            "enrollments",
            "build s",
            "status median",
            "status p99",
            "send median",
            "send p99",
            "verify median",
            "verify p99",
            "failed",
        ],
    )
    plan_table = Table(
        f"5b. Query plans of the service's statements at {sizes[-1]:,} enrollments", ["statement", "plan"]
    )
    for name, opener in databases(table):
        async with opener() as store:
            service = service_on(store, bench_settings(sqlite_url("/unused")))
            await store.ping()  # creates the tables
            have = 0
            medians: list[Timings] = []
            statements: dict[str, tuple[Any, ...]] = {}
            used: set[int] = set()
            for size in sizes:
                start = time.perf_counter()
                await fill(store, have, size)
                build = time.perf_counter() - start
                have = size
                last = size == sizes[-1]
                with noting(store, statements) if last else nullcontext():
                    timings = await sample(service, store, size, samples, used)
                medians.append(timings)
                table.add(
                    name,
                    size,
                    build,
                    median(timings.status),
                    p99(timings.status),
                    median(timings.send),
                    p99(timings.send),
                    median(timings.verify),
                    p99(timings.verify),
                    timings.failures,
                )
            for label, gist in await plans(store, statements):
                plan_table.add(f"{name}: {label}", gist)
            small, big = medians[0], medians[-1]
            measured = f"{median(big.verify):.2f} ms"
            if store.engine.dialect.name == "postgresql":
                commit = await commit_cost(store)
                measured += f" (a commit: {commit:.2f} ms)"
                table.notes.append(
                    f"{name}: a one-row UPDATE committed alone takes {commit:.2f} ms here (median of 200, "
                    "the server's flush to disk); a verify commits three times (the attempt, the "
                    "sandbox's code, the outcome), a send five"
                )
            report.target(
                f"one verify, the service call alone, {sizes[-1]:,} enrollments, {name}",
                "≤ 2 ms (median)",
                measured,
                median(big.verify) <= 2 and big.failures == 0,
            )
            for what, a, b in (
                ("status look-up", small.status, big.status),
                ("send", small.send, big.send),
                ("verify", small.verify, big.verify),
            ):
                ratio = median(b) / median(a)
                report.target(
                    f"{what} latency, {sizes[0]:,} → {sizes[-1]:,} enrollments, {name}",
                    "flat (within 2×)",
                    f"{median(a):.2f} → {median(b):.2f} ms ({ratio:.2f}×)",
                    ratio <= 2 and big.failures == 0,
                )
    table.notes.append("build s: the time to load the enrollments added for that row")
    report.show(table)
    report.show(plan_table)
