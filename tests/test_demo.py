"""The demo shop under a real uvicorn, walked over plain HTTP the way the README tells a newcomer
to, with the code read by `tfa-middleware outbox`. The same walk in a real browser, and every
other flow of the pages, is in test_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from demo_app.app import DEFAULT_CONFIG, create_app, seed_phones
from demo_app.shop import build_shop
from tests.conftest import FakeClock, uvicorn_server
from tfa_middleware import TwoFactor, TwoFactorMiddleware, load_settings
from tfa_middleware.store import outbox as outbox_rows

ROOT = Path(__file__).resolve().parent.parent


class Demo:
    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.url = url
        self.env = env

    def outbox(self) -> list[dict[str, str]]:
        """What `tfa-middleware outbox --json` prints, as the README tells a newcomer to run it."""
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tfa_middleware.cli",
                "outbox",
                "--config",
                "demo_app/config.yaml",
                "--json",
            ],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return [json.loads(line) for line in result.stdout.splitlines()]

    def latest_code(self, user_id: str) -> str:
        mine = [m for m in self.outbox() if m["user_id"] == user_id]
        assert mine, "no code in the outbox"
        match = re.search(r"\b(\d{6})\b", mine[-1]["body"])
        assert match
        return match.group(1)


def make_demo_args() -> tuple[str, ...]:
    """The extra uvicorn arguments `make demo` passes, read from the Makefile itself."""
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("DEMO_UVICORN_ARGS ="):
            return tuple(line.split("=", 1)[1].split())
    raise AssertionError("the Makefile no longer defines DEMO_UVICORN_ARGS")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """A fresh demo server and database per test: the send limits of one test never reach another."""
    env = {**os.environ, "TFA_DEMO_DB": str(tmp_path / "demo.sqlite3"), "PYTHONPATH": str(ROOT)}
    with uvicorn_server("demo_app.app:create_app", tmp_path, env, args=make_demo_args()) as url:
        yield Demo(url, env)


def test_readme_walkthrough_over_http(demo: Demo) -> None:
    with httpx.Client(base_url=demo.url, headers={"accept": "text/html"}) as browser:
        login = browser.post("/admin/login", data={"email": "admin@example.com", "password": "admin"})
        assert login.status_code == 303
        stopped = browser.get("/admin")
        assert stopped.status_code == 303
        assert stopped.headers["location"].startswith("/admin/_2fa/challenge?next=")
        challenge = browser.get(stopped.headers["location"])
        assert "+1 ••• ••• 0123" in challenge.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', challenge.text)
        assert token
        sent = browser.post("/admin/_2fa/send", data={"csrf_token": token.group(1)})
        assert sent.status_code == 303
        code = demo.latest_code("1")
        done = browser.post(
            "/admin/_2fa/verify?next=/admin", data={"csrf_token": token.group(1), "code": code}
        )
        assert done.status_code == 303 and done.headers["location"] == "/admin"
        orders = browser.get("/admin")
        assert orders.status_code == 200 and "<h1>Orders</h1>" in orders.text
        # Logging out of the shop ends the proof: it is bound to the shop's login session.
        browser.post("/admin/logout")
        browser.post("/admin/login", data={"email": "admin@example.com", "password": "admin"})
        assert browser.get("/admin").status_code == 303


def test_the_demo_does_not_believe_a_forwarded_address_from_this_machine(demo: Demo) -> None:
    # uvicorn's defaults would let anybody on 127.0.0.1 choose the address that the per-address
    # send limit and the audit log see; `make demo` turns proxy headers off.
    forged = {"accept": "text/html", "x-forwarded-for": "203.0.113.9"}
    with httpx.Client(base_url=demo.url, headers=forged) as browser:
        browser.post("/admin/login", data={"email": "admin@example.com", "password": "admin"})
        challenge = browser.get("/admin/_2fa/challenge")
        token = re.search(r'name="csrf_token" value="([^"]+)"', challenge.text)
        assert token
        assert browser.post("/admin/_2fa/send", data={"csrf_token": token.group(1)}).status_code == 303
    result = subprocess.run(
        [sys.executable, "-m", "tfa_middleware.cli", "audit", "--config", "demo_app/config.yaml", "--json"],
        cwd=ROOT,
        env=demo.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    events = [json.loads(line) for line in result.stdout.splitlines()]
    sent = [e for e in events if e["event"] == "code_sent"]
    assert sent and {e["ip"] for e in sent} == {"127.0.0.1"}


async def test_concurrent_sign_ups_each_get_their_own_id_and_phone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Six people sign up at the same moment: each account must get its own user id, and the phone
    # each typed must be the one waiting for that account's confirmation.
    monkeypatch.setenv("TFA_DEMO_DB", str(tmp_path / "demo.sqlite3"))
    app = create_app()
    assert isinstance(app, TwoFactorMiddleware)
    transport = httpx.ASGITransport(app=app)
    numbers = {f"person{n}@example.com": f"20155501{n:02d}" for n in range(6)}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:

            async def sign_up(email: str, number: str) -> httpx.Response:
                form = {
                    "email": email,
                    "name": email.split("@")[0],
                    "password": "correct horse battery",
                    "country_code": "1",
                    "phone": number,
                }
                return await client.post("/signup", data=form)

            answers = await asyncio.gather(*(sign_up(e, n) for e, n in numbers.items()))
            assert [a.status_code for a in answers] == [303] * 6
        directory = app.app.state.directory  # type: ignore[attr-defined]
        users = [u for u in directory.users if u.email in numbers]
        assert len(users) == 6
        assert len({u.id for u in users}) == 6
        for user in users:
            status = await app.service.status("customer", user.id)
            assert status.pending_masked_phone == f"+1 ••• ••• {numbers[user.email][-4:]}", user
    finally:
        await app.service.close()


async def test_the_demo_logout_ends_a_copied_session_and_proof(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo's session is a signed cookie: a copy taken before "Log out" stays a valid session.
    # The shop's logout calls sign_out with the login's sid, so the copy's proof is refused.
    monkeypatch.setenv("TFA_DEMO_DB", str(tmp_path / "demo.sqlite3"))
    clock = FakeClock()
    settings = load_settings(DEFAULT_CONFIG)
    tfa = TwoFactor.from_settings(settings, clock=clock)
    app = TwoFactorMiddleware(build_shop(tfa=tfa), service=tfa, clock=clock)
    headers = {"accept": "text/html"}
    try:
        await seed_phones(tfa)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://shop.test", headers=headers
        ) as browser:
            await browser.post("/admin/login", data={"email": "admin@example.com", "password": "admin"})
            challenge = await browser.get("/admin/_2fa/challenge")
            token = re.search(r'name="csrf_token" value="([^"]+)"', challenge.text)
            assert token
            await browser.post("/admin/_2fa/send", data={"csrf_token": token.group(1)})
            code = re.search(r"\b(\d{6})\b", (await outbox_rows.latest(tfa.store, 1))[0].body)
            assert code
            verified = await browser.post(
                "/admin/_2fa/verify", data={"csrf_token": token.group(1), "code": code.group(1)}
            )
            assert verified.status_code == 303
            assert (await browser.get("/admin")).status_code == 200
            copied = dict(browser.cookies)
            assert set(copied) == {"session", "tfa_admin"}
            await browser.post("/admin/logout")
        clock.advance(settings.revocation_check_seconds)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://shop.test",
            headers=headers,
            cookies=copied,
        ) as thief:
            stopped = await thief.get("/admin")
            assert stopped.status_code == 303
            assert stopped.headers["location"].startswith("/admin/_2fa/challenge")
    finally:
        await tfa.close()
