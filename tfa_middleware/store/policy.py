"""Issue 17's rows: exemptions, the enrollment grace's skipped logins, report mode's daily
records, and the proofs spent on a step-up rule of max age 0.

What must be exact under several workers is one statement each: a skip counted only while fewer
than N were (an upsert whose ``DO UPDATE`` holds a ``WHERE``: no row back, no skip); a day's report
and a spent proof each an ``INSERT … ON CONFLICT DO NOTHING`` on their key, whose returned row says
whether this worker wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, Integer, String, bindparam, select, update

from ..tables import exemptions, grace_logins, policy_reports, step_up_spent
from .database import Store, alone, reading, upsert_for
from .driver import Connection, inserting

DIALECTS = ("postgresql", "sqlite")


@dataclass(frozen=True, slots=True)
class Exemption:
    """One exemption: whose, until when, why, by whom, since when."""

    interface: str
    user_id: str
    until: float
    reason: str
    created_by: str | None
    created_at: float


_THE_USER = (
    exemptions.c.interface == bindparam("iface", type_=String),
    exemptions.c.user_id == bindparam("user", type_=String),
)
_LIVE = (exemptions.c.ended_at.is_(None), exemptions.c.until > bindparam("now", type_=Float))
_ACTIVE = select(exemptions).where(*_THE_USER, *_LIVE).order_by(exemptions.c.until.desc()).limit(1)
_ACTIVE_ALL = (
    select(exemptions)
    .where(exemptions.c.interface == bindparam("iface", type_=String), *_LIVE)
    .order_by(exemptions.c.until)
)
_END = update(exemptions).where(*_THE_USER, *_LIVE).values(ended_at=bindparam("now"))
_ADD = inserting(exemptions, "interface", "user_id", "until", "reason", "created_by", "created_at")


def _exemption(row: Any) -> Exemption:
    return Exemption(
        row.interface, row.user_id, float(row.until), row.reason, row.created_by, float(row.created_at)
    )


async def active(db: Store | Connection, interface: str, user_id: str, now: float) -> Exemption | None:
    """The user's exemption in force at ``now`` (the one ending last), or None."""
    async with reading(db) as conn:
        row = (await conn.execute(_ACTIVE, {"iface": interface, "user": user_id, "now": now})).first()
    return None if row is None else _exemption(row)


async def active_all(db: Store | Connection, interface: str, now: float) -> list[Exemption]:
    """Every exemption in force on the interface, ending soonest first."""
    async with reading(db) as conn:
        rows = (await conn.execute(_ACTIVE_ALL, {"iface": interface, "now": now})).all()
    return [_exemption(row) for row in rows]


async def end(conn: Connection, interface: str, user_id: str, now: float) -> bool:
    """End the user's exemptions in force; whether there was one."""
    result = await conn.execute(_END, {"iface": interface, "user": user_id, "now": now})
    return bool(result.rowcount)


async def add(conn: Connection, item: Exemption, now: float) -> None:
    """A new exemption, replacing any in force (call in the transaction that records the event)."""
    await end(conn, item.interface, item.user_id, now)
    values = {
        "interface": item.interface,
        "user_id": item.user_id,
        "until": item.until,
        "reason": item.reason,
        "created_by": item.created_by,
        "created_at": item.created_at,
    }
    await conn.execute(_ADD, values)


def _grace_skip(dialect: str) -> Any:
    statement = upsert_for(dialect, grace_logins).values(
        interface=bindparam("iface"), user_id=bindparam("user"), used=1, updated_at=bindparam("now")
    )
    return statement.on_conflict_do_update(
        index_elements=["interface", "user_id"],
        set_={"used": grace_logins.c.used + 1, "updated_at": statement.excluded.updated_at},
        where=grace_logins.c.used < bindparam("limit", type_=Integer),
    ).returning(grace_logins.c.used)


_GRACE_SKIP = {dialect: _grace_skip(dialect) for dialect in DIALECTS}
_GRACE_USED = select(grace_logins.c.used).where(
    grace_logins.c.interface == bindparam("iface", type_=String),
    grace_logins.c.user_id == bindparam("user", type_=String),
)


async def skip_login(
    db: Store | Connection, interface: str, user_id: str, limit: int, now: float
) -> int | None:
    """Count one skipped login if fewer than ``limit`` were: how many now, or None (none left)."""
    params = {"iface": interface, "user": user_id, "now": now, "limit": limit}
    async with alone(db) as conn:
        used = (await conn.execute(_GRACE_SKIP[conn.dialect.name], params)).scalar()
    return None if used is None else int(used)


async def logins_skipped(db: Store | Connection, interface: str, user_id: str) -> int:
    async with reading(db) as conn:
        used = (await conn.execute(_GRACE_USED, {"iface": interface, "user": user_id})).scalar()
    return int(used or 0)


def _once(dialect: str, table: Any, key: list[str], *columns: str) -> Any:
    values: dict[str, Any] = {name: bindparam(name) for name in columns}
    return (
        upsert_for(dialect, table)
        .values(values)
        .on_conflict_do_nothing(index_elements=key)
        .returning(table.c[key[0]])
    )


_REPORT = {
    d: _once(d, policy_reports, ["interface", "user_id", "day"], "interface", "user_id", "day", "kind", "at")
    for d in DIALECTS
}
_SPEND = {
    d: _once(d, step_up_spent, ["digest"], "digest", "interface", "user_id", "spent_at") for d in DIALECTS
}
_REPORTED = (
    select(policy_reports.c.user_id, policy_reports.c.day, policy_reports.c.kind)
    .where(
        policy_reports.c.interface == bindparam("iface", type_=String),
        policy_reports.c.day >= bindparam("since", type_=String),
    )
    .order_by(policy_reports.c.user_id, policy_reports.c.day)
)


async def report(conn: Connection, interface: str, user_id: str, day: str, kind: str, now: float) -> bool:
    """Record that ``user_id`` would have been stopped on ``day``: whether this call wrote it."""
    params = {"interface": interface, "user_id": user_id, "day": day, "kind": kind, "at": now}
    return (await conn.execute(_REPORT[conn.dialect.name], params)).first() is not None


async def reported(db: Store | Connection, interface: str, since: str) -> list[tuple[str, str, str]]:
    """``(user_id, day, kind)`` of the reports on days ``since`` (YYYY-MM-DD) or later."""
    async with reading(db) as conn:
        rows = (await conn.execute(_REPORTED, {"iface": interface, "since": since})).all()
    return [(row.user_id, row.day, row.kind) for row in rows]


async def spend(db: Store | Connection, digest: str, interface: str, user_id: str, now: float) -> bool:
    """Spend a proof on one max-age-0 request: True for the first request, False ever after."""
    params = {"digest": digest, "interface": interface, "user_id": user_id, "spent_at": now}
    async with alone(db) as conn:
        return (await conn.execute(_SPEND[conn.dialect.name], params)).first() is not None
