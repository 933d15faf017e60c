"""The demo shop under a real uvicorn, walked the way the README tells a newcomer to: over plain
HTTP, and in a real Chromium driven by Playwright.

Browser tests need Chromium (``TFA_CHROMIUM``, default /usr/bin/chromium) and Playwright. On a
laptop without them they skip with the reason; under CI ``TFA_REQUIRE_BROWSER=1`` makes that a
failure, so the browser half can never silently stop running.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """A fresh demo server and database per test: the send limits of one test never reach another."""
    folder = tmp_path
    port = _free_port()
    env = {**os.environ, "TFA_DEMO_DB": str(folder / "demo.sqlite3"), "PYTHONPATH": str(ROOT)}
    log = (folder / "uvicorn.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "demo_app.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):  # up to ~20 s for the server to answer
            if server.poll() is not None:
                pytest.fail(f"the demo exited: {(folder / 'uvicorn.log').read_text()}")
            try:
                httpx.get(url + "/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("the demo did not start in time")
        yield Demo(url, env)
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()


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


def _chromium() -> str:
    path = os.environ.get("TFA_CHROMIUM", "/usr/bin/chromium")
    required = os.environ.get("TFA_REQUIRE_BROWSER") == "1"
    missing = None
    if not (shutil.which(path) or Path(path).is_file()):
        missing = f"no Chromium at {path} (apt-get install chromium, or set TFA_CHROMIUM)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "Playwright is not installed (pip install -e '.[dev]')"
    if missing:
        if required:
            pytest.fail(f"TFA_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    return path


@pytest.mark.browser
@pytest.mark.parametrize("width", [1280, 375])
def test_admin_signs_in_with_a_code_in_a_real_browser(demo: Demo, width: int) -> None:
    chromium = _chromium()
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": 800})
            page.goto(demo.url + "/admin/login")
            page.fill("#email", "admin@example.com")
            page.fill("#password", "admin")
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Enter your code")
            expect(page.locator("#code")).to_be_focused()
            page.screenshot(path=ARTIFACTS / f"challenge-{width}.png", full_page=True)
            page.click("text=Text me a code")
            expect(page.get_by_role("status")).to_contain_text("We sent a code to +1 ••• ••• 0123")
            page.fill("#code", "000000" if demo.latest_code("1") != "000000" else "111111")
            page.click("text=Verify")
            expect(page.get_by_role("alert")).to_contain_text("That code didn't work")
            # After a wrong code the next try must wait a growing delay (1 s first), as a person would.
            page.wait_for_timeout(1100)
            page.fill("#code", demo.latest_code("1"))
            page.click("text=Verify")
            expect(page.locator("h1")).to_have_text("Orders")
            assert page.url.rstrip("/").endswith("/admin")
            page.screenshot(path=ARTIFACTS / f"admin-orders-{width}.png", full_page=True)
            scroll = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
            assert not scroll, "the page scrolls sideways"
        finally:
            browser.close()


def test_a_customer_signs_up_with_a_phone_and_confirms_it_at_the_first_visit(demo: Demo) -> None:
    with httpx.Client(base_url=demo.url, headers={"accept": "text/html"}) as browser:
        bad = browser.post(
            "/signup",
            data={
                "name": "Nina",
                "email": "nina@example.com",
                "password": "long enough",
                "country_code": "1",
                "phone": "123",
            },
        )
        assert bad.status_code == 400 and "That phone number is too short." in bad.text
        signed_up = browser.post(
            "/signup",
            data={
                "name": "Nina",
                "email": "nina@example.com",
                "password": "long enough",
                "country_code": "+1",
                "phone": "201 555 0199",
            },
        )
        assert signed_up.status_code == 303
        stopped = browser.get("/account", follow_redirects=True)
        assert "Confirm +1 ••• ••• 0199" in stopped.text  # the number given at sign-up, pending
        token = re.search(r'name="csrf_token" value="([^"]+)"', stopped.text)
        assert token
        browser.post("/account/_2fa/send", data={"csrf_token": token.group(1)})
        user_id = demo.outbox()[-1]["user_id"]
        done = browser.post(
            "/account/_2fa/verify", data={"csrf_token": token.group(1), "code": demo.latest_code(user_id)}
        )
        assert done.status_code == 303
        assert "Hello, Nina" in browser.get("/account").text


def test_the_demo_admin_may_manage_and_the_vendor_may_not(demo: Demo) -> None:
    with httpx.Client(base_url=demo.url, headers={"accept": "text/html"}) as browser:
        browser.post("/admin/login", data={"email": "admin@example.com", "password": "admin"})
        page = browser.get("/admin/_2fa/challenge")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        browser.post("/admin/_2fa/send", data={"csrf_token": token.group(1)})
        browser.post("/admin/_2fa/verify", data={"csrf_token": token.group(1), "code": demo.latest_code("1")})
        manage = browser.get("/admin/_2fa/manage")
        assert manage.status_code == 200 and "Second factors" in manage.text
