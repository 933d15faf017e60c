"""The WSGI middleware under a real gunicorn with 2 workers, sync and gthread: the pages and the
database work in every worker (each starts its own loop after the fork, also when the app was
built, and its loop and database used, in the master with ``--preload``), a proof issued by one
worker is valid on the other, and the shop's logout clears it."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import httpx
import pytest
import yaml

from tests.codes import latest_code
from tests.harness import ADMIN_PHONE, SECRET
from tests.servers import gunicorn_server
from tests.wsgi_shop import SHOP_SECRET
from tfa_middleware import TwoFactor, load_settings

CLOSE = {"connection": "close", "accept": "text/html"}  # a new connection each time: any worker answers


def write_config(folder: Path, database_url: str) -> Path:
    path = folder / "tfa.yaml"
    identity = {"from": "starlette_session_cookie", "secret_key": SHOP_SECRET, "key": "user_id"}
    data = {
        "secret_keys": [SECRET],
        "database_url": database_url,
        # Every worker asks the database on each request: a revocation holds everywhere at once.
        "revocation_check_seconds": 0,
        "interfaces": {
            "admin": {
                "path_prefix": "/admin",
                "exempt": ["/admin/login"],
                "logout_url": "/admin/logout",
                "identity": {**identity, "session_id_key": "sid"},
            }
        },
    }
    path.write_text(yaml.safe_dump(data))
    return path


async def enroll(config: Path) -> None:
    async with TwoFactor.from_settings(load_settings(config)) as tfa:
        await tfa.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
        await tfa.set_phone("admin", "bob", "1", "2015550124", confirmed=True)


async def newest_code(config: Path) -> str:
    async with TwoFactor.from_settings(load_settings(config)) as tfa:
        return await latest_code(tfa.store)


def pass_challenge(browser: httpx.Client, config: Path, user: str, sid: str) -> None:
    assert browser.get("/login", params={"user": user, "sid": sid}, headers=CLOSE).text == "logged in"
    stopped = browser.get("/admin/orders", headers=CLOSE)
    assert stopped.status_code == 303, stopped.text
    page = browser.get(stopped.headers["location"], headers=CLOSE)
    assert page.status_code == 200, page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    sent = browser.post("/admin/_2fa/send", data={"csrf_token": token.group(1)}, headers=CLOSE)
    assert sent.status_code == 303, sent.text
    code = asyncio.run(newest_code(config))
    done = browser.post(
        "/admin/_2fa/verify", data={"csrf_token": token.group(1), "code": code}, headers=CLOSE
    )
    assert done.status_code == 303, done.text
    assert browser.get("/admin/orders", headers=CLOSE).text == f"orders of {user}"


def workers_seen(browser: httpx.Client, tries: int = 300) -> set[str]:
    """The workers that let this browser's proof through, until both did (or ``tries`` requests)."""
    pids: set[str] = set()
    for _ in range(tries):
        response = browser.get("/admin/pid", headers=CLOSE)
        assert response.status_code == 200, response.text
        pids.add(response.text)
        if len(pids) == 2:
            break
    return pids


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
@pytest.mark.parametrize("preload", [False, True], ids=["import-in-worker", "preload-warm-master"])
def test_under_gunicorn_two_workers(tmp_path: Path, worker_class: str, preload: bool) -> None:
    config = write_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'tfa.sqlite3'}")
    asyncio.run(enroll(config))
    env = {**os.environ, "TFA_TEST_CONFIG": str(config)}
    args: tuple[str, ...] = ()
    if preload:
        # The app is built in the master, which also starts the loop and opens a connection:
        # both are dead in the forked workers, which must start their own.
        env["TFA_TEST_WARM"] = "1"
        args = ("--preload",)
    with (
        gunicorn_server(
            "tests.wsgi_shop:create_app()", tmp_path, env, worker_class=worker_class, args=args
        ) as url,
        httpx.Client(base_url=url) as alice,
        httpx.Client(base_url=url) as bob,
    ):
        pass_challenge(alice, config, "alice", "s1")
        pass_challenge(bob, config, "bob", "s2")
        assert len(workers_seen(alice)) == 2  # the proof from one worker holds on the other
        assert len(workers_seen(bob)) == 2

        copied = dict(alice.cookies)
        out = alice.get("/admin/logout", headers=CLOSE)
        assert out.status_code == 303
        assert "tfa_admin" not in alice.cookies  # the shop's logout cleared the proof
        alice.cookies.clear()
        alice.cookies.update(copied)
        # The login is revoked in the database: every worker refuses the copied proof.
        for _ in range(6):
            replayed = alice.get("/admin/orders", headers=CLOSE)
            assert replayed.status_code == 303
            assert replayed.headers["location"].startswith("/admin/_2fa/challenge?")
        assert bob.get("/admin/orders", headers=CLOSE).text == "orders of bob"
    log = (tmp_path / "gunicorn.log").read_text()
    assert "Traceback" not in log, log
