"""The Twilio Verify v2 provider (``https://verify.twilio.com``), Authy's successor.

Verify needs no registration: a code is started for a phone number (``Verifications``) and
checked for that number (``VerificationCheck``). Twilio makes, sends and expires the codes. Access
is granted only on a parsed ``"status": "approved"``. Twilio's OpenAPI description documents a
check's success as 201 or 200 (the live API answers 200), so both are read alike and the grant
depends on the status field alone. A wrong code is ``pending``, and a verification that no longer
exists (approved, expired, too many tries) is a 404 with error 20404: both are simply a rejected
code. Its other errors map to the exceptions of :mod:`tfa_middleware.errors`:

====== ==== =========================================== =======================
code   HTTP meaning                                     outcome
====== ==== =========================================== =======================
60200  400  invalid parameter (``To``, ``Code``, …)      send: ProviderBlocked;
                                                        check: REJECTED
60202  429  five wrong checks for this verification     ProviderRateLimited
60203  429  too many sends without a completed check    ProviderRateLimited
20404  404  no such verification (or service, on send)  check: REJECTED;
                                                        send: misconfigured
60212  429  too many concurrent requests for the number ProviderRateLimited
60205  403  the number is a landline: no SMS            ProviderBlocked
60410  403  Fraud Guard blocked the prefix              ProviderBlocked
60605  403  geo permissions block the country           ProviderBlocked
20003  401  wrong Account SID / Auth Token              ProviderMisconfigured
====== ==== =========================================== =======================

The blocking codes are read before the HTTP status: whatever status carries them, they say this
number cannot be texted, which no retry changes. A 429 hands its ``Retry-After`` header (whole
seconds) to :attr:`ProviderRateLimited.retry_after_seconds`.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

import httpx

from ..errors import (
    InvalidInput,
    ProviderBlocked,
    ProviderError,
    ProviderMisconfigured,
    ProviderRateLimited,
    ProviderUnavailable,
)
from ..i18n import provider_locale
from ..settings import DEFAULT_API_URLS, ProviderSettings
from .base import CheckResult, SendResult, Target
from .http import Answer, ProviderHttp

log = logging.getLogger("tfa_middleware.providers.twilio_verify")

_CODE = re.compile(r"[0-9]{4,10}")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
#: Statuses of a verification that has not been approved: the code did not work.
_NOT_APPROVED = {"pending", "canceled", "expired", "failed", "max_attempts_reached", "deleted"}
#: A check's success: the OpenAPI description lists 201 and 200; the live API answers 200.
_CHECK_OK = (200, 201)
_RATE_LIMITS = {"60202", "60203", "60212"}
#: The number itself is refused (landline, Fraud Guard, geo permissions): "we can't text this
#: number", never "try again later".
_BLOCKS = {"60205", "60410", "60605"}


class TwilioVerifyProvider:
    """Twilio Verify v2 over one pooled httpx client, with HTTP Basic auth::

    provider = TwilioVerifyProvider(settings.provider)
    await provider.send(target, "sms")
    result = await provider.check(target, code)
    """

    name = "twilio_verify"
    supports_call = True
    needs_registration = False
    code_lengths = (4, 10)
    #: Verify keeps no ids of ours, so a change of account has nothing to void.
    fingerprint: str | None = None

    def __init__(self, settings: ProviderSettings, *, client: httpx.AsyncClient | None = None) -> None:
        missing = [
            key
            for key, value in (
                ("account_sid", settings.account_sid),
                ("auth_token", settings.auth_token and settings.auth_token.reveal()),
                ("service_sid", settings.service_sid),
            )
            if not value
        ]
        if missing:
            raise ProviderMisconfigured(f"twilio_verify: provider.{', provider.'.join(missing)} not set")
        # checked above
        assert settings.auth_token is not None
        assert settings.service_sid is not None
        api_url = (settings.api_url or DEFAULT_API_URLS["twilio_verify"]).rstrip("/")
        self.api_url = api_url
        self.account_sid = settings.account_sid
        self.service_sid = settings.service_sid
        self._service_path = f"/v2/Services/{quote(settings.service_sid, safe='')}"
        username = settings.api_key_sid or settings.account_sid or ""
        self.http = ProviderHttp(
            "twilio_verify",
            api_url,
            settings.timeout_seconds,
            client=client,
            auth=(username, settings.auth_token.reveal()),
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"TwilioVerifyProvider(api_url={self.api_url!r}, service_sid={self.service_sid!r})"

    # ------------------------------------------------------------------ the contract

    async def register(self, target: Target) -> str | None:
        """Nothing to register: Verify keys each verification by the phone number itself."""

    async def send(self, target: Target, channel: str) -> SendResult:
        if channel not in ("sms", "call"):
            raise InvalidInput(f"twilio_verify cannot send by {channel!r}")
        what = f"twilio_verify {channel}"
        data = {"To": _to(target), "Channel": channel}
        if target.locale:
            data["Locale"] = provider_locale(target.locale)
        answer = await self.http.request("POST", f"{self._service_path}/Verifications", what, data=data)
        if answer.status in (200, 201) and answer.body is not None and answer.body.get("status") == "pending":
            return SendResult(channel=channel)
        code = answer.error_code("code")
        if code == "20404":
            raise ProviderMisconfigured(
                f"{what}: Twilio does not know the Verify service (20404); check provider.service_sid"
            )
        if code == "60200":
            raise ProviderBlocked(f"{what}: Twilio refused the number or channel (60200)")
        raise _error(answer, what)

    async def check(self, target: Target, code: str) -> CheckResult:
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            return CheckResult.REJECTED  # never sent
        what = "twilio_verify check"
        answer = await self.http.request(
            "POST",
            f"{self._service_path}/VerificationCheck",
            what,
            data={"To": _to(target), "Code": code},
        )
        status = answer.body.get("status") if answer.body is not None else None
        if answer.status in _CHECK_OK and status == "approved":
            return CheckResult.APPROVED
        if answer.status in _CHECK_OK and isinstance(status, str) and status in _NOT_APPROVED:
            return CheckResult.REJECTED
        error_code = answer.error_code("code")
        if error_code == "20404" and answer.status == 404:
            return CheckResult.REJECTED  # approved already, expired, or never started
        if error_code == "60200" and answer.status == 400:
            return CheckResult.REJECTED  # a code Twilio would not take is a wrong code
        if answer.status in _CHECK_OK:
            raise ProviderUnavailable(f"{what}: answered {answer.status} without a verification status")
        raise _error(answer, what)

    async def close(self) -> None:
        await self.http.close()

    # ------------------------------------------------------------------ beyond the contract

    async def check_credentials(self) -> str:
        """Fetch the Verify service (``tfa-middleware check-config --online``)."""
        what = "twilio_verify service"
        answer = await self.http.request("GET", self._service_path, what)
        if answer.status == 200 and answer.body is not None and answer.body.get("sid") == self.service_sid:
            name = answer.body.get("friendly_name")
            return f"twilio_verify: the credentials work (service {name!r}, {self.service_sid})"
        if answer.error_code("code") == "20404":
            raise ProviderMisconfigured(
                f"{what}: Twilio does not know the Verify service {self.service_sid} (20404); "
                "check provider.service_sid"
            )
        raise _error(answer, what)


def _to(target: Target) -> str:
    if not _E164.fullmatch(target.phone):
        raise ProviderBlocked("twilio_verify: the stored phone number is not in E.164 form")
    return target.phone


def _error(answer: Answer, what: str) -> ProviderError:
    code = answer.error_code("code")
    shown = f"{answer.status}" + (f", error {code}" if code else "")
    if code == "20003" or answer.status == 401:
        return ProviderMisconfigured(
            f"{what}: Twilio refused the credentials ({shown}); "
            "check provider.account_sid, api_key_sid and auth_token"
        )
    if code in _BLOCKS:
        return ProviderBlocked(f"{what}: Twilio will not deliver to this number ({shown})")
    if code in _RATE_LIMITS or answer.status == 429:
        return ProviderRateLimited(f"{what}: Twilio asks us to slow down ({shown})", answer.retry_after)
    if answer.body is None:
        return ProviderUnavailable(f"{what}: Twilio answered {answer.status} with a body that is not JSON")
    return ProviderUnavailable(f"{what}: unexpected answer from Twilio ({shown})")
