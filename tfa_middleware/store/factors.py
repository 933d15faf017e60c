"""The factor rows other than the phones: authenticator apps (``totp``) and recovery codes
(``recovery``), and the listing of every factor of a user.

Every change first updates the user row (as store/enrollments.py does), which serialises the
changes of one user. Each single-use check is one conditional UPDATE whose row count says who won:
a TOTP step is accepted only above the factor's last one, a recovery code only while unused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Float, Integer, and_, bindparam, delete, func, or_, select, update

from ..tables import enrollments, factors
from .database import Store, connection, reading
from .driver import Connection, inserting
from .enrollments import THE_USER, ensure_row

TOTP = "totp"
RECOVERY = "recovery"

# The statements, built once and bound per call (store/driver.py says why).
_f = factors.c
_USER = (_f.interface == bindparam("iface"), _f.user_id == bindparam("user"))
_THIS_ONE = (*_USER, _f.id == bindparam("factor_id", type_=Integer))
_OF_USER = select(factors).where(*_USER).order_by(_f.id)
_DROP_UNCONFIRMED = delete(factors).where(*_USER, _f.kind == bindparam("kind"), _f.confirmed.is_(False))
_ADD = inserting(
    factors,
    "interface",
    "user_id",
    "kind",
    "value",
    "confirmed",
    "assigned_by_manager",
    "created_at",
    "label",
).returning(_f.id)
_ACCEPT_STEP = (
    update(factors)
    .where(*_THIS_ONE, or_(_f.counter.is_(None), _f.counter < bindparam("step", type_=Integer)))
    .values(
        counter=bindparam("step", type_=Integer), confirmed=True, last_used_at=bindparam("now", type_=Float)
    )
)
_REPLACE_VALUE = update(factors).where(*_THIS_ONE).values(value=bindparam("value"))
_RENAME = update(factors).where(*_THIS_ONE, _f.kind != RECOVERY).values(label=bindparam("label"))
_ONE = select(factors).where(*_THIS_ONE)
_REMOVE_ONE = delete(factors).where(*_THIS_ONE)
_REMOVE_RECOVERY = delete(factors).where(*_USER, _f.kind == RECOVERY)
_UNUSED_RECOVERY = (*_USER, _f.kind == RECOVERY, _f.last_used_at.is_(None))
_RECOVERY_LEFT = select(func.count()).where(*_UNUSED_RECOVERY)
_KINDS = (
    select(_f.kind)
    .where(*_USER, _f.confirmed.is_(True), or_(_f.kind != RECOVERY, _f.last_used_at.is_(None)))
    .distinct()
)
_REMOVE_ALL_BUT = delete(factors).where(*_USER, _f.kind != bindparam("kind"))
_ENROLLED = update(enrollments).where(*THE_USER).values(require_enrollment=False)
_TOUCH = update(enrollments).where(*THE_USER).values(updated_at=bindparam("now", type_=Float))
# A recovery code is checked against its hash under each secret key: one statement per count
# of keys, built at import for the usual counts.


def _use_recovery(keys: int) -> Any:
    hashes: list[Any] = [bindparam(f"hash{k}") for k in range(keys)]
    return (
        update(factors)
        .where(*_UNUSED_RECOVERY, _f.value.in_(hashes))
        .values(last_used_at=bindparam("now", type_=Float))
    )


_USE_RECOVERY = {keys: _use_recovery(keys) for keys in range(1, 9)}


@dataclass(frozen=True, slots=True)
class Factor:
    """One factor row, as the account pages and the CLI list it (a recovery set is one line)."""

    id: int
    kind: str
    # The phone number, a TOTP secret sealed, or a code's hash: never shown, not even by repr.
    value: str = field(repr=False)
    confirmed: bool
    label: str
    created_at: float
    last_used_at: float | None
    counter: int | None


async def of_user(db: Store | Connection, interface: str, user_id: str) -> list[Factor]:
    """Every factor row of the user, oldest first."""
    async with reading(db) as conn:
        rows = (await conn.execute(_OF_USER, {"iface": interface, "user": user_id})).all()
    return [_factor(row) for row in rows]


async def add(
    db: Store | Connection,
    interface: str,
    user_id: str,
    kind: str,
    value: str,
    now: float,
    *,
    label: str = "",
    replace_unconfirmed: bool = True,
) -> int:
    """A new unconfirmed factor of ``kind`` (an earlier unconfirmed one of that kind goes); its id."""
    async with connection(db) as conn:
        await touch(conn, interface, user_id, now)
        if replace_unconfirmed:
            await conn.execute(_DROP_UNCONFIRMED, {"iface": interface, "user": user_id, "kind": kind})
        row = {
            "interface": interface,
            "user_id": user_id,
            "kind": kind,
            "value": value,
            "confirmed": False,
            "assigned_by_manager": False,
            "created_at": now,
            "label": label or None,
        }
        inserted = await conn.execute(_ADD, row)
        return int(inserted.scalar_one())


async def accept_step(
    db: Store | Connection, interface: str, user_id: str, factor_id: int, step: int, now: float
) -> bool:
    """Record ``step`` as the factor's last accepted one, if it is later than the last (one
    statement: of two parallel uses of one code, one wins). A first use confirms the factor."""
    parameters = {"iface": interface, "user": user_id, "factor_id": factor_id, "step": step, "now": now}
    async with connection(db) as conn:
        result = await conn.execute(_ACCEPT_STEP, parameters)
    return result.rowcount == 1


async def replace_value(
    db: Store | Connection, interface: str, user_id: str, factor_id: int, value: str
) -> None:
    """The factor's value sealed again (under the newest key)."""
    async with connection(db) as conn:
        await conn.execute(
            _REPLACE_VALUE, {"iface": interface, "user": user_id, "factor_id": factor_id, "value": value}
        )


async def rename(
    db: Store | Connection, interface: str, user_id: str, factor_id: int, label: str, now: float
) -> bool:
    async with connection(db) as conn:
        await touch(conn, interface, user_id, now)
        parameters = {"iface": interface, "user": user_id, "factor_id": factor_id, "label": label or None}
        result = await conn.execute(_RENAME, parameters)
    return result.rowcount == 1


async def remove(
    db: Store | Connection, interface: str, user_id: str, factor_id: int, now: float
) -> Factor | None:
    """Remove one factor (for ``recovery``: the whole set it belongs to); the row removed."""
    async with connection(db) as conn:
        await touch(conn, interface, user_id, now)
        parameters = {"iface": interface, "user": user_id, "factor_id": factor_id}
        row = (await conn.execute(_ONE, parameters)).first()
        if row is None:
            return None
        await conn.execute(_REMOVE_RECOVERY if row.kind == RECOVERY else _REMOVE_ONE, parameters)
    return _factor(row)


_ADD_RECOVERY = inserting(
    factors, "interface", "user_id", "kind", "value", "confirmed", "assigned_by_manager", "created_at"
)


async def replace_recovery(
    db: Store | Connection, interface: str, user_id: str, hashes: Sequence[str], now: float
) -> None:
    """A new set of recovery codes (their hashes) replaces the old one, in one transaction."""
    async with connection(db) as conn:
        await touch(conn, interface, user_id, now)
        await conn.execute(_REMOVE_RECOVERY, {"iface": interface, "user": user_id})
        await conn.execute(
            _ADD_RECOVERY,
            [
                {
                    "interface": interface,
                    "user_id": user_id,
                    "kind": RECOVERY,
                    "value": digest,
                    "confirmed": True,
                    "assigned_by_manager": False,
                    "created_at": now,
                }
                for digest in hashes
            ],
        )


async def use_recovery(
    db: Store | Connection, interface: str, user_id: str, candidates: Sequence[str], now: float
) -> bool:
    """Spend the unused code whose hash is one of ``candidates`` (its hash under each key): one
    conditional UPDATE, so two parallel uses of one code admit exactly one."""
    hashes = list(candidates)
    statement = _USE_RECOVERY[len(hashes)] if len(hashes) in _USE_RECOVERY else _use_recovery(len(hashes))
    parameters = {"iface": interface, "user": user_id, "now": now}
    parameters.update({f"hash{k}": digest for k, digest in enumerate(hashes)})
    async with connection(db) as conn:
        result = await conn.execute(statement, parameters)
    return result.rowcount == 1


async def recovery_left(db: Store | Connection, interface: str, user_id: str) -> int:
    async with reading(db) as conn:
        return int((await conn.execute(_RECOVERY_LEFT, {"iface": interface, "user": user_id})).scalar_one())


async def enrolled(conn: Connection, interface: str, user_id: str) -> None:
    """A factor confirmed: the user need not enroll again (a demand by a manager is met)."""
    await conn.execute(_ENROLLED, {"iface": interface, "user": user_id})


async def kinds(db: Store | Connection, interface: str, user_id: str) -> frozenset[str]:
    """The kinds of the user's confirmed factors (a recovery set only while a code is unused)."""
    async with reading(db) as conn:
        return frozenset((await conn.execute(_KINDS, {"iface": interface, "user": user_id})).scalars())


async def remove_all(db: Store | Connection, interface: str, user_id: str, except_kind: str) -> None:
    """Every factor but those of ``except_kind`` (a reset: the phones go through their own path)."""
    async with connection(db) as conn:
        await conn.execute(_REMOVE_ALL_BUT, {"iface": interface, "user": user_id, "kind": except_kind})


async def touch(conn: Connection, interface: str, user_id: str, now: float) -> None:
    """The user row, made if missing, then updated: its lock serialises this user's changes."""
    await ensure_row(conn, interface, user_id, now)
    await conn.execute(_TOUCH, {"iface": interface, "user": user_id, "now": now})


def confirmed_of(interface: Any, user_id: Any, kind: str) -> Any:
    """A condition: the user has a confirmed factor of ``kind`` (for a correlated EXISTS)."""
    return (
        select(factors.c.id)
        .where(
            and_(
                factors.c.interface == interface,
                factors.c.user_id == user_id,
                factors.c.kind == kind,
                factors.c.confirmed.is_(True),
            )
        )
        .exists()
    )


def _factor(row: Any) -> Factor:
    return Factor(
        id=int(row.id),
        kind=row.kind,
        value=row.value,
        confirmed=bool(row.confirmed),
        label=row.label or "",
        created_at=float(row.created_at),
        last_used_at=row.last_used_at,
        counter=None if row.counter is None else int(row.counter),
    )
