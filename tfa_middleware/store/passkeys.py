"""The passkey rows (``tfa_factor``, ``kind = 'webauthn'``): added once per credential id, found by
that id, and used under a sign-counter check.

Each check that must hold across processes is one statement: a credential id belongs to one user
(an ``INSERT … ON CONFLICT DO NOTHING`` on the unique index of passkey values: the second
registration inserts nothing), and a use records the new sign counter only if it went up (or both
are zero: an authenticator that keeps no counter), so two uses that report one counter admit one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text, update

from ..tables import factors
from .database import Store, connection, upsert
from .driver import Connection
from .factors import touch

WEBAUTHN = "webauthn"
_PASSKEYS = text("kind = 'webauthn'")


@dataclass(frozen=True, slots=True)
class StoredPasskey:
    """One passkey row: whose it is, its credential (JSON text), its counter."""

    id: int
    interface: str
    user_id: str
    credential: str
    counter: int
    label: str


async def add(
    conn: Connection,
    interface: str,
    user_id: str,
    digest: str,
    credential: str,
    counter: int,
    label: str,
    now: float,
) -> int | None:
    """A confirmed passkey; its id, or None when that credential is registered already (to anyone)."""
    await touch(conn, interface, user_id, now)
    inserted = await conn.execute(
        upsert(conn, factors)
        .values(
            interface=interface,
            user_id=user_id,
            kind=WEBAUTHN,
            value=digest,
            credential=credential,
            confirmed=True,
            assigned_by_manager=False,
            created_at=now,
            counter=counter,
            label=label or None,
        )
        .on_conflict_do_nothing(index_elements=["value"], index_where=_PASSKEYS)
        .returning(factors.c.id)
    )
    found = inserted.scalar_one_or_none()
    return None if found is None else int(found)


async def find(db: Store | Connection, digest: str) -> StoredPasskey | None:
    """The passkey whose credential id has this digest, whoever's it is."""
    query = select(factors).where(factors.c.kind == WEBAUTHN, factors.c.value == digest)
    async with connection(db) as conn:
        row = (await conn.execute(query)).first()
    return None if row is None else _passkey(row)


async def of_user(db: Store | Connection, interface: str, user_id: str) -> list[StoredPasskey]:
    f = factors.c
    query = (
        select(factors)
        .where(f.interface == interface, f.user_id == user_id, f.kind == WEBAUTHN)
        .order_by(f.id)
    )
    async with connection(db) as conn:
        rows = (await conn.execute(query)).all()
    return [_passkey(row) for row in rows]


async def use(conn: Connection, passkey: StoredPasskey, counter: int, now: float) -> bool:
    """Record a use reporting ``counter``: True when the counter went up (or stays 0, for an
    authenticator without one) and the row is still the one read; False otherwise (nothing changes)."""
    f = factors.c
    result = await conn.execute(
        update(factors)
        .where(
            f.id == passkey.id,
            f.kind == WEBAUTHN,
            f.interface == passkey.interface,
            f.user_id == passkey.user_id,
            f.counter < counter if counter > 0 else f.counter == 0,
        )
        .values(counter=counter, last_used_at=now)
    )
    return bool(result.rowcount == 1)


def _passkey(row: Any) -> StoredPasskey:
    return StoredPasskey(
        id=int(row.id),
        interface=row.interface,
        user_id=row.user_id,
        credential=row.credential or "",
        counter=int(row.counter or 0),
        label=row.label or "",
    )
