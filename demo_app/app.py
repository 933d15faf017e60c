"""Wiring: the demo shop wrapped by TwoFactorMiddleware, for ``uvicorn --factory``.

    uvicorn --factory demo_app.app:create_app --host 127.0.0.1 --port 8000

Nothing is built at import time: settings are read and the database is opened only when the
factory is called, so importing this module (tests, tools) has no side effects.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.types import ASGIApp

from tfa_middleware import TwoFactor, TwoFactorMiddleware

from .shop import DEMO_SHOP_SECRET, build_shop, shop_secret

DEFAULT_CONFIG = Path(__file__).with_name("config.yaml")

log = logging.getLogger("demo_app")


@dataclass(frozen=True, slots=True)
class SeedPhone:
    interface: str
    user_id: str
    country_code: str
    number: str


# The admin and the customer arrive with a confirmed phone so the demo starts at the challenge
# page; the vendor has none on purpose, to show enrollment. The numbers are from the North
# American 555-0100..0199 block, set aside for fiction and still accepted by the phone-number
# rules; the UK's drama range (07700 900xxx) is not, so it cannot be used here.
SEED_PHONES = (
    SeedPhone("admin", "1", "1", "2025550123"),
    SeedPhone("customer", "3", "1", "2025550145"),
)


async def seed_phones(tfa: TwoFactor) -> None:
    # Only users with no enrollment at all are seeded, so a phone changed or reset while trying
    # the demo survives a restart.
    for seed in SEED_PHONES:
        if (await tfa.status(seed.interface, seed.user_id)).state == "none":
            await tfa.set_phone(seed.interface, seed.user_id, seed.country_code, seed.number, confirmed=True)


def create_app(config_path: str | os.PathLike[str] | None = None) -> ASGIApp:
    """Build the demo: settings from ``config_path``, else $TFA_DEMO_CONFIG, else demo_app/config.yaml."""
    tfa = TwoFactor.from_yaml(config_path or os.environ.get("TFA_DEMO_CONFIG") or DEFAULT_CONFIG)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # The service is shared with the middleware below, which leaves closing it to us.
        async with tfa:
            await seed_phones(tfa)
            yield

    # An empty variable counts as unset, as the config's ${TFA_SECRET_KEY:-...} reads it.
    if not os.environ.get("TFA_SECRET_KEY"):
        log.warning(
            "TFA_SECRET_KEY is not set: proofs are signed with the public demo key (fine for the demo only)"
        )
    if shop_secret() == DEMO_SHOP_SECRET:
        log.warning("SHOP_SECRET is not set: using the public demo secret (fine for the demo only)")
    shop = build_shop(tfa=tfa, lifespan=lifespan)
    return TwoFactorMiddleware(shop, service=tfa)
