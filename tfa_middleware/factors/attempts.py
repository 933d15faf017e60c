"""The verify lockout (limits.py) as every factor uses it: one account-wide count, so a wrong
authenticator code, a wrong recovery code and a wrong texted code all count against the same
lock (security requirement 6), and a right one of any kind wipes it.

The one place where the factors meet the lockout's API: reserve an attempt before a code is
checked, give it back when nothing was checked, say "wrong" or "locked", wipe on success.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from sqlalchemy import update

from ..audit import AuditTrail, RequestInfo
from ..limits import Limits, Permit, Refusal
from ..outcomes import VerifyOutcome, VerifyStatus
from ..settings import Settings
from ..store import Store
from ..store import events as event_rows
from ..store.driver import Connection
from ..tables import enrollments

log = logging.getLogger("tfa_middleware")


class Parts(NamedTuple):
    """What every factor's class is built from (``settings, store, attempts, trail, clock = parts``)."""

    settings: Settings
    store: Store
    attempts: Attempts
    trail: AuditTrail
    clock: Callable[[], float]


class Attempts:
    def __init__(self, settings: Settings, limits: Limits, trail: AuditTrail) -> None:
        self.settings = settings
        self.limits = limits
        self.trail = trail

    async def reserve(self, interface: str, user_id: str, now: float) -> Permit:
        """One attempt, counted as a failure until it succeeds; refused while locked or waiting."""
        reserved: Any = await self.limits.reserve_attempt(interface, user_id, now)
        # (Permit, Enrollment) where the lockout reads the user in the same statement.
        permit: Permit = reserved[0] if isinstance(reserved, tuple) else reserved
        return permit

    @staticmethod
    def refused(permit: Permit) -> VerifyOutcome:
        status = VerifyStatus.LOCKED if permit.refusal is Refusal.LOCKED else VerifyStatus.WAIT
        return VerifyOutcome(status, retry_at=permit.retry_at)

    async def rejected(
        self,
        interface: str,
        user_id: str,
        now: float,
        permit: Permit,
        request: RequestInfo | None,
        factor: str | None,
        **detail: str,
    ) -> VerifyOutcome:
        """A wrong code of ``factor`` (None: a texted code, whose event names its purpose in
        ``detail``): its event (with ``detail``: why, where a factor can say), and the lock if
        this failure is the one, unless a right code checked beside it has wiped it since."""
        failures = permit.failures
        fields = (
            {"factor": factor, "failures": str(failures), **detail}
            if factor is not None
            else {**detail, "failures": str(failures)}
        )
        failed = self.trail.event(now, interface, user_id, "verify_failed", request, **fields)
        store = self.limits.store
        if not self.limits.locks_now(permit):
            async with store.statement() as conn:
                await event_rows.add(conn, failed)
            await self.trail.announce(failed)
            return VerifyOutcome(VerifyStatus.REJECTED)
        until = now + self.settings.limits.verify_lock_seconds
        async with store.transaction() as conn:
            holds = await self.limits.lock_holds(conn, interface, user_id, now)
            items = [failed]
            if holds:
                locked = self.trail.event(now, interface, user_id, "locked", request, until=str(int(until)))
                items.append(locked)
            await event_rows.add(conn, *items)
        await self.trail.announce(*items)
        if not holds:
            return VerifyOutcome(VerifyStatus.REJECTED)
        log.warning("%s user %s locked after %d failed codes", interface, user_id, failures)
        return VerifyOutcome(VerifyStatus.LOCKED, retry_at=until)

    @staticmethod
    async def succeeded(conn: Connection, interface: str, user_id: str, now: float) -> int:
        """A right code, in the caller's transaction: the failures wiped (the reserved attempt
        given back to the hourly count), the sign-in time; the generation."""
        e = enrollments.c
        result = await conn.execute(
            update(enrollments)
            .where(e.interface == interface, e.user_id == user_id)
            .values(
                failures=0,
                next_attempt_at=0.0,
                locked_until=0.0,
                hour_failures=_minus_one(e.hour_failures),
                last_verified_at=now,
                updated_at=now,
            )
            .returning(e.generation)
        )
        return int(result.scalar_one())


def _minus_one(column: Any) -> Any:
    from sqlalchemy import case

    return case((column > 0, column - 1), else_=0)
