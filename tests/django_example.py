"""The Django admin example (examples/django_admin) as a browser walks it over real HTTP, whichever
server runs it: tests/test_django_admin.py (ASGI, uvicorn) and tests/test_django_admin_wsgi.py
(WSGI, gunicorn) start the servers and call these walks."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.codes import code_in
from tests.helpers import ROOT

EXAMPLE = ROOT / "examples" / "django_admin"
STAFF, CUSTOMER, PASSWORD = "admin", "customer", "a long password for the example 42"
HTML = {"accept": "text/html"}


@dataclass
class Site:
    url: str
    env: dict[str, str]
    tfa_db: Path
    staff_id: str = ""
    engine: str = "db"

    def manage(self, *args: str) -> str:
        """``python manage.py ARGS`` in the example's folder, on this site's databases."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=EXAMPLE,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def age_the_sends(self, seconds: float = 3600) -> None:
        """Move every logged send back in time, as if the codes had been asked for earlier (the
        resend cooldown is not what these tests are about)."""
        with closing(sqlite3.connect(self.tfa_db)) as db, db:
            db.execute("UPDATE tfa_send SET at = at - ?", (seconds,))

    def doctor(self, cookie: str) -> str:
        """``tfa-middleware doctor`` in the example's folder, as its README runs it: its output.
        With the cache engine the example keeps sessions in Django's local-memory cache, which
        another process cannot see (a real site's Redis or memcached it could): "" then."""
        if self.engine == "cache":
            return ""
        command = [sys.executable, "-m", "tfa_middleware.cli", "doctor", "--config", "config.yaml"]
        return subprocess.run(
            [*command, "--path", "/admin/", "--cookie", cookie],
            cwd=EXAMPLE,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        ).stdout

    def texts_sent(self) -> int:
        """How many codes the sandbox holds (none while the middleware has not needed its tables)."""
        with closing(sqlite3.connect(self.tfa_db)) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
            return (
                db.execute("SELECT COUNT(*) FROM tfa_outbox").fetchone()[0] if "tfa_outbox" in tables else 0
            )

    def latest_code(self, user_id: str) -> str:
        with closing(sqlite3.connect(f"file:{self.tfa_db}?mode=ro", uri=True)) as db:
            row = db.execute(
                "SELECT body FROM tfa_outbox WHERE user_id = ? ORDER BY id DESC LIMIT 1", (user_id,)
            ).fetchone()
        assert row, f"no text message to user {user_id} in the outbox"
        return code_in(row[0])


SETUP = f"""
from django.contrib.auth import get_user_model
User = get_user_model()
User.objects.create_superuser({STAFF!r}, password={PASSWORD!r})
User.objects.create_user({CUSTOMER!r}, password={PASSWORD!r})
print(User.objects.get(username={STAFF!r}).pk)
"""


def prepared_site(folder: Path, engine: str) -> Site:
    """The example's databases made in ``folder`` (Django's, migrated, with a superuser and a
    customer; ours, made by the middleware), on Django's session engine ``engine``; no server yet."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "adminsite.settings",
        "DJANGO_DB": str(folder / "django.sqlite3"),
        "DJANGO_SESSION_ENGINE": f"django.contrib.sessions.backends.{engine}",
        "TFA_DB": str(folder / "tfa.sqlite3"),
    }
    site = Site("", env, folder / "tfa.sqlite3", engine=engine)
    site.manage("migrate", "--verbosity", "0")
    site.staff_id = site.manage("shell", "--command", SETUP).split()[-1]  # its last line: the id
    return site


def log_in(browser: httpx.Client, path: str, username: str, password: str = PASSWORD) -> httpx.Response:
    """Django's log-in form, with its CSRF token, as a browser fills it in."""
    form = browser.get(path)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, form.text[:500]
    data = {"csrfmiddlewaretoken": token.group(1), "username": username, "password": password}
    return browser.post(path, data=data)


def second_factor(site: Site, browser: httpx.Client, location: str, user_id: str) -> httpx.Response:
    """Our pages, from the redirect the admin answered: enroll a phone (first time) or send a
    code, then the code from the sandbox outbox."""
    page = browser.get(location, follow_redirects=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    if 'name="phone"' in page.text:
        form = {"csrf_token": token.group(1), "country_code": "1", "phone": "2015550123"}
        assert browser.post("/admin/_2fa/enroll", data=form).status_code in (200, 303)
    else:
        site.age_the_sends()
        assert browser.post("/admin/_2fa/send", data={"csrf_token": token.group(1)}).status_code == 303
    form = {"csrf_token": token.group(1), "code": site.latest_code(user_id)}
    return browser.post("/admin/_2fa/verify?next=/admin/", data=form)


def walk_the_admin(site: Site) -> None:
    """Staff: log in, the second factor, the admin; log out and in: asked again; a password
    changed elsewhere: Django's log-in page again."""
    staff_id = site.staff_id
    with httpx.Client(base_url=site.url, headers=HTML) as browser:
        answer = log_in(browser, "/admin/login/?next=/admin/", STAFF)
        assert answer.status_code == 302
        assert answer.headers["location"] == "/admin/"
        if diagnosis := site.doctor(f"sessionid={browser.cookies['sessionid']}"):
            assert f"[ok] Django's session holds user {staff_id}" in diagnosis, diagnosis
            assert f"=> user {staff_id} of admin would be challenged" in diagnosis, diagnosis
        stopped = browser.get("/admin/")
        assert stopped.status_code == 303
        assert stopped.headers["location"].startswith("/admin/_2fa/")
        done = second_factor(site, browser, stopped.headers["location"], staff_id)
        assert done.status_code == 303
        admin = browser.get("/admin/")
        assert admin.status_code == 200
        assert "Site administration" in admin.text

        # Django's logout (a POST with its CSRF token), then the same person logs in again.
        token = browser.cookies["csrftoken"]
        assert browser.post("/admin/logout/", data={"csrfmiddlewaretoken": token}).status_code == 200
        assert log_in(browser, "/admin/login/?next=/admin/", STAFF).status_code == 302
        again = browser.get("/admin/")
        assert again.status_code == 303
        assert again.headers["location"].startswith("/admin/_2fa/")
        assert second_factor(site, browser, again.headers["location"], staff_id).status_code == 303
        assert browser.get("/admin/").status_code == 200

        # A password changed elsewhere ends Django's login: Django's own log-in page, not ours.
        change = (
            "from django.contrib.auth import get_user_model; "
            f"u = get_user_model().objects.get(username={STAFF!r}); "
            "u.set_password('another one 77'); u.save()"
        )
        site.manage("shell", "--command", change)
        after = browser.get("/admin/")
        assert after.status_code == 302
        assert after.headers["location"].startswith("/admin/login/")


def walk_as_a_customer(site: Site) -> None:
    """A customer: left to Django, never challenged, no text sent (the site may be shared: the
    count is compared, not expected to be 0)."""
    sent = site.texts_sent()
    with httpx.Client(base_url=site.url, headers=HTML) as browser:
        assert log_in(browser, "/login/", CUSTOMER).status_code == 302
        assert browser.get("/").text == f"Hello, {CUSTOMER}."
        if diagnosis := site.doctor(f"sessionid={browser.cookies['sessionid']}"):
            assert "is not is_staff: not a user of this interface" in diagnosis, diagnosis
        admin = browser.get("/admin/")
        assert admin.status_code == 302
        assert admin.headers["location"] == "/admin/login/?next=/admin/"
        page = browser.get(admin.headers["location"])
        assert page.status_code == 200
        assert "_2fa" not in page.text
        # The admin's own log-in refuses a customer; our pages never see them either.
        assert log_in(browser, "/admin/login/?next=/admin/", CUSTOMER).status_code == 200
    assert site.texts_sent() == sent
