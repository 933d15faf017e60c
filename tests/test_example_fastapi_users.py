"""examples/fastapi_users end to end: a real fastapi-users shop (SQLite through its SQLAlchemy
adapter, JWT in its CookieTransport cookie) under uvicorn, protected by its config.yaml alone.

Log in through the shop's own /auth/jwt/login, be sent to the challenge, pass it with the code
from the sandbox outbox, reach the page; log out through the shop's /auth/jwt/logout and in again:
asked again. Tokens the shop itself refuses are never taken as the user.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.codes import code_in
from tests.servers import uvicorn_server
from tests.tokens import OTHER_SECRET, sign, unsigned

FACTORY = "examples.fastapi_users.app:create_app"
EMAIL, PASSWORD = "ann@example.com", "a-long-password-for-ann"
HTML = {"accept": "text/html"}


CONFIG = Path(__file__).parent.parent / "examples" / "fastapi_users" / "config.yaml"


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    env = {
        **os.environ,
        "SHOP_DB": str(tmp_path / "shop.sqlite3"),
        "TFA_DB": str(tmp_path / "tfa.sqlite3"),
    }
    with uvicorn_server(FACTORY, tmp_path, env) as url:
        yield url, tmp_path / "tfa.sqlite3"


@pytest.fixture
def shop_without_logout_url(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The example with its config.yaml minus ``logout_url``: the middleware sees the logout in
    the shop's answer (its cookie deleted) alone."""
    lines = CONFIG.read_text().splitlines(keepends=True)
    config = tmp_path / "config.yaml"
    config.write_text("".join(line for line in lines if "logout" not in line))
    assert "logout_url" not in config.read_text()
    assert "from: jwt" in config.read_text()
    env = {
        **os.environ,
        "SHOP_DB": str(tmp_path / "shop.sqlite3"),
        "TFA_DB": str(tmp_path / "tfa.sqlite3"),
        "TFA_CONFIG": str(config),
    }
    with uvicorn_server(FACTORY, tmp_path, env) as url:
        yield url, tmp_path / "tfa.sqlite3"


def latest_code(database: Path, user_id: str) -> str:
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        row = db.execute(
            "SELECT body FROM tfa_outbox WHERE user_id = ? ORDER BY id DESC LIMIT 1", (user_id,)
        ).fetchone()
    assert row, f"no text message to {user_id} in the outbox"
    return code_in(row[0])


def csrf(client: httpx.Client, page: str) -> str:
    response = client.get(page, headers=HTML)
    match = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
    assert match, f"no CSRF token on {page}: {response.status_code} {response.text[:300]}"
    return match.group(1)


def log_in(client: httpx.Client) -> str:
    """fastapi-users' own login (a form post); the token its CookieTransport sets."""
    response = client.post("/auth/jwt/login", data={"username": EMAIL, "password": PASSWORD})
    assert response.status_code == 204, response.text
    return client.cookies["fastapiusersauth"]


def test_a_fastapi_users_shop_with_yaml_alone(shop: tuple[str, Path]) -> None:
    url, tfa_db = shop
    with httpx.Client(base_url=url) as client:
        registered = client.post("/auth/register", json={"email": EMAIL, "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        user_id = registered.json()["id"]
        # Nobody logged in: the shop answers its own 401, untouched.
        assert client.get("/admin/", headers=HTML).status_code == 401

        log_in(client)
        stopped = client.get("/admin/", headers=HTML)
        assert stopped.status_code == 303
        assert stopped.headers["location"].startswith("/admin/_2fa/challenge?")
        # No phone yet: enrollment, then the code from the sandbox outbox.
        token = csrf(client, "/admin/_2fa/enroll")
        enrolled = client.post(
            "/admin/_2fa/enroll", data={"csrf_token": token, "country_code": "1", "phone": "2015550123"}
        )
        assert enrolled.status_code == 303, enrolled.text
        code = latest_code(tfa_db, user_id)
        verified = client.post("/admin/_2fa/verify", data={"csrf_token": token, "code": code})
        assert verified.status_code == 303, verified.text
        page = client.get("/admin/", headers=HTML)
        assert page.status_code == 200
        assert f"Signed in as {EMAIL}" in page.text
        first_proof = client.cookies["tfa_admin"]

        # The shop's logout deletes its cookie; logout_url ends the second factor in the same answer.
        time.sleep(1.1)  # the next login's exp (whole seconds) must differ from this one's
        out = client.post("/auth/jwt/logout")
        assert out.status_code == 204
        cleared = out.headers.get_list("set-cookie")
        assert any(c.startswith('fastapiusersauth=""') and "Max-Age=0" in c for c in cleared), cleared
        assert any(c.startswith("tfa_admin=") for c in cleared), cleared
        assert "tfa_admin" not in client.cookies

        # Logged in again: asked again...
        log_in(client)
        again = client.get("/admin/", headers=HTML)
        assert again.status_code == 303
        assert again.headers["location"].startswith("/admin/_2fa/challenge?")
        # ...and the first login's proof, kept by a copy, is bound to that login's token (exp).
        client.cookies.set("tfa_admin", first_proof)
        assert client.get("/admin/", headers=HTML).status_code == 303


def test_without_logout_url_logging_out_and_in_asks_again(shop_without_logout_url: tuple[str, Path]) -> None:
    # Measured before the shop's answer was watched: logged in again within the same second (the
    # same exp, so the same binding), the old proof let the user in without a code.
    url, tfa_db = shop_without_logout_url
    with httpx.Client(base_url=url) as client:
        registered = client.post("/auth/register", json={"email": EMAIL, "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        log_in(client)
        token = csrf(client, "/admin/_2fa/enroll")
        enrolled = client.post(
            "/admin/_2fa/enroll", data={"csrf_token": token, "country_code": "1", "phone": "2015550123"}
        )
        assert enrolled.status_code == 303, enrolled.text
        code = latest_code(tfa_db, registered.json()["id"])
        assert client.post("/admin/_2fa/verify", data={"csrf_token": token, "code": code}).status_code == 303
        assert client.get("/admin/", headers=HTML).status_code == 200

        out = client.post("/auth/jwt/logout")  # fastapi-users' CookieTransport: Max-Age=0, no Expires
        assert out.status_code == 204
        assert any(c.startswith("tfa_admin=") for c in out.headers.get_list("set-cookie"))
        assert "tfa_admin" not in client.cookies
        log_in(client)
        again = client.get("/admin/", headers=HTML)
        assert again.status_code == 303
        assert again.headers["location"].startswith("/admin/_2fa/challenge?")


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param(
            lambda user: sign({"sub": user, "aud": ["fastapi-users:auth"], "exp": 2**40}, OTHER_SECRET),
            id="other-secret",
        ),
        pytest.param(
            lambda user: unsigned({"sub": user, "aud": ["fastapi-users:auth"], "exp": 2**40}), id="alg-none"
        ),
        pytest.param(
            lambda user: sign(
                {"sub": user, "aud": ["fastapi-users:auth"], "exp": int(time.time()) - 60},
                "example-only-fastapi-users-secret-change-me-0123456789",
            ),
            id="expired",
        ),
        pytest.param(
            lambda user: sign(
                {"sub": user, "aud": ["another:app"], "exp": 2**40},
                "example-only-fastapi-users-secret-change-me-0123456789",
            ),
            id="other-audience",
        ),
    ],
)
def test_a_token_the_shop_refuses_is_never_the_user(shop: tuple[str, Path], forged: Any) -> None:
    url, _ = shop
    with httpx.Client(base_url=url) as client:
        user_id = client.post("/auth/register", json={"email": EMAIL, "password": PASSWORD}).json()["id"]
        client.cookies.set("fastapiusersauth", forged(user_id))
        response = client.get("/admin/", headers=HTML)
    # The shop refuses it (401) and so do we: no challenge for that user, no members' page.
    assert response.status_code == 401
    assert "Members only" not in response.text
