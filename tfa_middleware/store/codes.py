"""The sandbox provider's codes: only their keyed hash, single use, a few tries, a short life."""

from __future__ import annotations

import hmac
from typing import Any

from sqlalchemy import Float, bindparam, case, update

from ..tables import codes
from .database import Store, alone, connection
from .driver import Connection, inserting

# The user's unused codes for one purpose, by the parameters "iface", "user" and "intent".
_UNUSED = (
    codes.c.interface == bindparam("iface"),
    codes.c.user_id == bindparam("user"),
    codes.c.purpose == bindparam("intent"),
    codes.c.used_at.is_(None),
)
_VOID = update(codes).where(*_UNUSED).values(attempts_left=0)
_NEW = inserting(
    codes, "interface", "user_id", "purpose", "code_hash", "created_at", "expires_at", "attempts_left"
)


# PostgreSQL: both in one statement, which commits alone.
_REPLACE = _NEW.add_cte(_VOID.cte("voided"))


async def replace(
    db: Store | Connection,
    interface: str,
    user_id: str,
    purpose: str,
    code_hash: str,
    now: float,
    ttl_seconds: int,
    attempts: int,
) -> None:
    """Void the user's earlier codes for ``purpose`` and store a new one (only its hash)."""
    new = {
        "interface": interface,
        "user_id": user_id,
        "purpose": purpose,
        "code_hash": code_hash,
        "created_at": now,
        "expires_at": now + ttl_seconds,
        "attempts_left": attempts,
    }
    user = {"iface": interface, "user": user_id, "intent": purpose}
    if isinstance(db, Store) and db.engine.dialect.name == "postgresql":
        async with db.statement() as conn:
            await conn.execute(_REPLACE, {**user, **new})
        return
    async with connection(db) as conn:
        await conn.execute(_VOID, user)
        await conn.execute(_NEW, new)


async def use(
    db: Store | Connection, interface: str, user_id: str, purpose: str, code_hash: str, now: float
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
    db: Store | Connection, interface: str, user_id: str, purpose: str, now: float
) -> None:
    """A wrong code: the live code has one try fewer (and is void at zero)."""
    async with connection(db) as conn:
        await conn.execute(
            update(codes)
            .where(*live(interface, user_id, purpose, now))
            .values(attempts_left=codes.c.attempts_left - 1)
        )


def _check_statement() -> Any:
    right = codes.c.code_hash == bindparam("hash")
    now = bindparam("now", type_=Float)
    return (
        update(codes)
        .where(
            *_UNUSED,
            codes.c.attempts_left > 0,
            codes.c.expires_at > now,
        )
        .values(
            used_at=case((right, now), else_=codes.c.used_at),
            attempts_left=case((right, codes.c.attempts_left), else_=codes.c.attempts_left - 1),
        )
        .returning(codes.c.code_hash)
    )


_CHECK = _check_statement()


async def check(
    db: Store | Connection, interface: str, user_id: str, purpose: str, code_hash: str, now: float
) -> bool:
    """``use`` and ``spend_attempt`` in one statement: the live code with this hash is marked
    used (True, for exactly one caller however many race with the right code); a live code with
    another hash loses one try."""
    parameters = {
        "iface": interface,
        "user": user_id,
        "intent": purpose,
        "hash": code_hash,
        "now": now,
    }
    async with alone(db) as conn:
        found = (await conn.execute(_CHECK, parameters)).scalars()
    return any(hmac.compare_digest(str(stored), code_hash) for stored in found)


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
