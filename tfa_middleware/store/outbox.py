"""The sandbox outbox: the messages the sandbox provider "sent", for ``tfa-middleware outbox``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from ..tables import outbox
from .database import Store, alone, reading
from .driver import Connection, inserting


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    created_at: float
    interface: str
    user_id: str
    to_masked: str
    channel: str
    body: str


_ADD = inserting(outbox, "created_at", "interface", "user_id", "to_masked", "channel", "body")


async def add(
    db: Store | Connection,
    now: float,
    interface: str,
    user_id: str,
    to_masked: str,
    channel: str,
    body: str,
) -> None:
    values = {
        "created_at": now,
        "interface": interface,
        "user_id": user_id,
        "to_masked": to_masked,
        "channel": channel,
        "body": body,
    }
    async with alone(db) as conn:
        await conn.execute(_ADD, values)


async def latest(db: Store | Connection, limit: int = 10) -> list[OutboxMessage]:
    """The newest ``limit`` messages, oldest first."""
    async with reading(db) as conn:
        rows = (await conn.execute(select(outbox).order_by(outbox.c.id.desc()).limit(limit))).all()
    return [OutboxMessage(**row._asdict()) for row in reversed(rows)]
