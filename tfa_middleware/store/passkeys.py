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

from sqlalchemy import Float, Integer, bindparam, select, text, update

from ..tables import factors
from .database import Store, reading, upsert
from .driver import Connection
from .factors import touch

WEBAUTHN = "webauthn"
_PASSKEYS = text("kind = 'webauthn'")

# The sign-in's statements, built once and bound per call (store/driver.py says why).
_f = factors.c
_FIND = select(factors).where(_f.kind == WEBAUTHN, _f.value == bindparam("digest"))
_OF_USER = (
    select(factors)
    .where(_f.interface == bindparam("iface"), _f.user_id == bindparam("user"), _f.kind == WEBAUTHN)
    .order_by(_f.id)
)
_THE_ROW = (
    _f.id == bindparam("factor_id", type_=Integer),
    _f.kind == WEBAUTHN,
    _f.interface == bindparam("iface"),
    _f.user_id == bindparam("user"),
)
_COUNTER = bindparam("counter", type_=Integer)
_USE = {
    counted: update(factors)
    .where(*_THE_ROW, _f.counter < _COUNTER if counted else _f.counter == 0)
    .values(counter=_COUNTER, last_used_at=bindparam("now", type_=Float))
    for counted in (True, False)
}


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
    async with reading(db) as conn:
        row = (await conn.execute(_FIND, {"digest": digest})).first()
    return None if row is None else _passkey(row)


async def of_user(db: Store | Connection, interface: str, user_id: str) -> list[StoredPasskey]:
    async with reading(db) as conn:
        rows = (await conn.execute(_OF_USER, {"iface": interface, "user": user_id})).all()
    return [_passkey(row) for row in rows]


async def use(conn: Connection, passkey: StoredPasskey, counter: int, now: float) -> bool:
    """Record a use reporting ``counter``: True when the counter went up (or stays 0, for an
    authenticator without one) and the row is still the one read; False otherwise (nothing changes)."""
    parameters = {
        "factor_id": passkey.id,
        "iface": passkey.interface,
        "user": passkey.user_id,
        "counter": counter,
        "now": now,
    }
    result = await conn.execute(_USE[counter > 0], parameters)
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
