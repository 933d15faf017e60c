"""The enrollment flow: a user's phones set, kept, changed, confirmed or dropped, by the user, a
manager or the shop's own code; a reset; sign-outs. Each change and its audit event commit in
one transaction; the proofs a change must void die with a generation bump."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from . import phone as phones
from .audit import AuditTrail, RequestInfo
from .errors import EnrollmentNotAllowed, InvalidPhoneNumber
from .i18n import N_
from .limits import Limits
from .outcomes import EnrollmentStatus, status_of
from .proof import CLOCK_SKEW_SECONDS, session_digest
from .settings import Settings
from .store import Store
from .store import enrollments as enrollment_rows
from .store import factors as factor_rows
from .store import revocations as revocation_rows
from .store.enrollments import KEEP, NewPhone, PhoneChange


class Enrolling:
    def __init__(
        self, settings: Settings, store: Store, limits: Limits, trail: AuditTrail, clock: Callable[[], float]
    ) -> None:
        self.settings = settings
        self.store = store
        self.limits = limits
        self.trail = trail
        self.clock = clock

    async def status(self, interface: str, user_id: str) -> EnrollmentStatus:
        row = await enrollment_rows.get(self.store, interface, user_id)
        status = status_of(interface, user_id, row, self.clock())
        if row is None:
            return replace(status, usable=())
        kinds = await factor_rows.kinds(self.store, interface, user_id)
        allowed = self.settings.interface(interface).factors
        # A passkey first (it cannot be phished), then the app (no text message, works offline).
        usable = tuple(k for k in ("webauthn", "totp", "sms") if k in kinds and k in allowed)
        return replace(status, factors=kinds, usable=usable)

    async def set_phone(
        self,
        interface: str,
        user_id: str,
        country_code: str | int,
        number: str,
        confirmed: bool,
        request: RequestInfo | None,
    ) -> EnrollmentStatus:
        e164 = self.allowed_number(country_code, number)
        masked = phones.mask(e164)
        if not confirmed:
            return await self._change(
                interface, user_id, "phone_pending", request, {"to": masked}, pending=NewPhone(e164)
            )
        before = await enrollment_rows.get(self.store, interface, user_id)
        return await self._change(
            interface, user_id, "phone_set", request, {"to": masked},
            bump_generation=before is not None and before.phone is not None and before.phone != e164,
            active=NewPhone(e164), pending=None, require_enrollment=False,
        )  # fmt: skip

    async def assign_phone(
        self, interface: str, user_id: str, country_code: str | int, number: str, request: RequestInfo | None
    ) -> EnrollmentStatus:
        e164 = self.allowed_number(country_code, number)
        return await self._change(
            interface, user_id, "phone_set", request, {"to": phones.mask(e164), "confirmed": "false"},
            bump_generation=True,
            active=None, pending=NewPhone(e164, assigned_by_manager=True), require_enrollment=False,
        )  # fmt: skip

    async def require_enrollment(
        self, interface: str, user_id: str, request: RequestInfo | None
    ) -> EnrollmentStatus:
        return await self._change(
            interface, user_id, "enrollment_required", request, bump_generation=True, require_enrollment=True
        )

    async def reset(self, interface: str, user_id: str, request: RequestInfo | None) -> EnrollmentStatus:
        # Every factor goes (apps and recovery codes too: a reset is for a user who lost them),
        # and the generation bump forgets the remembered browsers.
        return await self._change(
            interface, user_id, "reset", request, bump_generation=True,
            active=None, pending=None, require_enrollment=False, forget_factors=True,
        )  # fmt: skip

    async def unlock(self, interface: str, user_id: str, request: RequestInfo | None) -> bool:
        if not await self.limits.unlock(interface, user_id):
            return False
        await self.trail.record(self.clock(), interface, user_id, "unlocked", request)
        return True

    async def sign_out(
        self, interface: str, user_id: str, session_id: str | None, request: RequestInfo | None
    ) -> None:
        if not session_id:
            await self._change(interface, user_id, "signed_out", request, bump_generation=True)
            return
        now = self.clock()
        digest = session_digest(session_id)
        # A proof of this login lives at most the interface's lifetime from its own timestamp
        # (a host's clock a little ahead included); past that the row has nothing left to refuse.
        lifetime = self.settings.interface(interface).proof_max_age_seconds + CLOCK_SKEW_SECONDS
        # Only a prefix of the digest goes to the log: enough to tell logins apart, not to find one.
        async with self.trail.recording(
            now, interface, user_id, "signed_out", request, session=digest[:8]
        ) as conn:
            await revocation_rows.revoke_session(conn, interface, user_id, digest, now, now + lifetime)

    async def change_phone(
        self, interface: str, user_id: str, country_code: str | int, number: str, request: RequestInfo | None
    ) -> EnrollmentStatus:
        if (await self.status(interface, user_id)).state != "active":
            raise EnrollmentNotAllowed(N_("There is no phone to change yet."))
        return await self.set_phone(interface, user_id, country_code, number, False, request)

    async def cancel_phone_change(
        self, interface: str, user_id: str, request: RequestInfo | None
    ) -> EnrollmentStatus:
        return await self._change(interface, user_id, "phone_change_cancelled", request, pending=None)

    async def delete(self, interface: str, user_id: str, request: RequestInfo | None) -> bool:
        deleted = await enrollment_rows.delete_user(self.store, interface, user_id)
        if deleted:
            await self.trail.record(self.clock(), interface, user_id, "deleted", request)
        return deleted

    async def begin_enrollment(
        self, interface: str, user_id: str, country_code: str | int, number: str, request: RequestInfo | None
    ) -> EnrollmentStatus:
        current = await self.status(interface, user_id)
        if not current.needs_enrollment:
            raise EnrollmentNotAllowed(N_("Your phone is already set up."))
        if current.pending_assigned:
            raise EnrollmentNotAllowed(
                N_(
                    "Your administrator set this number. Confirm it with the code sent to it, "
                    "or ask them to change it."
                )
            )
        return await self.set_phone(interface, user_id, country_code, number, False, request)

    async def keep_phone(self, interface: str, user_id: str, request: RequestInfo | None) -> EnrollmentStatus:
        row = await enrollment_rows.get(self.store, interface, user_id)
        if row is None or row.phone is None or not row.require_enrollment:
            raise EnrollmentNotAllowed(N_("There is no phone to keep."))
        return await self._change(
            interface, user_id, "phone_pending", request, {"to": phones.mask(row.phone)},
            pending=NewPhone(row.phone, row.provider_user_id),
        )  # fmt: skip

    def allowed_number(self, country_code: str | int, number: str) -> str:
        """The number in E.164, if it is valid and its country is allowed; else InvalidPhoneNumber."""
        e164 = phones.normalise(country_code, number)
        if not self.limits.country_allowed(e164):
            # The region, not just "+1": the US may be allowed where Jamaica (+1 876) is not.
            raise InvalidPhoneNumber(
                N_(
                    "We can't send text messages to numbers from %(region)s. "
                    "Use a number from another country, or ask the shop to allow this one."
                ),
                region=self.limits.region_of(e164),
            )
        return e164

    async def _change(
        self,
        interface: str,
        user_id: str,
        kind: str,
        request: RequestInfo | None,
        detail: dict[str, str] | None = None,
        *,
        bump_generation: bool = False,
        require_enrollment: bool | None = None,
        active: PhoneChange = KEEP,
        pending: PhoneChange = KEEP,
        forget_factors: bool = False,
    ) -> EnrollmentStatus:
        """Change a user's enrollment; its event commits with it."""
        now = self.clock()
        async with self.trail.recording(now, interface, user_id, kind, request, **(detail or {})) as conn:
            row = await enrollment_rows.change(
                conn,
                interface,
                user_id,
                now,
                bump_generation=bump_generation,
                require_enrollment=require_enrollment,
                active=active,
                pending=pending,
            )
            if forget_factors:
                await factor_rows.remove_all(conn, interface, user_id, except_kind=enrollment_rows.SMS)
        return status_of(interface, user_id, row, now)
