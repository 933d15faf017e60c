"""``TwoFactor.factors``: the user's factors beside the phone, for the pages, the CLI and the
shop's own code::

    app = await tfa.factors.begin_app("admin", "42")            # show app.qr_svg and app.secret
    outcome = await tfa.factors.verify("admin", "42", "totp", code)
    codes = await tfa.factors.issue_recovery_codes("admin", "42")  # shown once, never stored
    options = await tfa.factors.passkey_creation_options("admin", "42")  # to navigator.credentials.create
    outcome = await tfa.factors.add_passkey("admin", "42", credential_json, label="YubiKey")

Each method checks the interface and the user id (as ``TwoFactor`` does) and that the interface
allows the factor; every change is an audit event (stored with it, then logged and announced to
``on_event``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..audit import AuditTrail, RequestInfo
from ..errors import InvalidInput
from ..i18n import N_
from ..limits import Limits
from ..outcomes import VerifyOutcome
from ..settings import Settings
from ..store import Store
from ..store import factors as factor_rows
from ..store.browsers import RememberedBrowser
from ..store.factors import RECOVERY, TOTP, Factor
from .attempts import Attempts, Parts
from .browsers import Browsers
from .recovery import FEW_LEFT, RecoveryCodes
from .totp import Authenticators, NewApp

if TYPE_CHECKING:
    from .passkeys import Passkeys

MAX_LABEL_LENGTH = 64
WEBAUTHN = "webauthn"
WAYS_IN = (WEBAUTHN, TOTP, "sms")  # a recovery code is a way back, not in

__all__ = ["FEW_LEFT", "Factor", "Factors", "NewApp", "RememberedBrowser"]


class Factors:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        limits: Limits,
        trail: AuditTrail,
        check: Callable[[str, str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.trail = trail
        self.clock = clock
        self._check = check
        self.attempts = Attempts(settings, limits, trail)
        parts = Parts(settings, store, self.attempts, trail, clock)
        self.apps = Authenticators(parts)
        self.recovery = RecoveryCodes(parts)
        self.browsers = Browsers(settings, store, trail, clock)
        self._parts = parts
        self._passkeys: Passkeys | None = None

    @property
    def passkeys(self) -> Passkeys:
        """Passkeys, made at first use: py_webauthn (the passkeys extra) is imported only then,
        and the settings refuse ``webauthn`` in ``factors`` without it."""
        if self._passkeys is None:
            from .passkeys import Passkeys

            self._passkeys = Passkeys(self._parts)
        return self._passkeys

    def allowed(self, interface: str, kind: str) -> bool:
        return kind in self.settings.interface(interface).factors

    def _allow(self, interface: str, user_id: str, kind: str) -> None:
        self._check(interface, user_id)
        if not self.allowed(interface, kind):
            raise InvalidInput(f"{kind} is not one of the factors of interface {interface!r}")

    # ------------------------------------------------------------------ reading

    async def of_user(self, interface: str, user_id: str) -> list[Factor]:
        """The user's factors, oldest first: phones, apps, and the recovery codes (one row each)."""
        self._check(interface, user_id)
        return await factor_rows.of_user(self.store, interface, user_id)

    async def recovery_left(self, interface: str, user_id: str) -> int:
        self._check(interface, user_id)
        return await self.recovery.left(interface, user_id)

    # ------------------------------------------------------------------ signing in

    async def verify(
        self, interface: str, user_id: str, kind: str, code: str, *, request: RequestInfo | None = None
    ) -> VerifyOutcome:
        """A code of the app (``totp``), a recovery code, or a passkey's answer (``webauthn``: the
        JSON of ``navigator.credentials.get``'s credential); the texted code is ``verify_code``'s."""
        self._allow(interface, user_id, kind)
        if kind == TOTP:
            return await self.apps.verify(interface, user_id, code, request)
        if kind == RECOVERY:
            return await self.recovery.verify(interface, user_id, code, request)
        if kind == WEBAUTHN:
            return await self.passkeys.verify(interface, user_id, code, request)
        raise InvalidInput(f"no code of kind {kind!r} is checked here")

    # ------------------------------------------------------------------ changes

    async def begin_app(self, interface: str, user_id: str, *, request: RequestInfo | None = None) -> NewApp:
        """A new authenticator app, unconfirmed until :meth:`confirm_app` sees its first code."""
        self._allow(interface, user_id, TOTP)
        return await self.apps.begin(interface, user_id, request)

    async def pending_app(self, interface: str, user_id: str) -> NewApp | None:
        self._allow(interface, user_id, TOTP)
        return await self.apps.pending(interface, user_id)

    async def confirm_app(
        self, interface: str, user_id: str, code: str, *, request: RequestInfo | None = None
    ) -> VerifyOutcome:
        self._allow(interface, user_id, TOTP)
        return await self.apps.verify(interface, user_id, code, request, confirm=True)

    async def issue_recovery_codes(
        self, interface: str, user_id: str, *, request: RequestInfo | None = None
    ) -> list[str]:
        """A new set of recovery codes, replacing the old; show them once: only hashes are kept."""
        self._allow(interface, user_id, RECOVERY)
        return await self.recovery.issue(interface, user_id, request)

    async def passkey_creation_options(self, interface: str, user_id: str) -> str:
        """The options for ``navigator.credentials.create`` (JSON), with a new challenge."""
        self._allow(interface, user_id, WEBAUTHN)
        options = await self.passkeys.creation_options(interface, user_id)
        if options is None:
            raise InvalidInput(N_("You have as many passkeys as you can: remove one first."))
        return options

    async def add_passkey(
        self,
        interface: str,
        user_id: str,
        credential: str,
        *,
        label: str = "",
        request: RequestInfo | None = None,
    ) -> VerifyOutcome:
        """A passkey from ``navigator.credentials.create``'s credential (JSON); APPROVED when added."""
        self._allow(interface, user_id, WEBAUTHN)
        return await self.passkeys.add(interface, user_id, credential, _label(label), request)

    async def passkey_request_options(self, interface: str, user_id: str) -> str | None:
        """The options for ``navigator.credentials.get`` (JSON), with a new challenge; None for a
        user without a passkey."""
        self._allow(interface, user_id, WEBAUTHN)
        return await self.passkeys.request_options(interface, user_id)

    async def rename(
        self, interface: str, user_id: str, factor_id: int, label: str, *, request: RequestInfo | None = None
    ) -> bool:
        self._check(interface, user_id)
        label = _label(label)
        now = self.clock()
        async with self.trail.recording(
            now, interface, user_id, "factor_renamed", request, factor_id=str(factor_id)
        ) as conn:
            renamed = await factor_rows.rename(conn, interface, user_id, factor_id, label, now)
        return renamed

    async def remove(
        self, interface: str, user_id: str, factor_id: int, *, request: RequestInfo | None = None
    ) -> Factor | None:
        """Remove a passkey, an app, a phone or the recovery codes. The last way in (a passkey, an
        app or a phone) stays unless a manager removes it (``request.actor``): a user must never
        lock themselves out by mistake, nor leave the account open to a first-time enrollment."""
        self._check(interface, user_id)
        factors = await factor_rows.of_user(self.store, interface, user_id)
        target = next((f for f in factors if f.id == factor_id), None)
        if target is None:
            return None
        ways_in = [f for f in factors if f.confirmed and f.kind in WAYS_IN]
        if target.confirmed and ways_in == [target] and (request is None or request.actor is None):
            raise InvalidInput(N_("This is your only way to sign in: add another before removing it."))
        now = self.clock()
        async with self.trail.recording(
            now, interface, user_id, "factor_removed", request, factor=target.kind, factor_id=str(factor_id)
        ) as conn:
            return await factor_rows.remove(conn, interface, user_id, factor_id, now)

    # ------------------------------------------------------------------ remembered browsers

    async def remember_browser(
        self, interface: str, user_id: str, generation: int, *, request: RequestInfo | None = None
    ) -> tuple[str, str]:
        """After a right code, with the user's consent: (the cookie's token, the proof's digest)."""
        self._check(interface, user_id)
        if not self.settings.interface(interface).remember_days:
            raise InvalidInput(f"interface {interface!r} remembers no browser (remember_days: 0)")
        return await self.browsers.remember(interface, user_id, generation, request)

    async def recall_browser(self, interface: str, user_id: str, token: str) -> tuple[int, str] | None:
        """(generation, digest) for a browser remembered for this user and interface, else None."""
        self._check(interface, user_id)
        if not self.settings.interface(interface).remember_days:
            return None  # switched off since: nobody skips the challenge
        return await self.browsers.recall(interface, user_id, token)

    async def remembered_browsers(self, interface: str, user_id: str) -> list[RememberedBrowser]:
        self._check(interface, user_id)
        return await self.browsers.of_user(interface, user_id)

    async def forget_browser(
        self, interface: str, user_id: str, browser_id: int | None, *, request: RequestInfo | None = None
    ) -> int:
        """Forget one remembered browser (None: all of them); the proofs it got stop working on
        every worker within revocation_check_seconds. How many were forgotten (0: none known)."""
        self._check(interface, user_id)
        known = [b.id for b in await self.browsers.of_user(interface, user_id)]
        if not known or (browser_id is not None and browser_id not in known):
            return 0
        return await self.browsers.forget(interface, user_id, browser_id, request)


def _label(text: str) -> str:
    label = " ".join(text.split())
    if len(label) > MAX_LABEL_LENGTH or not label.isprintable():
        raise InvalidInput(N_("A name is at most %(length)s printable characters."), length=MAX_LABEL_LENGTH)
    return label
