"""The sandbox provider's codes: only their keyed hash, single use, a few tries, a short life."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..tables import codes
from .database import Store, connection


async def replace(
    db: Store | AsyncConnection,
    interface: str,
    user_id: str,
    purpose: str,
    code_hash: str,
    now: float,
    ttl_seconds: int,
    attempts: int,
) -> None:
    """Void the user's earlier codes for ``purpose`` and store a new one (only its hash)."""
    async with connection(db) as conn:
        await conn.execute(
            update(codes)
            .where(
                codes.c.interface == interface,
                codes.c.user_id == user_id,
                codes.c.purpose == purpose,
                codes.c.used_at.is_(None),
            )
            .values(attempts_left=0)
        )
        await conn.execute(
            insert(codes).values(
                interface=interface,
                user_id=user_id,
                purpose=purpose,
                code_hash=code_hash,
                created_at=now,
                expires_at=now + ttl_seconds,
                attempts_left=attempts,
            )
        )


async def use(
    db: Store | AsyncConnection, interface: str, user_id: str, purpose: str, code_hash: str, now: float
) -> bool:
    """Mark the live code with this hash used, in one statement: True for exactly one caller,
    however many race with the right code."""
    async with connection(db) as conn:
        result = await conn.execute(
            update(codes)
            .where(*live(interface, user_id, purpose, now), codes.c.code_hash == code_hash)
            .values(used_at=now)
        )
    return bool(result.rowcount == 1)


async def spend_attempt(
    db: Store | AsyncConnection, interface: str, user_id: str, purpose: str, now: float
) -> None:
    """A wrong code: the live code has one try fewer (and is void at zero)."""
    async with connection(db) as conn:
        await conn.execute(
            update(codes)
            .where(*live(interface, user_id, purpose, now))
            .values(attempts_left=codes.c.attempts_left - 1)
        )


def live(interface: str, user_id: str, purpose: str, now: float) -> tuple[Any, ...]:
    """The conditions of a code that can still be used (replace leaves at most one)."""
    return (
        codes.c.interface == interface,
        codes.c.user_id == user_id,
        codes.c.purpose == purpose,
        codes.c.used_at.is_(None),
        codes.c.attempts_left > 0,
        codes.c.expires_at > now,
    )
