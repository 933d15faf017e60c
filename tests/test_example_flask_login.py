"""examples/flask_login end to end: the Flask-Login shop, wrapped by its one line, under a real
gunicorn with 2 workers (sync and gthread), started from the example's folder as its README says.

Log in through Flask-Login's own view, be sent to our pages, enroll with the code from the sandbox
outbox, reach the orders on every worker; log out through the shop's logout (``logout_url``) and in
again: asked again. A Flask cookie the shop's secret did not sign (another secret, expired,
altered) never becomes the user. One server per worker class serves every test of this module.
(That every worker refuses a proof copied before the logout, within ``revocation_check_seconds``,
is tests/test_wsgi_gunicorn.py's.)
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.codes import code_in
from tests.flask_shop import OLD_SECRET, SECRET, sign
from tests.helpers import ROOT
from tests.servers import gunicorn_server

EXAMPLE = ROOT / "examples" / "flask_login"
# A new connection for every request, so that either worker may answer it.
HTML = {"accept": "text/html", "connection": "close"}
ALICE = {"name": "alice", "password": "alice-password"}


@dataclass
class Shop:
    url: str
    tfa_db: Path
    log: Path

    def latest_code(self, user_id: str) -> str:
        with closing(sqlite3.connect(f"file:{self.tfa_db}?mode=ro", uri=True)) as db:
            row = db.execute(
                "SELECT body FROM tfa_outbox WHERE user_id = ? ORDER BY id DESC LIMIT 1", (user_id,)
            ).fetchone()
        assert row, f"no text message to user {user_id} in the outbox"
        return code_in(row[0])

    def age_the_sends(self, seconds: float = 3600) -> None:
        """As if the codes had been asked for an hour ago (the resend cooldown is not tested here)."""
        with closing(sqlite3.connect(self.tfa_db)) as db, db:
            db.execute("UPDATE tfa_send SET at = at - ?", (seconds,))

    def texts_sent(self) -> int:
        with closing(sqlite3.connect(self.tfa_db)) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
            if "tfa_outbox" not in tables:
                return 0
            return int(db.execute("SELECT COUNT(*) FROM tfa_outbox").fetchone()[0])


@pytest.fixture(scope="module", params=["sync", "gthread"])
def shop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    folder = tmp_path_factory.mktemp(f"flask-{request.param}")
    env = {
        **os.environ,
        "FLASK_SECRET": SECRET,
        "TFA_SECRET_KEY": "flask-example-tfa-key-for-the-tests-0123456789",
        "TFA_DB": str(folder / "tfa.sqlite3"),
    }
    with gunicorn_server("app:app", folder, env, worker_class=request.param, cwd=EXAMPLE) as url:
        yield Shop(url, folder / "tfa.sqlite3", folder / "gunicorn.log")
    log = (folder / "gunicorn.log").read_text()
    assert "Traceback" not in log, log


def csrf_token(page: httpx.Response) -> str:
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, f"{page.status_code} {page.text[:500]}"
    return token.group(1)


def log_in(browser: httpx.Client) -> None:
    """Flask-Login's login, through the shop's own form: it sends the browser to the orders."""
    answer = browser.post("/admin/login", data=ALICE, headers=HTML)
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"] == "/admin/"


def second_factor(shop: Shop, browser: httpx.Client, location: str) -> None:
    """Our pages from the redirect the orders answered: enroll a phone the first time, else send a
    code; then the code from the sandbox outbox."""
    page = browser.get(location, headers=HTML, follow_redirects=True)
    token = csrf_token(page)
    if 'name="phone"' in page.text:
        form = {"csrf_token": token, "country_code": "1", "phone": "2015550123"}
        assert browser.post("/admin/_2fa/enroll", data=form, headers=HTML).status_code in (200, 303)
    else:
        shop.age_the_sends()
        assert browser.post("/admin/_2fa/send", data={"csrf_token": token}, headers=HTML).status_code == 303
    form = {"csrf_token": token, "code": shop.latest_code("1")}
    done = browser.post("/admin/_2fa/verify?next=/admin/", data=form, headers=HTML)
    assert done.status_code == 303, done.text


def stopped_at_our_pages(browser: httpx.Client) -> str:
    answer = browser.get("/admin/", headers=HTML)
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith("/admin/_2fa/"), location
    return location


def test_log_in_pass_the_second_factor_log_out_and_in_again(shop: Shop) -> None:
    with httpx.Client(base_url=shop.url) as browser:
        # Nobody logged in: the shop's own redirect to its log-in, untouched.
        visitor = browser.get("/admin/", headers=HTML)
        assert visitor.status_code == 302
        assert visitor.headers["location"].startswith("/admin/login")

        log_in(browser)
        second_factor(shop, browser, stopped_at_our_pages(browser))
        for _ in range(6):  # either worker lets the proof through
            orders = browser.get("/admin/", headers=HTML)
            assert orders.status_code == 200, orders.text
            assert "Orders of alice" in orders.text

        # The shop's logout (logout_url in config.yaml): the proof cookie goes with it, and the
        # login it ends is revoked.
        out = browser.get("/admin/logout", headers=HTML)
        assert out.status_code == 302
        assert "tfa_admin" not in browser.cookies
        log_in(browser)
        location = stopped_at_our_pages(browser)  # asked again
        # Flask-Login's _id is the same at every login from one browser (README): the new proof is
        # bound to the login the logout revoked, and is taken at once (it has seen that sign-out).
        second_factor(shop, browser, location)
        for _ in range(4):
            assert "Orders of alice" in browser.get("/admin/", headers=HTML).text


def forged(kind: str) -> str:
    """A Flask session cookie claiming Flask-Login's user 1, that the shop did not sign now."""
    login = {"_user_id": "1", "_id": "f" * 128, "_fresh": True}
    if kind == "other-secret":
        return sign(login, secret=OLD_SECRET)
    if kind == "expired":
        return sign(login, at=time.time() - 32 * 24 * 3600)  # PERMANENT_SESSION_LIFETIME is 31 days
    genuine = sign({**login, "_user_id": "2"})
    payload, stamp, signature = genuine.rsplit(".", 2)
    other = sign(login).rsplit(".", 2)[0]
    assert other != payload
    return f"{other}.{stamp}.{signature}"  # user 1's payload under user 2's signature


WARNED = {
    "other-secret": "present but its signature does not match",
    "expired": "is older than identity.max_age_seconds",
    "altered": "",  # the same warning as other-secret: once a minute per worker, maybe said already
}


@pytest.mark.parametrize("kind", list(WARNED))
def test_a_cookie_the_shop_did_not_sign_never_becomes_the_user(shop: Shop, kind: str) -> None:
    sent = shop.texts_sent()
    with httpx.Client(base_url=shop.url, cookies={"session": forged(kind)}) as browser:
        for _ in range(4):  # on either worker
            answer = browser.get("/admin/", headers=HTML)
            assert answer.status_code != 200
            assert "Orders of" not in answer.text
            assert "_2fa" not in answer.headers.get("location", "")
    assert shop.texts_sent() == sent
    assert WARNED[kind] in shop.log.read_text()  # the middleware says why it saw nobody
