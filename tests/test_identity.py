"""Identity resolvers, alone and through the middleware: who has the shop logged in?"""

from __future__ import annotations

import ipaddress
import json
import time
from base64 import b64encode
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from itsdangerous import TimestampSigner
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser, UnauthenticatedUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.harness import ADMIN_PHONE, FakeClock, Harness
from tests.sessions import OTHER_SECRET, SHOP_SECRET, cookie_signed_at, real_session_cookie
from tfa_middleware import ConfigError, Identity
from tfa_middleware.identity import (
    MAX_USER_ID_LENGTH,
    CallableResolver,
    HeaderResolver,
    IdentityUnreadable,
    ScopeUserResolver,
    SessionKeyResolver,
    StarletteSessionCookieResolver,
    UnusableIdentity,
    build_resolver,
)
from tfa_middleware.settings import (
    CallableSource,
    HeaderSource,
    IdentitySettings,
    ScopeUserSource,
    Secret,
    SessionSource,
    StarletteSessionCookieSource,
)

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


def scope(
    headers: list[tuple[bytes, bytes]] | None = None,
    client: tuple[str, int] | None = ("203.0.113.5", 50000),
    **extra: Any,
) -> dict[str, Any]:
    return {"type": "http", "path": "/admin", "headers": headers or [], "client": client, **extra}


def with_cookie(name: str, value: str) -> dict[str, Any]:
    return scope([(b"cookie", f"theme=dark; {name}={value}".encode("latin-1"))])


# --------------------------------------------------------------------------- from: session


@pytest.mark.parametrize(
    ("session", "expected"),
    [
        pytest.param({"admin_id": "alice", "sid": "s1"}, Identity("alice", "s1"), id="user-and-session"),
        pytest.param({"admin_id": 7, "sid": 99}, Identity("7", "99"), id="numbers-become-strings"),
        pytest.param({"admin_id": "alice"}, Identity("alice", None), id="no-session-id"),
        pytest.param({"customer_id": "carol"}, None, id="other-key"),
        pytest.param({"admin_id": None}, None, id="none"),
        pytest.param({"admin_id": ""}, None, id="empty"),
        pytest.param(
            {"admin_id": "x" * MAX_USER_ID_LENGTH}, Identity("x" * MAX_USER_ID_LENGTH), id="longest"
        ),
    ],
)
def test_session_key_resolver(session: Any, expected: Identity | None) -> None:
    resolver = SessionKeyResolver("admin_id", session_id_key="sid")
    assert resolver(scope(session=session)) == expected


@pytest.mark.parametrize(
    "session",
    [
        pytest.param({"admin_id": True}, id="bool"),
        pytest.param({"admin_id": ["alice"]}, id="list"),
        pytest.param({"admin_id": {"id": "alice"}}, id="dict"),
        pytest.param({"admin_id": 1.5}, id="float"),
        pytest.param({"admin_id": "alice", "sid": ["s1"]}, id="session-id-not-a-str"),
    ],
)
def test_session_key_resolver_fails_closed_on_a_value_that_is_not_an_id(session: dict[str, Any]) -> None:
    # Something is stored under the key, so somebody may be logged in: never "nobody".
    with pytest.raises(UnusableIdentity):
        SessionKeyResolver("admin_id", session_id_key="sid")(scope(session=session))


def test_session_key_resolver_refuses_an_overlong_user_id() -> None:
    # Somebody is logged in; calling them nobody would let them past without a second factor.
    with pytest.raises(UnusableIdentity):
        SessionKeyResolver("admin_id")(scope(session={"admin_id": "x" * (MAX_USER_ID_LENGTH + 1)}))


@pytest.mark.parametrize(
    "session", [pytest.param(None, id="missing"), pytest.param("admin_id=alice", id="str")]
)
def test_session_key_resolver_without_a_usable_session_in_the_scope_fails_closed(session: Any) -> None:
    # The middleware sits outside the shop's SessionMiddleware: it cannot know who is logged in.
    request = scope() if session is None else scope(session=session)
    with pytest.raises(
        IdentityUnreadable, match=r"must sit inside the shop's SessionMiddleware|not a mapping"
    ):
        SessionKeyResolver("admin_id")(request)


def test_session_key_resolver_without_session_id_key_gives_none() -> None:
    resolver = SessionKeyResolver("admin_id")
    assert resolver(scope(session={"admin_id": "alice", "sid": "s1"})) == Identity("alice", None)


# --------------------------------------------------------------------------- from: starlette_session_cookie


def cookie_resolver(
    clock: Callable[[], float], secret: str = SHOP_SECRET, max_age: int | None = 3600
) -> StarletteSessionCookieResolver:
    return StarletteSessionCookieResolver(
        "session", secret, "admin_id", "sid", max_age_seconds=max_age, clock=clock
    )


@pytest.fixture
def now_clock() -> FakeClock:
    # itsdangerous checks max_age against the real time, so this clock starts there.
    return FakeClock(float(int(time.time())))


async def test_real_starlette_cookie_is_resolved(now_clock: FakeClock) -> None:
    value = await real_session_cookie({"admin_id": "alice", "sid": "s1", "cart": [1, 2]})
    assert cookie_resolver(now_clock)(with_cookie("session", value)) == Identity("alice", "s1")


async def test_cookie_of_an_anonymous_session_is_nobody(now_clock: FakeClock) -> None:
    value = await real_session_cookie({"cart": [1, 2]})
    assert cookie_resolver(now_clock)(with_cookie("session", value)) is None


async def test_cookie_signed_with_another_secret_is_refused(now_clock: FakeClock) -> None:
    value = await real_session_cookie({"admin_id": "alice"}, secret=OTHER_SECRET)
    assert cookie_resolver(now_clock)(with_cookie("session", value)) is None


async def test_tampered_cookie_is_refused(now_clock: FakeClock) -> None:
    value = await real_session_cookie({"admin_id": "alice", "sid": "s1"})
    payload, timestamp, signature = value.split(".")
    forged = b64encode(json.dumps({"admin_id": "bob", "sid": "s1"}).encode()).decode()
    resolver = cookie_resolver(now_clock)
    assert resolver(with_cookie("session", f"{forged}.{timestamp}.{signature}")) is None
    # The first character: all six of its bits are signature (the last one's low bits are padding,
    # so changing only those would decode to the same signature).
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert resolver(with_cookie("session", f"{payload}.{timestamp}.{flipped}")) is None
    assert resolver(with_cookie("session", value)) == Identity("alice", "s1")  # the original still works


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("null", id="starlette-logout-value"),
        pytest.param("garbage", id="garbage"),
        pytest.param("a.b.c", id="three-parts"),
    ],
)
def test_malformed_cookie_is_nobody(now_clock: FakeClock, value: str) -> None:
    assert cookie_resolver(now_clock)(with_cookie("session", value)) is None


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"not base64 at all!", id="not-base64"),
        pytest.param(b64encode(b"[1, 2]"), id="not-a-dict"),
    ],
)
def test_genuinely_signed_but_unusable_payload_is_nobody(now_clock: FakeClock, data: bytes) -> None:
    value = TimestampSigner(SHOP_SECRET).sign(data).decode()
    assert cookie_resolver(now_clock)(with_cookie("session", value)) is None


async def test_only_the_configured_cookie_name_counts(now_clock: FakeClock) -> None:
    value = await real_session_cookie({"admin_id": "alice"})
    resolver = cookie_resolver(now_clock)
    assert resolver(with_cookie("session2", value)) is None
    assert resolver(with_cookie("my_session", value)) is None
    assert resolver(scope()) is None


@pytest.mark.parametrize(
    ("signed_ago", "max_age", "expected"),
    [
        pytest.param(60, 3600, Identity("alice", "s1"), id="young"),
        pytest.param(7200, 3600, None, id="older-than-max-age"),
        pytest.param(7200, 3 * 3600, Identity("alice", "s1"), id="within-a-longer-max-age"),
        pytest.param(400 * 24 * 3600, None, Identity("alice", "s1"), id="no-max-age"),
    ],
)
def test_cookie_expires_after_max_age(
    monkeypatch: pytest.MonkeyPatch,
    now_clock: FakeClock,
    signed_ago: int,
    max_age: int | None,
    expected: Identity | None,
) -> None:
    value = cookie_signed_at(monkeypatch, int(now_clock()) - signed_ago, {"admin_id": "alice", "sid": "s1"})
    assert cookie_resolver(now_clock, max_age=max_age)(with_cookie("session", value)) == expected


def test_resolver_clock_ends_a_remembered_cookie(
    monkeypatch: pytest.MonkeyPatch, now_clock: FakeClock
) -> None:
    value = cookie_signed_at(monkeypatch, int(now_clock()) - 60, {"admin_id": "alice", "sid": "s1"})
    resolver = cookie_resolver(now_clock, max_age=3600)
    assert resolver(with_cookie("session", value)) == Identity("alice", "s1")
    now_clock.advance(3600)  # by the resolver's clock the cookie is now 3660 s old
    assert resolver(with_cookie("session", value)) is None


async def test_same_cookie_value_is_decoded_once(now_clock: FakeClock) -> None:
    value = await real_session_cookie({"admin_id": "alice", "sid": "s1"})
    resolver = cookie_resolver(now_clock)
    first = resolver(with_cookie("session", value))
    assert first == Identity("alice", "s1")
    assert resolver(with_cookie("session", value)) is first  # the very same object: from the cache
    other = await real_session_cookie({"admin_id": "bob", "sid": "s2"})
    assert resolver(with_cookie("session", other)) == Identity("bob", "s2")


# --------------------------------------------------------------------------- from: scope_user


class LoggedOutUser(SimpleUser):
    """A user object that still carries a name after logging out."""

    @property
    def is_authenticated(self) -> bool:
        return False


class NumberedUser(SimpleUser):
    def __init__(self, number: int) -> None:
        super().__init__(f"user-{number}")
        self.number = number


@pytest.mark.parametrize(
    ("user", "attribute", "expected"),
    [
        pytest.param(SimpleUser("alice"), "identity", Identity("alice"), id="simple-user"),
        pytest.param(SimpleUser("alice"), "username", Identity("alice"), id="other-attribute"),
        pytest.param(NumberedUser(42), "number", Identity("42"), id="number"),
        pytest.param(UnauthenticatedUser(), "identity", None, id="unauthenticated"),
        pytest.param(LoggedOutUser("alice"), "identity", None, id="named-but-not-authenticated"),
        pytest.param(None, "identity", None, id="no-user"),
    ],
)
def test_scope_user_resolver(user: Any, attribute: str, expected: Identity | None) -> None:
    assert ScopeUserResolver(attribute)(scope(user=user)) == expected


@pytest.mark.parametrize(
    ("user", "attribute"),
    [
        pytest.param(SimpleUser("alice"), "no_such_attribute", id="missing-attribute"),
        pytest.param(SimpleUser(""), "identity", id="empty-identity"),
    ],
)
def test_scope_user_resolver_fails_closed_on_an_authenticated_user_without_an_id(
    user: Any, attribute: str
) -> None:
    # Somebody is authenticated: a typo in `attribute` must not read them as nobody.
    with pytest.raises(UnusableIdentity):
        ScopeUserResolver(attribute)(scope(user=user))


def test_scope_user_resolver_without_a_user_in_the_scope_fails_closed() -> None:
    with pytest.raises(IdentityUnreadable, match="inside the shop's AuthenticationMiddleware"):
        ScopeUserResolver()(scope())


class StaffUser(SimpleUser):
    def __init__(self, username: str, is_staff: bool) -> None:
        super().__init__(username)
        self.is_staff = is_staff


def test_scope_user_resolver_with_a_condition_reads_other_users_as_nobody() -> None:
    resolver = ScopeUserResolver(require=["is_staff"])
    assert resolver(scope(user=StaffUser("alice", True))) == Identity("alice")
    assert resolver(scope(user=StaffUser("carol", False))) is None  # a customer is nobody on /admin
    assert resolver(scope(user=SimpleUser("dave"))) is None  # no such attribute: not staff either


# --------------------------------------------------------------------------- from: header


@pytest.mark.parametrize(
    ("client", "headers", "expected"),
    [
        pytest.param(("10.1.2.3", 1), [(b"x-remote-user", b"alice")], Identity("alice"), id="trusted-proxy"),
        pytest.param(("::1", 1), [(b"x-remote-user", b"alice")], Identity("alice"), id="trusted-ipv6"),
        pytest.param(("203.0.113.9", 1), [], None, id="untrusted-without-header"),
        pytest.param(("10.1.2.3", 1), [], None, id="trusted-without-header"),
        pytest.param(("10.1.2.3", 1), [(b"x-remote-user", b"")], None, id="empty-header"),
        pytest.param(("10.1.2.3", 1), [(b"x-remote-user-id", b"alice")], None, id="similar-header"),
    ],
)
def test_header_resolver(
    client: tuple[str, int] | None, headers: list[tuple[bytes, bytes]], expected: Identity | None
) -> None:
    resolver = HeaderResolver("X-Remote-User", TRUSTED)
    assert resolver(scope(headers, client=client)) == expected


@pytest.mark.parametrize(
    "client",
    [
        pytest.param(("203.0.113.9", 1), id="forged-by-untrusted-peer"),
        pytest.param(("11.0.0.1", 1), id="just-outside-the-network"),
        pytest.param(None, id="no-peer"),
    ],
)
def test_header_resolver_fails_closed_on_the_header_from_an_untrusted_peer(
    client: tuple[str, int] | None,
) -> None:
    # Behind a proxy on the same host, uvicorn rewrites the peer from X-Forwarded-For; the shop may
    # still believe the header, so it is never read as "nobody".
    with pytest.raises(IdentityUnreadable, match="not in trusted_proxies") as exc:
        HeaderResolver("X-Remote-User", TRUSTED)(scope([(b"x-remote-user", b"alice")], client=client))
    assert "alice" not in str(exc.value)  # the log names the cause, never the header's value


# --------------------------------------------------------------------------- from: callable


def returning(value: object) -> tuple[Callable[[Any], object], Callable[[Any], Any]]:
    def sync_resolver(_scope: Any) -> object:
        return value

    async def async_resolver(_scope: Any) -> object:
        return value

    return sync_resolver, async_resolver


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("alice", Identity("alice"), id="str"),
        pytest.param(Identity("bob", "s2"), Identity("bob", "s2"), id="identity"),
        pytest.param(42, Identity("42"), id="int"),
        pytest.param(None, None, id="none"),
        pytest.param("", None, id="empty"),
    ],
)
async def test_callable_resolver(is_async: bool, value: object, expected: Identity | None) -> None:
    func = returning(value)[is_async]
    assert await CallableResolver(func)(scope()) == expected


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(
    "value",
    [
        pytest.param(True, id="bool"),
        pytest.param(4.2, id="float"),
        pytest.param({"user_id": "alice"}, id="dict"),
        pytest.param("x" * (MAX_USER_ID_LENGTH + 1), id="too-long"),
        pytest.param(Identity(""), id="empty-identity"),
    ],
)
async def test_callable_resolver_refuses_what_is_not_a_user_id(is_async: bool, value: object) -> None:
    func = returning(value)[is_async]
    with pytest.raises(UnusableIdentity):
        await CallableResolver(func)(scope())


async def test_callable_resolver_passes_the_scope() -> None:
    seen: list[Any] = []
    request = scope()

    def remember(given: Any) -> str:
        seen.append(given)
        return "alice"

    resolver = CallableResolver(remember)
    assert seen == []  # nothing is called when it is built
    assert await resolver(request) == Identity("alice")
    assert seen == [request]


# --------------------------------------------------------------------------- build_resolver


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        pytest.param(
            "no_such_shop.auth:current_admin",
            "interfaces.admin.identity.path: cannot import 'no_such_shop.auth:current_admin': "
            "ModuleNotFoundError: "
            "No module named 'no_such_shop'",
            id="no-module",
        ),
        pytest.param(
            "tests.harness:no_such_resolver",
            "interfaces.admin.identity.path: cannot import 'tests.harness:no_such_resolver': "
            "AttributeError: module 'tests.harness' has no attribute 'no_such_resolver'",
            id="no-attribute",
        ),
        pytest.param(
            "tests.harness:SECRET",
            "interfaces.admin.identity.path: 'tests.harness:SECRET' is not callable",
            id="not-callable",
        ),
    ],
)
def test_build_resolver_refuses_a_bad_callable_path(path: str, problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        build_resolver(
            CallableSource(path=path),
            trusted_proxies=(),
            where="interfaces.admin.identity",
        )
    assert exc.value.problems == [problem]


@pytest.mark.parametrize(
    ("settings", "kind"),
    [
        (SessionSource(key="admin_id"), SessionKeyResolver),
        (
            StarletteSessionCookieSource(key="admin_id", secret_key=Secret(SHOP_SECRET)),
            StarletteSessionCookieResolver,
        ),
        (ScopeUserSource(), ScopeUserResolver),
        (HeaderSource(header="X-Remote-User"), HeaderResolver),
        (
            CallableSource(path="tests.harness:header_resolver"),
            CallableResolver,
        ),
    ],
    ids=lambda v: getattr(v, "source", ""),
)
def test_build_resolver_builds_what_the_settings_ask_for(settings: IdentitySettings, kind: type) -> None:
    resolver = build_resolver(settings, trusted_proxies=TRUSTED, where="x")
    assert isinstance(resolver, kind)


async def test_middleware_refuses_to_start_with_a_bad_callable(make_harness: Callable[..., Any]) -> None:
    interfaces = {"admin": {"path_prefix": "/admin", "identity": {"from": "callable", "path": "nope.x:y"}}}
    with pytest.raises(ConfigError) as exc:
        await make_harness(interfaces=interfaces)
    assert exc.value.problems[0].startswith("interfaces.admin.identity.path: cannot import 'nope.x:y'")


# --------------------------------------------------------------------------- through the middleware


def admin_interface(identity: dict[str, Any]) -> dict[str, Any]:
    return {"admin": {"path_prefix": "/admin", "exempt": ["/admin/login"], "identity": identity}}


async def shop_login(request: Request) -> PlainTextResponse:
    request.session.clear()
    request.session.update({"admin_id": request.query_params["user"], "sid": request.query_params["sid"]})
    return PlainTextResponse("logged in")


async def shop_orders(request: Request) -> PlainTextResponse:
    who = request.session.get("admin_id") if "session" in request.scope else None
    user = request.scope.get("user")
    if user is not None and user.is_authenticated:
        who = user.identity
    return PlainTextResponse(f"orders of {who or 'nobody'}")


def shop(*middleware: Middleware) -> Starlette:
    return Starlette(
        routes=[Route("/login", shop_login), Route("/admin/orders", shop_orders)], middleware=list(middleware)
    )


def withheld(response: httpx.Response) -> bool:
    """The guard's answer: the shop served a protected page to a request with nobody logged in."""
    return response.status_code == 403 and "This page can't be shown" in response.text


def is_challenge(response: httpx.Response) -> bool:
    return response.status_code == 303 and response.headers["location"].startswith("/admin/_2fa/challenge?")


async def login(h: Harness, user: str, sid: str) -> None:
    assert (await h.client.get("/login", params={"user": user, "sid": sid})).text == "logged in"


async def orders(h: Harness, headers: dict[str, str] | None = None) -> httpx.Response:
    return await h.client.get("/admin/orders", headers={"accept": "text/html", **(headers or {})})


@pytest.fixture
async def cookie_shop(make_harness: Callable[..., Any]) -> Harness:
    """A shop that keeps its login in a Starlette session cookie, read by the middleware from outside."""
    h: Harness = await make_harness(
        shop(Middleware(SessionMiddleware, secret_key=SHOP_SECRET)),
        interfaces=admin_interface(
            {
                "from": "starlette_session_cookie",
                "secret_key": SHOP_SECRET,
                "key": "admin_id",
                "session_id_key": "sid",
            }
        ),
    )
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    return h


async def test_starlette_cookie_shop_user_is_challenged_and_anonymous_passes(cookie_shop: Harness) -> None:
    h = cookie_shop
    # This shop serves its orders page to anybody: the guard withholds it from a request with
    # nobody logged in, as it would from a user whose cookie the middleware could not read.
    assert withheld(await orders(h))

    await login(h, "alice", "s1")
    assert is_challenge(await orders(h))
    await h.pass_challenge("alice")
    passed = await orders(h)
    assert (passed.status_code, passed.text) == (200, "orders of alice")


async def test_starlette_cookie_proof_is_bound_to_the_shop_login(cookie_shop: Harness) -> None:
    h = cookie_shop
    await login(h, "alice", "s1")
    await h.pass_challenge("alice")
    assert (await orders(h)).text == "orders of alice"

    await login(h, "alice", "s2")  # logged out and in again: a new shop session
    assert "tfa_admin" in h.client.cookies  # the old proof is still sent ...
    assert is_challenge(await orders(h))  # ... and no longer enough


@pytest.mark.parametrize(
    "cookie_header",
    [
        pytest.param("session={alice}; tfa_admin={proof}; session={bob}", id="two-session-cookies"),
        pytest.param('session="{bob}"', id="quoted-value"),
        pytest.param("session ={bob}", id="space-before-equals"),
    ],
)
async def test_the_middleware_sees_the_user_the_shop_sees(cookie_shop: Harness, cookie_header: str) -> None:
    # Alice has her own second factor; she also knows Bob's password, so she has a shop session as Bob.
    # However she spells the Cookie header, the shop must not serve Bob's orders without Bob's factor
    # (the last two spellings do not even need her own factor).
    h = cookie_shop
    await h.service.set_phone("admin", "bob", "1", "2015550124", confirmed=True)
    await login(h, "alice", "a1")
    proof = await h.pass_challenge("alice")
    alice_session = h.client.cookies["session"]
    await login(h, "bob", "b1")
    bob_session = h.client.cookies["session"]
    h.client.cookies.clear()
    assert is_challenge(await orders(h, {"cookie": f"session={bob_session}"}))

    header = cookie_header.format(alice=alice_session, proof=proof, bob=bob_session)
    response = await orders(h, {"cookie": header})
    assert response.text != "orders of bob"


async def test_session_resolver_inside_the_shops_session_middleware(make_harness: Callable[..., Any]) -> None:
    h: Harness = await make_harness(
        shop(), interfaces=admin_interface({"from": "session", "key": "admin_id", "session_id_key": "sid"})
    )
    await h.client.aclose()
    h.client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=SessionMiddleware(h.app, secret_key=SHOP_SECRET)),
        base_url="http://shop.test",
    )
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    assert withheld(await orders(h))

    await login(h, "alice", "s1")
    assert is_challenge(await orders(h))
    await h.pass_challenge("alice")
    assert (await orders(h)).text == "orders of alice"
    await login(h, "alice", "s2")
    assert is_challenge(await orders(h))


class HeaderBackend(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        user = conn.headers.get("x-test-user")
        return (AuthCredentials(["authenticated"]), SimpleUser(user)) if user else None


async def test_scope_user_resolver_behind_authentication_middleware(make_harness: Callable[..., Any]) -> None:
    h: Harness = await make_harness(shop(), interfaces=admin_interface({"from": "scope_user"}))
    await h.client.aclose()
    h.client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=AuthenticationMiddleware(h.app, backend=HeaderBackend())),
        base_url="http://shop.test",
    )
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    assert withheld(await orders(h))  # UnauthenticatedUser is nobody, and the shop serves anyway
    assert is_challenge(await orders(h, h.as_user("alice")))
    await h.pass_challenge("alice")
    assert (await orders(h, h.as_user("alice"))).text == "orders of alice"


async def test_header_resolver_honours_only_trusted_proxies(make_harness: Callable[..., Any]) -> None:
    h: Harness = await make_harness(
        shop(),
        trusted_proxies=["127.0.0.1/32"],  # httpx.ASGITransport's default client address
        interfaces=admin_interface({"from": "header", "header": "X-Test-User"}),
    )
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    assert is_challenge(await orders(h, h.as_user("alice")))

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=h.app, client=("203.0.113.9", 40000)), base_url="http://shop.test"
    ) as outsider:
        forged = await outsider.get("/admin/_2fa/challenge", headers=h.as_user("alice"))
        forged_orders = await outsider.get("/admin/orders", headers=h.as_user("alice"))
        anonymous = await outsider.get("/admin/orders")
    # The identity header from a peer we do not trust: the shop behind us might believe it, so the
    # request fails closed instead of passing as "nobody".
    assert forged.status_code == 500
    assert "Sign-in check unavailable" in forged.text
    assert forged_orders.status_code == 500
    assert "orders of alice" not in forged_orders.text
    assert withheld(anonymous)

    await h.pass_challenge("alice")
    assert (await orders(h, h.as_user("alice"))).status_code == 200


async def async_shop_user(scope: Any) -> Identity | None:
    user = dict(scope["headers"]).get(b"x-test-user")
    return Identity(user.decode(), "fixed-session") if user else None


async def test_async_callable_resolver_through_the_middleware(make_harness: Callable[..., Any]) -> None:
    h: Harness = await make_harness(
        shop(),
        interfaces=admin_interface({"from": "callable", "path": "tests.test_identity:async_shop_user"}),
    )
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    assert withheld(await orders(h))
    assert is_challenge(await orders(h, h.as_user("alice")))
    await h.pass_challenge("alice")
    assert (await orders(h, h.as_user("alice"))).status_code == 200
    assert is_challenge(await orders(h, h.as_user("bob")))  # alice's proof is not bob's


def test_header_resolver_counts_every_spelling_of_the_header() -> None:
    # Django's ASGI handler turns both '-' and '_' into '_': X-Remote_User is X-Remote-User there.
    resolver = HeaderResolver("X-Remote-User", TRUSTED)
    with pytest.raises(IdentityUnreadable, match="not in trusted_proxies"):
        resolver(scope([(b"x-remote_user", b"alice")], client=("203.0.113.9", 1)))
    with pytest.raises(UnusableIdentity, match="appears 2 times"):
        resolver(scope([(b"x-remote-user", b"alice"), (b"x_remote_user", b"bob")], client=("10.1.2.3", 1)))
    assert resolver(scope([(b"x_remote_user", b"alice")], client=("10.1.2.3", 1))) == Identity("alice")
