"""A tiny shop for the multi-process tests: ``uvicorn --factory tests.workers_app:create_app``.

It answers /admin/pid with the worker's process id, so a test can see which worker served a
request; who is logged in comes from a plain header (the tests' stand-in for a shop login).
The settings file is named by TFA_WORKERS_CONFIG.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tfa_middleware import Identity, TwoFactorMiddleware


def header_identity(scope: Any) -> Identity | None:
    for key, value in scope["headers"]:
        if key == b"x-test-user":
            return Identity(value.decode())
    return None


async def pid(_request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(os.getpid()))


def create_app() -> TwoFactorMiddleware:
    shop = Starlette(
        routes=[
            Route("/admin/pid", pid),
            Route("/admin/pay", pid, methods=["GET", "POST"]),  # a step-up rule's path (issue 17)
            Route("/staff/pid", pid),  # an interface in report mode (issue 17)
        ]
    )
    return TwoFactorMiddleware.from_yaml(shop, os.environ["TFA_WORKERS_CONFIG"])
