"""The smallest shop as uvicorn factories, bare and wrapped, for the end-to-end benchmark.

The demo shop needs no factory of its own: ``demo_app.shop:build_shop`` is the bare shop and
``demo_app.app:create_app`` the wrapped one. Settings come from the environment the benchmark sets:
``TFA_BENCH_DATABASE_URL``, and ``TFA_BENCH_TRUSTED_PROXIES`` (comma-separated) for the challenge
benchmark, whose clients come through a proxy.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette

from tfa_middleware import TwoFactorMiddleware

from .common import bench_settings, shop


def minimal_bare() -> Starlette:
    return shop()


def minimal_wrapped() -> TwoFactorMiddleware:
    proxies = [p for p in os.environ.get("TFA_BENCH_TRUSTED_PROXIES", "").split(",") if p]
    return TwoFactorMiddleware(
        shop(), bench_settings(os.environ["TFA_BENCH_DATABASE_URL"], trusted_proxies=proxies)
    )
