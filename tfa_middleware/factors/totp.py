"""The authenticator app (RFC 6238 TOTP, through pyotp): 30-second steps, six digits, one step of
drift either way, each step accepted once.

Enrollment makes a random 160-bit secret, stored sealed (keys.py) in an unconfirmed ``totp``
factor, and shows it as a QR code (an inline SVG drawn by segno: no image request, no outside
service) and as text. The first right code confirms it. At sign-in every confirmed app of the user
is tried; the step of the code that matched is stored by a conditional UPDATE (store/factors.py),
so a code seen by someone else, or sent twice at once, is refused the second time. Every check
goes through the account's verify lockout (attempts.py), shared with the other factors.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

import pyotp
import segno

from ..audit import RequestInfo
from ..outcomes import VerifyOutcome, VerifyStatus
from ..store import factors as factor_rows
from ..store.factors import TOTP, Factor
from .attempts import Parts
from .keys import SecretBox

DIGITS = 6
STEP_SECONDS = 30
DRIFT_STEPS = 1


@dataclass(frozen=True, slots=True)
class NewApp:
    """An app being set up: what its page shows. ``secret`` is for that page alone."""

    factor_id: int
    # Kept out of repr: a log line or a traceback showing the object must not show the secret.
    secret: str = field(repr=False)  # base32, as apps take it typed in
    uri: str = field(repr=False)  # otpauth://, what the QR code holds
    qr_svg: str = field(repr=False)  # the QR code, an inline <svg> element

    @property
    def grouped_secret(self) -> str:
        """The secret in groups of four, easier to type."""
        return " ".join(self.secret[i : i + 4] for i in range(0, len(self.secret), 4))


def is_code(code: str) -> bool:
    return len(code) == DIGITS and code.isascii() and code.isdigit()


def bound_to(interface: str, user_id: str) -> str:
    """The associated data a secret is sealed with: it opens on its own user's row only."""
    return f"totp\0{interface}\0{user_id}"


class Authenticators:
    def __init__(self, parts: Parts) -> None:
        self.settings, self.store, self.attempts, self.trail, self.clock = parts
        self.box = SecretBox(self.settings.secret_keys)
        self.issuer = self.settings.branding.title or "tfa-middleware"

    async def begin(self, interface: str, user_id: str, request: RequestInfo | None) -> NewApp:
        """A new app for the user, unconfirmed until its first code (an earlier unconfirmed one goes)."""
        secret = pyotp.random_base32(32)  # 32 base32 characters: 160 bits, RFC 4226's advice
        now = self.clock()
        sealed = self.box.seal(secret.encode(), bound_to(interface, user_id))
        async with self.trail.recording(now, interface, user_id, "app_setup_started", request) as conn:
            factor_id = await factor_rows.add(conn, interface, user_id, TOTP, sealed, now)
        return self._shown(factor_id, user_id, secret)

    async def pending(self, interface: str, user_id: str) -> NewApp | None:
        """The app being set up, to show its page again (reloaded, or after a wrong first code)."""
        for factor in await factor_rows.of_user(self.store, interface, user_id):
            if factor.kind == TOTP and not factor.confirmed:
                secret = self.box.open(factor.value, bound_to(interface, user_id))
                return self._shown(factor.id, user_id, secret.decode()) if secret else None
        return None

    async def verify(
        self, interface: str, user_id: str, code: str, request: RequestInfo | None, *, confirm: bool = False
    ) -> VerifyOutcome:
        """A code from one of the user's confirmed apps (``confirm``: from the app being set up,
        which it confirms). Only APPROVED lets anyone in."""
        code = code.strip().replace(" ", "")
        if not is_code(code):
            return VerifyOutcome(VerifyStatus.MALFORMED, method=TOTP)
        apps = [
            f
            for f in await factor_rows.of_user(self.store, interface, user_id)
            if f.kind == TOTP and f.confirmed is not confirm
        ]
        if not apps:
            return VerifyOutcome(VerifyStatus.NEEDS_ENROLLMENT, method=TOTP)
        now = self.clock()
        permit = await self.attempts.reserve(interface, user_id, now)
        if not permit.allowed:
            return self.attempts.refused(permit)
        for app in apps:
            step = self._matching_step(app, interface, user_id, code, now)
            if step is None:
                continue
            try:
                generation = await self._accept(interface, user_id, app, step, now, confirm, request)
            except _Replayed:
                continue  # a code used already counts as a wrong one
            return VerifyOutcome(VerifyStatus.APPROVED, generation=generation, method=TOTP)
        return await self.attempts.rejected(interface, user_id, now, permit, request, TOTP)

    def _matching_step(self, app: Factor, interface: str, user_id: str, code: str, now: float) -> int | None:
        secret = self.box.open(app.value, bound_to(interface, user_id))
        if secret is None:
            return None  # sealed under a key no longer in secret_keys: this app cannot be checked
        totp = pyotp.TOTP(secret.decode(), digits=DIGITS, interval=STEP_SECONDS)
        current = totp.timecode(now)
        found = None
        # Every candidate is compared, so the time taken does not tell which step matched.
        for offset in range(-DRIFT_STEPS, DRIFT_STEPS + 1):
            if hmac.compare_digest(totp.at(now, counter_offset=offset), code):
                found = current + offset
        return found

    async def _accept(
        self,
        interface: str,
        user_id: str,
        app: Factor,
        step: int,
        now: float,
        confirm: bool,
        request: RequestInfo | None,
    ) -> int:
        """Record the step (a replay, if this app accepted it or a later one already: _Replayed,
        and nothing is recorded) and the success, in one transaction; the generation."""
        kind = "app_added" if confirm else "verify_ok"
        detail = {"factor": TOTP, "label": app.label} if confirm else {"factor": TOTP}
        async with self.trail.recording(now, interface, user_id, kind, request, **detail) as conn:
            if not await factor_rows.accept_step(conn, interface, user_id, app.id, step, now):
                raise _Replayed
            generation = await self.attempts.succeeded(conn, interface, user_id, now)
            if confirm:
                await factor_rows.enrolled(conn, interface, user_id)
            if not self.box.is_newest(app.value):  # rotation: sealed again under the newest key
                secret = self.box.open(app.value, bound_to(interface, user_id))
                if secret is not None:
                    resealed = self.box.seal(secret, bound_to(interface, user_id))
                    await factor_rows.replace_value(conn, interface, user_id, app.id, resealed)
        return generation

    def _shown(self, factor_id: int, user_id: str, secret: str) -> NewApp:
        uri = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
            name=user_id, issuer_name=self.issuer
        )
        svg = segno.make(uri, error="m").svg_inline(scale=4, svgclass="qr", title=None)
        # Named by the page around it (app.html), in the reader's language.
        svg = svg.replace("<svg ", '<svg aria-hidden="true" ', 1)
        return NewApp(factor_id, secret, uri, svg)


class _Replayed(Exception):
    """The step was taken already: the transaction rolls back, nothing is recorded as a success."""
