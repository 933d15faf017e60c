"""The remembered browsers: one row each, found by the hash of its cookie's token.

A row lets its browser in only while the user row's generation is the one it was made at, so any
generation bump (a phone change, a reset, signing out everywhere) forgets every browser of the
user without touching their rows; :func:`recall` checks that, the interface, the user and the
expiry in the one statement that also notes when the browser was last seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, bindparam, delete, select, update

from ..tables import enrollments, remembered_browsers
from .database import Store, connection, reading
from .driver import Connection, inserting
from .enrollments import THE_USER

_b = remembered_browsers.c

# The statements of the sign-in path, built once and bound per call (store/driver.py says why).
_NOW = bindparam("now", type_=Float)
_GENERATION = select(enrollments.c.generation).where(*THE_USER).scalar_subquery()
_THIS_USER = (_b.interface == bindparam("iface"), _b.user_id == bindparam("user"))
_ADD = inserting(
    remembered_browsers,
    "interface",
    "user_id",
    "token_hash",
    "generation",
    "created_at",
    "last_seen_at",
    "expires_at",
    "label",
    "network",
).returning(_b.id)
_RECALL = (
    update(remembered_browsers)
    .where(
        _b.token_hash == bindparam("token_hash"),
        *_THIS_USER,
        _b.expires_at > _NOW,
        _b.generation == _GENERATION,
    )
    .values(last_seen_at=_NOW)
    .returning(_b.generation)
)
_OF_USER = (
    select(remembered_browsers, (_b.generation == _GENERATION).label("current"))
    .where(*_THIS_USER, _b.expires_at > _NOW)
    .order_by(_b.id.desc())
)


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
        row = {
            "interface": interface,
            "user_id": user_id,
            "token_hash": token_hash,
            "generation": generation,
            "created_at": now,
            "last_seen_at": now,
            "expires_at": expires_at,
            "label": label,
            "network": network,
        }
        inserted = await conn.execute(_ADD, row)
        return int(inserted.scalar_one())


async def recall(
    db: Store | Connection, interface: str, user_id: str, token_hash: str, now: float
) -> int | None:
    """The user's generation if the browser with this token hash is remembered for this
    interface and user, at the current generation, and not expired; its last sighting noted.
    One statement on the unique token hash."""
    parameters = {"iface": interface, "user": user_id, "token_hash": token_hash, "now": now}
    async with connection(db) as conn:
        value = (await conn.execute(_RECALL, parameters)).scalar()
    return None if value is None else int(value)


async def of_user(
    db: Store | Connection, interface: str, user_id: str, now: float
) -> list[RememberedBrowser]:
    """The user's browsers that could still be let in (not expired), newest first."""
    async with reading(db) as conn:
        rows = (await conn.execute(_OF_USER, {"iface": interface, "user": user_id, "now": now})).all()
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
