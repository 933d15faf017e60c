"""The manage page's traffic, counted from the audit events: sends and verifies per clock hour,
sends per destination region, the latest lockouts.

Each query reads one range of ``ix_tfa_event_kind_at`` (kind, at, interface, country) per kind
and nothing else of the table (the lockouts read their few rows), so its cost follows the events
in the window, not the table (``python -m benchmarks --only traffic``: a million events).
The statements are built once per set of interfaces (a manage page's interfaces are
its settings: a handful of sets per process).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, literal_column, select
from sqlalchemy.sql import Select

from ..tables import events
from .database import Store, reading

HOUR = 3600.0
SENT = "code_sent"
VERIFIED = "verify_ok"
FAILED = "verify_failed"
LOCKED = "locked"
SERIES = (SENT, VERIFIED, FAILED)  # the chart's, in the order of the hourly statement's columns
HOURS = 48
UNKNOWN_COUNTRY = "??"  # a send recorded before its event kept the region


@dataclass(frozen=True, slots=True)
class Lockout:
    at: float
    interface: str
    user_id: str


@dataclass(frozen=True, slots=True)
class Traffic:
    """``hours`` clock hours from ``start`` (Unix time), oldest first: per hour the codes sent,
    the verifies that succeeded and those that failed; the sends per region since ``countries_since``,
    most first; the newest lockouts."""

    start: float
    sent: tuple[int, ...]
    verified: tuple[int, ...]
    failed: tuple[int, ...]
    countries_since: float
    countries: tuple[tuple[str, int], ...]
    lockouts: tuple[Lockout, ...]

    @property
    def hours(self) -> int:
        return len(self.sent)


def _names(names: Sequence[str]) -> list[Any]:
    """Names as SQL literals: an IN list of literals, because the driver compiles a statement once
    and an IN of bound values would be expanded at each call (``render_postcompile`` refuses that
    beside parameters bound per call). Only names of code (kinds) or of the settings (interfaces:
    ``[a-z][a-z0-9_]*``) come here; anything else is refused."""
    for name in names:
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a plain name: {name!r}")
    return [literal_column(f"'{name}'") for name in names]


_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


class _Statements:
    def __init__(self, interfaces: Sequence[str]) -> None:
        c = events.c
        mine = c.interface.in_(_names(interfaces))
        # Per kind and clock hour, one count of an index range (kind, at): 144 of them in one
        # statement. A GROUP BY on the hour (an expression of ``at``) sorts every event of the 48
        # hours in a temporary B-tree, about 5 times slower on SQLite (benchmarks/traffic.py).
        series = []
        for kind in SERIES:
            [named] = _names([kind])
            for hour in range(HOURS):
                inside = (c.at >= bindparam(f"h{hour}"), c.at < bindparam(f"h{hour + 1}"))
                count = select(func.count()).where(c.kind == named, *inside, mine).scalar_subquery()
                series.append(count.label(f"{kind}_{hour}"))
        self.hourly: Select[Any] = select(*series)
        n = func.count().label("n")
        self.countries: Select[Any] = (
            select(c.country, n)
            .where(c.kind == SENT, c.at >= bindparam("since"), c.at < bindparam("end"), mine)
            .group_by(c.country)
            .order_by(n.desc(), c.country)
            .limit(bindparam("top"))
        )
        self.lockouts: Select[Any] = (
            select(c.at, c.interface, c.user_id)
            .where(c.kind == LOCKED, c.at >= bindparam("since"), mine)
            .order_by(c.at.desc())
            .limit(bindparam("top"))
        )


_STATEMENTS: dict[tuple[str, ...], _Statements] = {}


def statements(interfaces: Sequence[str]) -> _Statements:
    key = tuple(sorted(interfaces))
    found = _STATEMENTS.get(key)
    if found is None:
        found = _STATEMENTS[key] = _Statements(key)
    return found


async def traffic(
    store: Store,
    interfaces: Sequence[str],
    now: float,
    *,
    countries_hours: int = 24,
    top: int = 10,
    lockouts_since: float | None = None,
) -> Traffic:
    """The traffic of ``interfaces`` up to ``now``: the last 48 clock hours (this one included),
    the regions of the last ``countries_hours`` hours, the newest ``top`` lockouts (of the last
    week unless ``lockouts_since``)."""
    start = now - now % HOUR - (HOURS - 1) * HOUR
    end = now + 1.0  # events stamped in this second count; a clock a little ahead too
    bounds = {f"h{n}": start + n * HOUR for n in range(HOURS)} | {f"h{HOURS}": end}
    since = now - countries_hours * HOUR
    locked_since = now - 7 * 24 * HOUR if lockouts_since is None else lockouts_since
    stmts = statements(interfaces)
    async with reading(store) as conn:
        counts = (await conn.execute(stmts.hourly, bounds)).one()
        countries = await conn.execute(stmts.countries, {"since": since, "end": end, "top": top})
        locked = await conn.execute(stmts.lockouts, {"since": locked_since, "top": top})
    return Traffic(
        start=start,
        sent=tuple(int(v) for v in counts[0:HOURS]),
        verified=tuple(int(v) for v in counts[HOURS : 2 * HOURS]),
        failed=tuple(int(v) for v in counts[2 * HOURS :]),
        countries_since=since,
        countries=tuple((r.country or UNKNOWN_COUNTRY, int(r.n)) for r in countries),
        lockouts=tuple(Lockout(float(r.at), r.interface, r.user_id) for r in locked),
    )
