"""The harness most tests drive: a tiny shop that says who is logged in with two headers, the
middleware around it with a fake clock, and an ``httpx`` client walking the flow like a browser.
The ``make_harness`` and ``harness`` fixtures (conftest.py) build it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from tests.codes import latest_code
from tfa_middleware import Identity, TwoFactor, TwoFactorMiddleware
from tfa_middleware.settings import LimitSettings, Settings

SECRET = "test-secret-key-0123456789-abcdefghijklmnop"
OLD_SECRET = "older-secret-key-0123456789-abcdefghijklmno"
ADMIN_PHONE = ("1", "2015550123")
T0 = 1_800_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def header_resolver(scope: Any) -> Identity | None:
    """The tests' shop says who is logged in with two plain headers."""
    headers = dict(scope["headers"])
    user = headers.get(b"x-test-user")
    if not user:
        return None
    session = headers.get(b"x-test-session")
    return Identity(user.decode(), session.decode() if session else None)


async def _page(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"shop page {request.url.path}")


async def _api(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "tfa": request.scope.get("tfa_middleware") is not None})


async def _ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("shop socket")
    await websocket.close()


def shop_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/", _page),
            Route("/admin", _page),
            Route("/admin/orders", _page, methods=["GET", "POST"]),
            Route("/admin/login", _page),
            Route("/admin/static/app.css", _page),
            Route("/admin/api/orders", _api),
            Route("/account", _page),
            Route("/account/orders", _page),
            WebSocketRoute("/admin/ws", _ws),
        ]
    )


def config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "secret_keys": [SECRET],
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'tfa.sqlite3'}",
        "interfaces": {
            "admin": {
                "path_prefix": "/admin",
                "exempt": ["/admin/login", "/admin/static/"],
                "identity": {"from": "callable", "path": "tests.harness:header_resolver"},
            },
            "customer": {
                "path_prefix": "/account",
                "proof_max_age_seconds": 3600,
                "identity": {"from": "callable", "path": "tests.harness:header_resolver"},
            },
        },
    }
    data.update(overrides)
    return data


# Tests of other behaviours should not trip over the send and verify limits; the limits' own
# tests pass ``limits=LimitSettings()`` (the defaults) to make_harness. Several values are outside
# what a settings file may say, so they are copied onto the defaults past validation.
RELAXED_LIMITS = LimitSettings().model_copy(
    update={
        "verify_max_failures": 20,
        "verify_delay_base_seconds": 0.0,
        "send_cooldown_seconds": 0,
        "send_max_per_10_minutes": 10_000,
        "send_max_per_hour": 10_000,
        "send_max_per_phone_per_hour": 10_000,
        "send_max_per_ip_per_hour": 10_000,
        "send_budget_per_hour": 10_000,
        "send_budget_per_day": 10_000,
    }
)


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *_: Any) -> None:
        self.count += 1


@dataclass
class Harness:
    """The middleware around the tiny shop, with helpers that walk the flow like a browser."""

    settings: Settings
    service: TwoFactor
    app: TwoFactorMiddleware
    client: httpx.AsyncClient
    clock: FakeClock
    queries: QueryCounter
    cookies: dict[str, str] = field(default_factory=dict)

    def as_user(self, user: str, session: str | None = None) -> dict[str, str]:
        headers = {"x-test-user": user, "accept": "text/html"}
        if session:
            headers["x-test-session"] = session
        return headers

    async def csrf(self, headers: dict[str, str], page: str = "/admin/_2fa/challenge") -> str:
        response = await self.client.get(page, headers=headers, follow_redirects=True)
        match = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
        assert match, f"no CSRF token on {page}: {response.status_code} {response.text[:300]}"
        return match.group(1)

    async def latest_code(self) -> str:
        return await latest_code(self.service.store)

    async def send(self, headers: dict[str, str], prefix: str = "/admin") -> httpx.Response:
        token = await self.csrf(headers, f"{prefix}/_2fa/challenge")
        return await self.client.post(f"{prefix}/_2fa/send", data={"csrf_token": token}, headers=headers)

    async def verify(
        self, headers: dict[str, str], code: str, prefix: str = "/admin", next_: str | None = None
    ) -> httpx.Response:
        token = await self.csrf(headers, f"{prefix}/_2fa/challenge")
        url = f"{prefix}/_2fa/verify" + (f"?next={next_}" if next_ else "")
        return await self.client.post(url, data={"csrf_token": token, "code": code}, headers=headers)

    async def pass_challenge(self, user: str, prefix: str = "/admin", session: str | None = None) -> str:
        """Send and verify a code; return the proof cookie value the browser now holds."""
        headers = self.as_user(user, session)
        sent = await self.send(headers, prefix)
        assert sent.status_code == 303, sent.text
        verified = await self.verify(headers, await self.latest_code(), prefix)
        assert verified.status_code == 303, verified.text
        name = "tfa_admin" if prefix == "/admin" else "tfa_customer"
        return verified.cookies[name]


async def snapshot(h: Harness) -> tuple[Any, ...]:
    """Everything a request could change: codes, enrollments, factors, outbox and audit events."""
    from sqlalchemy import select

    from tfa_middleware.store import events as event_rows
    from tfa_middleware.store import outbox as outbox_rows
    from tfa_middleware.tables import codes, enrollments, factors

    async with h.service.store.engine.connect() as conn:
        code_rows = (await conn.execute(select(codes).order_by(codes.c.id))).all()
        enrollment_rows = (await conn.execute(select(enrollments).order_by(enrollments.c.id))).all()
        factor_rows = (await conn.execute(select(factors).order_by(factors.c.id))).all()
    return (
        [tuple(r) for r in code_rows],
        [tuple(r) for r in enrollment_rows],
        [tuple(r) for r in factor_rows],
        await outbox_rows.latest(h.service.store, 1000),
        await event_rows.latest(h.service.store, limit=1000),
    )
