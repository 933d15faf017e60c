"""The sign-in flow: send a code where it is due, check the code, say what the user waits for.

Every limit is the database's decision (limits.py); a provider call never runs inside a
transaction; only ``APPROVED`` lets anyone in. A verify is two short transactions around the
provider call: the attempt reserved and the enrollment read in one statement, then the outcome
recorded with its audit event in one transaction (a success also wipes the failures and notes
when the phone was used).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

from . import phone as phones
from .audit import AuditTrail, RequestInfo
from .errors import InvalidInput, ProviderError
from .factors.attempts import Attempts
from .limits import Limits, Permit, Refusal, Waits
from .metrics import NO_METRICS, Metrics
from .outcomes import SendOutcome, SendStatus, VerifyOutcome, VerifyStatus, target_of
from .providers.base import CheckResult, Provider, Purpose
from .registrations import Registrations
from .settings import Settings
from .store import Enrollment, Store
from .store import enrollments as enrollment_rows

T = TypeVar("T")


class SignIn:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        provider: Provider,
        limits: Limits,
        trail: AuditTrail,
        registrations: Registrations,
        clock: Callable[[], float],
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.provider = provider
        self.limits = limits
        self.trail = trail
        self.registrations = registrations
        self.clock = clock
        self.attempts = Attempts(settings, limits, trail)

    async def send_code(
        self,
        interface: str,
        user_id: str,
        channel: str,
        purpose: Purpose | None,
        request: RequestInfo | None,
        locale: str | None = None,
    ) -> SendOutcome:
        if channel != "sms" and not (channel == "call" and self.provider.supports_call):
            raise InvalidInput(f"channel {channel!r} is not available")
        # Before the enrollment is read: a key change clears the provider ids this call would use.
        await self.registrations.check_fingerprint()
        row = await enrollment_rows.get(self.store, interface, user_id)
        target = target_of(interface, user_id, row, purpose)
        if target is None:
            return SendOutcome(SendStatus.NEEDS_ENROLLMENT)
        target = replace(target, locale=locale)
        masked = phones.mask(target.phone)
        # The destination's region (GB, JM): counted per country on the manage page (the pumping
        # signal), never the number.
        country = self.limits.region_code(target.phone)
        now = self.clock()
        permit = await self.limits.reserve_send(
            interface, user_id, target.phone, request.ip if request else None, now
        )
        if not permit.allowed:
            assert permit.refusal is not None
            await self.trail.record(
                now,
                interface,
                user_id,
                "send_refused",
                request,
                reason=str(permit.refusal),
                to=masked,
                channel=channel,
                country=country,
            )
            return SendOutcome(SendStatus.REFUSED, masked, channel, permit.refusal, permit.retry_after(now))
        try:
            await self._timed(
                "send", self.registrations.call(target, lambda t: self.provider.send(t, channel))
            )
        except ProviderError as exc:
            await self.limits.give_back_send(permit)
            await self.trail.record(
                now,
                interface,
                user_id,
                "send_failed",
                request,
                error=type(exc).__name__,
                channel=channel,
                country=country,
            )
            raise
        await self.trail.record(
            self.clock(),
            interface,
            user_id,
            "code_sent",
            request,
            channel=channel,
            to=masked,
            purpose=str(target.purpose),
            country=country,
        )
        return SendOutcome(SendStatus.SENT, masked, channel)

    async def _timed(self, operation: str, call: Awaitable[T]) -> T:
        """A provider call, its time and any failure told to the metrics."""
        started = time.perf_counter()
        error: str | None = None
        try:
            return await call
        except ProviderError as exc:
            error = type(exc).__name__
            raise
        finally:
            self.metrics.provider_call(self.provider.name, operation, time.perf_counter() - started, error)

    async def waits(self, interface: str, user_id: str) -> Waits:
        return await self.limits.waits(interface, user_id, self.clock())

    def code_is_well_formed(self, code: str) -> bool:
        low, high = self.provider.code_lengths
        return code.isascii() and code.isdigit() and low <= len(code) <= high

    async def verify_code(
        self, interface: str, user_id: str, code: str, purpose: Purpose | None, request: RequestInfo | None
    ) -> VerifyOutcome:
        code = code.strip().replace(" ", "")
        if not self.code_is_well_formed(code):
            return VerifyOutcome(VerifyStatus.MALFORMED)
        await self.registrations.check_fingerprint()  # before the read, as in send_code
        now = self.clock()
        permit, before = await self.limits.reserve_attempt(interface, user_id, now)
        target = target_of(interface, user_id, before, purpose)
        if target is None or before is None:
            if permit.allowed:  # no code to check: the attempt is not spent
                async with self.store.statement() as conn:
                    await self.limits.give_back_attempt(conn, interface, user_id)
            return VerifyOutcome(VerifyStatus.NEEDS_ENROLLMENT)
        if not permit.allowed:
            status = VerifyStatus.LOCKED if permit.refusal is Refusal.LOCKED else VerifyStatus.WAIT
            return VerifyOutcome(status, retry_at=permit.retry_at)
        try:
            result = await self._timed(
                "check", self.registrations.call(target, lambda t: self.provider.check(t, code))
            )
        except ProviderError as exc:
            async with self.trail.recording(
                now, interface, user_id, "verify_error", request, error=type(exc).__name__
            ) as conn:
                await self.limits.give_back_attempt(conn, interface, user_id)
            raise
        if result is not CheckResult.APPROVED:
            return await self._rejected(interface, user_id, now, target.purpose, permit, request)
        generation = await self._approved(before, target.phone, target.purpose, now, request)
        return VerifyOutcome(VerifyStatus.APPROVED, generation=generation, method="sms")

    async def _rejected(
        self,
        interface: str,
        user_id: str,
        now: float,
        purpose: Purpose,
        permit: Permit,
        request: RequestInfo | None,
    ) -> VerifyOutcome:
        attempts = self.attempts
        return await attempts.rejected(interface, user_id, now, permit, request, None, purpose=str(purpose))

    async def _approved(
        self, before: Enrollment, phone: str, purpose: Purpose, now: float, request: RequestInfo | None
    ) -> int:
        """One transaction records the success: the failures wiped, the time, the phone confirmed
        (a code to the pending phone) or its use noted, the event. The generation after it."""
        interface, user_id = before.interface, before.user_id
        if purpose is not Purpose.ENROLL:
            item = self.trail.event(now, interface, user_id, "verify_ok", request)
            generation = await enrollment_rows.record_sign_in(self.store, interface, user_id, now, item)
            await self.trail.announce(item)
            return generation
        changed = before.phone is not None and before.phone != phone
        kind = "phone_changed" if changed else "enrolled"
        async with self.trail.recording(
            now, interface, user_id, kind, request, to=phones.mask(phone)
        ) as conn:
            # The provider id registered for the number just confirmed becomes the active one.
            return await enrollment_rows.confirm_pending(
                conn, interface, user_id, phone, now, bump_generation=changed
            )
