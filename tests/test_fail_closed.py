"""Never open by mistake: when the middleware cannot see the shop's login, nobody passes.

Each ordinary mistake of the fail-closed issue is one test below, against a real Starlette shop
that keeps its login in a session cookie: the logged-in user never reaches the protected page
without a second factor, and the log names the cause. Then the guard's edge cases.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from tests.asgi_helpers import asgi_websocket
from tests.fail_closed_app import SHOP_SECRET
from tests.harness import ADMIN_PHONE, SECRET, Harness
from tests.servers import uvicorn_server
from tests.sessions import cookie_signed_at
from tfa_middleware import Identity, TwoFactor, TwoFactorMiddleware, settings_from_mapping
from tfa_middleware.guard import Guard
from tfa_middleware.proof import proof_clear_cookie
from tfa_middleware.store import outbox as outbox_rows

LOG = "tfa_middleware"


# --------------------------------------------------------------------------- a shop with a real login


async def shop_login(request: Request) -> Response:
    request.session.update({"user_id": request.query_params["user"], "sid": request.query_params["sid"]})
    return PlainTextResponse("logged in")


async def shop_orders(request: Request) -> Response:
    user = request.session.get("user_id")
    if not user:
        return RedirectResponse("/admin/login", status_code=303)
    return PlainTextResponse(f"orders of {user}")


def cookie_shop(max_age: int | None = 14 * 24 * 3600) -> Starlette:
    return Starlette(
        routes=[Route("/login", shop_login), Route("/admin/orders", shop_orders)],
        middleware=[Middleware(SessionMiddleware, secret_key=SHOP_SECRET, max_age=max_age)],
    )


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


async def logged_in_orders(h: Harness) -> httpx.Response:
    assert (await h.client.get("/login", params={"user": "alice", "sid": "s1"})).text == "logged in"
    return await h.client.get("/admin/orders", headers={"accept": "text/html"})


def withheld(response: httpx.Response) -> bool:
    return (
        response.status_code == 403
        and "This page can't be shown" in response.text
        and "orders of" not in response.text
    )


def is_challenge(response: httpx.Response, root: str = "") -> bool:
    return response.status_code == 303 and response.headers["location"].startswith(
        f"{root}/admin/_2fa/challenge?"
    )


def errors(caplog: pytest.LogCaptureFixture, level: int = logging.ERROR) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOG and r.levelno == level]


# --------------------------------------------------------------------------- the eight mistakes


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
async def test_a_mistake_in_the_identity_settings_never_lets_a_user_in(
    make_harness: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    identity: dict[str, Any],
    warning: str | None,
) -> None:
    h: Harness = await make_harness(cookie_shop(), interfaces=admin(identity))
    with caplog.at_level(logging.WARNING, logger=LOG):
        response = await logged_in_orders(h)
    assert withheld(response)
    (error,) = errors(caplog)
    assert "interface admin: the shop served GET '/admin/orders' (200)" in error
    assert "interfaces.admin.exempt" in error
    assert "identity settings do not match" in error
    if warning:
        (said,) = errors(caplog, logging.WARNING)
        assert warning in said
        # key names, never values or secrets
        assert SHOP_SECRET not in said
        assert "alice" not in said


async def test_the_same_settings_right_challenge_the_user(make_harness: Callable[..., Any]) -> None:
    # The control for the three above: with matching settings the user is challenged, then let in.
    h: Harness = await make_harness(cookie_shop(), interfaces=admin(cookie_identity()))
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    assert is_challenge(await logged_in_orders(h))


async def test_4_from_session_with_the_middleware_outside_the_session_middleware(
    make_harness: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    # The README's own wrap puts the middleware outermost: scope["session"] does not exist yet.
    h: Harness = await make_harness(cookie_shop(), interfaces=admin({"from": "session", "key": "user_id"}))
    with caplog.at_level(logging.ERROR, logger=LOG):
        response = await logged_in_orders(h)
        again = await h.client.get("/admin/orders")
    assert response.status_code == 500
    assert "Sign-in check unavailable" in response.text
    assert again.status_code == 500
    (error,) = errors(caplog)  # one line, not one per request
    assert "must sit inside the shop's SessionMiddleware" in error


async def test_4_from_scope_user_with_the_middleware_outside_authentication(
    make_harness: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    h: Harness = await make_harness(cookie_shop(), interfaces=admin({"from": "scope_user"}))
    with caplog.at_level(logging.ERROR, logger=LOG):
        response = await logged_in_orders(h)
    assert response.status_code == 500
    assert "inside the shop's AuthenticationMiddleware" in errors(caplog)[0]


async def test_5_under_a_mount_the_prefixes_are_relative_to_the_root(
    tmp_path: Path, clock: Callable[[], float]
) -> None:
    settings = settings_from_mapping(
        {
            "secret_keys": [SECRET],
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'tfa.sqlite3'}",
            "interfaces": admin(cookie_identity(), logout_url="/admin/logout"),
        }
    )
    service = TwoFactor.from_settings(settings, clock=clock)
    await service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    inner = TwoFactorMiddleware(cookie_shop(), service=service, clock=clock)
    site = Starlette(routes=[Mount("/shop", app=inner)])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=site), base_url="http://shop.test"
    ) as client:
        await client.get("/shop/login", params={"user": "alice", "sid": "s1"})
        stopped = await client.get("/shop/admin/orders", headers={"accept": "text/html"})
        assert stopped.status_code == 303
        assert stopped.headers["location"] == "/shop/admin/_2fa/challenge?next=%2Fadmin%2Forders"
        page = await client.get(stopped.headers["location"])
        assert page.status_code == 200
        # Every link of the page carries the root: the form actions, the assets, the way out.
        assert 'action="/shop/admin/_2fa/send?next=%2Fadmin%2Forders"' in page.text
        assert 'href="/shop/admin/_2fa/static/tfa.css"' in page.text
        assert 'href="/shop/admin/logout"' in page.text
        assert 'href="/shop/"' in page.text
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        sent = await client.post("/shop/admin/_2fa/send?next=%2Fadmin%2Forders", data={"csrf_token": token})
        assert sent.headers["location"].startswith("/shop/admin/_2fa/challenge?")
        found = re.search(r"\b(\d{6})\b", (await outbox_rows.latest(service.store, 1))[0].body)
        assert found
        code = found.group(1)
        done = await client.post(
            "/shop/admin/_2fa/verify?next=%2Fadmin%2Forders", data={"csrf_token": token, "code": code}
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/shop/admin/orders"
        assert (await client.get("/shop/admin/orders")).text == "orders of alice"
    await service.close()


def config_file(tmp_path: Path, interfaces: dict[str, Any], **extra: Any) -> Path:
    path = tmp_path / "tfa.yaml"
    data = {
        "secret_keys": [SECRET],
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'tfa.sqlite3'}",
        "interfaces": interfaces,
        **extra,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def test_5_under_uvicorn_root_path(tmp_path: Path) -> None:
    config = config_file(tmp_path, admin(cookie_identity()))
    env = {**os.environ, "TFA_TEST_CONFIG": str(config)}
    with (
        uvicorn_server(
            "tests.fail_closed_app:create_app", tmp_path, env, args=("--root-path", "/shop")
        ) as url,
        httpx.Client(base_url=url) as browser,
    ):
        assert browser.get("/login", params={"user": "alice", "sid": "s1"}).text == "logged in"
        stopped = browser.get("/admin/orders", headers={"accept": "text/html"})
        assert stopped.status_code == 303, stopped.text
        assert stopped.headers["location"].startswith("/shop/admin/_2fa/")
        assert "orders of alice" not in stopped.text


async def test_6_a_session_older_than_14_days_that_the_shop_honours(
    make_harness: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shop keeps sessions for 30 days; the default reads them by their signature alone.
    h: Harness = await make_harness(cookie_shop(max_age=30 * 24 * 3600), interfaces=admin(cookie_identity()))
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    import time as real_time

    twenty_days_ago = int(real_time.time()) - 20 * 24 * 3600
    old = cookie_signed_at(monkeypatch, twenty_days_ago, {"user_id": "alice", "sid": "s1"}, SHOP_SECRET)
    response = await h.client.get(
        "/admin/orders", headers={"cookie": f"session={old}", "accept": "text/html"}
    )
    assert is_challenge(response)


ON_LOOP: list[bool] = []


def blocking_shop_user(scope: Any) -> Identity | None:
    """What Django's session store does in a sync resolver: refuse to run on an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        ON_LOOP.append(False)
    else:
        ON_LOOP.append(True)
        raise RuntimeError("SynchronousOnlyOperation: you cannot call this from an async context")
    user = dict(scope["headers"]).get(b"x-test-user")
    return Identity(user.decode()) if user else None


async def test_7_a_sync_callable_runs_in_a_worker_thread(make_harness: Callable[..., Any]) -> None:
    h: Harness = await make_harness(
        interfaces=admin({"from": "callable", "path": "tests.test_fail_closed:blocking_shop_user"})
    )
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    ON_LOOP.clear()
    assert is_challenge(await h.client.get("/admin/orders", headers=h.as_user("alice")))
    assert ON_LOOP == [False]


async def test_blocking_false_runs_a_sync_callable_on_the_loop(make_harness: Callable[..., Any]) -> None:
    # The opt-out for a function that never waits: no thread hop (and Django's check would trip).
    h: Harness = await make_harness(
        interfaces=admin(
            {"from": "callable", "path": "tests.test_fail_closed:blocking_shop_user", "blocking": False}
        )
    )
    ON_LOOP.clear()
    response = await h.client.get("/admin/orders", headers=h.as_user("alice"))
    assert ON_LOOP == [True]
    assert response.status_code == 503


async def test_a_sync_callable_does_not_stall_other_requests(make_harness: Callable[..., Any]) -> None:
    release = threading.Event()

    def slow_resolver(scope: Any) -> Identity | None:
        if dict(scope["headers"]).get(b"x-slow"):
            release.wait(10)
        user = dict(scope["headers"]).get(b"x-test-user")
        return Identity(user.decode()) if user else None

    h: Harness = await make_harness(
        interfaces=admin({"from": "callable", "path": "tests.harness:header_resolver"})
    )
    h.app._interfaces[0].resolver.func = slow_resolver  # type: ignore[attr-defined]
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    slow = asyncio.create_task(h.client.get("/admin/orders", headers={**h.as_user("alice"), "x-slow": "1"}))
    quick = await asyncio.wait_for(h.client.get("/admin/orders", headers=h.as_user("alice")), 5)
    # the blocked thread did not block the loop
    assert is_challenge(quick)
    assert not slow.done()
    release.set()
    assert is_challenge(await slow)


class StaffBackend(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        name = conn.headers.get("x-test-user")
        if not name:
            return None
        user = SimpleUser(name)
        user.is_staff = name.startswith("staff-")  # type: ignore[attr-defined]
        return AuthCredentials(["authenticated"]), user


async def staff_only_orders(request: Request) -> Response:
    # Like Django's admin: a logged-in customer is sent to the admin log-in.
    if not getattr(request.user, "is_staff", False):
        return RedirectResponse("/admin/login", status_code=302)
    return PlainTextResponse(f"orders of {request.user.username}")


async def test_8_a_customer_on_the_admin_is_nobody_there_and_costs_no_sms(
    make_harness: Callable[..., Any],
) -> None:
    shop = AuthenticationMiddleware(
        Starlette(routes=[Route("/admin/orders", staff_only_orders)]), backend=StaffBackend()
    )
    h: Harness = await make_harness(
        interfaces=admin({"from": "scope_user", "attribute": "username", "require": ["is_staff"]})
    )
    # The middleware sits inside AuthenticationMiddleware, so scope["user"] is there.
    outer = AuthenticationMiddleware(
        TwoFactorMiddleware(shop, service=h.service, clock=h.clock), backend=StaffBackend()
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=outer), base_url="http://shop.test"
    ) as client:
        customer = await client.get("/admin/orders", headers={"x-test-user": "carol", "accept": "text/html"})
        staff = await client.get("/admin/orders", headers={"x-test-user": "staff-sam", "accept": "text/html"})
        enroll = await client.get(
            "/admin/_2fa/enroll", headers={"x-test-user": "carol", "accept": "text/html"}
        )
    # the shop's own answer
    assert customer.status_code == 302
    assert customer.headers["location"] == "/admin/login"
    # no enrollment for her
    assert enroll.status_code == 303
    assert enroll.headers["location"] == "/admin"
    assert is_challenge(staff)
    assert (await h.service.status("admin", "carol")).state == "none"
    assert await outbox_rows.latest(h.service.store, 10) == []


# --------------------------------------------------------------------------- the guard's edges


async def streamed(_request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"secret chunk {i}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


async def status_page(request: Request) -> Response:
    return Response("shop says", status_code=int(request.path_params.get("code", 200)))


async def shop_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("secret socket")
    await websocket.close()


def open_shop() -> Starlette:
    """A shop that answers everyone, as a shop whose login the middleware cannot see looks."""
    return Starlette(
        routes=[
            Route("/admin/stream", streamed),
            Route("/admin/status/{code:int}", status_page, methods=["GET", "HEAD"]),
            Route("/admin/login", status_page),
            WebSocketRoute("/admin/ws", shop_socket),
        ]
    )


@pytest.fixture
async def open_harness(make_harness: Callable[..., Any]) -> Harness:
    h: Harness = await make_harness(open_shop())
    return h


async def test_a_streamed_page_never_leaks_a_chunk(open_harness: Harness) -> None:
    response = await open_harness.client.get("/admin/stream")
    assert response.status_code == 403
    assert "secret chunk" not in response.text


@pytest.mark.parametrize("code", [200, 201, 204, 206])
async def test_every_2xx_is_withheld(open_harness: Harness, code: int) -> None:
    response = await open_harness.client.get(f"/admin/status/{code}")
    assert response.status_code == 403
    assert "shop says" not in response.text


@pytest.mark.parametrize("code", [301, 302, 303, 304, 307, 400, 401, 403, 404, 405, 500, 503])
async def test_redirects_and_errors_pass_untouched(open_harness: Harness, code: int) -> None:
    response = await open_harness.client.get(f"/admin/status/{code}")
    assert response.status_code == code


async def test_head_is_withheld_without_a_body(open_harness: Harness) -> None:
    response = await open_harness.client.head("/admin/status/200")
    assert response.status_code == 403
    assert response.content == b""


async def test_exempt_paths_are_not_guarded(open_harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger=LOG):
        response = await open_harness.client.get("/admin/login", params={"code": "200"})
    assert response.status_code == 200
    assert errors(caplog) == []


async def test_a_websocket_the_shop_accepts_is_closed(open_harness: Harness) -> None:
    sent = await asgi_websocket(open_harness.app, "/admin/ws")
    assert [(m["type"], m.get("code")) for m in sent] == [("websocket.close", 1008)]
    assert not any(m.get("text") == "secret socket" for m in sent)


async def test_warn_mode_serves_and_logs(
    make_harness: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    h: Harness = await make_harness(
        open_shop(),
        interfaces=admin({"from": "callable", "path": "tests.harness:header_resolver"}, unidentified="warn"),
    )
    with caplog.at_level(logging.ERROR, logger=LOG):
        first = await h.client.get("/admin/status/200")
        second = await h.client.get("/admin/stream")
    assert (first.status_code, first.text) == (200, "shop says")
    assert "secret chunk 2" in second.text
    (error,) = errors(caplog)  # one line a minute per interface, not one per request
    assert "served anyway (unidentified: warn)" in error


async def test_the_guard_costs_nothing_with_an_identity(harness: Harness) -> None:
    # A logged-in user with a proof reaches the shop's own send: nothing wraps it.
    value = await harness.pass_challenge("alice")
    seen: list[Any] = []
    shop = harness.app.app

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        seen.append(send)
        await shop(scope, receive, send)

    harness.app.app = spy
    response = await harness.client.get(
        "/admin/orders", headers={**harness.as_user("alice"), "cookie": f"tfa_admin={value}"}
    )
    assert response.status_code == 200
    assert not isinstance(seen[0], Guard)


# ------------------------------------------------------------- the header resolver behind a proxy


def test_a_forwarded_address_does_not_turn_the_identity_header_into_nobody(tmp_path: Path) -> None:
    # uvicorn's defaults trust X-Forwarded-For from 127.0.0.1 and rewrite the client address:
    # the identity header then seems to come from 203.0.113.9, which we do not trust.
    config = config_file(
        tmp_path, admin({"from": "header", "header": "X-Remote-User"}), trusted_proxies=["127.0.0.1"]
    )
    env = {**os.environ, "TFA_TEST_CONFIG": str(config)}
    with (
        uvicorn_server("tests.fail_closed_app:create_app", tmp_path, env) as url,
        httpx.Client(base_url=url) as client,
    ):
        forged = client.get(
            "/admin/orders", headers={"x-remote-user": "alice", "x-forwarded-for": "203.0.113.9"}
        )
        direct = client.get("/admin/orders", headers={"x-remote-user": "alice", "accept": "text/html"})
    assert forged.status_code == 500
    assert "orders of alice" not in forged.text
    assert is_challenge(direct)
    assert "not in trusted_proxies" in (tmp_path / "uvicorn.log").read_text()


# --------------------------------------------------------------------------- the shop's logout


async def shop_logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/", status_code=303)


async def test_the_shops_logout_ends_the_proof_in_the_same_response(make_harness: Callable[..., Any]) -> None:
    shop = cookie_shop()
    shop.router.routes.append(Route("/admin/logout", shop_logout))
    h: Harness = await make_harness(shop, interfaces=admin(cookie_identity(), logout_url="/admin/logout"))
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    assert is_challenge(await logged_in_orders(h))
    await h.send({"accept": "text/html"})
    verified = await h.verify({"accept": "text/html"}, await h.latest_code())
    assert verified.status_code == 303
    assert (await h.client.get("/admin/orders")).text == "orders of alice"
    copied = {"session": h.client.cookies["session"], "tfa_admin": h.client.cookies["tfa_admin"]}

    # Alice's other browser: a login of its own (sid s2), with its own proof.
    other = httpx.AsyncClient(transport=httpx.ASGITransport(app=h.app), base_url="http://shop.test")
    await other.get("/login", params={"user": "alice", "sid": "s2"})
    token = (
        (await other.get("/admin/_2fa/challenge")).text.split('name="csrf_token" value="')[1].split('"')[0]
    )
    await other.post("/admin/_2fa/send", data={"csrf_token": token})
    await other.post("/admin/_2fa/verify", data={"csrf_token": token, "code": await h.latest_code()})
    assert (await other.get("/admin/orders")).text == "orders of alice"

    # The challenge pages link to the shop's logout, and it is open without a second factor.
    page = await h.client.get("/admin/_2fa/logout")
    assert 'href="/admin/logout">Not you? Sign out</a>' in page.text
    out = await h.client.get("/admin/logout")
    assert out.status_code == 303
    cleared = [v for k, v in out.headers.multi_items() if k == "set-cookie" and v.startswith("tfa_admin=")]
    assert cleared == [proof_clear_cookie("tfa_admin", https=False)]  # as the pages clear it
    assert "tfa_admin" not in h.client.cookies

    # A copy of the session and proof taken before the logout: the shop's cookie session is still
    # valid (Starlette cannot revoke it), the proof is not.
    h.client.cookies.clear()
    replayed = await h.client.get(
        "/admin/orders",
        headers={"cookie": "; ".join(f"{k}={v}" for k, v in copied.items()), "accept": "text/html"},
    )
    assert is_challenge(replayed)
    # Only that login ended: the other browser is still signed in.
    assert (await other.get("/admin/orders")).text == "orders of alice"
    await other.aclose()


# --------------------------------------------------------------------------- a prefix that covers nothing


@pytest.mark.parametrize(
    ("prefix", "site", "warned"),
    [
        pytest.param("/admim", lambda shop: shop, True, id="typo"),
        pytest.param("/admin", lambda shop: Starlette(routes=[Mount("/shop", app=shop)]), True, id="mounted"),
        pytest.param(
            "/shop/admin",
            lambda shop: Starlette(routes=[Mount("/shop", app=shop)]),
            False,
            id="mounted-right",
        ),
        pytest.param("/admin", lambda shop: shop, False, id="right"),
        pytest.param(
            "/admin", lambda shop: SessionMiddleware(shop, secret_key=SHOP_SECRET), False, id="wrapped"
        ),
    ],
)
def test_a_prefix_that_no_route_serves_is_named_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, prefix: str, site: Callable[[Any], Any], warned: bool
) -> None:
    settings = settings_from_mapping(
        {
            "secret_keys": [SECRET],
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'tfa.sqlite3'}",
            "interfaces": {"admin": {"path_prefix": prefix, "identity": cookie_identity()}},
        }
    )
    shop = Starlette(routes=[Route("/admin/orders", shop_orders), Route("/login", shop_login)])
    with caplog.at_level(logging.WARNING, logger=LOG):
        TwoFactorMiddleware(site(shop), settings)
    said = [m for m in errors(caplog, logging.WARNING) if "matches no route" in m]
    assert bool(said) is warned
    if warned:
        assert f"interfaces.admin.path_prefix {prefix!r}" in said[0]


def test_an_app_that_lists_no_routes_is_not_judged() -> None:
    from tfa_middleware.app_routes import covers, route_paths

    async def plain_asgi(_scope: Any, _receive: Any, _send: Any) -> None:
        return None

    assert route_paths(plain_asgi) is None
    assert covers("/de/admin", ["/{lang}/admin"])  # a parameter may be anything
    assert covers("/shop/admin", ["/shop/{anything}"])  # a mounted app without a route list
    assert covers("/ACCOUNT", ["/account/orders"])
    assert not covers("/accounts", ["/account/orders"])


# --------------------------------------------------------------------------- unsafe methods from nobody


async def posted(request: Request) -> Response:
    POSTED.append(request.url.path)
    return RedirectResponse("/admin/orders", status_code=303)  # post, redirect, get: no 2xx to guard


POSTED: list[str] = []


def posting_shop() -> Starlette:
    return Starlette(
        routes=[Route("/admin/orders/delete", posted, methods=["POST", "PUT", "PATCH", "DELETE"])]
    )


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_an_unsafe_request_from_nobody_never_reaches_the_shop(
    make_harness: Callable[..., Any], method: str
) -> None:
    # A blind resolver and a shop that acts, then redirects: the guard could not undo the action,
    # so the request itself stops here.
    h: Harness = await make_harness(posting_shop())
    POSTED.clear()
    response = await h.client.request(method, "/admin/orders/delete", headers={"accept": "text/html"})
    assert response.status_code == 403
    assert "This page can't be shown" in response.text
    assert POSTED == []


async def test_in_warn_mode_an_unsafe_request_from_nobody_reaches_the_shop(
    make_harness: Callable[..., Any],
) -> None:
    h: Harness = await make_harness(
        posting_shop(),
        interfaces=admin({"from": "callable", "path": "tests.harness:header_resolver"}, unidentified="warn"),
    )
    POSTED.clear()
    response = await h.client.post("/admin/orders/delete")
    assert response.status_code == 303
    assert POSTED == ["/admin/orders/delete"]


# --------------------------------------------------------------------------- more mistakes


async def test_a_session_id_key_the_session_lacks_is_named(
    make_harness: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    # Still protected (the user is challenged), but the proof would not be bound to the login.
    h: Harness = await make_harness(
        cookie_shop(), interfaces=admin(cookie_identity(session_id_key="login_id"))
    )
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    with caplog.at_level(logging.WARNING, logger=LOG):
        assert is_challenge(await logged_in_orders(h))
    (said,) = errors(caplog, logging.WARNING)
    assert "no session_id_key 'login_id' (its keys: sid, user_id)" in said
    assert "counts as nobody" not in said


@pytest.mark.parametrize(
    ("customer", "problem"),
    [
        pytest.param(
            {"proof_cookie": "tfa_admin"},
            "interfaces.customer.proof_cookie: 'tfa_admin' is already used by interfaces.admin",
            id="two-interfaces-one-cookie",
        ),
        pytest.param(
            {"proof_cookie": "session"},
            "interfaces.customer.proof_cookie: 'session' is the shop's session cookie "
            "(interfaces.admin.identity.cookie)",
            id="the-shops-session-cookie",
        ),
    ],
)
def test_a_proof_cookie_that_would_overwrite_another_is_refused(
    tmp_path: Path, customer: dict[str, Any], problem: str
) -> None:
    from tfa_middleware import ConfigError

    data = {
        "secret_keys": [SECRET],
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'tfa.sqlite3'}",
        "interfaces": {
            **admin(cookie_identity()),
            "customer": {"path_prefix": "/account", "identity": {"from": "session", "key": "c"}, **customer},
        },
    }
    with pytest.raises(ConfigError) as exc:
        settings_from_mapping(data)
    assert problem in exc.value.problems


@pytest.mark.parametrize(
    ("logout_url", "opens"),
    [
        ("/admin", "the whole interface"),
        ("/admin/", "the whole interface"),
        ("/admin/_2fa/logout", "our pages"),
    ],
)
def test_a_logout_url_that_would_open_the_interface_is_refused(
    tmp_path: Path, logout_url: str, opens: str
) -> None:
    from tfa_middleware import ConfigError

    data = {
        "secret_keys": [SECRET],
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'tfa.sqlite3'}",
        "interfaces": admin(cookie_identity(), logout_url=logout_url),
    }
    with pytest.raises(ConfigError) as exc:
        settings_from_mapping(data)
    assert any(p.startswith("interfaces.admin.logout_url:") and opens in p for p in exc.value.problems)


async def test_a_websocket_denial_response_with_a_2xx_is_closed_instead(open_harness: Harness) -> None:
    # The websocket denial extension lets a shop answer a socket with an HTTP response and a body.
    async def denying_shop(_scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 200, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"secret page"})

    open_harness.app.app = denying_shop
    sent = await asgi_websocket(open_harness.app, "/admin/ws")
    assert [(m["type"], m.get("code")) for m in sent] == [("websocket.close", 1008)]
