"""The remembered browsers: one row each, found by the hash of its cookie's token.

A row lets its browser in only while the user row's generation is the one it was made at, so any
generation bump (a phone change, a reset, signing out everywhere) forgets every browser of the
user without touching their rows; :func:`recall` checks that, the interface, the user and the
expiry in the one statement that also notes when the browser was last seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update

from ..tables import enrollments, remembered_browsers
from .database import Store, connection
from .driver import Connection

_b = remembered_browsers.c


@dataclass(frozen=True, slots=True)
class RememberedBrowser:
    id: int
    interface: str
    user_id: str
    token_hash: str
    created_at: float
    last_seen_at: float
    expires_at: float
    label: str
    network: str
    current: bool  # made at the user's current generation (an older one no longer lets anyone in)


async def add(
    db: Store | Connection,
    interface: str,
    user_id: str,
    token_hash: str,
    generation: int,
    now: float,
    expires_at: float,
    label: str,
    network: str,
) -> int:
    async with connection(db) as conn:
        inserted = await conn.execute(
            insert(remembered_browsers)
            .values(
                interface=interface,
                user_id=user_id,
                token_hash=token_hash,
                generation=generation,
                created_at=now,
                last_seen_at=now,
                expires_at=expires_at,
                label=label,
                network=network,
            )
            .returning(_b.id)
        )
        return int(inserted.scalar_one())


async def recall(
    db: Store | Connection, interface: str, user_id: str, token_hash: str, now: float
) -> int | None:
    """The user's generation if the browser with this token hash is remembered for this
    interface and user, at the current generation, and not expired; its last sighting noted.
    One statement on the unique token hash."""
    generation = (
        select(enrollments.c.generation)
        .where(enrollments.c.interface == interface, enrollments.c.user_id == user_id)
        .scalar_subquery()
    )
    statement = (
        update(remembered_browsers)
        .where(
            _b.token_hash == token_hash,
            _b.interface == interface,
            _b.user_id == user_id,
            _b.expires_at > now,
            _b.generation == generation,
        )
        .values(last_seen_at=now)
        .returning(_b.generation)
    )
    async with connection(db) as conn:
        value = (await conn.execute(statement)).scalar()
    return None if value is None else int(value)


async def of_user(
    db: Store | Connection, interface: str, user_id: str, now: float
) -> list[RememberedBrowser]:
    """The user's browsers that could still be let in (not expired), newest first."""
    generation = (
        select(enrollments.c.generation)
        .where(enrollments.c.interface == interface, enrollments.c.user_id == user_id)
        .scalar_subquery()
    )
    query = (
        select(remembered_browsers, (_b.generation == generation).label("current"))
        .where(_b.interface == interface, _b.user_id == user_id, _b.expires_at > now)
        .order_by(_b.id.desc())
    )
    async with connection(db) as conn:
        rows = (await conn.execute(query)).all()
    return [_browser(row) for row in rows if row.current]


async def remove(
    db: Store | Connection, interface: str, user_id: str, browser_id: int | None = None
) -> list[str]:
    """Forget one browser of the user (or all); the token hashes of the rows removed."""
    where: list[Any] = [_b.interface == interface, _b.user_id == user_id]
    if browser_id is not None:
        where.append(_b.id == browser_id)
    async with connection(db) as conn:
        result = await conn.execute(delete(remembered_browsers).where(*where).returning(_b.token_hash))
        return [str(value) for value in result.scalars()]


async def purge(db: Store | Connection, now: float) -> int:
    """Remove the rows of browsers whose time is up."""
    async with connection(db) as conn:
        result = await conn.execute(delete(remembered_browsers).where(_b.expires_at <= now))
    return int(result.rowcount)


def _browser(row: Any) -> RememberedBrowser:
    return RememberedBrowser(
        id=int(row.id),
        interface=row.interface,
        user_id=row.user_id,
        token_hash=row.token_hash,
        created_at=float(row.created_at),
        last_seen_at=float(row.last_seen_at),
        expires_at=float(row.expires_at),
        label=row.label,
        network=row.network,
        current=bool(row.current),
    )
