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

from sqlalchemy import and_, bindparam, case, delete, insert, select, update

from ..tables import codes, enrollments, events, factors
from . import events as event_rows
from .database import Store, connection, reading, upsert_for
from .driver import Connection, inserting
from .events import AuditEvent

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


def _phone(confirmed: bool, column: Any, label: str) -> Any:
    """A column of the user's active (``confirmed``) or pending phone, as a scalar subquery of a
    statement on the user row named by the parameters "iface" and "user": at most one of each
    (see the module's docstring)."""
    # The same parameters rather than a reference to the user row: SQLite cannot look a
    # correlated subquery up by index inside a RETURNING clause, and scans the factors instead.
    return (
        select(column)
        .where(
            factors.c.interface == bindparam("iface"),
            factors.c.user_id == bindparam("user"),
            factors.c.kind == SMS,
            factors.c.confirmed.is_(confirmed),
        )
        .limit(1)
        .scalar_subquery()
        .label(label)
    )


# The read model in one row: the user row's columns and its phones, for a SELECT of the user row
# or the RETURNING of an UPDATE of it (limits.py reserves a verify attempt and reads them at once).
READ_COLUMNS = (
    enrollments.c.interface,
    enrollments.c.user_id,
    enrollments.c.require_enrollment,
    enrollments.c.generation,
    enrollments.c.last_verified_at,
    enrollments.c.locked_until,
    _phone(True, factors.c.value, "phone"),
    _phone(True, factors.c.provider_ref, "provider_ref"),
    _phone(False, factors.c.value, "pending_phone"),
    _phone(False, factors.c.provider_ref, "pending_provider_ref"),
    _phone(False, factors.c.assigned_by_manager, "pending_assigned"),
)
# Every statement on one user row names it by two parameters, "iface" and "user" (SQLAlchemy
# keeps the names of the columns for the values of an INSERT or UPDATE); READ_COLUMNS use them too.
THE_USER = (
    enrollments.c.interface == bindparam("iface"),
    enrollments.c.user_id == bindparam("user"),
)
_GET = select(*READ_COLUMNS).where(*THE_USER)


def from_row(row: Any) -> Enrollment:
    """The Enrollment in a row of READ_COLUMNS."""
    return Enrollment(
        interface=row.interface,
        user_id=row.user_id,
        phone=row.phone,
        pending_phone=row.pending_phone,
        provider_user_id=row.provider_ref,
        pending_provider_user_id=row.pending_provider_ref,
        require_enrollment=bool(row.require_enrollment),
        generation=int(row.generation),
        last_verified_at=row.last_verified_at,
        locked_until=float(row.locked_until),
        pending_assigned=bool(row.pending_assigned) if row.pending_phone is not None else False,
    )


async def get(db: Store | Connection, interface: str, user_id: str) -> Enrollment | None:
    """The user's enrollment (one statement), or None for a user without a row."""
    async with reading(db) as conn:
        row = (await conn.execute(_GET, {"iface": interface, "user": user_id})).first()
    return from_row(row) if row is not None else None


async def listing(
    db: Store | Connection, interface: str | Sequence[str] | None, search: str, limit: int
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
    async with reading(db) as conn:
        rows = (await conn.execute(joined)).all()
    grouped: dict[int, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row.id, []).append(row)
    return [_assemble(group[0], group) for group in grouped.values()]


async def change(
    db: Store | Connection,
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
    parameters = {"iface": interface, "user": user_id, "now": now, "require": require_enrollment}
    async with connection(db) as conn:
        await ensure_row(conn, interface, user_id, now)
        # First the user row: its lock serialises every change of this user's factors.
        await conn.execute(_TOUCH[bump_generation, require_enrollment is not None], parameters)
        for confirmed, phone in ((True, active), (False, pending)):
            if phone is not KEEP:
                await _replace_phone(conn, interface, user_id, confirmed, phone, now)
        row = (await conn.execute(_GET, parameters)).one()
    return from_row(row)


async def confirm_pending(
    db: Store | Connection,
    interface: str,
    user_id: str,
    number: str,
    now: float,
    *,
    bump_generation: bool,
) -> int:
    """A code sent to the pending phone ``number`` was right: it becomes the active phone, with
    the provider reference registered for it, the verify failures are wiped, and the user need
    not enroll again. The generation after it."""
    parameters = {"iface": interface, "user": user_id, "now": now, "number": number, "confirmed": True}
    async with connection(db) as conn:
        generation = (await conn.execute(_CONFIRMED[bump_generation], parameters)).one()[0]
        await conn.execute(_DROP_PHONE, parameters)
        promoted = await conn.execute(_PROMOTE, parameters)
        if promoted.rowcount != 1:
            # The pending phone changed meanwhile: the number whose code was right is the one
            # confirmed, without the reference registered for the other.
            await _replace_phone(conn, interface, user_id, False, None, now)
            await _replace_phone(conn, interface, user_id, True, NewPhone(number), now, used=True)
    return int(generation)


# A right code wipes the verify failures (limits.py): the delay, the lock, and the attempt that
# the right code used is given back to the hour's count.
_FAILURES_WIPED: dict[str, Any] = {
    "failures": 0,
    "next_attempt_at": 0.0,
    "locked_until": 0.0,
    "hour_failures": case((enrollments.c.hour_failures > 0, enrollments.c.hour_failures - 1), else_=0),
}
_SIGNED_IN = (
    update(enrollments)
    .where(*THE_USER)
    .values(updated_at=bindparam("now"), last_verified_at=bindparam("now"), **_FAILURES_WIPED)
    .returning(enrollments.c.generation)
)
# The user's sms factors, by the parameters "iface" and "user".
_SMS = (
    factors.c.interface == bindparam("iface"),
    factors.c.user_id == bindparam("user"),
    factors.c.kind == SMS,
)
_ACTIVE_PHONE_USED = (
    update(factors).where(*_SMS, factors.c.confirmed.is_(True)).values(last_used_at=bindparam("now"))
)
_DROP_PHONE = delete(factors).where(*_SMS, factors.c.confirmed == bindparam("confirmed"))
_PROMOTE = (
    update(factors)
    .where(*_SMS, factors.c.confirmed.is_(False), factors.c.value == bindparam("number"))
    .values(confirmed=True, assigned_by_manager=False, last_used_at=bindparam("now"))
)
_NEW_PHONE = inserting(
    factors,
    "interface",
    "user_id",
    "kind",
    "value",
    "provider_ref",
    "confirmed",
    "assigned_by_manager",
    "created_at",
    "last_used_at",
)
_SET_REF = (
    update(factors)
    .where(*_SMS, factors.c.confirmed == bindparam("confirmed"), factors.c.value == bindparam("number"))
    .values(provider_ref=bindparam("ref"))
)


def _signed_in_with_event() -> Any:
    """PostgreSQL: the sign-in, the phone's use and the event in one statement. The user row is
    updated first (the other two read its result), as every writer of a user's rows does."""
    user = _SIGNED_IN.cte("signed_in")
    done = select(user.c.generation).exists()
    phone = _ACTIVE_PHONE_USED.where(done).cte("phone_used")
    noted = select(*(bindparam(f"event_{name}", type_=events.c[name].type) for name in event_rows.COLUMNS))
    noted = noted.where(done)
    event = insert(events).from_select(list(event_rows.COLUMNS), noted).cte("event")
    return select(user.c.generation).add_cte(phone, event)


_SIGNED_IN_WITH_EVENT = _signed_in_with_event()


async def record_sign_in(
    db: Store | Connection, interface: str, user_id: str, now: float, event: AuditEvent
) -> int:
    """A right code to the active phone: the verify failures wiped, when, on the user row and the
    factor, and the event; all or nothing. The generation."""
    parameters = {"iface": interface, "user": user_id, "now": now}
    row = event_rows.row_of(event)
    if isinstance(db, Store) and db.engine.dialect.name == "postgresql":
        async with db.statement() as conn:  # one statement: no BEGIN, no COMMIT
            together = {**parameters, **{f"event_{name}": value for name, value in row.items()}}
            return int((await conn.execute(_SIGNED_IN_WITH_EVENT, together)).scalar_one())
    async with connection(db) as conn:
        generation = (await conn.execute(_SIGNED_IN, parameters)).one()[0]
        await conn.execute(_ACTIVE_PHONE_USED, parameters)
        await event_rows.add(conn, event)
    return int(generation)


async def set_provider_ref(
    db: Store | Connection,
    interface: str,
    user_id: str,
    number: str,
    *,
    confirmed: bool,
    ref: str | None,
    now: float,
) -> None:
    """The provider's reference for the user's active (``confirmed``) or pending phone ``number``."""
    parameters = {"iface": interface, "user": user_id, "now": now}
    async with connection(db) as conn:
        await conn.execute(_TOUCH[False, False], parameters)
        await conn.execute(_SET_REF, {**parameters, "confirmed": confirmed, "number": number, "ref": ref})


_HOLDS_A_REF = (
    select(factors.c.id)
    .where(
        factors.c.interface == enrollments.c.interface,
        factors.c.user_id == enrollments.c.user_id,
        factors.c.provider_ref.is_not(None),
    )
    .exists()
)
_REF_HOLDERS_TOUCHED = update(enrollments).where(_HOLDS_A_REF).values(updated_at=bindparam("now"))
_REFS_CLEARED = update(factors).where(factors.c.provider_ref.is_not(None)).values(provider_ref=None)


async def clear_provider_refs(db: Store | Connection, now: float) -> int:
    """Forget every stored provider reference (they belonged to another provider account); the
    number of users who had one."""
    async with connection(db) as conn:
        users = await conn.execute(_REF_HOLDERS_TOUCHED, {"now": now})
        await conn.execute(_REFS_CLEARED)
    return int(users.rowcount)


_DELETES = (
    delete(codes).where(codes.c.interface == bindparam("iface"), codes.c.user_id == bindparam("user")),
    delete(factors).where(factors.c.interface == bindparam("iface"), factors.c.user_id == bindparam("user")),
    delete(enrollments).where(*THE_USER),
)


async def delete_user(db: Store | Connection, interface: str, user_id: str) -> bool:
    """Remove the user's row, factors and codes. Audit events and the send log stay: the one is
    the record of what happened, the other keeps the send limits honest."""
    parameters = {"iface": interface, "user": user_id}
    async with connection(db) as conn:
        for statement in _DELETES:
            result = await conn.execute(statement, parameters)
    return bool(result.rowcount)  # the user row's, deleted last


async def ensure_row(conn: Connection, interface: str, user_id: str, now: float) -> None:
    """The user row, made if missing. A new row starts at a random 62-bit generation (tables.py)."""
    await conn.execute(
        _ENSURE_ROW[conn.dialect.name],
        {"interface": interface, "user_id": user_id, "generation": secrets.randbits(62), "now": now},
    )


def _ensure_row(dialect: str) -> Any:
    return (
        upsert_for(dialect, enrollments)
        .values(
            interface=bindparam("interface"),
            user_id=bindparam("user_id"),
            require_enrollment=False,
            generation=bindparam("generation"),
            created_at=bindparam("now"),
            updated_at=bindparam("now"),
            failures=0,
            next_attempt_at=0.0,
            locked_until=0.0,
            hour_started_at=0.0,
            hour_failures=0,
        )
        .on_conflict_do_nothing(index_elements=["interface", "user_id"])
    )


def _touch(bump_generation: bool, set_require: bool) -> Any:
    """The user row's UPDATE for a change: the time, the generation bumped or not, and
    ``require_enrollment`` set to the parameter "require" or left."""
    values: dict[str, Any] = {"updated_at": bindparam("now")}
    if bump_generation:
        values["generation"] = enrollments.c.generation + 1
    if set_require:
        values["require_enrollment"] = bindparam("require")
    return update(enrollments).where(*THE_USER).values(**values)


def _confirmed(bump_generation: bool) -> Any:
    values: dict[str, Any] = {
        "updated_at": bindparam("now"),
        "last_verified_at": bindparam("now"),
        "require_enrollment": False,
        **_FAILURES_WIPED,
    }
    if bump_generation:
        values["generation"] = enrollments.c.generation + 1
    return update(enrollments).where(*THE_USER).values(**values).returning(enrollments.c.generation)


# Every variant built once, at import (statements, not data: nothing here holds a request's).
_ENSURE_ROW = {dialect: _ensure_row(dialect) for dialect in ("postgresql", "sqlite")}
_TOUCH = {(bump, require): _touch(bump, require) for bump in (False, True) for require in (False, True)}
_CONFIRMED = {bump: _confirmed(bump) for bump in (False, True)}


async def _replace_phone(
    conn: Connection,
    interface: str,
    user_id: str,
    confirmed: bool,
    phone: NewPhone | None,
    now: float,
    *,
    used: bool = False,
) -> None:
    await conn.execute(_DROP_PHONE, {"iface": interface, "user": user_id, "confirmed": confirmed})
    if phone is not None:
        await conn.execute(
            _NEW_PHONE,
            {
                "interface": interface,
                "user_id": user_id,
                "kind": SMS,
                "value": phone.number,
                "provider_ref": phone.provider_ref,
                "confirmed": confirmed,
                "assigned_by_manager": phone.assigned_by_manager,
                "created_at": now,
                "last_used_at": now if used else None,
            },
        )


_PHONE_COLUMNS = (
    factors.c.value.label("factor_value"),
    factors.c.provider_ref.label("factor_provider_ref"),
    factors.c.confirmed.label("factor_confirmed"),
    factors.c.assigned_by_manager.label("factor_assigned"),
)


def _factor_of(interface: Any, user_id: Any) -> Any:
    return and_(factors.c.interface == interface, factors.c.user_id == user_id, factors.c.kind == SMS)


def _assemble(user: Any, phones: Iterable[Any]) -> Enrollment:
    """The Enrollment of a user row joined to its phones (the listing: one row per phone)."""
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
