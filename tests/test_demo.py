"""The demo shop under a real uvicorn, walked over plain HTTP the way the README tells a newcomer
to, with the code read by `tfa-middleware outbox`. The same walk in a real browser, and every
other flow of the pages, is in test_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import uvicorn_server

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
