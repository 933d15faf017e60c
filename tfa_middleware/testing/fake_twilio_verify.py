"""A fake Twilio Verify v2 API: Services, Verifications, VerificationCheck, with Twilio's errors.

Shapes follow ``reference/twilio-verify.md`` (the verification object of twilio-python's test
fixtures, the error envelope). Codes are 6 digits, live 10 minutes, and a resend within that
time delivers the same code, as Verify does. The limits are Verify's: more than 5 sends without a
completed check answer 60203, more than 5 checks of one verification 60202; every 429 carries
``Retry-After`` as the OpenAPI description documents (for those two: until the verification
expires). A check answers 200 like the live API; ``check_status=201`` gives the other success
status the OpenAPI description lists.

Run it: ``tfa-middleware fake-provider twilio_verify --port 8090``; in tests::

    fake = FakeTwilioVerify()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(fake))
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .fake_api import Clock, FakeApi, RecordedRequest, SentCode, compact_json, recorded, retry_after

FAKE_ACCOUNT_SID = "AC" + "0f" * 16
FAKE_AUTH_TOKEN = "fake-twilio-auth-token-0123456789"  # noqa: S105 - the fake's own, public
FAKE_SERVICE_SID = "VA" + "0e" * 16
CODE_TTL_SECONDS = 600
MAX_SENDS = 5
MAX_CHECKS = 5
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_CHANNELS = ("sms", "call")


def twilio_error(status: int, code: int, message: str) -> Response:
    return compact_json(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


@dataclass
class Verification:
    sid: str
    service_sid: str
    to: str
    channel: str
    code: str
    created_at: float
    updated_at: float
    sends: int = 1
    checks: int = 0
    status: str = "pending"


class FakeTwilioVerify(FakeApi):
    """Twilio Verify in one process. ``blocked_prefixes`` (geo permissions, 60605),
    ``fraud_prefixes`` (Fraud Guard, 60410) and ``landline_prefixes`` (no SMS to a landline,
    60205) refuse numbers starting with them."""

    def __init__(
        self,
        *,
        account_sid: str = FAKE_ACCOUNT_SID,
        auth_token: str = FAKE_AUTH_TOKEN,
        service_sids: Mapping[str, str] | None = None,
        api_keys: Mapping[str, str] | None = None,
        code_length: int = 6,
        check_status: int = 200,
        clock: Clock = time.time,
        on_send: Callable[[SentCode], None] | None = None,
    ) -> None:
        if check_status not in (200, 201):
            raise ValueError("a VerificationCheck succeeds with 200 (the live API) or 201 (also documented)")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.api_keys = dict(api_keys or {})  # SK… → secret
        self.services = dict(service_sids or {FAKE_SERVICE_SID: "Fake shop"})  # VA… → friendly name
        self.code_length = code_length
        self.check_status = check_status
        self.verifications: dict[tuple[str, str], Verification] = {}  # (service, To) → the live one
        self.blocked_prefixes: set[str] = set()
        self.fraud_prefixes: set[str] = set()
        self.landline_prefixes: set[str] = set()
        super().__init__(clock=clock, on_send=on_send)

    def __repr__(self) -> str:
        return f"FakeTwilioVerify(verifications={len(self.verifications)}, requests={len(self.requests)})"

    def routes(self) -> list[Route]:
        return [
            Route("/v2/Services/{service}", self.service, methods=["GET"]),
            Route("/v2/Services/{service}/Verifications", self.start, methods=["POST"]),
            Route("/v2/Services/{service}/VerificationCheck", self.check, methods=["POST"]),
        ]

    def rate_limit_response(self) -> Response:
        return retry_after(twilio_error(429, 20429, "Too Many Requests"), self.retry_after_seconds)

    def authenticate(self, request: RecordedRequest) -> Response | None:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            username, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            username = password = ""
        expected = self.auth_token if username == self.account_sid else self.api_keys.get(username)
        if (
            scheme.lower() == "basic"
            and expected
            and secrets.compare_digest(password.encode(), expected.encode())
        ):
            return None
        return twilio_error(401, 20003, "Authenticate")

    # ------------------------------------------------------------------ routes

    async def service(self, request: Request) -> Response:
        sid = request.path_params["service"]
        if sid not in self.services:
            return _not_found(request)
        url = f"{_base(request)}/v2/Services/{sid}"
        return compact_json(
            200,
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "friendly_name": self.services[sid],
                "code_length": self.code_length,
                "lookup_enabled": False,
                "psd2_enabled": False,
                "skip_sms_to_landlines": False,
                "dtmf_input_required": True,
                "tts_name": None,
                "do_not_share_warning_enabled": False,
                "custom_code_enabled": False,
                "date_created": _date(self.clock()),
                "date_updated": _date(self.clock()),
                "url": url,
                "links": {
                    "verification_checks": f"{url}/VerificationCheck",
                    "verifications": f"{url}/Verifications",
                },
            },
        )

    async def start(self, request: Request) -> Response:
        service = request.path_params["service"]
        if service not in self.services:
            return _not_found(request)
        form = recorded(request.scope).form
        to, channel = form.get("To", ""), form.get("Channel", "")
        if not _E164.fullmatch(to):
            return twilio_error(400, 60200, "Invalid parameter: To")
        if channel not in _CHANNELS:
            return twilio_error(400, 60200, "Invalid parameter: Channel")
        if any(to.startswith(prefix) for prefix in self.blocked_prefixes):
            return twilio_error(403, 60605, "Verification delivery attempt blocked by geo permissions")
        if any(to.startswith(prefix) for prefix in self.fraud_prefixes):
            # The reference gives no HTTP status for 60410; 403, like the geo block, is the fake's choice.
            return twilio_error(403, 60410, "Verification delivery attempt blocked (Fraud Guard)")
        if channel == "sms" and any(to.startswith(prefix) for prefix in self.landline_prefixes):
            return twilio_error(403, 60205, "SMS is not supported by landline phone number")
        now = self.clock()
        with self.lock:
            live = self._live(service, to, now)
            if live is not None and live.sends >= MAX_SENDS:
                return self._until_expiry(twilio_error(429, 60203, "Max send attempts reached"), live, now)
            if live is None:
                code = "".join(secrets.choice("0123456789") for _ in range(self.code_length))
                live = Verification("VE" + secrets.token_hex(16), service, to, channel, code, now, now)
                self.verifications[(service, to)] = live
            else:
                live.sends += 1  # within the code's lifetime a resend delivers the same code
                live.channel, live.updated_at = channel, now
        self.deliver(SentCode(to, live.code, channel, now, form.get("Locale")))
        return compact_json(201, self._verification(request, live))

    async def check(self, request: Request) -> Response:
        service = request.path_params["service"]
        if service not in self.services:
            return _not_found(request)
        form = recorded(request.scope).form
        code = form.get("Code", "")
        if not (code.isascii() and code.isdigit() and 4 <= len(code) <= 10):
            return twilio_error(400, 60200, "Invalid parameter: Code")
        now = self.clock()
        with self.lock:
            live = self._live(service, form.get("To", ""), now)
            if live is None or (form.get("VerificationSid") and form["VerificationSid"] != live.sid):
                return _not_found(request)
            if live.checks >= MAX_CHECKS:
                return self._until_expiry(twilio_error(429, 60202, "Max check attempts reached"), live, now)
            live.checks += 1
            live.updated_at = now
            if secrets.compare_digest(code.encode(), live.code.encode()):
                live.status = "approved"
                del self.verifications[(service, live.to)]  # an approved verification is gone (20404)
        return compact_json(self.check_status, self._check_result(live))

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _until_expiry(response: Response, live: Verification, now: float) -> Response:
        # The verification refuses more sends or checks until it expires; then a new one starts.
        return retry_after(response, live.created_at + CODE_TTL_SECONDS - now)

    def _live(self, service: str, to: str, now: float) -> Verification | None:
        found = self.verifications.get((service, to))
        if found is not None and now - found.created_at >= CODE_TTL_SECONDS:
            del self.verifications[(service, to)]
            return None
        return found

    def _verification(self, request: Request, v: Verification) -> dict[str, Any]:
        return {
            "sid": v.sid,
            "service_sid": v.service_sid,
            "account_sid": self.account_sid,
            "to": v.to,
            "channel": v.channel,
            "status": v.status,
            "valid": False,
            "date_created": _date(v.created_at),
            "date_updated": _date(v.updated_at),
            "lookup": {"carrier": None},
            "amount": None,
            "payee": None,
            "send_code_attempts": [
                {"time": _date(v.updated_at), "channel": v.channel.upper(), "channel_id": None}
            ],
            "url": f"{_base(request)}/v2/Services/{v.service_sid}/Verifications/{v.sid}",
        }

    def _check_result(self, v: Verification) -> dict[str, Any]:
        return {
            "sid": v.sid,
            "service_sid": v.service_sid,
            "account_sid": self.account_sid,
            "to": v.to,
            "channel": v.channel,
            "status": v.status,
            "valid": v.status == "approved",
            "amount": None,
            "payee": None,
            "date_created": _date(v.created_at),
            "date_updated": _date(v.updated_at),
        }


def _not_found(request: Request) -> Response:
    resource = request.url.path.removeprefix("/v2")
    return twilio_error(404, 20404, f"The requested resource {resource} was not found")


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _date(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
