"""Verify lockout and send limits, exact under concurrency (security requirements 6, 7 and 8).

**Verify.** An attempt is *reserved* before its code is checked, by one conditional UPDATE of the
account's row: it succeeds only while the account is not locked, its growing delay (1, 2, 4 … s
after each failure) has passed and the hourly ceiling is not reached, and it counts the attempt
as a failure in the same statement. Parallel guesses therefore cannot overshoot: the database
decides which of them may be checked, and the lock lands exactly at the limit. A correct code
wipes the count; a provider error gives the attempt back.

**Send.** Every send is logged; before a new one, one transaction takes the lock rows of its
scopes (account, phone, client address, the whole shop) and counts the log in sliding windows:
the resend cooldown, 3 per 10 minutes and 5 per hour per account, per phone, per address, and a
global hourly and daily budget. Numbers outside ``allowed_regions`` are refused, by the region the
number belongs to (``phonenumbers.region_code_for_number``), not by its calling code: +1 is the US,
Canada and 23 other regions (security requirement 28).
Nothing here ever grants access: every refusal only stops a text from being sent.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
from dataclasses import dataclass

import phonenumbers
from sqlalchemy import Float, and_, case, cast, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from .settings import LimitSettings
from .store import Store
from .tables import enrollments, send_locks, sends

log = logging.getLogger("tfa_middleware.limits")
HOUR = 3600.0
DAY = 24 * HOUR
MAX_DELAY_SECONDS = 60.0


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

    def retry_after(self, now: float) -> int:
        return max(1, int(self.retry_at - now + 0.999)) if not self.allowed else 0


@dataclass(frozen=True, slots=True)
class Waits:
    """Times (0 when there is nothing to wait for) until which the account must wait."""

    locked_until: float
    next_attempt_at: float
    next_send_at: float


class Limits:
    def __init__(self, settings: LimitSettings, store: Store, pepper: bytes) -> None:
        self.settings = settings
        self.store = store
        self._pepper = hashlib.sha256(b"tfa-middleware.limits\0" + pepper).digest()

    # ------------------------------------------------------------------ verify

    async def reserve_attempt(self, interface: str, user_id: str, now: float) -> Permit:
        s = self.settings
        e = enrollments.c
        new_hour = e.hour_started_at <= now - HOUR
        delays = {
            n: min(s.verify_delay_base_seconds * 2**n, MAX_DELAY_SECONDS)
            for n in range(s.verify_max_failures)
        }
        delay = case(
            delays, value=e.failures, else_=min(s.verify_delay_base_seconds * 2**20, MAX_DELAY_SECONDS)
        )
        statement = (
            update(enrollments)
            .where(
                e.interface == interface,
                e.user_id == user_id,
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
            .returning(e.failures)
        )
        async with self.store.transaction() as conn:
            failures = (await conn.execute(statement)).scalar()
            if failures is not None:
                return Permit(True, failures=int(failures))
            row = (
                await conn.execute(
                    select(e.locked_until, e.next_attempt_at, e.hour_started_at).where(
                        e.interface == interface, e.user_id == user_id
                    )
                )
            ).first()
        if row is None:  # no enrollment: nothing to check against, the caller refuses anyway
            return Permit(False, Refusal.LOCKED, now)
        if row.locked_until > now:
            return Permit(False, Refusal.LOCKED, row.locked_until)
        if row.next_attempt_at > now:
            return Permit(False, Refusal.WAIT, row.next_attempt_at)
        return Permit(False, Refusal.LOCKED, row.hour_started_at + HOUR)

    def locks_now(self, permit: Permit) -> bool:
        """True when the failure just reserved by ``permit`` is the one that locks the account."""
        return permit.failures == self.settings.verify_max_failures

    async def wipe_failures(self, conn: AsyncConnection, interface: str, user_id: str) -> None:
        """A right code wipes the failure count (the attempt reserved for it is given back to the
        hourly count), in the caller's transaction: the one that records the success."""
        e = enrollments.c
        await conn.execute(
            update(enrollments)
            .where(e.interface == interface, e.user_id == user_id)
            .values(
                failures=0,
                next_attempt_at=0.0,
                locked_until=0.0,
                hour_failures=case((e.hour_failures > 0, e.hour_failures - 1), else_=0),
            )
        )

    async def give_back_attempt(self, interface: str, user_id: str) -> None:
        """The provider failed: the attempt checked nothing, so it does not count."""
        e = enrollments.c
        async with self.store.transaction() as conn:
            await conn.execute(
                update(enrollments)
                .where(e.interface == interface, e.user_id == user_id, e.failures > 0)
                .values(
                    failures=e.failures - 1,
                    next_attempt_at=0.0,
                    locked_until=case(
                        (e.failures - 1 < self.settings.verify_max_failures, 0.0), else_=e.locked_until
                    ),
                    hour_failures=case((e.hour_failures > 0, e.hour_failures - 1), else_=0),
                )
            )

    async def unlock(self, interface: str, user_id: str) -> bool:
        e = enrollments.c
        async with self.store.transaction() as conn:
            result = await conn.execute(
                update(enrollments)
                .where(e.interface == interface, e.user_id == user_id)
                .values(failures=0, next_attempt_at=0.0, locked_until=0.0, hour_failures=0)
            )
        return bool(result.rowcount)

    async def waits(self, interface: str, user_id: str, now: float) -> Waits:
        """When this account may next check a code and ask for one (read-only, for the pages)."""
        s = self.settings
        e = enrollments.c
        mine = and_(sends.c.interface == interface, sends.c.user_id == user_id)
        async with self.store.transaction() as conn:
            row = (
                await conn.execute(
                    select(e.locked_until, e.next_attempt_at).where(
                        e.interface == interface, e.user_id == user_id
                    )
                )
            ).first()
            send_at = now
            for window, limit in (
                (float(s.send_cooldown_seconds), 1),
                (600.0, s.send_max_per_10_minutes),
                (HOUR, s.send_max_per_hour),
            ):
                recent = (
                    (
                        await conn.execute(
                            select(sends.c.at)
                            .where(mine, sends.c.at > now - window)
                            .order_by(sends.c.at.desc())
                        )
                    )
                    .scalars()
                    .all()
                )
                if len(recent) >= limit:
                    send_at = max(send_at, float(recent[limit - 1]) + window)
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

    def phone_key(self, phone: str) -> str:
        return hmac.new(self._pepper, phone.encode(), hashlib.sha256).hexdigest()[:32]

    async def reserve_send(
        self, interface: str, user_id: str, phone: str, ip: str | None, now: float
    ) -> Permit:
        if not self.country_allowed(phone):
            return Permit(False, Refusal.COUNTRY, 0.0)
        s = self.settings
        phone_key = self.phone_key(phone)
        account_key = hashlib.sha256(f"{interface}\0{user_id}".encode()).hexdigest()[:32]
        scopes = sorted({f"account:{account_key}", f"phone:{phone_key}", f"ip:{ip or '-'}", "all"})
        mine = and_(sends.c.interface == interface, sends.c.user_id == user_id)
        async with self.store.transaction() as conn:
            await self._lock(conn, scopes, now)
            checks = [
                (mine, s.send_cooldown_seconds, 1, Refusal.COOLDOWN),
                (mine, 600.0, s.send_max_per_10_minutes, Refusal.ACCOUNT_LIMIT),
                (mine, HOUR, s.send_max_per_hour, Refusal.ACCOUNT_LIMIT),
                (sends.c.phone_key == phone_key, HOUR, s.send_max_per_phone_per_hour, Refusal.PHONE_LIMIT),
                (sends.c.at > 0, HOUR, s.send_budget_per_hour, Refusal.BUDGET),
                (sends.c.at > 0, DAY, s.send_budget_per_day, Refusal.BUDGET),
            ]
            if ip:
                checks.insert(4, (sends.c.ip == ip, HOUR, s.send_max_per_ip_per_hour, Refusal.IP_LIMIT))
            for scope, window, limit, refusal in checks:
                count, oldest = (
                    await conn.execute(
                        select(func.count(), func.min(sends.c.at)).where(scope, sends.c.at > now - window)
                    )
                ).one()
                if count >= limit:
                    if refusal is Refusal.BUDGET:
                        log.error(
                            "SEND BUDGET SPENT: %d codes in the last %d s; every send is refused until it "
                            "recovers (limits.send_budget_per_hour / send_budget_per_day)",
                            count,
                            int(window),
                        )
                    return Permit(False, refusal, float(oldest) + window)
            send_id = (
                await conn.execute(
                    insert(sends)
                    .values(at=now, interface=interface, user_id=user_id, phone_key=phone_key, ip=ip)
                    .returning(sends.c.id)
                )
            ).scalar_one()
        return Permit(True, send_id=int(send_id))

    async def give_back_send(self, send_id: int) -> None:
        """The provider did not send: the send does not count against anyone."""
        async with self.store.transaction() as conn:
            await conn.execute(delete(sends).where(sends.c.id == send_id))

    async def _lock(self, conn: AsyncConnection, scopes: list[str], now: float) -> None:
        dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        await conn.execute(
            dialect_insert(send_locks)
            .values([{"scope": scope, "touched_at": now} for scope in scopes])
            .on_conflict_do_nothing(index_elements=["scope"])
        )
        # Sorted order: two sends never wait for each other's locks the other way round.
        for scope in scopes:
            await conn.execute(update(send_locks).where(send_locks.c.scope == scope).values(touched_at=now))
