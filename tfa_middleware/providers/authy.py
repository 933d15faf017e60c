"""The Authy provider (``https://api.authy.com``), for shops that hold Authy API keys and ids.

Authy knows a user by an *Authy id*, registered once per phone number; it then texts (or calls)
that id a code and checks it. What this module refuses to repeat from the clients of old:

- A code is checked here first: ASCII digits only, 6 to 12 of them. In 2015 a "code" of ``../sms``
  was decoded by the server into a call to ``/sms/{id}``, which answered 200: every client that
  looked at the status alone let the attacker in. So nothing else ever reaches a URL, every path
  part is percent-encoded, and access needs status 200 **and** a parsed body saying
  ``"token": "is valid"``. Anything else is a wrong code (401, error 60020) or an error.
- No shop email leaves the shop: Authy gets ``<keyed hash of interface and user id>@email_domain``
  unless the shop opts in with ``email_from_user`` (and then only a user id that is an email).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from urllib.parse import quote

import httpx
import phonenumbers

from ..errors import (
    InvalidInput,
    ProviderBlocked,
    ProviderError,
    ProviderMisconfigured,
    ProviderRateLimited,
    ProviderUnavailable,
    ProviderUserNotFound,
)
from ..i18n import provider_locale
from ..settings import DEFAULT_API_URLS, ProviderSettings, Secret
from .base import CheckResult, SendResult, Target
from .http import Answer, ProviderHttp

log = logging.getLogger("tfa_middleware.providers.authy")

_CODE = re.compile(r"[0-9]{6,12}")  # [0-9], not \d: no Arabic-Indic or full-width digits
_AUTHY_ID = re.compile(r"[0-9]{1,20}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,250}[A-Za-z0-9])?\.[A-Za-z]{2,63}")
_CHANNEL_PATHS = {"sms": "sms", "call": "call"}


class AuthyProvider:
    """Authy's REST API over one pooled httpx client::

    provider = AuthyProvider(settings.provider, settings.secret_keys[-1])
    authy_id = await provider.register(target)
    await provider.send(replace(target, provider_user_id=authy_id), "sms")
    """

    name = "authy"
    supports_call = True
    needs_registration = True
    code_lengths = (6, 12)

    def __init__(
        self,
        settings: ProviderSettings,
        email_key: Secret,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if settings.api_key is None or not settings.api_key.reveal():
            raise ProviderMisconfigured("authy: provider.api_key is not set")
        api_url = (settings.api_url or DEFAULT_API_URLS["authy"]).rstrip("/")
        key = settings.api_key.reveal()
        self.api_url = api_url
        #: Stored by the service; a new key (another Authy app) voids every stored Authy id.
        self.fingerprint: str | None = hashlib.sha256(f"authy\0{api_url}\0{key}".encode()).hexdigest()[:16]
        self.email_domain = settings.email_domain
        self.email_from_user = settings.email_from_user
        self._email_key = hashlib.sha256(
            b"tfa-middleware.authy-email\0" + email_key.reveal().encode()
        ).digest()
        self.http = ProviderHttp(
            "authy",
            api_url,
            settings.timeout_seconds,
            client=client,
            headers={"X-Authy-API-Key": key, "Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"AuthyProvider(api_url={self.api_url!r})"

    # ------------------------------------------------------------------ the contract

    async def register(self, target: Target) -> str | None:
        country_code, national = _split(target.phone)
        answer = await self.http.request(
            "POST",
            "/protected/json/users/new",
            "authy register",
            data={
                "user[email]": self.email_for(target),
                "user[cellphone]": national,
                "user[country_code]": country_code,
            },
        )
        user = answer.body.get("user") if answer.status == 200 and answer.body is not None else None
        authy_id = user.get("id") if isinstance(user, dict) else None
        if isinstance(authy_id, bool) or not isinstance(authy_id, int | str):
            raise _error(answer, "authy register")
        text = str(authy_id)
        if not _AUTHY_ID.fullmatch(text):
            raise ProviderUnavailable("authy register: the answer held no usable Authy id")
        return text

    async def send(self, target: Target, channel: str) -> SendResult:
        if channel not in _CHANNEL_PATHS:
            raise InvalidInput(f"authy cannot send by {channel!r}")
        what = f"authy {channel}"
        path = f"/protected/json/{_CHANNEL_PATHS[channel]}/{_authy_id(target)}"
        # Without force=true Authy skips the text for users of its app (200, "ignored": true).
        params = {"force": "true"}
        if target.locale:
            params["locale"] = provider_locale(target.locale)
        answer = await self.http.request("GET", path, what, params=params)
        if answer.status == 200 and answer.body is not None and _true(answer.body.get("success")):
            if _true(answer.body.get("ignored")):
                raise ProviderUnavailable(f"{what}: Authy ignored the request and sent nothing")
            return SendResult(channel=channel)
        raise _error(answer, what)

    async def check(self, target: Target, code: str) -> CheckResult:
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            return CheckResult.REJECTED  # never put into a URL, never sent
        path = f"/protected/json/verify/{quote(code, safe='')}/{_authy_id(target)}"
        answer = await self.http.request("GET", path, "authy verify", params={"force": "true"})
        if answer.status == 200 and answer.body is not None and answer.body.get("token") == "is valid":
            return CheckResult.APPROVED
        if answer.status == 401 and answer.body is not None and _wrong_token(answer):
            return CheckResult.REJECTED  # wrong, expired, or "Token was used recently"
        if answer.status == 200:
            # A 200 without the token verdict is what the 2015 bypass looked like: never a grant.
            log.warning('authy verify: status 200 without "token": "is valid"; refused')
            raise ProviderUnavailable("authy verify: answered 200 without a token verdict")
        raise _error(answer, "authy verify")

    async def close(self) -> None:
        await self.http.close()

    # ------------------------------------------------------------------ beyond the contract

    async def check_credentials(self) -> str:
        """Ask Authy about the app behind the key (``tfa-middleware check-config --online``)."""
        answer = await self.http.request("GET", "/protected/json/app/details", "authy app details")
        if answer.status == 200 and answer.body is not None and _true(answer.body.get("success")):
            app = answer.body.get("app")
            name = app.get("name") if isinstance(app, dict) else None
            return f"authy: the API key works (app {name!r} at {self.api_url})"
        raise _error(answer, "authy app details")

    def email_for(self, target: Target) -> str:
        """The email Authy gets for this user: a keyed hash, or the user id when opted in."""
        if self.email_from_user and _EMAIL.fullmatch(target.user_id):
            return target.user_id
        message = f"{target.interface}\0{target.user_id}".encode()
        digest = hmac.new(self._email_key, message, hashlib.sha256).hexdigest()[:32]
        return f"{digest}@{self.email_domain}"


def _split(e164: str) -> tuple[str, str]:
    """``+447700900123`` → ``("44", "7700900123")``: Authy takes the two apart."""
    try:
        parsed = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        raise ProviderBlocked("authy register: the stored phone number cannot be read") from None
    return str(parsed.country_code), phonenumbers.national_significant_number(parsed)


def _authy_id(target: Target) -> str:
    provider_user_id = target.provider_user_id or ""
    if not _AUTHY_ID.fullmatch(provider_user_id):
        # Not an id Authy ever gave out: let the service register the number again.
        raise ProviderUserNotFound("authy: the stored Authy id is missing or malformed")
    return quote(provider_user_id, safe="")


def _wrong_token(answer: Answer) -> bool:
    body = answer.body or {}
    return answer.error_code("error_code") == "60020" or body.get("token") == "is invalid"


def _true(value: object) -> bool:
    """Authy's ``success`` is sometimes ``true`` and sometimes the string ``"true"``."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _error(answer: Answer, what: str) -> ProviderError:
    """The exception for an answer that is not a success; unknown answers fail closed."""
    code = answer.error_code("error_code")
    shown = f"{answer.status}" + (f", error {code}" if code else "")
    if code == "60001":
        return ProviderMisconfigured(f"{what}: Authy refused the API key ({shown}); check provider.api_key")
    if code == "60026":
        return ProviderUserNotFound(f"{what}: Authy does not know this user ({shown})")
    if code == "60003" or answer.status in (429, 503):
        # Authy answers 429 (60003) today; older documentation says 503.
        return ProviderRateLimited(f"{what}: Authy asks us to slow down ({shown})", answer.retry_after)
    if code == "60027" and answer.body is not None:
        errors = answer.body.get("errors")
        fields = set(errors) if isinstance(errors, dict) else set()
        if fields & {"cellphone", "country_code"}:
            return ProviderBlocked(f"{what}: Authy refused the phone number ({shown})")
        if "email" in fields:
            return ProviderMisconfigured(
                f"{what}: Authy refused the email address ({shown}); check provider.email_domain"
            )
    if answer.body is None:
        return ProviderUnavailable(f"{what}: Authy answered {answer.status} with a body that is not JSON")
    return ProviderUnavailable(f"{what}: unexpected answer from Authy ({shown})")
