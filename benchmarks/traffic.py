"""10: the manage page's traffic queries with 1,000,000 audit events.

The events are loaded in bulk (executemany batches on SQLite, COPY on PostgreSQL, as in
``scale.py``), spread evenly over the last 30 days on two interfaces: a third codes sent (with a
region of ten), a quarter right codes, a tenth wrong ones, one in a hundred a lockout, the rest
other kinds. Then the page's reads (``store.traffic.traffic``: the sends and verifies per hour over
48 hours, the regions of the last 24 hours, the latest lockouts) and the budget row are timed
together, 50 times, and each statement is explained: the plan names the index it reads.

The cost follows the events inside the windows (about 1 in 15 of them here), not the table.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from typing import Any

from tfa_middleware.store.traffic import traffic
from tfa_middleware.tables import events

from .common import (
    RecordingStore,
    Report,
    Table,
    bench_settings,
    median,
    p99,
    service_on,
    sqlite_url,
)
from .scale import BATCH, _load, databases, full_row, noting, plans

DAYS = 30
REGIONS = ["US", "GB", "FR", "DE", "IN", "BR", "NG", "JM", "PH", "ID"]
# (kind, weight): what a shop's audit log holds, roughly.
KINDS = [
    ("code_sent", 33),
    ("verify_ok", 25),
    ("verify_failed", 10),
    ("locked", 1),
    ("send_refused", 6),
    ("phone_set", 5),
    ("browser_remembered", 10),
    ("reset", 10),
]
TARGET_MS = 50.0
_ALIAS = re.compile(r" tfa_event_\d+\b")
_ESTIMATE = re.compile(r"\s*\(cost=[^)]*\)")


async def fill(store: RecordingStore, count: int, now: float) -> None:
    rng = random.Random(count)
    kinds = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    base = full_row(
        events,
        {"at": 0.0, "interface": "admin", "user_id": "", "kind": "", "ip": "203.0.113.7", "detail": "{}"},
    )
    span = DAYS * 86400.0
    for first in range(0, count, BATCH):
        rows = []
        picked = rng.choices(kinds, weights, k=min(BATCH, count - first))
        for offset, kind in enumerate(picked):
            n = first + offset
            sent = kind == "code_sent"
            rows.append(
                base
                | {
                    "at": now - span + span * n / count,  # in time order, as they are written
                    "interface": "admin" if n % 4 else "customer",
                    "user_id": f"user-{n % 50_000:05d}",
                    "kind": kind,
                    "country": rng.choice(REGIONS) if sent else None,
                }
            )
        await _load(store, events, rows)
    if store.engine.dialect.name == "postgresql":
        # What autovacuum does to a table this size: the statistics, and the visibility map that
        # an index-only scan reads. VACUUM cannot run in a transaction: autocommit.
        async with store.engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.exec_driver_sql("VACUUM ANALYZE tfa_event")


def _counted(gist: str) -> str:
    """A plan's steps, each once with how many times it appears (the hourly statement is 144
    counts of an index range: one line, not 144)."""
    # PostgreSQL names each subquery's table (tfa_event_33) and its estimates: not the plan's shape.
    steps = Counter(_ESTIMATE.sub("", _ALIAS.sub("", part)).strip() for part in gist.split("; "))
    return "; ".join(f"{step} (×{n})" if n > 1 else step for step, n in steps.items())


async def run(report: Report, *, quick: bool) -> None:
    count, rounds = (10_000, 5) if quick else (1_000_000, 50)
    table = Table(
        f"10. The manage page's traffic queries with {count:,} audit events over {DAYS} days (ms)",
        ["events", "database", "build s", "in 48 h", "page reads median", "page reads p99", "budget median"],
    )
    plan_table = Table(f"10b. Query plans of the traffic queries at {count:,} events", ["statement", "plan"])
    for name, opener in databases(table):
        async with opener() as store:
            service = service_on(store, bench_settings(sqlite_url("/unused")))
            await store.ping()  # creates the tables
            now = time.time()
            start = time.perf_counter()
            await fill(store, count, now)
            build = time.perf_counter() - start
            interfaces = ["admin", "customer"]
            statements: dict[str, tuple[Any, ...]] = {}
            found = await traffic(store, interfaces, now)  # warm: compiled, connected
            with noting(store, statements):
                await traffic(store, interfaces, now)
            page, budget = [], []
            for _ in range(rounds):
                began = time.perf_counter()
                await traffic(store, interfaces, now)
                page.append((time.perf_counter() - began) * 1000)
                began = time.perf_counter()
                await service.operations.budget()
                budget.append((time.perf_counter() - began) * 1000)
            in_window = sum(found.sent) + sum(found.verified) + sum(found.failed)
            table.add(count, name, build, in_window, median(page), p99(page), median(budget))
            for label, gist in await plans(store, statements):
                plan_table.add(f"{name}: {label}", _counted(gist))
            report.target(
                f"the manage page's traffic reads, {count:,} audit events, {name}",
                f"≤ {TARGET_MS:.0f} ms (median)",
                f"{median(page):.1f} ms",
                median(page) <= TARGET_MS,
            )
    table.notes.append(
        "page reads: the three statements of one manage page's traffic section (per hour: 144 counts "
        "of an index range; regions; lockouts) on one connection; in 48 h: the sends and verifies "
        "they count"
    )
    report.show(table)
    report.show(plan_table)
