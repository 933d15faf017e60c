"""The sandbox provider (``production_mode: false``): nothing leaves the machine.

Codes come from :mod:`secrets`, are stored only as an HMAC (keyed with the signing key, and bound
to interface, user and purpose, so a leaked table does not give codes away to a 10⁶ search), live
at most ``code_ttl_seconds``, work once, and die after ``max_attempts`` wrong tries. "Delivery"
writes the message to the outbox table, which ``tfa-middleware outbox`` prints, and logs a line
with the masked number (never the code).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable

from ..i18n import ENGLISH, Languages
from ..phone import mask
from ..settings import ProviderSettings, Secret
from ..store import Store, outbox
from ..store import codes as code_rows
from .base import CheckResult, SendResult, Target

log = logging.getLogger("tfa_middleware.sandbox")


class SandboxProvider:
    name = "sandbox"
    supports_call = False
    needs_registration = False
    fingerprint: str | None = None

    def __init__(
        self,
        store: Store,
        settings: ProviderSettings,
        pepper: Secret,
        *,
        clock: Callable[[], float],
        site_name: str = "",
        languages: Languages | None = None,
    ) -> None:
        if settings.production_mode:
            raise ValueError("the sandbox provider never sends anything: it refuses production_mode")
        self.store = store
        self.code_length = settings.code_length
        self.code_lengths = (settings.code_length, settings.code_length)
        self.ttl = settings.code_ttl_seconds
        self.max_attempts = settings.max_attempts_per_code
        self._pepper = hashlib.sha256(b"tfa-middleware.sandbox-code\0" + pepper.reveal().encode()).digest()
        self._clock = clock
        self.site_name = site_name
        self.languages = languages or Languages()  # the shop's catalogues, when build_provider gives them

    def _hash(self, target: Target, code: str) -> str:
        message = f"{target.interface}\0{target.user_id}\0{target.purpose}\0{target.phone}\0{code}"
        return hmac.new(self._pepper, message.encode(), hashlib.sha256).hexdigest()

    async def register(self, target: Target) -> str | None:
        """Nothing to register: sandbox codes are kept by interface, user and phone."""

    async def send(self, target: Target, channel: str) -> SendResult:
        code = "".join(secrets.choice("0123456789") for _ in range(self.code_length))
        now = self._clock()
        await code_rows.replace(
            self.store,
            target.interface,
            target.user_id,
            target.purpose,
            self._hash(target, code),
            now,
            self.ttl,
            self.max_attempts,
        )
        language = self.languages.get(target.locale) if target.locale in self.languages.codes else ENGLISH
        minutes = max(1, self.ttl // 60)
        body = language.ngettext(
            "%(site)s: your verification code is %(code)s. It expires in %(num)s minute. Do not share it.",
            "%(site)s: your verification code is %(code)s. It expires in %(num)s minutes. Do not share it.",
            minutes,
            site=self.site_name or language.gettext("Your shop"),
            code=code,
        )
        to = mask(target.phone)
        await self.deliver(now, target, to, channel, body)
        log.info(
            "sandbox: %s code for %s user %s to %s written to the outbox (nothing sent)",
            target.purpose,
            target.interface,
            target.user_id,
            to,
        )
        return SendResult(channel=channel)

    async def check(self, target: Target, code: str) -> CheckResult:
        now = self._clock()
        # The database compares the keyed hash and marks the code used (or spends a try of the
        # live code) in one statement, so of two requests with the right code exactly one gets
        # APPROVED.
        if await code_rows.check(
            self.store, target.interface, target.user_id, target.purpose, self._hash(target, code), now
        ):
            return CheckResult.APPROVED
        return CheckResult.REJECTED

    async def deliver(self, now: float, target: Target, to: str, channel: str, body: str) -> None:
        """ "Send": the message goes to the outbox table (``to`` is the masked number)."""
        await outbox.add(self.store, now, target.interface, target.user_id, to, channel, body)

    async def close(self) -> None:
        return None
