"""The factors beside the phone as a test handles them: the secret on an app's set-up page and
the codes an app would show at a moment, the recovery codes on the page that made them, a service
on any store, and the walks through the pages that set them up."""

from __future__ import annotations

import html
import re
from pathlib import Path

import httpx
import pyotp

from tests.harness import FakeClock, Harness, config
from tfa_middleware import TwoFactor, settings_from_mapping
from tfa_middleware.providers.sandbox import SandboxProvider
from tfa_middleware.settings import LimitSettings
from tfa_middleware.store import Store

_SECRET = re.compile(r'<code id="secret">([A-Z2-7 ]+)</code>')
_CODE = re.compile(r"<li>([A-Z2-7]{4}(?:-[A-Z2-7]{4}){3})</li>")


def secret_on(page: str) -> str:
    """The app's secret, as its set-up page shows it for typing (groups of four)."""
    match = _SECRET.search(page)
    assert match, f"no secret on the page: {page[:500]}"
    return match.group(1).replace(" ", "")


def app_code(secret: str, at: float, steps: int = 0) -> str:
    """The code the app shows at ``at`` (``steps`` 30-second steps later)."""
    return pyotp.TOTP(secret).at(at, counter_offset=steps)


def recovery_codes_on(page: str) -> list[str]:
    return _CODE.findall(html.unescape(page))


def make_service(
    store: Store, tmp_path: Path, clock: FakeClock, limits: LimitSettings | None = None, **overrides: object
) -> TwoFactor:
    """The harness's settings over ``store`` (SQLite or PostgreSQL), with the sandbox."""
    settings = settings_from_mapping(config(tmp_path, **overrides))
    if limits is not None:
        settings = settings.model_copy(update={"limits": limits})
    provider = SandboxProvider(store, settings.provider, settings.secret_keys[-1], clock=clock)
    return TwoFactor(settings, store, provider, clock=clock)


async def add_app(h: Harness, user: str, prefix: str = "/admin") -> str:
    """A signed-in user (fresh proof in the client's cookies) sets up an app from the account
    page; the app's secret."""
    headers = h.as_user(user)
    token = await h.csrf(headers, f"{prefix}/_2fa/account")
    begun = await h.client.post(
        f"{prefix}/_2fa/account", data={"csrf_token": token, "action": "add_app"}, headers=headers
    )
    assert begun.status_code == 303, begun.text
    page = await h.client.get(begun.headers["location"], headers=headers)
    assert page.status_code == 200, page.text
    secret = secret_on(page.text)
    token = await h.csrf(headers, f"{prefix}/_2fa/app")
    confirmed = await h.client.post(
        f"{prefix}/_2fa/app",
        data={"csrf_token": token, "action": "confirm", "code": app_code(secret, h.clock.now)},
        headers=headers,
    )
    assert confirmed.status_code == 303, confirmed.text
    assert "/_2fa/account" in confirmed.headers["location"]
    return secret


async def verify_with(
    h: Harness,
    user: str,
    factor: str,
    code: str,
    prefix: str = "/admin",
    remember: bool = False,
    next_: str | None = None,
) -> httpx.Response:
    """POST a code of ``factor`` as the challenge page does (the CSRF token from the logout page,
    which any signed-in or not-yet-signed-in user sees)."""
    headers = h.as_user(user)
    token = await h.csrf(headers, f"{prefix}/_2fa/logout")
    data = {"csrf_token": token, "code": code, "factor": factor}
    if remember:
        data["remember"] = "1"
    url = f"{prefix}/_2fa/verify" + (f"?next={next_}" if next_ else "")
    return await h.client.post(url, data=data, headers=headers)
