"""The audit events table: :class:`AuditEvent` (public: the ``on_event`` hook's argument), adding
one, reading the newest."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from ..tables import events
from .database import Store, alone, reading
from .driver import Connection, inserting


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit event, as stored and as the ``on_event`` hook receives it: ``at`` (Unix time),
    ``interface``, ``user_id``, ``kind`` (``code_sent``, ``verify_ok``, ``verify_failed``, ``locked``,
    ``phone_set``, ``reset``, …), the client's ``ip`` and ``user_agent``, and ``detail`` (masked
    number ``to``, a send's destination region ``country``, ``by`` for an administrator's
    change, …). Never a code or a full number::

        async def on_event(event: AuditEvent) -> None:
            if event.kind == "enrollment_required":
                await shop.force_password_change(event.user_id)
    """

    at: float
    interface: str
    user_id: str
    kind: str
    ip: str | None = None
    user_agent: str | None = None
    detail: Mapping[str, Any] | None = None


COLUMNS = ("at", "interface", "user_id", "kind", "ip", "user_agent", "detail", "country")
_ADD = inserting(events, *COLUMNS)


def row_of(item: AuditEvent) -> dict[str, Any]:
    """The event as the values of its row."""
    return {
        "at": item.at,
        "interface": item.interface,
        "user_id": item.user_id,
        "kind": item.kind,
        "ip": item.ip,
        "user_agent": (item.user_agent or "")[:255] or None,
        "detail": json.dumps(dict(item.detail or {}), sort_keys=True),
        # A send's region in a column of its own too, for the manage page's indexed counts.
        "country": _country((item.detail or {}).get("country")),
    }


def _country(value: Any) -> str | None:
    return (
        value if isinstance(value, str) and len(value) == 2 and value.isascii() and value.isalpha() else None
    )


async def add(db: Store | Connection, *items: AuditEvent) -> None:
    """Store events (one statement)."""
    rows = [row_of(item) for item in items]
    async with alone(db) as conn:
        await conn.execute(_ADD, rows[0] if len(rows) == 1 else rows)


async def latest(
    db: Store | Connection,
    interface: str | None = None,
    user_id: str | None = None,
    limit: int = 100,
    since: float | None = None,
) -> list[AuditEvent]:
    """The newest ``limit`` events, oldest first; of one interface or user, or after ``since``."""
    query = select(events).order_by(events.c.id.desc()).limit(limit)
    if since is not None:
        query = query.where(events.c.at >= since)
    if interface is not None:
        query = query.where(events.c.interface == interface)
    if user_id is not None:
        query = query.where(events.c.user_id == user_id)
    async with reading(db) as conn:
        rows = (await conn.execute(query)).all()
    return [
        AuditEvent(
            at=r.at,
            interface=r.interface,
            user_id=r.user_id,
            kind=r.kind,
            ip=r.ip,
            user_agent=r.user_agent,
            detail=json.loads(r.detail),
        )
        for r in reversed(rows)
    ]
