"""The smallest shop as uvicorn factories, bare and wrapped, for the end-to-end benchmark.

The demo shop needs no factory of its own: ``demo_app.shop:build_shop`` is the bare shop and
``demo_app.app:create_app`` the wrapped one. Settings come from the environment the benchmark sets.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette

from tfa_middleware import TwoFactorMiddleware

from .common import bench_settings, shop


def minimal_bare() -> Starlette:
    return shop()


def minimal_wrapped() -> TwoFactorMiddleware:
    return TwoFactorMiddleware(shop(), bench_settings(os.environ["TFA_BENCH_DATABASE_URL"]))
