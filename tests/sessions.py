"""Starlette session cookies as a real shop sets them: through Starlette's own SessionMiddleware,
or signed at a chosen time, for the identity tests and ``doctor``'s."""

from __future__ import annotations

import json
from base64 import b64encode
from typing import Any

import httpx
import pytest
from itsdangerous import TimestampSigner
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

SHOP_SECRET = "shop-session-secret-0123456789-abcdefghij"
OTHER_SECRET = "another-shop-secret-0123456789-abcdefghi"


async def real_session_cookie(session: dict[str, Any], secret: str = SHOP_SECRET) -> str:
    """The cookie a real Starlette SessionMiddleware sets for ``session``."""

    async def login(request: Request) -> PlainTextResponse:
        request.session.update(session)
        return PlainTextResponse("logged in")

    app = Starlette(
        routes=[Route("/login", login)], middleware=[Middleware(SessionMiddleware, secret_key=secret)]
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://shop.test"
    ) as client:
        response = await client.get("/login")
    value: str = response.cookies["session"]
    return value


def cookie_signed_at(
    monkeypatch: pytest.MonkeyPatch, when: int, session: dict[str, Any], secret: str = SHOP_SECRET
) -> str:
    """A Starlette session cookie as if signed at ``when`` (itsdangerous reads the real time)."""
    data = b64encode(json.dumps(session).encode())
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda _self: when)
        return TimestampSigner(secret).sign(data).decode()
