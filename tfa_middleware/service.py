"""The use cases: enroll, send a code, verify a code, reset. The shop's own code calls them too::

    async with TwoFactor.from_yaml("config.yaml") as tfa:
        await tfa.set_phone("customer", str(user.id), form["country_code"], form["phone"])

    app = Starlette(routes=routes, lifespan=tfa.lifespan)  # or: closed when the app shuts down

``TwoFactor`` is the face; the work is done by its parts: the sign-in flow (signin.py), the
enrollment flow (enrolling.py), the audit trail (audit.py) and the provider registrations
(registrations.py). Nothing here knows about HTTP; the pages pass who asked (``RequestInfo``) for
the audit log, and find here every name they need (``Refusal``, ``Purpose``, the outcomes).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING

from .audit import AuditTrail, EventHook, RequestInfo
from .enrolling import Enrolling
from .errors import EnrollmentNotAllowed as EnrollmentNotAllowed  # its old home: still importable from here
from .errors import InvalidInput
from .factors.service import FEW_LEFT, Factor, Factors, NewApp, RememberedBrowser
from .i18n import N_
from .imports import import_callable
from .limits import Limits, Waits
from .limits import Refusal as Refusal
from .metrics import build_metrics
from .operability import Operations
from .outcomes import (
    EnrollmentStatus,
    Revocations,
    SendOutcome,
    SendStatus,
    VerifyOutcome,
    VerifyStatus,
    status_of,
)
from .proof import session_digest
from .providers.base import Provider
from .providers.base import Purpose as Purpose
from .providers.build import build_provider
from .registrations import Registrations
from .rollout import MAX_EXEMPTION_DAYS, Grace, Rollout, grace_eligible, parse_until
from .settings import Settings, load_settings
from .signin import SignIn
from .store import AuditEvent, Store
from .store import enrollments as enrollment_rows
from .store import revocations as revocation_rows
from .tables import MAX_USER_ID_LENGTH

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "FEW_LEFT",
    "MAX_EXEMPTION_DAYS",
    "AuditEvent",
    "EnrollmentNotAllowed",
    "EnrollmentStatus",
    "EventHook",
    "Factor",
    "Grace",
    "NewApp",
    "Purpose",
    "Refusal",
    "RememberedBrowser",
    "RequestInfo",
    "Revocations",
    "SendOutcome",
    "SendStatus",
    "TwoFactor",
    "VerifyOutcome",
    "VerifyStatus",
    "Waits",
    "grace_eligible",
    "parse_until",
]

log = logging.getLogger("tfa_middleware")


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
        metrics_registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self._provider = provider
        self.clock = clock
        self._closed = False
        self.close_timeout_seconds = 5.0  # see close()
        self.limits = Limits(settings.limits, store, settings.secret_keys[-1].reveal().encode())
        # Prometheus metrics (operations.metrics, or a registry given): metrics.py.
        self.metrics = build_metrics(settings.operations.metrics, metrics_registry)
        self.trail = AuditTrail(store, on_event, self.metrics)
        self.trail.provider_name = provider.name
        self.registrations = Registrations(provider, store, clock)
        self.enrolling = Enrolling(settings, store, self.limits, self.trail, clock)
        self.sign_in = SignIn(
            settings, store, provider, self.limits, self.trail, self.registrations, clock, self.metrics
        )
        # What operators read: the budget, the manage page's traffic, readiness, the metrics' text.
        self.operations = Operations(settings, store, self.limits, self.metrics, clock)
        # The app, the recovery codes and the remembered browsers: tfa.factors.…
        self.factors = Factors(settings, store, self.limits, self.trail, self._check, clock)
        # Issue 17: exemptions, the enrollment grace, report mode, step-up's single use: tfa.rollout.…
        self.rollout = Rollout(settings, store, self.trail, clock)

    @property
    def provider(self) -> Provider:
        return self._provider

    @provider.setter
    def provider(self, provider: Provider) -> None:
        """Another provider (a test's, say): the parts that call it get it too."""
        self._provider = self.registrations.provider = self.sign_in.provider = provider
        self.trail.provider_name = provider.name

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        on_event: EventHook | None = None,
        metrics_registry: CollectorRegistry | None = None,
    ) -> TwoFactor:
        """The service of ``settings``; ``metrics_registry``: the shop's own Prometheus registry
        (default: prometheus_client's ``REGISTRY``, when ``operations.metrics`` is on)."""
        if on_event is None and settings.on_event:
            on_event = import_callable(settings.on_event, "on_event")
        store = Store.from_settings(settings)
        provider = build_provider(settings, store, clock)
        return cls(
            settings, store, provider, clock=clock, on_event=on_event, metrics_registry=metrics_registry
        )

    @classmethod
    def from_yaml(
        cls,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        on_event: EventHook | None = None,
        metrics_registry: CollectorRegistry | None = None,
    ) -> TwoFactor:
        """The service described by a YAML settings file; :class:`ConfigError` lists every problem."""
        return cls.from_settings(
            load_settings(path), clock=clock, on_event=on_event, metrics_registry=metrics_registry
        )

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
    async def lifespan(self, _app: object) -> AsyncIterator[None]:
        """A Starlette/FastAPI lifespan that closes the service at shutdown:
        ``Starlette(lifespan=tfa.lifespan)``. A shop with a lifespan of its own closes it there
        instead: ``async with tfa: yield``. (Starlette hands it the app, which it does not need.)"""
        try:
            yield
        finally:
            await self.close()

    # ------------------------------------------------------------------ reading

    async def status(self, interface: str, user_id: str) -> EnrollmentStatus:
        self._check(interface, user_id)
        return await self.enrolling.status(interface, user_id)

    async def generation(self, interface: str, user_id: str) -> int:
        return await revocation_rows.generation(self.store, interface, user_id)

    async def revocations(self, interface: str, user_id: str) -> Revocations:
        """What the middleware needs to refuse revoked proofs: the generation and the logins
        signed out one by one, in one query."""
        generation, sessions = await revocation_rows.of_user(self.store, interface, user_id, self.clock())
        return Revocations(generation, sessions)

    async def signed_out_at(self, interface: str, user_id: str, session_id: str | None) -> float:
        """When the shop last signed this login out (0.0 for never, or no session id): what a proof
        issued now has seen, so that only a later sign-out voids it (``Proof.seen``)."""
        if not session_id:
            return 0.0
        digest = session_digest(session_id)
        return await revocation_rows.signed_out_at(self.store, interface, user_id, digest, self.clock())

    async def users(
        self, interface: str | Sequence[str] | None = None, *, search: str = "", limit: int = 200
    ) -> list[EnrollmentStatus]:
        """Enrollments for the management page and the CLI, newest first: of one interface, of
        several, or of all (None)."""
        for name in [interface] if isinstance(interface, str) else interface or ():
            self.settings.interface(name)
        rows = await enrollment_rows.listing(self.store, interface, search, limit)
        now = self.clock()
        return [status_of(row.interface, row.user_id, row, now) for row in rows]

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
        return await self.enrolling.set_phone(interface, user_id, country_code, number, confirmed, request)

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
        return await self.enrolling.assign_phone(interface, user_id, country_code, number, request)

    async def require_enrollment(
        self, interface: str, user_id: str, *, request: RequestInfo | None = None
    ) -> EnrollmentStatus:
        """At the next protected request the user goes through enrollment again."""
        self._check(interface, user_id)
        return await self.enrolling.require_enrollment(interface, user_id, request)

    async def reset(
        self, interface: str, user_id: str, *, request: RequestInfo | None = None
    ) -> EnrollmentStatus:
        """Forget the user's phone and revoke every proof cookie; they enroll again at next login.

        The row is kept (with its generation bumped), so old cookies can never match a fresh row.
        """
        self._check(interface, user_id)
        return await self.enrolling.reset(interface, user_id, request)

    async def unlock(self, interface: str, user_id: str, *, request: RequestInfo | None = None) -> bool:
        """Lift a verify lock (and the failure count) set by wrong codes. False for an unknown user."""
        self._check(interface, user_id)
        return await self.enrolling.unlock(interface, user_id, request)

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
        await self.enrolling.sign_out(interface, user_id, session_id, request)

    async def delete(self, interface: str, user_id: str, *, request: RequestInfo | None = None) -> bool:
        """Forget the user entirely (the shop deleted the account). Proofs already issued die with
        the row's generation: a row made again later starts above it, never at an old value."""
        self._check(interface, user_id)
        return await self.enrolling.delete(interface, user_id, request)

    async def record(
        self, interface: str, user_id: str, kind: str, *, request: RequestInfo | None = None, **detail: str
    ) -> None:
        """An audit event for something decided above the service (a page refusing an action)."""
        await self.trail.record(self.clock(), interface, user_id, kind, request, **detail)

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
        self._check(interface, user_id)
        return await self.enrolling.change_phone(interface, user_id, country_code, number, request)

    async def cancel_phone_change(
        self, interface: str, user_id: str, *, request: RequestInfo | None = None
    ) -> EnrollmentStatus:
        """Drop a pending number; an active one stays as it was."""
        self._check(interface, user_id)
        return await self.enrolling.cancel_phone_change(interface, user_id, request)

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
        self._check(interface, user_id)
        if not self.factors.allowed(interface, "sms"):
            raise EnrollmentNotAllowed(N_("Sign-in codes by text message are not used here."))
        return await self.enrolling.begin_enrollment(interface, user_id, country_code, number, request)

    async def keep_phone(
        self, interface: str, user_id: str, *, request: RequestInfo | None = None
    ) -> EnrollmentStatus:
        """Re-enrollment with the same number: it must be confirmed with a code like a new one."""
        self._check(interface, user_id)
        return await self.enrolling.keep_phone(interface, user_id, request)

    async def send_code(
        self,
        interface: str,
        user_id: str,
        *,
        channel: str = "sms",
        purpose: Purpose | None = None,
        request: RequestInfo | None = None,
        locale: str | None = None,
    ) -> SendOutcome:
        """Send a code where it is due now: the active phone to log in, or the pending one to
        confirm it. ``purpose=Purpose.ENROLL`` sends to a pending number although another is
        active (a phone change; the caller has checked the user's fresh second factor).
        ``locale`` (a catalogue's name: ``de``, ``pt_BR``) is the language of the message, as far
        as the provider has it; None: the provider's own choice."""
        self._check(interface, user_id)
        if not self.factors.allowed(interface, "sms"):
            return SendOutcome(SendStatus.NEEDS_ENROLLMENT)  # this interface sends no text message
        return await self.sign_in.send_code(interface, user_id, channel, purpose, request, locale)

    async def waits(self, interface: str, user_id: str) -> Waits:
        """What the user must wait for now: a lock, the delay after a failure, the resend cooldown."""
        self._check(interface, user_id)
        return await self.sign_in.waits(interface, user_id)

    def code_is_well_formed(self, code: str) -> bool:
        return self.sign_in.code_is_well_formed(code)

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
        factor: str = "sms",
    ) -> VerifyOutcome:
        """Check a code: texted (``factor="sms"``), from the app (``"totp"``) or a recovery code
        (``"recovery"``). Only ``APPROVED`` lets anyone in; a format error never reaches the
        provider. ``purpose`` as for :meth:`send_code` (texted codes only)."""
        self._check(interface, user_id)
        if factor != "sms":
            return await self.factors.verify(interface, user_id, factor, code, request=request)
        if not self.factors.allowed(interface, "sms"):
            return VerifyOutcome(VerifyStatus.NEEDS_ENROLLMENT)  # this interface takes no texted code
        return await self.sign_in.verify_code(interface, user_id, code, purpose, request)

    # ------------------------------------------------------------------ internals

    def _check(self, interface: str, user_id: str) -> None:
        self.settings.interface(interface)  # raises UnknownInterface
        if not isinstance(user_id, str) or not user_id or len(user_id) > MAX_USER_ID_LENGTH:
            raise InvalidInput(
                f"user id must be a non-empty string of at most {MAX_USER_ID_LENGTH} characters"
            )
