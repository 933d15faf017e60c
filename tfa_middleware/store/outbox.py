"""The sandbox outbox: the messages the sandbox provider "sent", for ``tfa-middleware outbox``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..tables import outbox
from .database import Store, connection


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    created_at: float
    interface: str
    user_id: str
    to_masked: str
    channel: str
    body: str


async def add(
    db: Store | AsyncConnection,
    now: float,
    interface: str,
    user_id: str,
    to_masked: str,
    channel: str,
    body: str,
) -> None:
    async with connection(db) as conn:
        await conn.execute(
            insert(outbox).values(
                created_at=now,
                interface=interface,
                user_id=user_id,
                to_masked=to_masked,
                channel=channel,
                body=body,
            )
        )


async def latest(db: Store | AsyncConnection, limit: int = 10) -> list[OutboxMessage]:
    """The newest ``limit`` messages, oldest first."""
    async with connection(db) as conn:
        rows = (await conn.execute(select(outbox).order_by(outbox.c.id.desc()).limit(limit))).all()
    return [OutboxMessage(**row._mapping) for row in reversed(rows)]
