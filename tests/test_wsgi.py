"""The WSGI middleware in-process, against a plain WSGI shop: the flow of test_flow.py and the
fail-closed rules of test_fail_closed.py hold word for word (same statuses, same pages, same log
lines), with SCRIPT_NAME as the root path and the guard on ``start_response``."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit
from wsgiref.types import StartResponse, WSGIEnvironment

import httpx
import pytest

from tests.harness import ADMIN_PHONE, SECRET
from tests.wsgi_harness import WSGIHarness
from tests.wsgi_shop import POSTED, SHOP_SECRET, mounted, shop
from tfa_middleware import Identity, Proof, second_factor
from tfa_middleware.proof import proof_clear_cookie
from tfa_middleware.store import outbox as outbox_rows
from tfa_middleware.wsgi import ENVIRON_KEY, TwoFactorWSGIMiddleware

LOG = "tfa_middleware"
Make = Callable[..., WSGIHarness]


def cookie_identity(**overrides: Any) -> dict[str, Any]:
    return {
        "from": "starlette_session_cookie",
        "secret_key": SHOP_SECRET,
        "key": "user_id",
        "session_id_key": "sid",
        **overrides,
    }


def admin(identity: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"admin": {"path_prefix": "/admin", "exempt": ["/admin/login"], "identity": identity, **extra}}


def withheld(response: httpx.Response) -> bool:
    return (
        response.status_code == 403
        and "This page can't be shown" in response.text
        and "orders of" not in response.text
        and "shop page" not in response.text
    )


def is_challenge(response: httpx.Response, root: str = "") -> bool:
    return response.status_code == 303 and response.headers["location"].startswith(
        f"{root}/admin/_2fa/challenge?"
    )


def logs(caplog: pytest.LogCaptureFixture, level: int = logging.ERROR) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOG and r.levelno == level]


def logged_in_orders(h: WSGIHarness, client: httpx.Client | None = None) -> httpx.Response:
    browser = client or h.client
    assert browser.get("/login", params={"user": "alice", "sid": "s1"}).text == "logged in"
    return browser.get("/admin/orders", headers={"accept": "text/html"})


# --------------------------------------------------------------------------- the flow (test_flow.py)


def test_unauthenticated_and_unprotected_requests_pass_through(wsgi: WSGIHarness) -> None:
    withheld_page = wsgi.client.get("/admin/orders")
    assert withheld_page.status_code == 403
    assert "shop page" not in withheld_page.text
    assert wsgi.client.get("/admin/login").text == "shop page /admin/login"  # exempt
    assert wsgi.client.get("/", headers=wsgi.as_user("alice")).status_code == 200


def test_browser_is_sent_to_the_challenge_with_next(wsgi: WSGIHarness) -> None:
    response = wsgi.client.get("/admin/orders?page=2", headers=wsgi.as_user("alice"))
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/admin/_2fa/challenge"
    assert parse_qs(location.query)["next"] == ["/admin/orders?page=2"]
    assert response.headers["x-frame-options"] == "DENY"  # the ASGI middleware's security headers


def test_json_and_xhr_get_401_with_the_challenge_url(wsgi: WSGIHarness) -> None:
    for headers in ({"accept": "application/json"}, {"x-requested-with": "XMLHttpRequest"}):
        response = wsgi.client.get("/admin/api/orders", headers={"x-test-user": "alice", **headers})
        assert response.status_code == 401
        assert response.json() == {
            "error": "second_factor_required",
            "challenge_url": "/admin/_2fa/challenge?next=%2Fadmin%2Fapi%2Forders",
        }


def test_full_flow_send_outbox_verify_access(wsgi: WSGIHarness) -> None:
    alice = wsgi.as_user("alice")
    challenge = wsgi.client.get("/admin/_2fa/challenge", headers=alice)
    assert challenge.status_code == 200
    assert "+1 ••• ••• 0123" in challenge.text
    assert 'autocomplete="one-time-code"' in challenge.text
    assert wsgi.run(outbox_rows.latest(wsgi.service.store)) == []  # a GET never sends

    sent = wsgi.send(alice)
    assert sent.status_code == 303
    assert "sent=1" in sent.headers["location"]
    verified = wsgi.verify(alice, wsgi.latest_code(), next_="/admin/orders")
    assert verified.status_code == 303
    assert verified.headers["location"] == "/admin/orders"
    cookie_header = verified.headers["set-cookie"].lower()
    assert "httponly" in cookie_header
    assert "samesite=lax" in cookie_header
    assert "secure" not in cookie_header

    response = wsgi.client.get("/admin/orders", headers=alice)
    assert (response.status_code, response.text) == (200, "shop page /admin/orders")
    api = wsgi.client.get("/admin/api/orders", headers={**alice, "accept": "application/json"})
    assert api.json() == {"ok": True, "tfa": True}  # second_factor(environ) in the shop


def test_the_app_reads_the_proof_from_the_environ_or_a_request(wsgi: WSGIHarness) -> None:
    seen: list[WSGIEnvironment] = []

    def spy(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        seen.append(environ)
        return shop(environ, start_response)

    wsgi.app.app = spy
    wsgi.pass_challenge(wsgi.as_user("alice"))
    wsgi.client.get("/admin/orders", headers=wsgi.as_user("alice"))
    proof = seen[-1][ENVIRON_KEY]
    assert isinstance(proof, Proof)
    assert (proof.interface, proof.user_id) == ("admin", "alice")

    class Werkzeug:  # a Flask/Werkzeug request keeps its environ here
        environ = seen[-1]

    class Django:  # a Django request, here
        META = seen[-1]

    assert second_factor(seen[-1]) is proof
    assert second_factor(Werkzeug()) is proof
    assert second_factor(Django()) is proof
    assert second_factor({ENVIRON_KEY: "forged"}) is None


def test_a_proof_is_bound_to_the_interface_and_the_user(wsgi: WSGIHarness) -> None:
    wsgi.pass_challenge(wsgi.as_user("alice"))
    assert wsgi.client.get("/admin/orders", headers=wsgi.as_user("alice")).status_code == 200
    assert is_challenge(wsgi.client.get("/admin/orders", headers=wsgi.as_user("bob")))


def test_the_generation_is_checked_in_the_database_and_then_cached(wsgi: WSGIHarness) -> None:
    alice = wsgi.as_user("alice")
    wsgi.pass_challenge(alice)
    assert wsgi.client.get("/admin/orders", headers=alice).status_code == 200
    wsgi.run(wsgi.service.reset("admin", "alice"))  # revokes every proof of alice's
    wsgi.clock.advance(wsgi.settings.revocation_check_seconds)
    assert is_challenge(wsgi.client.get("/admin/orders", headers=alice))


def test_a_hostile_path_is_a_400(wsgi: WSGIHarness) -> None:
    # "." percent-encoded ten times (httpx hands PATH_INFO on decoded once, as a server does)
    response = wsgi.client.get("/admin/%" + "25" * 10 + "2e")
    assert response.status_code == 400
    assert response.text == "Bad request: the path is encoded too many times."


# ------------------------------------------------------------- the mistakes (test_fail_closed.py)


@pytest.mark.parametrize(
    ("identity", "warning"),
    [
        pytest.param(
            cookie_identity(key="admin_id"),
            "the cookie 'session' holds no 'admin_id' (its keys: sid, user_id)",
            id="1-key-not-in-the-session",
        ),
        pytest.param(
            cookie_identity(secret_key="a-rotated-shop-secret-0123456789-abcdef"),
            "the cookie 'session' is present but its signature does not match identity.secret_key",
            id="2-wrong-secret",
        ),
        pytest.param(cookie_identity(cookie="shop_session"), None, id="3-wrong-cookie-name"),
    ],
)
def test_a_mistake_in_the_identity_settings_never_lets_a_user_in(
    make_wsgi: Make, caplog: pytest.LogCaptureFixture, identity: dict[str, Any], warning: str | None
) -> None:
    h = make_wsgi(interfaces=admin(identity))
    with caplog.at_level(logging.WARNING, logger=LOG):
        response = logged_in_orders(h)
    assert withheld(response)
    (error,) = logs(caplog)
    assert "interface admin: the shop served GET '/admin/orders' (200)" in error
    assert "interfaces.admin.exempt" in error
    if warning:
        (said,) = logs(caplog, logging.WARNING)
        assert warning in said
        assert SHOP_SECRET not in said
        assert "alice" not in said


def test_the_same_settings_right_challenge_the_user(make_wsgi: Make) -> None:
    h = make_wsgi(interfaces=admin(cookie_identity()))
    h.run(h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True))
    assert is_challenge(logged_in_orders(h))
    h.pass_challenge({"accept": "text/html"})
    assert h.client.get("/admin/orders").text == "orders of alice"


@pytest.mark.parametrize(
    ("identity", "where"),
    [
        ({"from": "session", "key": "user_id"}, "must sit inside the shop's SessionMiddleware"),
        ({"from": "scope_user"}, "inside the shop's AuthenticationMiddleware"),
    ],
)
def test_4_a_scope_resolver_under_wsgi_is_the_misconfiguration_page(
    make_wsgi: Make, caplog: pytest.LogCaptureFixture, identity: dict[str, Any], where: str
) -> None:
    # A WSGI request has no scope["session"] or scope["user"]: never "nobody".
    h = make_wsgi(interfaces=admin(identity))
    with caplog.at_level(logging.ERROR, logger=LOG):
        response = logged_in_orders(h)
        again = h.client.get("/admin/orders")
    assert response.status_code == again.status_code == 500
    assert "Sign-in check unavailable" in response.text
    (error,) = logs(caplog)
    assert where in error


def test_5_script_name_is_the_root(make_wsgi: Make) -> None:
    h = make_wsgi(interfaces=admin(cookie_identity(), logout_url="/admin/logout"))
    h.run(h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True))
    with h.browser(mounted("/shop", h.app)) as client:
        client.get("/shop/login", params={"user": "alice", "sid": "s1"})
        stopped = client.get("/shop/admin/orders", headers={"accept": "text/html"})
        assert stopped.status_code == 303
        assert stopped.headers["location"] == "/shop/admin/_2fa/challenge?next=%2Fadmin%2Forders"
        page = client.get(stopped.headers["location"])
        assert page.status_code == 200
        assert 'action="/shop/admin/_2fa/send?next=%2Fadmin%2Forders"' in page.text
        assert 'href="/shop/admin/_2fa/static/tfa.css"' in page.text
        assert 'href="/shop/admin/logout"' in page.text
        assert client.get("/shop/admin/_2fa/static/tfa.css").status_code == 200
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        sent = client.post("/shop/admin/_2fa/send?next=%2Fadmin%2Forders", data={"csrf_token": token})
        assert sent.headers["location"].startswith("/shop/admin/_2fa/challenge?")
        done = client.post(
            "/shop/admin/_2fa/verify?next=%2Fadmin%2Forders",
            data={"csrf_token": token, "code": h.latest_code()},
        )
        assert (done.status_code, done.headers["location"]) == (303, "/shop/admin/orders")
        assert client.get("/shop/admin/orders").text == "orders of alice"


def test_6_a_session_older_than_14_days_that_the_shop_honours(
    make_wsgi: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.sessions import cookie_signed_at

    h = make_wsgi(interfaces=admin(cookie_identity()))
    h.run(h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True))
    import time as real_time

    old = cookie_signed_at(
        monkeypatch, int(real_time.time()) - 20 * 24 * 3600, {"user_id": "alice", "sid": "s1"}, SHOP_SECRET
    )
    response = h.client.get("/admin/orders", headers={"cookie": f"session={old}", "accept": "text/html"})
    assert is_challenge(response)


WHERE: list[tuple[bool, int]] = []


def thread_resolver(scope: Any) -> Identity | None:
    """Records whether it ran with an event loop and in which thread."""
    try:
        asyncio.get_running_loop()
        WHERE.append((True, threading.get_ident()))
    except RuntimeError:
        WHERE.append((False, threading.get_ident()))
    user = dict(scope["headers"]).get(b"x-test-user")
    return Identity(user.decode()) if user else None


async def async_resolver(scope: Any) -> Identity | None:
    return thread_resolver(scope)


def test_7_a_sync_callable_runs_in_the_servers_thread_without_a_loop(make_wsgi: Make) -> None:
    # Django's ORM refuses to run where an event loop runs; the WSGI server's thread has none,
    # and may block: no hop to another thread.
    h = make_wsgi(interfaces=admin({"from": "callable", "path": "tests.test_wsgi:thread_resolver"}))
    WHERE.clear()
    assert h.client.get("/admin/orders").status_code == 403
    assert [(False, threading.get_ident())] == WHERE


def test_an_async_callable_runs_on_the_middlewares_loop(make_wsgi: Make) -> None:
    h = make_wsgi(interfaces=admin({"from": "callable", "path": "tests.test_wsgi:async_resolver"}))
    h.run(h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True))
    WHERE.clear()
    assert is_challenge(h.client.get("/admin/orders", headers=h.as_user("alice")))
    ((on_loop, thread),) = WHERE
    assert on_loop
    assert thread != threading.get_ident()


def test_a_resolver_that_fails_is_the_503_page(make_wsgi: Make, caplog: pytest.LogCaptureFixture) -> None:
    def broken(_scope: Any) -> Identity | None:
        raise ConnectionError("the shop's session store is down")

    h = make_wsgi()
    app = TwoFactorWSGIMiddleware(shop, service=h.service, resolvers={"admin": broken})
    with h.browser(app) as client, caplog.at_level(logging.ERROR, logger=LOG):
        response = client.get("/admin/orders")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert "Temporarily unavailable" in response.text
    assert "identity resolver of interface admin failed" in logs(caplog)[0]
    app.close()


def test_the_identity_header_from_an_untrusted_peer_is_not_nobody(make_wsgi: Make) -> None:
    h = make_wsgi(
        interfaces=admin({"from": "header", "header": "X-Remote-User"}), trusted_proxies=["10.0.0.1"]
    )
    response = h.client.get("/admin/orders", headers={"x-remote-user": "alice"})
    assert response.status_code == 500
    with h.browser(h.app, remote_addr="10.0.0.1") as proxied:
        h.run(h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True))
        assert is_challenge(
            proxied.get("/admin/orders", headers={"x-remote-user": "alice", "accept": "text/html"})
        )


# --------------------------------------------------------------------------- the guard's edges


@pytest.mark.parametrize("code", [200, 201, 204, 206])
def test_every_2xx_is_withheld(wsgi: WSGIHarness, code: int) -> None:
    response = wsgi.client.get(f"/admin/status/{code}")
    assert response.status_code == 403
    assert "shop says" not in response.text


@pytest.mark.parametrize("code", [301, 302, 303, 304, 307, 400, 401, 403, 404, 405, 500, 503])
def test_redirects_and_errors_pass_untouched(wsgi: WSGIHarness, code: int) -> None:
    assert wsgi.client.get(f"/admin/status/{code}").status_code == code


def test_a_body_that_starts_the_response_lazily_never_leaks_a_chunk(wsgi: WSGIHarness) -> None:
    response = wsgi.client.get("/admin/stream")
    assert response.status_code == 403
    assert "secret chunk" not in response.text
    assert "This page can't be shown" in response.text


def test_head_is_withheld_without_a_body(wsgi: WSGIHarness) -> None:
    response = wsgi.client.head("/admin/status/200")
    assert response.status_code == 403
    assert response.content == b""


def test_exempt_paths_are_not_guarded(wsgi: WSGIHarness, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger=LOG):
        assert wsgi.client.get("/admin/login").status_code == 200
    assert logs(caplog) == []


def test_warn_mode_serves_and_logs(make_wsgi: Make, caplog: pytest.LogCaptureFixture) -> None:
    h = make_wsgi(
        interfaces=admin({"from": "callable", "path": "tests.harness:header_resolver"}, unidentified="warn")
    )
    with caplog.at_level(logging.ERROR, logger=LOG):
        first = h.client.get("/admin/status/200")
        second = h.client.get("/admin/stream")
    assert (first.status_code, first.text) == (200, "shop says")
    assert "secret chunk 2" in second.text
    (error,) = logs(caplog)
    assert "served anyway (unidentified: warn)" in error


def test_the_guard_costs_nothing_with_an_identity(wsgi: WSGIHarness) -> None:
    wsgi.pass_challenge(wsgi.as_user("alice"))
    given: list[Any] = []
    outer: list[Any] = []

    def spy(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        given.append(start_response)
        return shop(environ, start_response)

    def server(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        outer.append(start_response)
        return wsgi.app(environ, start_response)

    wsgi.app.app = spy
    with wsgi.browser(server) as client:
        client.cookies.update(wsgi.client.cookies)
        assert client.get("/admin/orders", headers=wsgi.as_user("alice")).status_code == 200
    assert given == outer  # the server's own start_response: nothing wraps it


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_an_unsafe_request_from_nobody_never_reaches_the_shop(wsgi: WSGIHarness, method: str) -> None:
    POSTED.clear()
    response = wsgi.client.request(method, "/admin/orders/delete", headers={"accept": "text/html"})
    assert response.status_code == 403
    assert "This page can't be shown" in response.text
    assert POSTED == []


def test_in_warn_mode_an_unsafe_request_from_nobody_reaches_the_shop(make_wsgi: Make) -> None:
    h = make_wsgi(
        interfaces=admin({"from": "callable", "path": "tests.harness:header_resolver"}, unidentified="warn")
    )
    POSTED.clear()
    assert h.client.post("/admin/orders/delete").status_code == 303
    assert POSTED == ["POST /admin/orders/delete"]


# --------------------------------------------------------------------------- the shop's logout


def test_the_shops_logout_ends_the_proof_in_the_same_response(make_wsgi: Make) -> None:
    h = make_wsgi(interfaces=admin(cookie_identity(), logout_url="/admin/logout"))
    h.run(h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True))
    assert is_challenge(logged_in_orders(h))
    h.pass_challenge({"accept": "text/html"})
    assert h.client.get("/admin/orders").text == "orders of alice"
    copied = {"session": h.client.cookies["session"], "tfa_admin": h.client.cookies["tfa_admin"]}

    with h.browser() as other:  # alice's other browser, a login of its own
        other.get("/login", params={"user": "alice", "sid": "s2"})
        h.pass_challenge({"accept": "text/html"}, client=other)
        assert other.get("/admin/orders").text == "orders of alice"

        page = h.client.get("/admin/_2fa/logout")
        assert 'href="/admin/logout">Not you? Sign out</a>' in page.text
        out = h.client.get("/admin/logout")
        assert out.status_code == 303
        cleared = [
            v for k, v in out.headers.multi_items() if k == "set-cookie" and v.startswith("tfa_admin=")
        ]
        assert cleared == [proof_clear_cookie("tfa_admin", https=False)]
        assert "tfa_admin" not in h.client.cookies

        h.client.cookies.clear()
        replayed = h.client.get(
            "/admin/orders",
            headers={"cookie": "; ".join(f"{k}={v}" for k, v in copied.items()), "accept": "text/html"},
        )
        assert is_challenge(replayed)
        assert other.get("/admin/orders").text == "orders of alice"


# --------------------------------------------------------------------------- construction


def test_exactly_one_of_settings_or_service(wsgi: WSGIHarness) -> None:
    with pytest.raises(TypeError, match="exactly one of settings= or service="):
        TwoFactorWSGIMiddleware(shop)
    with pytest.raises(TypeError, match="exactly one"):
        TwoFactorWSGIMiddleware(shop, wsgi.settings, service=wsgi.service)


def test_from_yaml_builds_and_closes_its_own_service(tmp_path: Any) -> None:
    path = tmp_path / "tfa.yaml"
    path.write_text(
        f'secret_keys: ["{SECRET}"]\n'
        f"database_url: sqlite+aiosqlite:///{tmp_path / 'tfa.sqlite3'}\n"
        "interfaces:\n  admin:\n    path_prefix: /admin\n"
        "    identity: {from: callable, path: tests.harness:header_resolver}\n"
    )
    app = TwoFactorWSGIMiddleware.from_yaml(shop, path)
    assert app.owns_service
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://shop.test") as client:
        page = client.get("/admin/_2fa/challenge", headers={"x-test-user": "alice"}, follow_redirects=True)
    # the pages ran on the loop, against the database: alice has no phone yet
    assert (page.status_code, page.url.path) == (200, "/admin/_2fa/enroll")
    app.close()
    assert not app.loop.started
