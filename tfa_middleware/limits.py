"""Verify lockout and send limits, exact under concurrency (security requirements 6, 7 and 8).

**Verify.** An attempt is *reserved* before its code is checked, by one conditional UPDATE of the
account's row that also returns the row and its phones (the code's target): it succeeds only
while the account is not locked, its growing delay (1, 2, 4 … s after each failure) has passed
and the hourly ceiling is not reached, and it counts the attempt as a failure in the same
statement. Parallel guesses therefore cannot overshoot: the database decides which of them may
be checked, and the lock lands exactly at the limit. A correct code wipes the count, in the
transaction that records the success (``store.enrollments``: ``record_sign_in``,
``confirm_pending``); a provider error gives the attempt back.

**Send.** Every send is logged. One transaction locks the rows of the send's own scopes
(account, client address, phone, always in that order), never a row that every send shares,
counts the log in sliding windows (the resend cooldown, 3 per 10 minutes and 5 per hour per
account, per phone, per address) and logs the send; a refusal rolls it back. Then, last, one
conditional upsert alone takes a unit of the shop's budget, a counter per clock hour and per UTC
day in one row (``tfa_send_budget``): that row, the only one all sends share, is locked for that
one statement. When the budget is spent, the send's log row is deleted again (meanwhile it
counted against its own scopes only, never for more than it was). A provider that fails to send
gives the send back: its log row and its unit of budget.

Numbers outside ``allowed_regions`` are refused, by the region the number belongs to
(``phonenumbers.region_code_for_number``), not by its calling code: +1 is the US, Canada and 23
other regions (security requirement 28). Nothing here ever grants access: every refusal only
stops a text from being sent.

The statements are built once, in ``Limits.__init__`` (they carry the settings' limits), and only
bound per call.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any

import phonenumbers
from sqlalchemy import Float, and_, bindparam, case, cast, delete, func, insert, or_, select, update

from .settings import LimitSettings
from .store import Enrollment, Store
from .store import enrollments as enrollment_rows
from .store.database import upsert_for
from .store.driver import Connection
from .tables import enrollments, send_budget, send_locks, sends

log = logging.getLogger("tfa_middleware.limits")
HOUR = 3600.0
DAY = 24 * HOUR
MAX_DELAY_SECONDS = 60.0
BUDGET_ROW = "all"


class Refusal(enum.StrEnum):
    WAIT = "wait"  # the growing delay after a failure has not passed
    LOCKED = "locked"  # too many failures: the account's second factor is locked
    COOLDOWN = "cooldown"  # a code was sent moments ago
    ACCOUNT_LIMIT = "account_limit"  # too many codes for this account
    PHONE_LIMIT = "phone_limit"  # too many codes to this number, across accounts
    IP_LIMIT = "ip_limit"  # too many codes asked from this address, across accounts
    BUDGET = "budget"  # the shop's whole hourly or daily budget is spent
    COUNTRY = "country"  # the number's region is not in allowed_regions


@dataclass(frozen=True, slots=True)
class Permit:
    """Whether an attempt or a send may go ahead; when not, why and from when it may."""

    allowed: bool
    refusal: Refusal | None = None
    retry_at: float = 0.0
    failures: int = 0  # verify: the count including this attempt
    send_id: int | None = None  # send: the log row, given back if the provider fails
    sent_at: float = 0.0  # send: when, so that its unit of budget goes back to its hour and day

    def retry_after(self, now: float) -> int:
        return max(1, int(self.retry_at - now + 0.999)) if not self.allowed else 0


@dataclass(frozen=True, slots=True)
class Waits:
    """Times (0 when there is nothing to wait for) until which the account must wait."""

    locked_until: float
    next_attempt_at: float
    next_send_at: float


class _Refused(Exception):
    """Raised inside a send's transaction to roll it back."""

    def __init__(self, permit: Permit) -> None:
        super().__init__(permit.refusal)
        self.permit = permit


def _now(name: str = "now") -> Any:
    return bindparam(name, type_=Float)


class Limits:
    def __init__(self, settings: LimitSettings, store: Store, pepper: bytes) -> None:
        self.settings = settings
        self.store = store
        self._pepper = hashlib.sha256(b"tfa-middleware.limits\0" + pepper).digest()
        self._verify = _VerifyStatements(settings)
        self._send = _SendStatements(settings, store.engine.dialect.name)

    # ------------------------------------------------------------------ verify

    async def reserve_attempt(
        self, interface: str, user_id: str, now: float
    ) -> tuple[Permit, Enrollment | None]:
        """Reserve an attempt (one statement) and read the enrollment it is for; refused, the
        enrollment and why (a second statement)."""
        parameters = {"iface": interface, "user": user_id, "now": now}
        async with self.store.statement() as conn:
            row = (await conn.execute(self._verify.reserve, parameters)).first()
            if row is not None:
                return Permit(True, failures=int(row.failures)), enrollment_rows.from_row(row)
            row = (await conn.execute(self._verify.why_not, parameters)).first()
        if row is None:  # no enrollment: nothing to check against, the caller refuses anyway
            return Permit(False, Refusal.LOCKED, now), None
        enrollment = enrollment_rows.from_row(row)
        if row.locked_until > now:
            return Permit(False, Refusal.LOCKED, row.locked_until), enrollment
        if row.next_attempt_at > now:
            return Permit(False, Refusal.WAIT, row.next_attempt_at), enrollment
        return Permit(False, Refusal.LOCKED, row.hour_started_at + HOUR), enrollment

    def locks_now(self, permit: Permit) -> bool:
        """True when the failure just reserved by ``permit`` is the one that locks the account."""
        return permit.failures == self.settings.verify_max_failures

    async def lock_holds(self, conn: Connection, interface: str, user_id: str, now: float) -> bool:
        """Whether the account is locked now; the user row stays locked (PostgreSQL) until the
        caller's transaction ends, so a success beside it is recorded before or after, not during."""
        parameters = {"iface": interface, "user": user_id}
        locked_until = (await conn.execute(self._verify.lock_of, parameters)).scalar()
        return locked_until is not None and float(locked_until) > now

    async def give_back_attempt(self, conn: Connection, interface: str, user_id: str) -> None:
        """The attempt checked nothing (the provider failed, or there was no code to check)."""
        await conn.execute(self._verify.give_back, {"iface": interface, "user": user_id})

    async def unlock(self, interface: str, user_id: str) -> bool:
        async with self.store.statement() as conn:
            result = await conn.execute(self._verify.unlock, {"iface": interface, "user": user_id})
        return bool(result.rowcount)

    async def waits(self, interface: str, user_id: str, now: float) -> Waits:
        """When this account may next check a code and ask for one (read-only, for the pages)."""
        s = self.settings
        parameters = {"iface": interface, "user": user_id, "since": now - HOUR}
        async with self.store.reading() as conn:
            row = (await conn.execute(self._verify.waits, parameters)).first()
            recent = [float(at) for at in (await conn.execute(self._send.recent, parameters)).scalars()]
        send_at = now
        for window, limit in (
            (float(s.send_cooldown_seconds), 1),
            (600.0, s.send_max_per_10_minutes),
            (HOUR, s.send_max_per_hour),
        ):
            inside = [at for at in recent if at > now - window]  # newest first
            if len(inside) >= limit:
                send_at = max(send_at, inside[limit - 1] + window)
        locked_until = float(row.locked_until) if row and row.locked_until > now else 0.0
        attempt_at = float(row.next_attempt_at) if row and row.next_attempt_at > now else 0.0
        return Waits(locked_until, attempt_at, send_at if send_at > now else 0.0)

    # ------------------------------------------------------------------ send

    def country_allowed(self, phone: str) -> bool:
        try:
            parsed = phonenumbers.parse(phone)
        except phonenumbers.NumberParseException:
            return False
        return self.settings.region_allowed(phonenumbers.region_code_for_number(parsed))

    @staticmethod
    def region_of(phone: str) -> str:
        """``"JM (+1)"``: the number's region and calling code, for a refusal's message."""
        try:
            parsed = phonenumbers.parse(phone)
        except phonenumbers.NumberParseException:
            return "an unknown region"
        region = phonenumbers.region_code_for_number(parsed)
        return f"{region} (+{parsed.country_code})" if region else f"+{parsed.country_code}"

    @staticmethod
    def region_code(phone: str) -> str:
        """The number's region (``"GB"``), or ``"ZZ"`` (unknown), for the audit event of a send."""
        try:
            return phonenumbers.region_code_for_number(phonenumbers.parse(phone)) or "ZZ"
        except phonenumbers.NumberParseException:
            return "ZZ"

    def phone_key(self, phone: str) -> str:
        return hmac.new(self._pepper, phone.encode(), hashlib.sha256).hexdigest()[:32]

    async def reserve_send(
        self, interface: str, user_id: str, phone: str, ip: str | None, now: float
    ) -> Permit:
        if not self.country_allowed(phone):
            return Permit(False, Refusal.COUNTRY, 0.0)
        account_key = hashlib.sha256(f"{interface}\0{user_id}".encode()).hexdigest()[:32]
        phone_key = self.phone_key(phone)
        # The order every send takes its locks in, so that no two sends wait for each other's
        # the other way round.
        scopes = [f"account:{account_key}", *([f"ip:{ip}"] if ip else []), f"phone:{phone_key}"]
        parameters = {
            "iface": interface,
            "user": user_id,
            "phone": phone_key,
            "address": ip,
            "now": now,
            "cooldown_since": now - self.settings.send_cooldown_seconds,
            "ten_minutes_since": now - 600.0,
            "since": now - HOUR,
            "hour": now - now % HOUR,
            "day": now - now % DAY,
            **{f"scope{n}": scope for n, scope in enumerate(scopes)},
        }
        statements = self._send
        try:
            async with self.store.transaction() as conn:
                await conn.execute(statements.lock[len(scopes)], parameters)
                counts = (await conn.execute(statements.windows, parameters)).one()
                refused = self._refusal(counts, with_ip=ip is not None)
                if refused is not None:
                    raise _Refused(refused)
                send_id = (await conn.execute(statements.log, parameters)).scalar_one()
        except _Refused as refused:
            return refused.permit
        # The budget last, in a statement of its own: its row, the one row every send shares, is
        # locked for that statement alone, never while this process attends to something else.
        async with self.store.statement() as conn:
            if (await conn.execute(statements.take_budget, parameters)).first() is not None:
                return Permit(True, send_id=int(send_id), sent_at=now)
            spent = await self._budget_spent(conn, now)
            await conn.execute(statements.unlog, {"send_id": send_id})  # logged, never sent
        return spent

    def _refusal(self, counts: Any, *, with_ip: bool) -> Permit | None:
        """The first sliding window that is full, as a refusal; None when none is."""
        s = self.settings
        checks = [
            ("cooldown", s.send_cooldown_seconds, 1, Refusal.COOLDOWN),
            ("ten_minutes", 600.0, s.send_max_per_10_minutes, Refusal.ACCOUNT_LIMIT),
            ("hour", HOUR, s.send_max_per_hour, Refusal.ACCOUNT_LIMIT),
            ("phone", HOUR, s.send_max_per_phone_per_hour, Refusal.PHONE_LIMIT),
        ]
        if with_ip:
            checks.append(("ip", HOUR, s.send_max_per_ip_per_hour, Refusal.IP_LIMIT))
        for window_name, window, limit, refusal in checks:
            if getattr(counts, window_name) >= limit:
                return Permit(False, refusal, float(getattr(counts, f"{window_name}_oldest")) + window)
        return None

    async def _budget_spent(self, conn: Connection, now: float) -> Permit:
        s = self.settings
        row = (await conn.execute(self._send.budget)).one()
        if row.hour_start >= now - now % HOUR and row.hour_count >= s.send_budget_per_hour:
            count, since, until = row.hour_count, row.hour_start, row.hour_start + HOUR
        else:
            count, since, until = row.day_count, row.day_start, row.day_start + DAY
        log.error(
            "SEND BUDGET SPENT: %d codes since %s UTC; every send is refused until %s UTC "
            "(limits.send_budget_per_hour / send_budget_per_day)",
            count,
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(since)),
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(until)),
        )
        return Permit(False, Refusal.BUDGET, float(until))

    async def budget_used(self, now: float) -> tuple[int, int]:
        """Codes the shop's budget counts now: (this clock hour, this UTC day), as the next send
        would see them (a past hour or day counts 0). One primary-key read of the budget row."""
        async with self.store.reading() as conn:
            row = (await conn.execute(self._send.budget)).first()
        if row is None:
            return 0, 0
        hour = int(row.hour_count) if row.hour_start >= now - now % HOUR else 0
        day = int(row.day_count) if row.day_start >= now - now % DAY else 0
        return hour, day

    async def give_back_send(self, permit: Permit) -> None:
        """The provider did not send: the send does not count against anyone, nor the budget."""
        at = permit.sent_at
        parameters = {"send_id": permit.send_id, "hour": at - at % HOUR, "day": at - at % DAY}
        async with self.store.transaction() as conn:
            await conn.execute(self._send.unlog, parameters)
            await conn.execute(self._send.give_back_budget, parameters)


class _VerifyStatements:
    """The verify lockout's statements, with this shop's limits in them."""

    def __init__(self, s: LimitSettings) -> None:
        e = enrollments.c
        user = enrollment_rows.THE_USER
        now = _now()
        new_hour = e.hour_started_at <= now - HOUR
        delays = {
            n: min(s.verify_delay_base_seconds * 2**n, MAX_DELAY_SECONDS)
            for n in range(s.verify_max_failures)
        }
        delay = case(
            delays, value=e.failures, else_=min(s.verify_delay_base_seconds * 2**20, MAX_DELAY_SECONDS)
        )
        self.reserve = (
            update(enrollments)
            .where(
                *user,
                e.locked_until <= now,
                e.next_attempt_at <= now,
                or_(new_hour, e.hour_failures < s.verify_max_failures_per_hour),
            )
            .values(
                failures=e.failures + 1,
                next_attempt_at=now + cast(delay, Float),
                locked_until=case(
                    (e.failures + 1 >= s.verify_max_failures, now + s.verify_lock_seconds),
                    else_=e.locked_until,
                ),
                hour_started_at=case((new_hour, now), else_=e.hour_started_at),
                hour_failures=case((new_hour, 1), else_=e.hour_failures + 1),
            )
            .returning(e.failures, *enrollment_rows.READ_COLUMNS)
        )
        self.why_not = select(e.next_attempt_at, e.hour_started_at, *enrollment_rows.READ_COLUMNS).where(
            *user
        )
        self.give_back = (
            update(enrollments)
            .where(*user, e.failures > 0)
            .values(
                failures=e.failures - 1,
                next_attempt_at=0.0,
                locked_until=case((e.failures - 1 < s.verify_max_failures, 0.0), else_=e.locked_until),
                hour_failures=case((e.hour_failures > 0, e.hour_failures - 1), else_=0),
            )
        )
        self.unlock = (
            update(enrollments)
            .where(*user)
            .values(failures=0, next_attempt_at=0.0, locked_until=0.0, hour_failures=0)
        )
        self.waits = select(e.locked_until, e.next_attempt_at).where(*user)
        self.lock_of = select(e.locked_until).where(*user).with_for_update()


class _SendStatements:
    """The send limits' statements, with this shop's limits in them, in the database's dialect."""

    def __init__(self, s: LimitSettings, dialect: str) -> None:
        at = sends.c.at
        mine = and_(sends.c.interface == bindparam("iface"), sends.c.user_id == bindparam("user"))
        self.recent = (
            select(at).where(mine, at > _now("since")).order_by(at.desc()).limit(s.send_max_per_hour)
        )
        self.lock = {n: _lock_scopes(dialect, n) for n in (2, 3)}
        windows: list[Any] = []
        for name, where, since in (
            ("cooldown", mine, "cooldown_since"),
            ("ten_minutes", mine, "ten_minutes_since"),
            ("hour", mine, "since"),
            ("phone", sends.c.phone_key == bindparam("phone"), "since"),
            ("ip", sends.c.ip == bindparam("address"), "since"),
        ):
            inside = (where, at > _now(since))
            windows.append(select(func.count()).where(*inside).scalar_subquery().label(name))
            windows.append(select(func.min(at)).where(*inside).scalar_subquery().label(f"{name}_oldest"))
        self.windows = select(*windows)
        self.log = (
            insert(sends)
            .values(
                at=_now(),
                interface=bindparam("iface"),
                user_id=bindparam("user"),
                phone_key=bindparam("phone"),
                ip=bindparam("address"),
            )
            .returning(sends.c.id)
        )
        self.take_budget = _take_budget(dialect, s)
        b = send_budget.c
        the_row = b.scope == BUDGET_ROW
        self.budget = select(b.hour_start, b.hour_count, b.day_start, b.day_count).where(the_row)
        self.unlog = delete(sends).where(sends.c.id == bindparam("send_id"))
        self.give_back_budget = (
            update(send_budget)
            .where(the_row)
            .values(
                hour_count=case(
                    (and_(b.hour_start == _now("hour"), b.hour_count > 0), b.hour_count - 1),
                    else_=b.hour_count,
                ),
                day_count=case(
                    (and_(b.day_start == _now("day"), b.day_count > 0), b.day_count - 1), else_=b.day_count
                ),
            )
        )


def _lock_scopes(dialect: str, count: int) -> Any:
    """Make (if new) and lock the rows of ``count`` scopes, in the order given (one statement)."""
    statement = upsert_for(dialect, send_locks).values(
        [{"scope": bindparam(f"scope{n}"), "touched_at": _now()} for n in range(count)]
    )
    return statement.on_conflict_do_update(
        index_elements=["scope"], set_={"touched_at": statement.excluded.touched_at}
    )


def _take_budget(dialect: str, s: LimitSettings) -> Any:
    """One unit of the shop's budget, in one conditional upsert of its one row: a new clock hour
    (or UTC day) starts its count again; a full one takes nothing and returns no row. A send
    whose clock is behind the row's (another host's) counts in the row's hour and day."""
    b = send_budget.c
    hour, day = _now("hour"), _now("day")
    new_hour, new_day = b.hour_start < hour, b.day_start < day
    statement = upsert_for(dialect, send_budget).values(
        scope=BUDGET_ROW, hour_start=hour, hour_count=1, day_start=day, day_count=1
    )
    return statement.on_conflict_do_update(
        index_elements=["scope"],
        set_={
            "hour_start": case((new_hour, hour), else_=b.hour_start),
            "hour_count": case((new_hour, 1), else_=b.hour_count + 1),
            "day_start": case((new_day, day), else_=b.day_start),
            "day_count": case((new_day, 1), else_=b.day_count + 1),
        },
        where=and_(
            or_(new_hour, b.hour_count < s.send_budget_per_hour),
            or_(new_day, b.day_count < s.send_budget_per_day),
        ),
    ).returning(b.hour_count)
