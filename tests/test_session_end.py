"""Logging out of the shop ends the proof, without ``logout_url``, for the resolvers that read a
cookie: the deletion headers as each framework really writes them (made here by the frameworks
themselves), and the middleware (ASGI and WSGI, in-process) dropping the proof cookie in the same
answer, so that logging in again from the same browser asks for the code again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from itsdangerous import TimestampSigner
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.fail_closed_app import SHOP_SECRET
from tests.harness import ADMIN_PHONE, Harness
from tests.test_fail_closed import admin, cookie_identity, cookie_shop, is_challenge
from tests.wsgi_harness import WSGIHarness
from tfa_middleware.proof import proof_clear_cookie
from tfa_middleware.session_end import ended_cookie, ended_cookies

NOW = time.time()
PAST = "Thu, 01 Jan 1970 00:00:00 GMT"


def set_cookies(response: Any) -> list[str]:
    """The Set-Cookie values of a Starlette/httpx or Werkzeug response."""
    headers = response.headers
    if hasattr(headers, "getlist"):
        found: list[str] = headers.getlist("Set-Cookie")
        return found
    return [v for k, v in headers.multi_items() if k.lower() == "set-cookie"]


# --------------------------------------------------------------------------- the headers themselves


def test_starlette_delete_cookie() -> None:
    response = Response()
    response.delete_cookie("session")
    (header,) = set_cookies(response)
    assert ended_cookie(header, NOW) == "session"
    response = Response()
    response.set_cookie("session", "abc", max_age=3600)
    assert ended_cookie(set_cookies(response)[0], NOW) is None


def starlette_session_shop() -> Starlette:
    async def login(request: Request) -> Response:
        request.session["user_id"] = "alice"
        return PlainTextResponse("in")

    async def logout(request: Request) -> Response:
        request.session.clear()
        return PlainTextResponse("out")

    return Starlette(
        routes=[Route("/login", login), Route("/logout", logout)],
        middleware=[Middleware(SessionMiddleware, secret_key=SHOP_SECRET)],
    )


async def test_starlette_session_middleware_after_session_clear() -> None:
    transport = httpx.ASGITransport(app=starlette_session_shop())
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
        (login,) = set_cookies(await client.get("/login"))
        (logout,) = set_cookies(await client.get("/logout"))
    assert ended_cookie(login, NOW) is None  # a session written: no end
    assert logout.startswith("session=null;")  # an Expires in 1970, no Max-Age
    assert ended_cookie(logout, NOW) == "session"


def test_flask_session_interface_after_session_clear() -> None:
    from flask import session

    from tests.flask_shop import flask_app

    app = flask_app()

    @app.get("/login")
    def login() -> str:
        session["_user_id"] = "7"
        return "in"

    @app.get("/logout")
    def logout() -> str:
        session.clear()
        return "out"

    client = app.test_client()
    (written,) = set_cookies(client.get("/login"))
    (deleted,) = set_cookies(client.get("/logout"))
    assert ended_cookie(written, NOW) is None
    assert ended_cookie(deleted, NOW) == "session"


def test_flask_login_logout_user_deletes_a_session_holding_only_the_login() -> None:
    from flask_login import LoginManager, login_user, logout_user

    from tests.flask_shop import flask_app
    from tests.test_flask_login import User

    app = flask_app()
    LoginManager(app).user_loader(User)

    @app.get("/login")
    def login() -> str:
        login_user(User("7"))
        return "in"

    @app.get("/logout")
    def logout() -> str:
        logout_user()
        return "out"

    client = app.test_client()
    client.get("/login")
    (deleted,) = set_cookies(client.get("/logout"))
    assert ended_cookie(deleted, NOW) == "session"


def test_django_delete_cookie_and_the_session_middleware_of_a_flushed_session(
    tmp_path: Any,
) -> None:
    from tests.django_shop import setup_django

    setup_django(tmp_path)
    from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessions
    from django.http import HttpRequest, HttpResponse

    response = HttpResponse()
    response.delete_cookie("sessionid", samesite="Lax")
    header = response.cookies["sessionid"].output(header="").strip()
    assert ended_cookie(header, NOW) == "sessionid"

    # Django's logout flushes the session; its SessionMiddleware then deletes the cookie.
    request = HttpRequest()
    request.COOKIES["sessionid"] = "a" * 32
    middleware = DjangoSessions(lambda _request: HttpResponse("logged out"))
    middleware.process_request(request)
    request.session["_auth_user_id"] = "1"
    request.session.flush()  # what django.contrib.auth.logout does
    answer = middleware.process_response(request, HttpResponse("logged out"))
    written = [m.output(header="").strip() for m in answer.cookies.values()]
    assert ended_cookies(written, frozenset({"sessionid"}), NOW) == {"sessionid"}


def test_fastapi_users_cookie_transport_logout() -> None:
    from fastapi_users.authentication import CookieTransport

    transport = CookieTransport(cookie_max_age=3600)
    login = asyncio.run(transport.get_login_response("a.b.c"))
    logout = asyncio.run(transport.get_logout_response())
    assert ended_cookie(set_cookies(login)[0], NOW) is None
    assert ended_cookie(set_cookies(logout)[0], NOW) == "fastapiusersauth"


@pytest.mark.parametrize(
    ("header", "ended"),
    [
        ("s=; Path=/", "s"),  # an empty value: the browser holds no login either
        ('s=""; Path=/', "s"),
        ("s=x; Max-Age=0", "s"),
        ("s=x; max-age=-1", "s"),
        (f"s=x; Expires={PAST}", "s"),
        ("s=x; Expires=Thu, 01-Jan-1970 00:00:00 GMT", "s"),
        ("s=x; Expires=Wed, 21 Oct 2099 07:28:00 GMT", None),
        (f"s=x; Max-Age=60; Expires={PAST}", None),  # Max-Age wins (RFC 6265 5.3)
        ("s=x; Max-Age=soon; Expires=Wed, 21 Oct 2099 07:28:00 GMT", None),  # a bad Max-Age is ignored
        (f"s=x; Max-Age=soon; Expires={PAST}", "s"),
        ("s=x; Expires=someday", None),
        ("s=x; Path=/", None),
        ("not a cookie", None),
    ],
)
def test_what_ends_a_cookie(header: str, ended: str | None) -> None:
    assert ended_cookie(header, NOW) == ended


def test_only_the_named_cookie_and_the_last_word_counts() -> None:
    names = frozenset({"session"})
    assert ended_cookies([f"other=; Expires={PAST}"], names, NOW) == set()
    assert ended_cookies([f"sessionx=; Expires={PAST}"], names, NOW) == set()
    assert ended_cookies([f"session=; Expires={PAST}"], names, NOW) == {"session"}
    # Deleted, then a new session in the same answer: the browser keeps the new one.
    assert ended_cookies([f"session=; Expires={PAST}", "session=new; Path=/"], names, NOW) == set()


# --------------------------------------------------------------------------- ASGI, in-process


async def clearing_logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/", status_code=303)


async def pass_challenge(h: Harness) -> None:
    assert (await h.client.get("/login", params={"user": "alice", "sid": "s1"})).text == "logged in"
    assert is_challenge(await h.client.get("/admin/orders", headers={"accept": "text/html"}))
    await h.send({"accept": "text/html"})
    verified = await h.verify({"accept": "text/html"}, await h.latest_code())
    assert verified.status_code == 303
    assert (await h.client.get("/admin/orders")).text == "orders of alice"


@pytest.mark.parametrize("logout", ["/logout", "/admin/logout"], ids=["unprotected", "protected"])
async def test_asgi_the_shops_logout_ends_the_proof_without_logout_url(
    make_harness: Callable[..., Any], logout: str
) -> None:
    shop = cookie_shop()
    shop.router.routes.append(Route(logout, clearing_logout))
    h: Harness = await make_harness(shop, interfaces=admin(cookie_identity()))
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await pass_challenge(h)
    copied = {"session": h.client.cookies["session"], "tfa_admin": h.client.cookies["tfa_admin"]}

    out = await h.client.get(logout)
    assert out.status_code == 303
    cleared = [v for v in set_cookies(out) if v.startswith("tfa_admin=")]
    assert cleared == [proof_clear_cookie("tfa_admin", https=False)]  # as the pages clear it
    assert "tfa_admin" not in h.client.cookies

    # In again from the same browser, with the same shop session id: asked again.
    await h.client.get("/login", params={"user": "alice", "sid": "s1"})
    assert is_challenge(await h.client.get("/admin/orders", headers={"accept": "text/html"}))
    # A copy of the pair taken before: that login's proofs were revoked.
    h.client.cookies.clear()
    cookie = "; ".join(f"{k}={v}" for k, v in copied.items())
    replayed = await h.client.get("/admin/orders", headers={"cookie": cookie, "accept": "text/html"})
    assert is_challenge(replayed)


async def test_asgi_an_answer_keeping_the_session_keeps_the_proof(make_harness: Callable[..., Any]) -> None:
    h: Harness = await make_harness(cookie_shop(), interfaces=admin(cookie_identity()))
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await pass_challenge(h)
    login = await h.client.get("/login", params={"user": "alice", "sid": "s1"})  # the session rewritten
    assert any(v.startswith("session=") for v in set_cookies(login))
    assert not any(v.startswith("tfa_admin=") for v in set_cookies(login))
    assert (await h.client.get("/admin/orders")).text == "orders of alice"


async def logout_keeping_the_session(request: Request) -> Response:
    """A logout that takes the user out of a session that keeps other keys: the shop writes the
    cookie anew instead of deleting it (Starlette's SessionMiddleware re-signs what is left)."""
    request.session.pop("user_id", None)
    request.session["flash"] = "You are logged out"
    return RedirectResponse("/", status_code=303)


async def note(request: Request) -> Response:
    """A page that writes the session of the same user (the proof stays)."""
    request.session["seen"] = request.session.get("seen", 0) + 1
    return PlainTextResponse("noted")


@pytest.mark.parametrize("where", ["/logout", "/admin/logout"], ids=["unprotected", "protected"])
async def test_asgi_a_session_written_anew_without_the_user_ends_the_proof(
    make_harness: Callable[..., Any], where: str
) -> None:
    shop = cookie_shop()
    shop.router.routes.append(Route(where, logout_keeping_the_session))
    h: Harness = await make_harness(shop, interfaces=admin(cookie_identity()))
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await pass_challenge(h)
    copied = {"session": h.client.cookies["session"], "tfa_admin": h.client.cookies["tfa_admin"]}

    out = await h.client.get(where)
    assert any(v.startswith("session=") and "1970" not in v for v in set_cookies(out))  # written, not deleted
    assert proof_clear_cookie("tfa_admin", https=False) in set_cookies(out)
    assert "tfa_admin" not in h.client.cookies

    # The login the proof was bound to (sid s1) was revoked: a copy of the old pair is refused,
    # and logging in again with the same session id asks again, then passes at once.
    h.client.cookies.clear()
    cookie = "; ".join(f"{k}={v}" for k, v in copied.items())
    assert is_challenge(
        await h.client.get("/admin/orders", headers={"cookie": cookie, "accept": "text/html"})
    )
    h.client.cookies.clear()
    h.clock.advance(h.settings.limits.send_cooldown_seconds)
    await pass_challenge(h)


async def test_asgi_another_users_session_over_the_proof_ends_it(make_harness: Callable[..., Any]) -> None:
    h: Harness = await make_harness(cookie_shop(), interfaces=admin(cookie_identity()))
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await pass_challenge(h)
    out = await h.client.get("/login", params={"user": "bob", "sid": "s2"})  # not under the prefix
    assert proof_clear_cookie("tfa_admin", https=False) in set_cookies(out)
    assert "tfa_admin" not in h.client.cookies


async def test_asgi_a_session_written_anew_for_the_same_user_keeps_the_proof(
    make_harness: Callable[..., Any],
) -> None:
    shop = cookie_shop()
    shop.router.routes.append(Route("/admin/note", note))
    h: Harness = await make_harness(shop, interfaces=admin(cookie_identity()))
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await pass_challenge(h)
    for _ in range(3):
        answer = await h.client.get("/admin/note")
        assert answer.text == "noted"
        assert any(v.startswith("session=") for v in set_cookies(answer))  # new content each time
        assert not any(v.startswith("tfa_admin=") for v in set_cookies(answer))
    assert (await h.client.get("/admin/orders")).text == "orders of alice"


async def test_asgi_a_session_re_signed_unchanged_is_not_read_again(
    make_harness: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A shop that writes an unchanged session (Flask refreshes a permanent session on every
    # answer; Starlette's SessionMiddleware on every write): a new timestamp, the same content,
    # no change, and no decoding.
    from tfa_middleware.identity.sessions import StarletteSessionCookieResolver

    h: Harness = await make_harness(cookie_shop(), interfaces=admin(cookie_identity()))
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await pass_challenge(h)
    decoded: list[str] = []
    original = StarletteSessionCookieResolver._decode

    def counting(self: StarletteSessionCookieResolver, value: str, now: float) -> Any:
        decoded.append(value)
        return original(self, value, now)

    monkeypatch.setattr(StarletteSessionCookieResolver, "_decode", counting)
    # The shop's clock moves on a few seconds: its signer writes a new timestamp.
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda _self: int(time.time()) + 7)
    before = h.client.cookies["session"]
    answer = await h.client.get("/login", params={"user": "alice", "sid": "s1"})  # the same session
    written = [v.split(";")[0] for v in set_cookies(answer) if v.startswith("session=")]
    assert written
    assert written != [f"session={before}"]  # a new value ...
    assert written[0].rsplit(".", 2)[0] == f"session={before}".rsplit(".", 2)[0]  # ... of the same session
    assert "tfa_admin" in h.client.cookies
    assert decoded == [], "the re-signed session was decoded to tell whether it ends the login"
    assert (await h.client.get("/admin/orders")).text == "orders of alice"
    assert len(decoded) == 1  # the next request reads the new cookie, as any request does


def jwt_shop() -> Starlette:
    """fastapi-users' cookie transport in small: a log-in and a refresh write the JWT cookie."""
    from tests.tokens import COOKIE, claims, sign

    def with_token(user: str, lifetime: float) -> Response:
        response = PlainTextResponse("token written")
        response.set_cookie(COOKIE, sign(claims(user, lifetime=lifetime)), httponly=True)
        return response

    async def login(request: Request) -> Response:
        return with_token(request.query_params["user"], 3600)

    async def refresh(_request: Request) -> Response:
        return with_token("alice", 7200)  # a new token of the same user

    async def orders(_request: Request) -> Response:
        return PlainTextResponse("orders")

    return Starlette(
        routes=[Route("/login", login), Route("/admin/refresh", refresh), Route("/admin/orders", orders)]
    )


async def test_asgi_a_jwt_written_anew_ends_the_proof_only_for_another_user(
    make_harness: Callable[..., Any],
) -> None:
    from tests.tokens import AUDIENCE, COOKIE, SECRET

    identity = {"from": "jwt", "cookie": COOKIE, "secret": SECRET, "audience": AUDIENCE}
    h: Harness = await make_harness(jwt_shop(), interfaces=admin(identity))
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    assert (await h.client.get("/login", params={"user": "alice"})).text == "token written"
    await h.send({"accept": "text/html"})
    assert (await h.verify({"accept": "text/html"}, await h.latest_code())).status_code == 303
    assert (await h.client.get("/admin/orders")).text == "orders"

    refreshed = await h.client.get("/admin/refresh")  # the same user: the proof stays
    assert any(v.startswith(f"{COOKIE}=") for v in set_cookies(refreshed))
    assert not any(v.startswith("tfa_admin=") for v in set_cookies(refreshed))
    assert (await h.client.get("/admin/orders")).text == "orders"

    other = await h.client.get("/login", params={"user": "mallory"})  # another user's token
    assert proof_clear_cookie("tfa_admin", https=False) in set_cookies(other)
    assert "tfa_admin" not in h.client.cookies


async def test_asgi_a_header_resolver_is_not_watched(make_harness: Callable[..., Any]) -> None:
    h: Harness = await make_harness(
        cookie_shop(), interfaces=admin({"from": "callable", "path": "tests.harness:header_resolver"})
    )
    assert all(i.session_cookie is None for i in h.app._interfaces)
    assert not h.app._watching


# --------------------------------------------------------------------------- WSGI, in-process


def test_wsgi_the_shops_logout_ends_the_proof_without_logout_url(make_wsgi: Callable[..., Any]) -> None:
    from tests.test_wsgi import admin as wsgi_admin
    from tests.test_wsgi import cookie_identity as wsgi_cookie_identity

    h = make_wsgi(interfaces=wsgi_admin(wsgi_cookie_identity()))  # no logout_url
    h.run(h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True))
    h.client.get("/login", params={"user": "alice", "sid": "s1"})
    h.pass_challenge({"accept": "text/html"})
    assert h.client.get("/admin/orders").text == "orders of alice"
    copied = {"session": h.client.cookies["session"], "tfa_admin": h.client.cookies["tfa_admin"]}

    out = h.client.get("/admin/logout")  # the tiny shop deletes its cookie (Expires in 1970)
    assert out.status_code == 303
    cleared = [v for v in set_cookies(out) if v.startswith("tfa_admin=")]
    assert cleared == [proof_clear_cookie("tfa_admin", https=False)]
    assert "tfa_admin" not in h.client.cookies

    h.client.get("/login", params={"user": "alice", "sid": "s1"})
    assert is_challenge(h.client.get("/admin/orders", headers={"accept": "text/html"}))
    h.client.cookies.clear()
    cookie = "; ".join(f"{k}={v}" for k, v in copied.items())
    assert is_challenge(h.client.get("/admin/orders", headers={"cookie": cookie, "accept": "text/html"}))


def flask_login_shop(keep: bool = False) -> Any:
    """A Flask-Login shop; with ``keep``, its session holds a key of its own besides the login (a
    Flask-WTF CSRF token, say): ``logout_user()`` then leaves it, and Flask writes the cookie anew."""
    from flask import session
    from flask_login import LoginManager, login_required, login_user, logout_user

    from tests.flask_shop import flask_app
    from tests.test_flask_login import User

    app = flask_app()
    LoginManager(app).user_loader(User)

    @app.get("/login/<user_id>")
    def login(user_id: str) -> str:
        if keep:
            session["csrf_token"] = "token"
        login_user(User(user_id))
        return "in"

    @app.get("/logout")
    def logout() -> str:
        logout_user()
        return "out"

    def orders() -> str:
        return "orders"

    app.add_url_rule("/admin/orders", "orders", login_required(orders))

    return app


@pytest.mark.parametrize("keep", [False, True], ids=["session-deleted", "session-written-anew"])
def test_wsgi_flask_login_logout_and_in_again_asks_again(
    make_wsgi: Callable[..., WSGIHarness], keep: bool
) -> None:
    from tests.flask_shop import SECRET

    identity = {"from": "flask_session", "secret_key": SECRET}
    h = make_wsgi(
        flask_login_shop(keep), interfaces={"admin": {"path_prefix": "/admin", "identity": identity}}
    )
    h.run(h.service.set_phone("admin", "7", *ADMIN_PHONE, confirmed=True))
    assert h.client.get("/login/7").text == "in"
    h.pass_challenge({"accept": "text/html"})
    assert h.client.get("/admin/orders").text == "orders"

    out = h.client.get("/logout")  # outside the prefix; Flask-Login's _id stays the same at re-login
    written = [v for v in set_cookies(out) if v.startswith("session=")]
    assert len(written) == 1
    assert (ended_cookie(written[0], time.time()) is None) is keep  # written anew, or deleted
    assert proof_clear_cookie("tfa_admin", https=False) in set_cookies(out)
    assert "tfa_admin" not in h.client.cookies
    assert h.client.get("/login/7").text == "in"
    assert is_challenge(h.client.get("/admin/orders", headers={"accept": "text/html"}))
    # The same _id as before the logout: the new proof is taken at once all the same.
    h.clock.advance(h.settings.limits.send_cooldown_seconds)
    h.pass_challenge({"accept": "text/html"})
    assert h.client.get("/admin/orders").text == "orders"


def test_wsgi_a_request_without_a_proof_cookie_is_not_watched(make_wsgi: Callable[..., WSGIHarness]) -> None:
    from tests.test_wsgi import admin as wsgi_admin
    from tests.test_wsgi import cookie_identity as wsgi_cookie_identity

    h = make_wsgi(interfaces=wsgi_admin(wsgi_cookie_identity()))
    out = h.client.get("/admin/logout")
    assert not any(v.startswith("tfa_admin=") for v in set_cookies(out))


async def test_asgi_a_logout_without_a_proof_cookie_adds_nothing(make_harness: Callable[..., Any]) -> None:
    shop = cookie_shop()
    shop.router.routes.append(Route("/logout", clearing_logout))
    h: Harness = await make_harness(shop, interfaces=admin(cookie_identity()))
    await h.client.get("/login", params={"user": "alice", "sid": "s1"})
    out = await h.client.get("/logout")
    assert any(v.startswith("session=") for v in set_cookies(out))
    assert not any(v.startswith("tfa_admin=") for v in set_cookies(out))
