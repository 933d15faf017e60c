"""The factors under the WSGI middleware (issue 15): the same pages on the process's loop thread;
an app's code, a remembered browser's skipped challenge and its forgetting."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from tests.authenticator import ORIGIN, SoftAuthenticator, passkey_interfaces
from tests.factors import app_code, secret_on
from tests.harness import ADMIN_PHONE, config
from tests.wsgi_harness import WSGIHarness


def test_an_app_and_a_remembered_browser_under_wsgi(
    make_wsgi: Callable[..., WSGIHarness], tmp_path: Path
) -> None:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["remember_days"] = 7
    h = make_wsgi(interfaces=interfaces)
    h.run(h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True))
    headers = h.as_user("alice")
    h.pass_challenge(headers)
    token = h.csrf(headers, "/admin/_2fa/account")
    begun = h.client.post(
        "/admin/_2fa/account", data={"csrf_token": token, "action": "add_app"}, headers=headers
    )
    secret = secret_on(h.client.get(begun.headers["location"], headers=headers).text)
    confirmed = h.client.post(
        "/admin/_2fa/app",
        data={"csrf_token": token, "action": "confirm", "code": app_code(secret, h.clock.now)},
        headers=headers,
    )
    assert confirmed.status_code == 303
    h.client.cookies.clear()
    h.clock.advance(30)
    page = h.client.get("/admin/_2fa/challenge", headers=headers)
    assert "your authenticator app shows now" in page.text
    token = h.csrf(headers, "/admin/_2fa/challenge")
    done = h.client.post(
        "/admin/_2fa/verify",
        data={"csrf_token": token, "factor": "totp", "code": app_code(secret, h.clock.now), "remember": "1"},
        headers=headers,
    )
    assert done.status_code == 303
    assert "tfa_admin_remember" in done.cookies
    h.client.cookies.delete("tfa_admin")
    asked = h.client.get("/admin/orders", headers=headers)
    skipped = h.client.get(asked.headers["location"], headers=headers)
    assert skipped.status_code == 303
    assert skipped.headers["location"] == "/admin/orders"
    assert h.client.get("/admin/orders", headers=headers).status_code == 200
    [browser] = h.run(h.service.factors.remembered_browsers("admin", "alice"))
    assert h.run(h.service.factors.forget_browser("admin", "alice", browser.id)) == 1
    h.clock.advance(h.settings.revocation_check_seconds)
    assert h.client.get("/admin/orders", headers=headers).status_code == 303
    again = h.client.get("/admin/_2fa/challenge", headers=headers)
    assert again.status_code == 200
    assert re.search(r"Enter your code", again.text)


def test_a_passkey_under_wsgi(make_wsgi: Callable[..., WSGIHarness]) -> None:
    """Added from the account page and used at the challenge, the options fetched as the page's
    script does, through the WSGI middleware's pages."""
    h = make_wsgi(interfaces=passkey_interfaces())
    h.run(h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True))
    headers = h.as_user("alice")
    h.pass_challenge(headers)
    key = SoftAuthenticator()
    token = h.csrf(headers, "/admin/_2fa/account")
    options = h.client.post(
        "/admin/_2fa/passkey", data={"csrf_token": token, "action": "add_options"}, headers=headers
    )
    assert options.status_code == 200, options.text
    added = h.client.post(
        "/admin/_2fa/passkey",
        data={"csrf_token": token, "action": "add", "code": key.create(options.text, ORIGIN)},
        headers=headers,
    )
    assert added.headers["location"].startswith("/admin/_2fa/account?done=passkey")
    h.client.cookies.clear()
    assert "Use your passkey" in h.client.get("/admin/_2fa/challenge", headers=headers).text
    token = h.csrf(headers, "/admin/_2fa/challenge")
    asked = h.client.post(
        "/admin/_2fa/passkey", data={"csrf_token": token, "action": "sign_in_options"}, headers=headers
    )
    done = h.client.post(
        "/admin/_2fa/verify",
        data={"csrf_token": token, "factor": "webauthn", "code": key.get(asked.text, ORIGIN)},
        headers=headers,
    )
    assert done.status_code == 303, done.text
    assert h.client.get("/admin/orders", headers=headers).status_code == 200
