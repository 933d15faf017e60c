"""The user row and its factors: reading a user's enrollment, changing it, listing, deleting.

A user's phones are ``sms`` factors (tables.py): the active phone is the confirmed one, the
pending phone the unconfirmed one. Each change first updates the user row, in the transaction
that changes the factors, so the changes of one user never interleave (a row lock in
PostgreSQL, the write lock in SQLite) and each user keeps at most one phone of each.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Select, and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..tables import codes, enrollments, factors
from .database import Store, connection, upsert

SMS = "sms"


@dataclass(frozen=True, slots=True)
class Enrollment:
    """A user's second-factor state: the user row with its phones."""

    interface: str
    user_id: str
    phone: str | None  # the confirmed sms factor, E.164
    pending_phone: str | None  # the unconfirmed one, waiting for its code
    provider_user_id: str | None  # the provider's reference for the active phone (Authy id)
    pending_provider_user_id: str | None  # and for the pending one
    require_enrollment: bool
    generation: int
    last_verified_at: float | None
    locked_until: float = 0.0
    pending_assigned: bool = False  # the pending phone was set by a manager


@dataclass(frozen=True, slots=True)
class NewPhone:
    """A phone a change gives the user: its number, the provider's reference if already known,
    and whether a manager set it (binding: the user may confirm it, not replace it)."""

    number: str
    provider_ref: str | None = None
    assigned_by_manager: bool = False


class Keep(enum.Enum):
    KEEP = "keep"


KEEP = Keep.KEEP  # a change that leaves this phone as it is
PhoneChange = NewPhone | None | Literal[Keep.KEEP]


async def get(db: Store | AsyncConnection, interface: str, user_id: str) -> Enrollment | None:
    """The user's enrollment (one statement), or None for a user without a row."""
    async with connection(db) as conn:
        rows = (await conn.execute(_with_phones(_user(interface, user_id)))).all()
    return _assemble(rows[0], rows) if rows else None


async def listing(
    db: Store | AsyncConnection, interface: str | Sequence[str] | None, search: str, limit: int
) -> list[Enrollment]:
    """Enrollments, newest change first: of one interface, of several, or of all (None); with
    user ids starting with ``search`` (its wildcards taken literally)."""
    query = select(enrollments).order_by(enrollments.c.updated_at.desc()).limit(limit)
    if isinstance(interface, str):
        query = query.where(enrollments.c.interface == interface)
    elif interface is not None:
        query = query.where(enrollments.c.interface.in_(list(interface)))
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(enrollments.c.user_id.like(f"{escaped}%", escape="\\"))
    users = query.subquery()
    joined = (
        select(users, *_PHONE_COLUMNS)
        .select_from(users.outerjoin(factors, _factor_of(users.c.interface, users.c.user_id)))
        .order_by(users.c.updated_at.desc(), users.c.id)
    )
    async with connection(db) as conn:
        rows = (await conn.execute(joined)).all()
    grouped: dict[int, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row.id, []).append(row)
    return [_assemble(group[0], group) for group in grouped.values()]


async def change(
    db: Store | AsyncConnection,
    interface: str,
    user_id: str,
    now: float,
    *,
    bump_generation: bool = False,
    require_enrollment: bool | None = None,
    active: PhoneChange = KEEP,
    pending: PhoneChange = KEEP,
) -> Enrollment:
    """Change a user's enrollment: make the row if needed, bump the generation, set or clear
    ``require_enrollment``, replace the active or the pending phone (``None`` removes it,
    ``KEEP`` leaves it); the enrollment after it."""
    async with connection(db) as conn:
        await ensure_row(conn, interface, user_id, now)
        values: dict[str, Any] = {"updated_at": now}
        if bump_generation:
            values["generation"] = enrollments.c.generation + 1
        if require_enrollment is not None:
            values["require_enrollment"] = require_enrollment
        # First the user row: its lock serialises every change of this user's factors.
        user = (await conn.execute(_touch(interface, user_id, values).returning(*enrollments.c))).one()
        for confirmed, phone in ((True, active), (False, pending)):
            if phone is not KEEP:
                await _replace_phone(conn, interface, user_id, confirmed, phone, now)
        phones = (await conn.execute(_phones(interface, user_id))).all()
    return _assemble(user, phones)


async def confirm_pending(
    db: Store | AsyncConnection,
    interface: str,
    user_id: str,
    number: str,
    now: float,
    *,
    bump_generation: bool,
) -> int:
    """A code sent to the pending phone ``number`` was right: it becomes the active phone, with
    the provider reference registered for it, and the user need not enroll again. The generation
    after it."""
    async with connection(db) as conn:
        values: dict[str, Any] = {"updated_at": now, "last_verified_at": now, "require_enrollment": False}
        if bump_generation:
            values["generation"] = enrollments.c.generation + 1
        generation = (
            await conn.execute(_touch(interface, user_id, values).returning(enrollments.c.generation))
        ).one()[0]
        await conn.execute(delete(factors).where(*_sms(interface, user_id), factors.c.confirmed.is_(True)))
        promoted = await conn.execute(
            update(factors)
            .where(*_sms(interface, user_id), factors.c.confirmed.is_(False), factors.c.value == number)
            .values(confirmed=True, assigned_by_manager=False, last_used_at=now)
        )
        if promoted.rowcount != 1:
            # The pending phone changed meanwhile: the number whose code was right is the one
            # confirmed, without the reference registered for the other.
            await _replace_phone(conn, interface, user_id, False, None, now)
            await _replace_phone(conn, interface, user_id, True, NewPhone(number), now, used=True)
    return int(generation)


async def record_sign_in(db: Store | AsyncConnection, interface: str, user_id: str, now: float) -> int:
    """A right code to the active phone: when, on the user row and the factor. The generation."""
    async with connection(db) as conn:
        values = {"updated_at": now, "last_verified_at": now}
        generation = (
            await conn.execute(_touch(interface, user_id, values).returning(enrollments.c.generation))
        ).one()[0]
        await conn.execute(
            update(factors)
            .where(*_sms(interface, user_id), factors.c.confirmed.is_(True))
            .values(last_used_at=now)
        )
    return int(generation)


async def set_provider_ref(
    db: Store | AsyncConnection,
    interface: str,
    user_id: str,
    number: str,
    *,
    confirmed: bool,
    ref: str | None,
    now: float,
) -> None:
    """The provider's reference for the user's active (``confirmed``) or pending phone ``number``."""
    async with connection(db) as conn:
        await conn.execute(_touch(interface, user_id, {"updated_at": now}))
        await conn.execute(
            update(factors)
            .where(*_sms(interface, user_id), factors.c.confirmed.is_(confirmed), factors.c.value == number)
            .values(provider_ref=ref)
        )


async def clear_provider_refs(db: Store | AsyncConnection, now: float) -> int:
    """Forget every stored provider reference (they belonged to another provider account); the
    number of users who had one."""
    holders = select(factors.c.id).where(
        factors.c.interface == enrollments.c.interface,
        factors.c.user_id == enrollments.c.user_id,
        factors.c.provider_ref.is_not(None),
    )
    async with connection(db) as conn:
        users = await conn.execute(update(enrollments).where(holders.exists()).values(updated_at=now))
        await conn.execute(
            update(factors).where(factors.c.provider_ref.is_not(None)).values(provider_ref=None)
        )
    return int(users.rowcount)


async def delete_user(db: Store | AsyncConnection, interface: str, user_id: str) -> bool:
    """Remove the user's row, factors and codes. Audit events and the send log stay: the one is
    the record of what happened, the other keeps the send limits honest."""
    async with connection(db) as conn:
        await conn.execute(delete(codes).where(codes.c.interface == interface, codes.c.user_id == user_id))
        await conn.execute(
            delete(factors).where(factors.c.interface == interface, factors.c.user_id == user_id)
        )
        result = await conn.execute(
            delete(enrollments).where(enrollments.c.interface == interface, enrollments.c.user_id == user_id)
        )
    return bool(result.rowcount)


async def ensure_row(conn: AsyncConnection, interface: str, user_id: str, now: float) -> None:
    """The user row, made if missing. A new row starts at a random 62-bit generation (tables.py)."""
    await conn.execute(
        upsert(conn, enrollments)
        .values(
            interface=interface,
            user_id=user_id,
            require_enrollment=False,
            generation=secrets.randbits(62),
            created_at=now,
            updated_at=now,
            failures=0,
            next_attempt_at=0.0,
            locked_until=0.0,
            hour_started_at=0.0,
            hour_failures=0,
        )
        .on_conflict_do_nothing(index_elements=["interface", "user_id"])
    )


async def _replace_phone(
    conn: AsyncConnection,
    interface: str,
    user_id: str,
    confirmed: bool,
    phone: NewPhone | None,
    now: float,
    *,
    used: bool = False,
) -> None:
    await conn.execute(delete(factors).where(*_sms(interface, user_id), factors.c.confirmed.is_(confirmed)))
    if phone is not None:
        await conn.execute(
            insert(factors).values(
                interface=interface,
                user_id=user_id,
                kind=SMS,
                value=phone.number,
                provider_ref=phone.provider_ref,
                confirmed=confirmed,
                assigned_by_manager=phone.assigned_by_manager,
                created_at=now,
                last_used_at=now if used else None,
            )
        )


_PHONE_COLUMNS = (
    factors.c.value.label("factor_value"),
    factors.c.provider_ref.label("factor_provider_ref"),
    factors.c.confirmed.label("factor_confirmed"),
    factors.c.assigned_by_manager.label("factor_assigned"),
)


def _factor_of(interface: Any, user_id: Any) -> Any:
    return and_(factors.c.interface == interface, factors.c.user_id == user_id, factors.c.kind == SMS)


def _sms(interface: str, user_id: str) -> tuple[Any, ...]:
    return (factors.c.interface == interface, factors.c.user_id == user_id, factors.c.kind == SMS)


def _user(interface: str, user_id: str) -> tuple[Any, ...]:
    return (enrollments.c.interface == interface, enrollments.c.user_id == user_id)


def _touch(interface: str, user_id: str, values: dict[str, Any]) -> Any:
    return update(enrollments).where(*_user(interface, user_id)).values(**values)


def _with_phones(where: tuple[Any, ...]) -> Select[Any]:
    return (
        select(enrollments, *_PHONE_COLUMNS)
        .select_from(
            enrollments.outerjoin(factors, _factor_of(enrollments.c.interface, enrollments.c.user_id))
        )
        .where(*where)
    )


def _phones(interface: str, user_id: str) -> Select[Any]:
    return select(*_PHONE_COLUMNS).where(*_sms(interface, user_id))


def _assemble(user: Any, phones: Iterable[Any]) -> Enrollment:
    active = pending = None
    for row in phones:
        if row.factor_value is None:
            continue  # the outer join's row of a user without phones
        if row.factor_confirmed:
            active = row
        else:
            pending = row
    return Enrollment(
        interface=user.interface,
        user_id=user.user_id,
        phone=active.factor_value if active else None,
        pending_phone=pending.factor_value if pending else None,
        provider_user_id=active.factor_provider_ref if active else None,
        pending_provider_user_id=pending.factor_provider_ref if pending else None,
        require_enrollment=bool(user.require_enrollment),
        generation=int(user.generation),
        last_verified_at=user.last_verified_at,
        locked_until=float(user.locked_until),
        pending_assigned=bool(pending.factor_assigned) if pending else False,
    )
