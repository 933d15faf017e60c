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

from sqlalchemy import and_, delete, func, insert, or_, select, update

from ..tables import enrollments, factors
from .database import Store, connection
from .driver import Connection, inserting
from .enrollments import ensure_row

TOTP = "totp"
RECOVERY = "recovery"


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
    query = select(factors).where(*_user(interface, user_id)).order_by(factors.c.id)
    async with connection(db) as conn:
        rows = (await conn.execute(query)).all()
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
            await conn.execute(
                delete(factors).where(
                    *_user(interface, user_id), factors.c.kind == kind, factors.c.confirmed.is_(False)
                )
            )
        inserted = await conn.execute(
            insert(factors)
            .values(
                interface=interface,
                user_id=user_id,
                kind=kind,
                value=value,
                confirmed=False,
                assigned_by_manager=False,
                created_at=now,
                label=label or None,
            )
            .returning(factors.c.id)
        )
        return int(inserted.scalar_one())


async def accept_step(
    db: Store | Connection, interface: str, user_id: str, factor_id: int, step: int, now: float
) -> bool:
    """Record ``step`` as the factor's last accepted one, if it is later than the last (one
    statement: of two parallel uses of one code, one wins). A first use confirms the factor."""
    f = factors.c
    async with connection(db) as conn:
        result = await conn.execute(
            update(factors)
            .where(
                *_user(interface, user_id),
                f.id == factor_id,
                or_(f.counter.is_(None), f.counter < step),
            )
            .values(counter=step, confirmed=True, last_used_at=now)
        )
    return result.rowcount == 1


async def replace_value(
    db: Store | Connection, interface: str, user_id: str, factor_id: int, value: str
) -> None:
    """The factor's value sealed again (under the newest key)."""
    async with connection(db) as conn:
        await conn.execute(
            update(factors).where(*_user(interface, user_id), factors.c.id == factor_id).values(value=value)
        )


async def rename(
    db: Store | Connection, interface: str, user_id: str, factor_id: int, label: str, now: float
) -> bool:
    async with connection(db) as conn:
        await touch(conn, interface, user_id, now)
        result = await conn.execute(
            update(factors)
            .where(*_user(interface, user_id), factors.c.id == factor_id, factors.c.kind != RECOVERY)
            .values(label=label or None)
        )
    return result.rowcount == 1


async def remove(
    db: Store | Connection, interface: str, user_id: str, factor_id: int, now: float
) -> Factor | None:
    """Remove one factor (for ``recovery``: the whole set it belongs to); the row removed."""
    async with connection(db) as conn:
        await touch(conn, interface, user_id, now)
        row = (
            await conn.execute(select(factors).where(*_user(interface, user_id), factors.c.id == factor_id))
        ).first()
        if row is None:
            return None
        where = [*_user(interface, user_id)]
        where.append(factors.c.kind == RECOVERY if row.kind == RECOVERY else factors.c.id == factor_id)
        await conn.execute(delete(factors).where(*where))
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
        await conn.execute(delete(factors).where(*_user(interface, user_id), factors.c.kind == RECOVERY))
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
    f = factors.c
    async with connection(db) as conn:
        result = await conn.execute(
            update(factors)
            .where(
                *_user(interface, user_id),
                f.kind == RECOVERY,
                f.value.in_(list(candidates)),
                f.last_used_at.is_(None),
            )
            .values(last_used_at=now)
        )
    return result.rowcount == 1


async def recovery_left(db: Store | Connection, interface: str, user_id: str) -> int:
    f = factors.c
    unused = (f.kind == RECOVERY, f.last_used_at.is_(None))
    query = select(func.count()).where(*_user(interface, user_id), *unused)
    async with connection(db) as conn:
        return int((await conn.execute(query)).scalar_one())


async def enrolled(conn: Connection, interface: str, user_id: str) -> None:
    """A factor confirmed: the user need not enroll again (a demand by a manager is met)."""
    await conn.execute(
        update(enrollments)
        .where(enrollments.c.interface == interface, enrollments.c.user_id == user_id)
        .values(require_enrollment=False)
    )


async def kinds(db: Store | Connection, interface: str, user_id: str) -> frozenset[str]:
    """The kinds of the user's confirmed factors (a recovery set only while a code is unused)."""
    f = factors.c
    query = (
        select(f.kind)
        .where(
            *_user(interface, user_id),
            f.confirmed.is_(True),
            or_(f.kind != RECOVERY, f.last_used_at.is_(None)),
        )
        .distinct()
    )
    async with connection(db) as conn:
        return frozenset((await conn.execute(query)).scalars())


async def remove_all(db: Store | Connection, interface: str, user_id: str, except_kind: str) -> None:
    """Every factor but those of ``except_kind`` (a reset: the phones go through their own path)."""
    async with connection(db) as conn:
        await conn.execute(delete(factors).where(*_user(interface, user_id), factors.c.kind != except_kind))


async def touch(conn: Connection, interface: str, user_id: str, now: float) -> None:
    """The user row, made if missing, then updated: its lock serialises this user's changes."""
    await ensure_row(conn, interface, user_id, now)
    await conn.execute(
        update(enrollments)
        .where(enrollments.c.interface == interface, enrollments.c.user_id == user_id)
        .values(updated_at=now)
    )


def _user(interface: str, user_id: str) -> tuple[Any, ...]:
    return (factors.c.interface == interface, factors.c.user_id == user_id)


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
