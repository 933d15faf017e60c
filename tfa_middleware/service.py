"""The use cases: enroll, send a code, verify a code, reset. The shop's own code calls them too::

    async with TwoFactor.from_yaml("config.yaml") as tfa:
        await tfa.set_phone("customer", str(user.id), form["country_code"], form["phone"])

    app = Starlette(routes=routes, lifespan=tfa.lifespan)  # or: closed when the app shuts down

Nothing here knows about HTTP; the pages pass who asked (``RequestInfo``) for the audit log.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal, TypeVar

from . import phone as phones
from .errors import EnrollmentNotAllowed as EnrollmentNotAllowed  # its old home: still importable from here
from .errors import InvalidInput, InvalidPhoneNumber, ProviderError, ProviderUserNotFound
from .identity import MAX_USER_ID_LENGTH, import_callable
from .limits import Limits, Waits
from .limits import Refusal as Refusal  # re-exported: the pages import use-case names from here
from .logging import EVENT_FIELD
from .proof import CLOCK_SKEW_SECONDS, session_digest
from .providers.base import CheckResult, Provider, Target
from .providers.base import Purpose as Purpose  # re-exported, as Refusal
from .providers.build import build_provider
from .settings import Settings, load_settings
from .store import AuditEvent, Enrollment, Store

log = logging.getLogger("tfa_middleware")
# One line per audit event, at INFO, its fields in record.tfa_event (tfa_middleware.logging): route
# this logger to a file or a collector to keep them.
audit_log = logging.getLogger("tfa_middleware.audit")

EventHook = Callable[[AuditEvent], Awaitable[None] | None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """Who asked, for the audit log."""

    ip: str | None = None
    user_agent: str | None = None
    actor: str | None = None  # an administrator acting on another user's account


@dataclass(frozen=True, slots=True)
class EnrollmentStatus:
    interface: str
    user_id: str
    state: Literal["none", "pending", "active"]
    masked_phone: str
    pending_masked_phone: str
    require_enrollment: bool
    generation: int
    last_verified_at: float | None
    locked_until: float = 0.0  # while the verify lock holds (limits.py), else 0
    pending_assigned: bool = False  # the pending number was set by a manager: binding

    @property
    def needs_enrollment(self) -> bool:
        """True when the user must (re-)enroll before a login code can be sent."""
        return self.state != "active" or self.require_enrollment


class SendStatus(enum.Enum):
    SENT = "sent"
    NEEDS_ENROLLMENT = "needs_enrollment"
    REFUSED = "refused"  # a send limit: see ``refusal`` and ``retry_after``


@dataclass(frozen=True, slots=True)
class SendOutcome:
    status: SendStatus
    masked_phone: str = ""
    channel: str = "sms"
    refusal: Refusal | None = None
    retry_after: int = 0  # seconds


class VerifyStatus(enum.Enum):
    APPROVED = "approved"
    REJECTED = "rejected"  # wrong, expired or used: one outcome, one message
    MALFORMED = "malformed"  # not a code at all (letters, wrong length): no provider call made
    NEEDS_ENROLLMENT = "needs_enrollment"
    WAIT = "wait"  # the growing delay after a failure: try again at ``retry_at``
    LOCKED = "locked"  # too many failures: no code is checked until ``retry_at``


@dataclass(frozen=True, slots=True)
class VerifyOutcome:
    status: VerifyStatus
    generation: int = 0
    method: str = "sms"
    retry_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Revocations:
    """What voids a user's proof: another generation, or a login (session digest) that the shop
    signed out at ``sessions[digest]``, for a proof of that login issued before then."""

    generation: int
    sessions: Mapping[str, float]


class TwoFactor:
    """The service API. Construct it at the edge with :meth:`from_yaml` or :meth:`from_settings`
    and pass it around. It holds a database engine and, for Authy or Twilio Verify, an HTTP
    client: close it once, with ``async with``, the app's lifespan, or :meth:`close`::

        async with TwoFactor.from_yaml("tfa.yaml") as tfa:
            await tfa.reset("admin", "42")

        tfa = TwoFactor.from_yaml("tfa.yaml")
        app = Starlette(routes=routes, lifespan=tfa.lifespan)
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        provider: Provider,
        *,
        clock: Callable[[], float] = time.time,
        on_event: EventHook | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.provider = provider
        self.clock = clock
        self.on_event = on_event
        self._fingerprint_checked = False
        self._closed = False
        self.close_timeout_seconds = 5.0  # see close()
        self.limits = Limits(settings.limits, store, settings.secret_keys[-1].reveal().encode())

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        on_event: EventHook | None = None,
    ) -> TwoFactor:
        if on_event is None and settings.on_event:
            on_event = import_callable(settings.on_event, "on_event")
        store = Store.from_settings(settings)
        provider = build_provider(settings, store, clock)
        return cls(settings, store, provider, clock=clock, on_event=on_event)

    @classmethod
    def from_yaml(
        cls,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        on_event: EventHook | None = None,
    ) -> TwoFactor:
        """The service described by a YAML settings file; :class:`ConfigError` lists every problem."""
        return cls.from_settings(load_settings(path), clock=clock, on_event=on_event)

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Close the provider's HTTP client and the database engine. A second call does nothing,
        so the shop's lifespan and an ``async with`` around the same service cannot collide.

        It gives up after ``close_timeout_seconds``: closing a pooled connection waits for the
        database's goodbye, and a database that stopped answering must not hold a server's
        shutdown forever (the process's exit drops the connections anyway).
        """
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self._close(), self.close_timeout_seconds)
        except TimeoutError:
            log.warning(
                "closing the two-factor service took over %s s (the database or the provider does not "
                "answer); its connections are left to the process's exit",
                self.close_timeout_seconds,
            )

    async def _close(self) -> None:
        # Both at once: one that fails or hangs must not keep the other open, and a timeout
        # cancels both.
        results = await asyncio.gather(self.provider.close(), self.store.close(), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def __aenter__(self) -> TwoFactor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """A Starlette/FastAPI lifespan that closes the service at shutdown:
        ``Starlette(lifespan=tfa.lifespan)``. A shop with a lifespan of its own closes it there
        instead: ``async with tfa: yield``."""
        try:
            yield
        finally:
            await self.close()

    # ------------------------------------------------------------------ reading

    async def status(self, interface: str, user_id: str) -> EnrollmentStatus:
        self._check(interface, user_id)
        return _status(interface, user_id, await self.store.enrollment(interface, user_id), self.clock())

    async def generation(self, interface: str, user_id: str) -> int:
        return await self.store.generation(interface, user_id)

    async def revocations(self, interface: str, user_id: str) -> Revocations:
        """What the middleware needs to refuse revoked proofs: the generation and the logins
        signed out one by one, in one query."""
        generation, sessions = await self.store.revocations(interface, user_id, self.clock())
        return Revocations(generation, sessions)

    # ------------------------------------------------------------------ shop and admin actions

    async def set_phone(
        self,
        interface: str,
        user_id: str,
        country_code: str | int,
        number: str,
        *,
        confirmed: bool = False,
        request: RequestInfo | None = None,
    ) -> EnrollmentStatus:
        """Give a user a phone. ``confirmed=False`` (sign-up forms): the user confirms it with a code
        at the next login before it is active. ``confirmed=True`` (the shop vouches for it): active now;
        a different number than before revokes every proof cookie already issued.
        """
        self._check(interface, user_id)
        e164 = self._allowed_number(country_code, number)
        if not confirmed:
            return await self._change(
                interface, user_id, "phone_pending", request, {"to": phones.mask(e164)},
                pending_phone=e164, pending_provider_user_id=None,
            )  # fmt: skip
        before = await self.store.enrollment(interface, user_id)
        return await self._change(
            interface, user_id, "phone_set", request, {"to": phones.mask(e164)},
            bump_generation=before is not None and before.phone is not None and before.phone != e164,
            phone=e164, pending_phone=None, provider_user_id=None, pending_provider_user_id=None,
            require_enrollment=False,
        )  # fmt: skip

    async def assign_phone(
        self,
        interface: str,
        user_id: str,
        country_code: str | int,
        number: str,
        *,
        request: RequestInfo | None = None,
    ) -> EnrollmentStatus:
        """A manager gives a user a phone (the management page). Nobody vouches for a number typed
        by someone else, so it is only pending: the user confirms it with a code at the next
        sign-in. The old number is forgotten, and every proof already issued is revoked, so that
        the next sign-in is that confirmation. The event records who set it, unconfirmed.
        """
        self._check(interface, user_id)
        e164 = self._allowed_number(country_code, number)
        return await self._change(
            interface, user_id, "phone_set", request, {"to": phones.mask(e164), "confirmed": "false"},
            bump_generation=True,
            phone=None, pending_phone=e164, provider_user_id=None, pending_provider_user_id=None,
            require_enrollment=False, pending_assigned=True,
        )  # fmt: skip

    async def require_enrollment(
        self, interface: str, user_id: str, *, request: RequestInfo | None = None
    ) -> EnrollmentStatus:
        """At the next protected request the user goes through enrollment again."""
        self._check(interface, user_id)
        return await self._change(
            interface, user_id, "enrollment_required", request, bump_generation=True, require_enrollment=True
        )

    async def reset(
        self, interface: str, user_id: str, *, request: RequestInfo | None = None
    ) -> EnrollmentStatus:
        """Forget the user's phone and revoke every proof cookie; they enroll again at next login.

        The row is kept (with its generation bumped), so old cookies can never match a fresh row.
        """
        self._check(interface, user_id)
        return await self._change(
            interface, user_id, "reset", request, bump_generation=True,
            phone=None, pending_phone=None, provider_user_id=None, pending_provider_user_id=None,
            require_enrollment=False,
        )  # fmt: skip

    async def unlock(self, interface: str, user_id: str, *, request: RequestInfo | None = None) -> bool:
        """Lift a verify lock (and the failure count) set by wrong codes. False for an unknown user."""
        self._check(interface, user_id)
        if not await self.limits.unlock(interface, user_id):
            return False
        await self._event(self.clock(), interface, user_id, "unlocked", request)
        return True

    async def sign_out(
        self,
        interface: str,
        user_id: str,
        session_id: str | None = None,
        *,
        request: RequestInfo | None = None,
    ) -> None:
        """End the second factor of one login, or of every login of the user. The shop calls it
        from its own logout::

            await tfa.sign_out("admin", str(user.id), session_id=request.session["sid"])

        With ``session_id`` (the value the identity resolver reads as the session id), only the
        proofs bound to that login stop working: a copy of that login's session cookie and proof
        is refused, the user's other browsers stay signed in. It needs proofs bound to the
        session (``session_id_key``, or a callable resolver returning a ``session_id``); a proof
        without a session digest is not touched by it.

        Without ``session_id``, every proof already issued to the user stops working, on every
        device (the generation is bumped).

        Either way every worker refuses the proofs within ``revocation_check_seconds``.
        """
        self._check(interface, user_id)
        if not session_id:
            await self._change(interface, user_id, "signed_out", request, bump_generation=True)
            return
        now = self.clock()
        digest = session_digest(session_id)
        # A proof of this login lives at most the interface's lifetime from its own timestamp
        # (a host's clock a little ahead included); past that the row has nothing left to refuse.
        lifetime = self.settings.interface(interface).proof_max_age_seconds + CLOCK_SKEW_SECONDS
        # Only a prefix of the digest goes to the log: enough to tell logins apart, not to find one.
        item = self._audit_event(now, interface, user_id, "signed_out", request, session=digest[:8])
        await self.store.revoke_session(interface, user_id, digest, now, now + lifetime, event=item)
        await self._announce(item)

    # ------------------------------------------------------------------ the user's own steps

    async def change_phone(
        self,
        interface: str,
        user_id: str,
        country_code: str | int,
        number: str,
        *,
        request: RequestInfo | None = None,
    ) -> EnrollmentStatus:
        """An enrolled user starts changing their number. The caller has checked a fresh second
        factor; the old number stays active until a code sent to the new one is verified."""
        current = await self.status(interface, user_id)
        if current.state != "active":
            raise EnrollmentNotAllowed("There is no phone to change yet.")
        return await self.set_phone(interface, user_id, country_code, number, request=request)

    async def cancel_phone_change(
        self, interface: str, user_id: str, *, request: RequestInfo | None = None
    ) -> EnrollmentStatus:
        """Drop a pending number; an active one stays as it was."""
        self._check(interface, user_id)
        return await self._change(
            interface,
            user_id,
            "phone_change_cancelled",
            request,
            pending_phone=None,
            pending_provider_user_id=None,
        )

    async def delete(self, interface: str, user_id: str, *, request: RequestInfo | None = None) -> bool:
        """Forget the user entirely (the shop deleted the account). Proofs already issued die with
        the row's generation: a row made again later starts above it, never at an old value."""
        self._check(interface, user_id)
        now = self.clock()
        deleted = await self.store.delete_enrollment(interface, user_id, now)
        if deleted:
            await self._event(now, interface, user_id, "deleted", request)
        return deleted

    async def users(
        self, interface: str | Sequence[str] | None = None, *, search: str = "", limit: int = 200
    ) -> list[EnrollmentStatus]:
        """Enrollments for the management page and the CLI, newest first: of one interface, of
        several, or of all (None)."""
        for name in [interface] if isinstance(interface, str) else interface or ():
            self.settings.interface(name)
        rows = await self.store.enrollments_list(interface, search, limit)
        now = self.clock()
        return [_status(row.interface, row.user_id, row, now) for row in rows]

    async def begin_enrollment(
        self,
        interface: str,
        user_id: str,
        country_code: str | int,
        number: str,
        *,
        request: RequestInfo | None = None,
    ) -> EnrollmentStatus:
        """The user gives a number on the enroll page; it stays pending until a code confirms it.

        A number a manager assigned is binding: someone with only the password must not swap it
        for their own.
        """
        current = await self.status(interface, user_id)
        if not current.needs_enrollment:
            raise EnrollmentNotAllowed("Your phone is already set up.")
        if current.pending_assigned:
            raise EnrollmentNotAllowed(
                "Your administrator set this number. Confirm it with the code sent to it, "
                "or ask them to change it."
            )
        return await self.set_phone(interface, user_id, country_code, number, request=request)

    async def keep_phone(
        self, interface: str, user_id: str, *, request: RequestInfo | None = None
    ) -> EnrollmentStatus:
        """Re-enrollment with the same number: it must be confirmed with a code like a new one."""
        self._check(interface, user_id)
        row = await self.store.enrollment(interface, user_id)
        if row is None or row.phone is None or not row.require_enrollment:
            raise EnrollmentNotAllowed("There is no phone to keep.")
        return await self._change(
            interface, user_id, "phone_pending", request, {"to": phones.mask(row.phone)},
            pending_phone=row.phone, pending_provider_user_id=row.provider_user_id,
        )  # fmt: skip

    async def send_code(
        self,
        interface: str,
        user_id: str,
        *,
        channel: str = "sms",
        purpose: Purpose | None = None,
        request: RequestInfo | None = None,
    ) -> SendOutcome:
        """Send a code where it is due now: the active phone to log in, or the pending one to
        confirm it. ``purpose=Purpose.ENROLL`` sends to a pending number although another is
        active (a phone change; the caller has checked the user's fresh second factor)."""
        self._check(interface, user_id)
        if channel != "sms" and not (channel == "call" and self.provider.supports_call):
            raise InvalidInput(f"channel {channel!r} is not available")
        # Before the enrollment is read: a key change clears the provider ids this call would use.
        await self._check_provider_fingerprint()
        target = _target(interface, user_id, await self.store.enrollment(interface, user_id), purpose)
        if target is None:
            return SendOutcome(SendStatus.NEEDS_ENROLLMENT)
        masked = phones.mask(target.phone)
        now = self.clock()
        permit = await self.limits.reserve_send(
            interface, user_id, target.phone, request.ip if request else None, now
        )
        if not permit.allowed:
            assert permit.refusal is not None
            await self._event(
                now, interface, user_id, "send_refused", request, reason=str(permit.refusal), to=masked
            )
            return SendOutcome(SendStatus.REFUSED, masked, channel, permit.refusal, permit.retry_after(now))
        try:
            await self._with_provider_user(target, lambda t: self.provider.send(t, channel))
        except ProviderError as exc:
            assert permit.send_id is not None
            await self.limits.give_back_send(permit.send_id)
            await self._event(now, interface, user_id, "send_failed", request, error=type(exc).__name__)
            raise
        await self._event(
            self.clock(),
            interface,
            user_id,
            "code_sent",
            request,
            channel=channel,
            to=masked,
            purpose=str(target.purpose),
        )
        return SendOutcome(SendStatus.SENT, masked, channel)

    async def waits(self, interface: str, user_id: str) -> Waits:
        """What the user must wait for now: a lock, the delay after a failure, the resend cooldown."""
        self._check(interface, user_id)
        return await self.limits.waits(interface, user_id, self.clock())

    def code_is_well_formed(self, code: str) -> bool:
        low, high = self.code_lengths
        return code.isascii() and code.isdigit() and low <= len(code) <= high

    @property
    def code_lengths(self) -> tuple[int, int]:
        return self.provider.code_lengths

    async def verify_code(
        self,
        interface: str,
        user_id: str,
        code: str,
        *,
        purpose: Purpose | None = None,
        request: RequestInfo | None = None,
    ) -> VerifyOutcome:
        """Check a code. Only ``APPROVED`` lets anyone in; a format error never reaches the provider.
        ``purpose`` as for :meth:`send_code`."""
        self._check(interface, user_id)
        code = code.strip().replace(" ", "")
        if not self.code_is_well_formed(code):
            return VerifyOutcome(VerifyStatus.MALFORMED)
        await self._check_provider_fingerprint()  # before the read, as in send_code
        before = await self.store.enrollment(interface, user_id)
        target = _target(interface, user_id, before, purpose)
        if target is None or before is None:
            return VerifyOutcome(VerifyStatus.NEEDS_ENROLLMENT)
        now = self.clock()
        permit = await self.limits.reserve_attempt(interface, user_id, now)
        if not permit.allowed:
            status = VerifyStatus.LOCKED if permit.refusal is Refusal.LOCKED else VerifyStatus.WAIT
            return VerifyOutcome(status, retry_at=permit.retry_at)
        try:
            result = await self._with_provider_user(target, lambda t: self.provider.check(t, code))
        except ProviderError as exc:
            await self.limits.give_back_attempt(interface, user_id)
            await self._event(now, interface, user_id, "verify_error", request, error=type(exc).__name__)
            raise
        if result is not CheckResult.APPROVED:
            await self._event(
                now,
                interface,
                user_id,
                "verify_failed",
                request,
                purpose=str(target.purpose),
                failures=str(permit.failures),
            )
            if self.limits.locks_now(permit):
                until = now + self.settings.limits.verify_lock_seconds
                await self._event(now, interface, user_id, "locked", request, until=str(int(until)))
                log.warning("%s user %s locked after %d failed codes", interface, user_id, permit.failures)
                return VerifyOutcome(VerifyStatus.LOCKED, retry_at=until)
            return VerifyOutcome(VerifyStatus.REJECTED)
        # One transaction records the success: the failure count wiped, the time, the event.
        success = {"last_verified_at": now, **self.limits.success_values()}
        if target.purpose is Purpose.ENROLL:
            changed = before.phone is not None and before.phone != target.phone
            confirmed = await self.store.enrollment(interface, user_id)
            kind = "phone_changed" if changed else "enrolled"
            item = self._audit_event(now, interface, user_id, kind, request, to=phones.mask(target.phone))
            row = await self.store.update_enrollment(
                interface,
                user_id,
                now,
                bump_generation=changed,
                create=False,
                event=item,
                phone=target.phone,
                pending_phone=None,
                require_enrollment=False,
                # The provider id registered for the number just confirmed becomes the active one.
                provider_user_id=confirmed.pending_provider_user_id if confirmed else None,
                pending_provider_user_id=None,
                **success,
            )
        else:
            item = self._audit_event(now, interface, user_id, "verify_ok", request)
            row = await self.store.update_enrollment(
                interface, user_id, now, create=False, event=item, **success
            )
        await self._announce(item)
        return VerifyOutcome(VerifyStatus.APPROVED, generation=row.generation, method="sms")

    # ------------------------------------------------------------------ provider user ids

    async def _with_provider_user(self, target: Target, action: Callable[[Target], Awaitable[T]]) -> T:
        """Run a provider call with a registered user, registering again once if the provider
        has forgotten the id we stored (Authy answers 60026 for a deleted user)."""
        target = await self._registered(target)
        try:
            return await action(target)
        except ProviderUserNotFound:
            log.warning("provider forgot %s user %s; registering again", target.interface, target.user_id)
            target = await self._registered(replace(target, provider_user_id=None))
            return await action(target)

    async def _registered(self, target: Target) -> Target:
        if not self.provider.needs_registration or target.provider_user_id:
            return target
        provider_user_id = await self.provider.register(target)
        column = "pending_provider_user_id" if target.purpose is Purpose.ENROLL else "provider_user_id"
        values: dict[str, Any] = {column: provider_user_id}
        await self.store.update_enrollment(target.interface, target.user_id, self.clock(), **values)
        return replace(target, provider_user_id=provider_user_id)

    async def _check_provider_fingerprint(self) -> None:
        """Once per process: a new API key (another account) voids every stored provider id."""
        if self._fingerprint_checked or self.provider.fingerprint is None:
            return
        stored = await self.store.get_meta("provider_fingerprint")
        if stored != self.provider.fingerprint:
            if stored is not None:
                cleared = await self.store.clear_provider_user_ids(self.clock())
                log.warning("the provider credentials changed: %d stored provider user ids cleared", cleared)
            await self.store.set_meta("provider_fingerprint", self.provider.fingerprint)
        self._fingerprint_checked = True

    async def record(
        self, interface: str, user_id: str, kind: str, *, request: RequestInfo | None = None, **detail: str
    ) -> None:
        """An audit event for something decided above the service (a page refusing an action)."""
        await self._event(self.clock(), interface, user_id, kind, request, **detail)

    # ------------------------------------------------------------------ internals

    def _allowed_number(self, country_code: str | int, number: str) -> str:
        """The number in E.164, if it is valid and its country is allowed; else InvalidPhoneNumber."""
        e164 = phones.normalise(country_code, number)
        if not self.limits.country_allowed(e164):
            # The region, not just "+1": the US may be allowed where Jamaica (+1 876) is not.
            raise InvalidPhoneNumber(
                f"We can't send text messages to numbers from {self.limits.region_of(e164)}. "
                "Use a number from another country, or ask the shop to allow this one."
            )
        return e164

    def _check(self, interface: str, user_id: str) -> None:
        self.settings.interface(interface)  # raises UnknownInterface
        if not isinstance(user_id, str) or not user_id or len(user_id) > MAX_USER_ID_LENGTH:
            raise InvalidInput(
                f"user id must be a non-empty string of at most {MAX_USER_ID_LENGTH} characters"
            )

    async def _change(
        self,
        interface: str,
        user_id: str,
        kind: str,
        request: RequestInfo | None,
        detail: Mapping[str, str] | None = None,
        *,
        bump_generation: bool = False,
        **values: Any,
    ) -> EnrollmentStatus:
        """Change a user's enrollment and record the event in the same transaction."""
        now = self.clock()
        item = self._audit_event(now, interface, user_id, kind, request, **(detail or {}))
        row = await self.store.update_enrollment(
            interface, user_id, now, bump_generation=bump_generation, event=item, **values
        )
        await self._announce(item)
        return _status(interface, user_id, row, now)

    async def _event(
        self,
        now: float,
        interface: str,
        user_id: str,
        kind: str,
        request: RequestInfo | None,
        **detail: str,
    ) -> None:
        item = self._audit_event(now, interface, user_id, kind, request, **detail)
        await self.store.add_event(item)
        await self._announce(item)

    @staticmethod
    def _audit_event(
        now: float, interface: str, user_id: str, kind: str, request: RequestInfo | None, **detail: str
    ) -> AuditEvent:
        if request is not None and request.actor is not None:
            detail = {**detail, "by": request.actor}
        return AuditEvent(
            at=now,
            interface=interface,
            user_id=user_id,
            kind=kind,
            ip=request.ip if request else None,
            user_agent=request.user_agent if request else None,
            detail=detail,
        )

    async def _announce(self, item: AuditEvent) -> None:
        """An event already stored goes to the audit log and the shop's hook."""
        if audit_log.isEnabledFor(logging.INFO):
            # The fields travel as data, not as a JSON message, so a JSON formatter (ours in
            # tfa_middleware.logging, or the collector's) encodes them once.
            fields = {
                "at": item.at,
                "interface": item.interface,
                "user_id": item.user_id,
                "event": item.kind,
                "ip": item.ip,
                "user_agent": item.user_agent,
                **dict(item.detail or {}),
            }
            audit_log.info("%s %s/%s", item.kind, item.interface, item.user_id, extra={EVENT_FIELD: fields})
        if self.on_event is not None:
            try:
                result = self.on_event(item)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                # The shop's hook must not decide whether a user gets in; its failure is logged.
                log.exception("on_event hook failed for %s event", item.kind)


def _status(interface: str, user_id: str, row: Enrollment | None, now: float = 0.0) -> EnrollmentStatus:
    if row is None:
        return EnrollmentStatus(interface, user_id, "none", "", "", False, 0, None)
    state: Literal["none", "pending", "active"]
    state = "active" if row.phone else ("pending" if row.pending_phone else "none")
    return EnrollmentStatus(
        interface=interface,
        user_id=user_id,
        state=state,
        masked_phone=phones.mask(row.phone),
        pending_masked_phone=phones.mask(row.pending_phone),
        require_enrollment=row.require_enrollment,
        generation=row.generation,
        last_verified_at=row.last_verified_at,
        locked_until=row.locked_until if row.locked_until > now else 0.0,
        pending_assigned=row.pending_assigned and bool(row.pending_phone),
    )


def _target(
    interface: str, user_id: str, row: Enrollment | None, purpose: Purpose | None = None
) -> Target | None:
    """Where a code goes now: the active phone to log in, or the pending one to confirm it."""
    if row is None:
        return None
    if purpose is Purpose.ENROLL:
        if not row.pending_phone:
            return None
        return Target(interface, user_id, row.pending_phone, Purpose.ENROLL, row.pending_provider_user_id)
    if row.phone and not row.require_enrollment:
        return Target(interface, user_id, row.phone, Purpose.LOGIN, row.provider_user_id)
    if row.pending_phone:
        return Target(interface, user_id, row.pending_phone, Purpose.ENROLL, row.pending_provider_user_id)
    return None
