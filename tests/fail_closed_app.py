"""A small shop behind the middleware, for tests that need a real uvicorn (root path, proxy headers).

``uvicorn --factory tests.fail_closed_app:create_app`` with TFA_TEST_CONFIG naming the settings
file. The shop logs a user in at ``/login?user=…&sid=…`` (a Starlette session cookie), serves
``/admin/orders`` to whoever its session says, and believes an ``X-Remote-User`` header as an
authenticating proxy's shop would.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tfa_middleware import TwoFactorMiddleware

SHOP_SECRET = "fail-closed-shop-secret-0123456789-abcdef"


async def login(request: Request) -> Response:
    request.session.update({"user_id": request.query_params["user"], "sid": request.query_params["sid"]})
    return PlainTextResponse("logged in")


async def orders(request: Request) -> Response:
    user = request.headers.get("x-remote-user") or request.session.get("user_id")
    if not user:
        return RedirectResponse(request.url_for("login"), status_code=303)
    return PlainTextResponse(f"orders of {user}")


async def logout(request: Request) -> Response:
    request.session.clear()
    return PlainTextResponse("logged out")


def shop() -> Starlette:
    return Starlette(
        routes=[
            Route("/", orders),
            Route("/login", login, name="login"),
            Route("/admin/orders", orders),
            Route("/admin/logout", logout),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key=SHOP_SECRET)],
    )


def create_app() -> ASGIApp:
    return TwoFactorMiddleware.from_yaml(shop(), os.environ["TFA_TEST_CONFIG"])
