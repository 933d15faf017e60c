"""A fake Authy API: the documented paths, status codes and bodies, byte for byte.

Bodies are the verbatim samples of ``reference/authy-api.md`` (compact JSON, keys in the same
order). Where the reference marks a body *unconfirmed* (rate limiting, app details, the device
object of a valid token, the "used recently" answer), the fake keeps Authy's usual envelope and
says so next to it. Codes are 7 digits, like Authy's SMS tokens.

Run it: ``tfa-middleware fake-provider authy --port 8089``; in tests, in process::

    fake = FakeAuthy()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(fake))
    provider = AuthyProvider(settings, key, client=client)
    ...
    code = fake.last_code("+12015550123")
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .fake_api import Clock, FakeApi, RecordedRequest, SentCode, compact_json, recorded, retry_after

FAKE_AUTHY_API_KEY = "fake-authy-api-key-0123456789abcdef"
TOKEN_TTL_SECONDS = 600  # unconfirmed: how long Authy honours an SMS token; the fake says 10 minutes

USER_NOT_FOUND = {
    "message": "User not found.",
    "success": False,
    "errors": {"message": "User not found."},
    "error_code": "60026",
}
BAD_API_KEY = {
    "error_code": "60001",
    "message": "Invalid API key",
    "errors": {"message": "Invalid API key"},
    "success": False,
}
TOKEN_INVALID = {
    "message": "Token is invalid",
    "token": "is invalid",
    "success": False,
    "errors": {"message": "Token is invalid"},
    "error_code": "60020",
}
# Unconfirmed beyond the message text: the envelope of any other wrong token.
TOKEN_USED = {
    "message": "Token is invalid. Token was used recently",
    "token": "is invalid",
    "success": False,
    "errors": {"message": "Token is invalid. Token was used recently"},
    "error_code": "60020",
}
# Unconfirmed: the reference gives only the error code (60003); the envelope is Authy's usual one.
RATE_LIMITED = {
    "message": "Too many requests",
    "success": False,
    "errors": {"message": "Too many requests"},
    "error_code": "60003",
}
# Unconfirmed: the reference elides the device object; these are the fields Authy documents.
DEVICE: dict[str, Any] = {
    "city": None,
    "country": None,
    "ip": None,
    "region": None,
    "registration_city": None,
    "registration_country": None,
    "registration_device_id": None,
    "registration_ip": None,
    "registration_method": "sms",
    "registration_region": None,
    "os_type": None,
    "last_account_recovery_at": None,
    "id": None,
    "registration_date": None,
    "last_sync_date": None,
}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass
class AuthyUser:
    id: int
    email: str
    cellphone: str  # national number, digits
    country_code: str
    apps: set[str] = field(default_factory=set)  # the API keys (Authy apps) that registered the user
    has_app: bool = False  # users of the Authy app get no SMS unless force=true
    token: str = ""
    token_at: float = 0.0
    token_used: bool = False

    @property
    def e164(self) -> str:
        return f"+{self.country_code}{self.cellphone}"

    @property
    def masked(self) -> str:
        return f"+{self.country_code}-XXX-XXX-XX{self.cellphone[-2:]}"


class FakeAuthy(FakeApi):
    """Authy's API in one process. ``users`` by Authy id; ``forget(id)`` deletes one on the
    "server" side (the next call for it answers 404, error 60026).

    Each API key is an Authy app. An Authy id belongs to the phone number, whichever app registers
    it, but an app may use only the users it registered itself (others: 404, 60026). Unconfirmed:
    the reference says only that one phone number maps to one Authy id.
    """

    def __init__(
        self,
        api_keys: Iterable[str] = (FAKE_AUTHY_API_KEY,),
        *,
        clock: Clock = time.time,
        on_send: Callable[[SentCode], None] | None = None,
        rate_limit_status: int = 429,
    ) -> None:
        self.api_keys = tuple(api_keys)
        self.rate_limit_status = rate_limit_status  # older Authy documentation says 503
        self.users: dict[int, AuthyUser] = {}
        self._next_id = 1635
        super().__init__(clock=clock, on_send=on_send)

    def __repr__(self) -> str:
        return f"FakeAuthy(users={len(self.users)}, requests={len(self.requests)})"

    def routes(self) -> list[Route]:
        base = "/protected/json"
        return [
            Route(f"{base}/users/new", self.register, methods=["POST"]),
            Route(f"{base}/users/{{authy_id}}/remove", self.remove, methods=["POST"]),
            Route(f"{base}/users/{{authy_id}}/delete", self.remove, methods=["POST"]),  # authy-python
            Route(f"{base}/users/{{authy_id}}/status", self.status, methods=["GET"]),
            Route(f"{base}/sms/{{authy_id}}", self.sms, methods=["GET"]),
            Route(f"{base}/call/{{authy_id}}", self.call, methods=["GET"]),
            Route(f"{base}/verify/{{token}}/{{authy_id}}", self.verify, methods=["GET"]),
            Route(f"{base}/app/details", self.app_details, methods=["GET"]),
        ]

    def rate_limit_response(self) -> Response:
        # Unconfirmed for Authy: Retry-After is what HTTP rate limiting (and Twilio) send with it.
        return retry_after(compact_json(self.rate_limit_status, RATE_LIMITED), self.retry_after_seconds)

    def authenticate(self, request: RecordedRequest) -> Response | None:
        return None if _app(request, self.api_keys) else compact_json(401, BAD_API_KEY)

    def forget(self, authy_id: int | str) -> None:
        with self.lock:
            self.users.pop(int(authy_id), None)

    # ------------------------------------------------------------------ routes

    async def register(self, request: Request) -> Response:
        fields = await _user_fields(request)
        email = str(fields.get("email") or "")
        cellphone = re.sub(r"[\s.\-()]", "", str(fields.get("cellphone") or ""))
        country_code = str(fields.get("country_code") or "").lstrip("+")
        bad = "email" if not _EMAIL.fullmatch(email) else ""
        if not bad and not (cellphone.isdigit() and 4 <= len(cellphone) <= 15):
            bad = "cellphone"
        if not bad and not (country_code.isdigit() and 1 <= len(country_code) <= 4):
            bad = "country_code"
        if bad:
            return compact_json(
                400,
                {
                    "message": "User was not valid",
                    "success": False,
                    "errors": {bad: "is invalid", "message": "User was not valid"},
                    bad: "is invalid",
                    "error_code": "60027",
                },
            )
        with self.lock:
            # One phone number maps to one Authy id.
            user = next(
                (
                    u
                    for u in self.users.values()
                    if (u.country_code, u.cellphone) == (country_code, cellphone)
                ),
                None,
            )
            if user is None:
                user = AuthyUser(self._next_id, email, cellphone, country_code)
                self.users[user.id] = user
                self._next_id += 1
            user.apps.add(_app(recorded(request.scope), self.api_keys))
        return compact_json(
            200, {"message": "User created successfully.", "user": {"id": user.id}, "success": True}
        )

    async def remove(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return compact_json(404, USER_NOT_FOUND)
        self.forget(user.id)
        return compact_json(200, {"message": "User was added to remove.", "success": True})

    async def status(self, request: Request) -> Response:
        # Unconfirmed shape: Authy's documented status fields.
        user = self._user(request)
        if user is None:
            return compact_json(404, USER_NOT_FOUND)
        return compact_json(
            200,
            {
                "status": {
                    "authy_id": user.id,
                    "confirmed": True,
                    "registered": user.has_app,
                    "country_code": int(user.country_code),
                    "phone_number": f"XXX-XXX-{user.cellphone[-4:]}",
                    "devices": ["sms"],
                },
                "message": "User status.",
                "success": True,
            },
        )

    async def sms(self, request: Request) -> Response:
        return self._send(request, "sms")

    async def call(self, request: Request) -> Response:
        return self._send(request, "call")

    def _send(self, request: Request, channel: str) -> Response:
        user = self._user(request)
        if user is None:
            return compact_json(404, USER_NOT_FOUND)
        force = recorded(request.scope).query.get("force", "").lower() == "true"
        if user.has_app and not force:
            return compact_json(
                200,
                {
                    "cellphone": user.masked,
                    "device": "iphone",
                    "ignored": True,
                    "message": "Ignored: SMS is not needed for smartphones. "
                    "Pass force=true if you want to actually send it anyway.",
                    "success": True,
                },
            )
        now = self.clock()
        with self.lock:
            if not user.token or user.token_used or now - user.token_at >= TOKEN_TTL_SECONDS:
                user.token = "".join(secrets.choice("0123456789") for _ in range(7))
                user.token_at = now
                user.token_used = False
            code = user.token
        self.deliver(SentCode(user.e164, code, channel, now, recorded(request.scope).query.get("locale")))
        if channel == "call":
            return compact_json(
                200, {"cellphone": user.masked, "message": "Call started...", "success": True}
            )
        return compact_json(200, {"success": True, "message": "SMS token was sent", "cellphone": user.masked})

    async def verify(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return compact_json(404, USER_NOT_FOUND)
        token = request.path_params["token"]
        now = self.clock()
        with self.lock:
            live = bool(user.token) and now - user.token_at < TOKEN_TTL_SECONDS
            matches = live and secrets.compare_digest(token.encode(), user.token.encode())
            if matches and user.token_used:
                return compact_json(401, TOKEN_USED)
            if not matches:
                return compact_json(401, TOKEN_INVALID)
            user.token_used = True
        return compact_json(
            200, {"message": "Token is valid.", "token": "is valid", "success": "true", "device": DEVICE}
        )

    async def app_details(self, _request: Request) -> Response:
        # Unconfirmed shape: the fields Authy documents for its app details.
        return compact_json(
            200,
            {
                "app": {
                    "app_id": 1,
                    "name": "Fake Authy app",
                    "plan": "starter",
                    "sms_enabled": True,
                    "phone_calls_enabled": True,
                    "onetouch_enabled": False,
                },
                "message": "Application information.",
                "success": True,
            },
        )

    def _user(self, request: Request) -> AuthyUser | None:
        text = request.path_params["authy_id"]
        if not (text.isascii() and text.isdigit()):
            return None
        app = _app(recorded(request.scope), self.api_keys)
        with self.lock:
            user = self.users.get(int(text))
            return user if user is not None and app in user.apps else None


def _app(request: RecordedRequest, api_keys: Iterable[str]) -> str:
    """The API key that names the app, or "" when none of the fake's keys was given."""
    # authy-python sends the header; older clients (X-Cart, go-authy) an api_key parameter.
    given = (
        request.headers.get("x-authy-api-key") or request.query.get("api_key") or request.form.get("api_key")
    )
    for key in api_keys:
        if given and secrets.compare_digest(given.encode(), key.encode()):
            return key
    return ""


async def _user_fields(request: Request) -> dict[str, Any]:
    """``user[email]=…`` as a form (most clients), or ``{"user": {...}}`` as JSON (authy-python)."""
    form = recorded(request.scope).form
    if form:
        return {
            key[5:-1]: value for key, value in form.items() if key.startswith("user[") and key.endswith("]")
        }
    try:
        document = await request.json()
    except ValueError:
        return {}
    user = document.get("user") if isinstance(document, dict) else None
    return user if isinstance(user, dict) else {}
