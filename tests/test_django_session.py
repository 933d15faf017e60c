"""``from: django_session``: the shop's Django session, read through Django's own session engine
and ``get_user``, held to Django's own request code on generated session states and cookies, in
this process (tests/django_project); the admin over real HTTP is tests/test_django_admin.py."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from tests.django_shop import (
    ENGINES,
    Headers,
    django_sees,
    engine,
    logged_in,
    make_users,
    new_session,
    resolver_sees,
    scope,
    setup_django,
    stored,
)
from tests.harness import FakeClock, config
from tests.helpers import ROOT
from tfa_middleware import ConfigError, TwoFactorMiddleware, settings_from_mapping
from tfa_middleware.identity import Identity, build_resolver
from tfa_middleware.identity.django import DjangoSessionResolver
from tfa_middleware.settings import DjangoSessionSource

MODEL = "django.contrib.auth.backends.ModelBackend"
ALLOW_ALL = "django.contrib.auth.backends.AllowAllUsersModelBackend"
HTML = {"accept": "text/html"}  # a browser navigating: sent to the challenge, not answered 401


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    setup_django(tmp_path_factory.mktemp("django"))
    return make_users()


def django_config(tmp_path: Path, **identity: Any) -> dict[str, Any]:
    """The tests' settings with one interface, the admin, read from Django's session."""
    data = config(tmp_path)
    admin = data["interfaces"]["admin"]
    data["interfaces"] = {"admin": {**admin, "identity": {"from": "django_session", **identity}}}
    return data


def cookie(key: str, name: str = "sessionid") -> Headers:
    return [(b"cookie", f"csrftoken=abc; {name}={key}".encode())]


def resolver(clock: Callable[[], float] | None = None, **options: Any) -> DjangoSessionResolver:
    return DjangoSessionResolver(label="interfaces.admin.identity", clock=clock or FakeClock(), **options)


def read(r: DjangoSessionResolver, headers: Headers) -> Identity | None:
    return asyncio.run(r(scope(headers)))


# --------------------------------------------------------------------------- who is logged in


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_a_staff_login_is_the_user_with_the_session_key_as_session_id(
    users: dict[str, Any], name: str
) -> None:
    with engine(name):
        key = new_session(logged_in(users["staff"]))
        identity = read(resolver(), cookie(key))
    assert identity is not None
    assert identity.user_id == str(users["staff"].pk)
    # signed_cookies: the key is the session itself, rewritten with every change; never bound.
    assert identity.session_id == (None if name == "signed_cookies" else key)


@pytest.mark.parametrize(
    ("who", "backend", "require", "expected"),
    [
        ("customer", MODEL, ("is_staff",), None),  # a customer on the admin: Django's login page
        ("customer", MODEL, (), "customer"),  # a customer interface: every active user
        ("inactive_staff", ALLOW_ALL, ("is_staff",), None),  # Django keeps them; active is required
        ("inactive_staff", ALLOW_ALL, (), None),
        ("staff", MODEL, ("is_superuser",), None),
        ("superuser", MODEL, ("is_staff", "is_superuser"), "superuser"),
    ],
)
def test_only_active_users_with_every_required_attribute_belong(
    users: dict[str, Any], who: str, backend: str, require: tuple[str, ...], expected: str | None
) -> None:
    with engine("db"):
        key = new_session(logged_in(users[who], backend))
        identity = read(resolver(require=require), cookie(key))
    assert (identity and identity.user_id) == (expected and str(users[expected].pk))


def test_the_cookie_name_is_djangos_unless_set(users: dict[str, Any]) -> None:
    with engine("db"):
        key = new_session(logged_in(users["staff"]))
        assert read(resolver(), cookie(key, "shop_session")) is None
        identity = read(resolver(cookie="shop_session"), cookie(key, "shop_session"))
    assert identity is not None
    assert identity.user_id == str(users["staff"].pk)


def test_a_password_change_ends_the_login(users: dict[str, Any]) -> None:
    staff = users["staff"]
    with engine("db"):
        key = new_session(logged_in(staff))
        clock = FakeClock()
        r = resolver(clock, cache_seconds=5)
        assert read(r, cookie(key)) is not None
        staff.set_password("a new password")
        staff.save()
        try:
            clock.advance(6)
            assert read(r, cookie(key)) is None
            assert stored(key), "the read must not flush the session: that is for Django's request"
        finally:
            staff.set_password("correct horse battery staple")
            staff.save()


def test_djangos_logout_ends_it(users: dict[str, Any]) -> None:
    from django.contrib.sessions.backends.db import SessionStore

    with engine("db"):
        key = new_session(logged_in(users["staff"]))
        r = resolver(cache_seconds=0)
        assert read(r, cookie(key)) is not None
        SessionStore(key).flush()  # what django.contrib.auth.logout does
        assert read(r, cookie(key)) is None


# --------------------------------------------------------------------------- the cache


def test_a_returning_browser_is_remembered_for_cache_seconds(users: dict[str, Any]) -> None:
    from django.contrib.sessions.backends.db import SessionStore

    clock = FakeClock()
    with engine("db"):
        key = new_session(logged_in(users["staff"]))
        r = resolver(clock, cache_seconds=5)
        first = read(r, cookie(key))
        SessionStore(key).delete()  # gone from the database: only the cache can still answer
        assert read(r, cookie(key)) == first
        clock.advance(5)
        assert read(r, cookie(key)) is None


def test_cache_seconds_zero_reads_every_time(users: dict[str, Any]) -> None:
    from django.contrib.sessions.backends.db import SessionStore

    with engine("db"):
        key = new_session(logged_in(users["staff"]))
        r = resolver(cache_seconds=0)
        assert read(r, cookie(key)) is not None
        SessionStore(key).delete()
        assert read(r, cookie(key)) is None


# --------------------------------------------------------------------------- fail closed


@pytest.fixture
def sessions_table_gone(users: dict[str, Any]) -> Iterator[None]:
    """The database behind the sessions answers with an error (as a server that is down does)."""
    from django.conf import settings as django_settings

    del users
    path = django_settings.DATABASES["default"]["NAME"]
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE django_session RENAME TO django_session_away")
    try:
        yield
    finally:
        with sqlite3.connect(path) as db:
            db.execute("ALTER TABLE django_session_away RENAME TO django_session")


@pytest.mark.usefixtures("sessions_table_gone")
def test_a_database_error_is_unreadable_never_nobody() -> None:
    with engine("db"):
        seen = resolver_sees(resolver(), cookie("k" * 32))
    assert seen[0] == "error"
    assert "OperationalError" in seen[1]


def test_a_cache_server_down_reads_as_django_reads_it(users: dict[str, Any]) -> None:
    """Django's cache engine swallows the cache's errors and reads an empty session: the shop
    itself sees nobody (its login page), and so does the resolver. cached_db finds the session in
    the database, then fails to put it into the cache: Django's request fails (500), and the
    resolver's answer is an error too, never nobody."""
    from django.test import override_settings

    with engine("cached_db"):
        key = new_session(logged_in(users["staff"]))
    with engine("cache"), override_settings(SESSION_CACHE_ALIAS="down"):
        assert django_sees(cookie(key))[1].is_anonymous
        assert resolver_sees(resolver(), cookie(key)) == ("user", None)
    with engine("cached_db"), override_settings(SESSION_CACHE_ALIAS="down"):
        assert django_sees(cookie(key)) == ("error", "ConnectionError")
        assert resolver_sees(resolver(), cookie(key)) == (
            "error",
            "Django could not read the session (django.contrib.sessions.backends.cached_db): "
            "ConnectionError: cache server refused the connection",
        )


def test_a_session_holding_an_unreadable_user_id_is_unreadable(users: dict[str, Any]) -> None:
    with engine("db"):
        key = new_session({**logged_in(users["staff"]), "_auth_user_id": "not-a-number"})
        assert django_sees(cookie(key)) == ("error", "ValidationError")  # Django's request: 500
        assert resolver_sees(resolver(), cookie(key))[0] == "error"


async def test_the_middleware_answers_500_when_the_sessions_cannot_be_read(
    users: dict[str, Any], tmp_path: Path, sessions_table_gone: None
) -> None:
    del users, sessions_table_gone
    served: list[str] = []

    async def shop(scope: Scope, receive: Receive, send: Send) -> None:
        served.append(scope["path"])
        await PlainTextResponse("the admin")(scope, receive, send)

    with engine("db"):
        app = TwoFactorMiddleware(shop, settings_from_mapping(django_config(tmp_path)))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            answer = await client.get("/admin/", headers={"cookie": "sessionid=" + "k" * 32})
    assert answer.status_code == 500
    assert served == []


# --------------------------------------------------------------------------- configuration


def test_an_unconfigured_django_is_a_config_error_at_start(
    users: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.apps import apps

    del users
    monkeypatch.setattr(apps, "ready", False)
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    with pytest.raises(ConfigError, match=r"no DJANGO_SETTINGS_MODULE.*get_asgi_application"):
        build_resolver(DjangoSessionSource(), trusted_proxies=(), where="interfaces.admin.identity")
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "shop.settings")
    with pytest.raises(ConfigError, match="apps are not loaded yet"):
        build_resolver(DjangoSessionSource(), trusted_proxies=(), where="interfaces.admin.identity")


def test_without_the_sessions_app_it_is_a_config_error(users: dict[str, Any]) -> None:
    from django.test import modify_settings

    del users
    with (
        modify_settings(INSTALLED_APPS={"remove": ["django.contrib.sessions"]}),
        pytest.raises(ConfigError, match=r"'django\.contrib\.sessions' in Django's INSTALLED_APPS"),
    ):
        resolver()


def test_without_django_installed_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "django.apps", None)  # import django.apps raises ImportError
    with pytest.raises(ConfigError, match=r"tfa-middleware\[django\]"):
        resolver()


def test_the_core_package_imports_without_django() -> None:
    code = "import sys, tfa_middleware, tfa_middleware.settings; assert 'django' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_the_settings_keys() -> None:
    source = settings_from_mapping(django_config(Path("."))).interfaces["admin"].identity
    assert source == DjangoSessionSource(require=("is_staff",), cookie=None, cache_seconds=5)
    assert DjangoSessionSource.model_validate({"require": "is_superuser"}).require == ("is_superuser",)
    with pytest.raises(ConfigError, match=r"identity\.require"):
        settings_from_mapping(django_config(Path("."), require=["staff"]))


# --------------------------------------------------------------------------- agreement with Django

USER_IDS = st.sampled_from(["staff", "customer", "inactive_staff", "superuser", "missing", "garbage"])
BACKENDS = st.sampled_from([MODEL, ALLOW_ALL, "django.contrib.auth.backends.RemoteUserBackend", None])
HASHES = st.sampled_from(["right", "fallback", "other", "", None])
REQUIRES = st.sampled_from([("is_staff",), (), ("is_superuser",)])


@st.composite
def session_states(draw: st.DrawFn) -> dict[str, Any]:
    """A session as Django might hold it: a user or not, any backend, any hash, keys missing."""
    return {
        "user": draw(USER_IDS),
        "backend": draw(BACKENDS),
        "hash": draw(HASHES),
        "no_user_key": draw(st.booleans()),
        "extra": draw(st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)),
    }


def session_data(state: dict[str, Any], users: dict[str, Any]) -> dict[str, Any]:
    user = users.get(state["user"])
    data: dict[str, Any] = dict(state["extra"])
    if not state["no_user_key"]:
        unknown = {"missing": "999999", "garbage": "x"}
        data["_auth_user_id"] = user._meta.pk.value_to_string(user) if user else unknown[state["user"]]
    if state["backend"] is not None:
        data["_auth_user_backend"] = state["backend"]
    hashes = {
        "right": user.get_session_auth_hash() if user else "0" * 64,
        "fallback": next(iter(user.get_session_auth_fallback_hash())) if user else "1" * 64,
        "other": "2" * 64,
        "": "",
    }
    if state["hash"] is not None:
        data["_auth_user_hash"] = hashes[state["hash"]]
    return data


@st.composite
def cookie_headers(draw: st.DrawFn, key: str) -> Headers:
    """The session key as a browser, a proxy or an attacker might send it."""
    value = draw(
        st.sampled_from(["as is", "tampered", "quoted", "absent", "twice"]).map(
            lambda how: {
                "as is": key,
                "tampered": key[:-3] + ("A" if key[-3] != "A" else "B") + key[-2:],
                "quoted": f'"{key}"',
                "absent": None,
                "twice": key + "; sessionid=" + key[::-1],
            }[how]
        )
    )
    around = draw(st.sampled_from(["", "csrftoken=abc; ", "sessionid=stale; ", 'a="b;c"; ']))
    first = (around + (f"sessionid={value}" if value is not None else "theme=dark")).encode()
    headers = [(draw(st.sampled_from([b"cookie", b"Cookie"])), first)]
    if draw(st.booleans()):  # a second Cookie header: Django joins them with ","
        headers.append((b"cookie", draw(st.sampled_from([b"sessionid=other", b"x=1", b""]))))
    return headers


def agree(r: DjangoSessionResolver, headers: Headers, require: tuple[str, ...]) -> None:
    before = stored_for(headers)
    ours = resolver_sees(r, headers)
    assert stored_for(headers) == before, "the resolver must not change the session"
    django = django_sees(headers)
    if django[0] == "error":
        assert ours[0] == "error", (django, ours)
        return
    user = django[1]
    belongs = user.is_authenticated and user.is_active and all(getattr(user, n) for n in require)
    expected = str(user.pk) if belongs else None
    assert ours[0] == "user", (django, ours)
    assert (ours[1] and ours[1].user_id) == expected, (django, ours)


def stored_for(headers: Headers) -> dict[str, Any] | None:
    from django.core.handlers.asgi import ASGIRequest

    key = ASGIRequest(scope(headers), io.BytesIO()).COOKIES.get("sessionid")
    try:
        return stored(key) if key else None
    except Exception:  # a key the engine cannot even look up: Django fails the same way
        return None


@pytest.mark.parametrize("name", ["db", "signed_cookies", "cache", "cached_db"])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=session_states(), data=st.data(), require=REQUIRES)
@example(
    state={"user": "staff", "backend": MODEL, "hash": "right", "no_user_key": False, "extra": {}},
    data=None,
    require=("is_staff",),
)
def test_the_resolver_and_djangos_get_user_agree(
    users: dict[str, Any], name: str, state: dict[str, Any], data: Any, require: tuple[str, ...]
) -> None:
    with engine(name):
        key = new_session(session_data(state, users))
        headers = data.draw(cookie_headers(key)) if data is not None else cookie(key)
        agree(resolver(require=require, cache_seconds=0), headers, require)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    headers=st.lists(
        st.tuples(
            st.sampled_from([b"cookie", b"Cookie", b"COOKIE", b"cookies", b"x-cookie"]),
            st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
            | st.sampled_from([b"sessionid=abc", b"sessionid = abc", b'sessionid="a\\"b"', b"sessionid=a,b"]),
        ),
        max_size=3,
    )
)
def test_the_session_key_is_the_one_djangos_request_reads(users: dict[str, Any], headers: Headers) -> None:
    from django.core.handlers.asgi import ASGIRequest

    del users
    expected = ASGIRequest(scope(headers), io.BytesIO()).COOKIES.get("sessionid") or ""
    assert resolver().session_key(scope(headers)) == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
    | st.sampled_from(
        [b"sessionid=abc", b"sessionid = abc", b'sessionid="a\\"b"', "sessionid=\u00e4b".encode()]
    )
)
def test_under_wsgi_the_session_key_is_the_one_djangos_wsgi_request_reads(
    users: dict[str, Any], header: bytes
) -> None:
    from django.core.handlers.wsgi import WSGIRequest

    del users
    environ = {"REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO(), "HTTP_COOKIE": header.decode("latin-1")}
    expected = WSGIRequest(environ).COOKIES.get("sessionid") or ""
    assert resolver().session_key({"type": "http", "headers": [], "wsgi.environ": environ}) == expected


# --------------------------------------------------------------------------- through the middleware


async def test_a_customer_on_the_admin_is_left_to_django(users: dict[str, Any], tmp_path: Path) -> None:
    async def shop(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("login page", status_code=302, headers={"location": "/admin/login/"})(
            scope, receive, send
        )

    with engine("db"):
        staff = await run_in_threadpool(new_session, logged_in(users["staff"]))
        customer = await run_in_threadpool(new_session, logged_in(users["customer"]))
        app = TwoFactorMiddleware(shop, settings_from_mapping(django_config(tmp_path)))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            as_staff = await client.get("/admin/", headers={"cookie": f"sessionid={staff}", **HTML})
            as_customer = await client.get("/admin/", headers={"cookie": f"sessionid={customer}", **HTML})
    assert as_staff.status_code == 303
    assert "/admin/_2fa/" in as_staff.headers["location"]
    assert as_customer.status_code == 302
    assert as_customer.headers["location"] == "/admin/login/"


def test_under_wsgi_the_session_is_read_in_the_servers_thread(
    users: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A WSGI server's thread may block, as Django's own request does: the read runs right there,
    never through the middleware's loop (a hop per request), and the answer is the same."""
    from tfa_middleware.wsgi import TwoFactorWSGIMiddleware

    threads: list[int] = []
    blocking = DjangoSessionResolver._read_blocking

    def recording(self: DjangoSessionResolver, key: str) -> Any:
        threads.append(threading.get_ident())
        return blocking(self, key)

    monkeypatch.setattr(DjangoSessionResolver, "_read_blocking", recording)

    def shop(_environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"the admin"]

    with engine("db"):
        staff = new_session(logged_in(users["staff"]))
        app = TwoFactorWSGIMiddleware(shop, settings_from_mapping(django_config(tmp_path)))
        try:
            with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
                answer = client.get("/admin/", headers={"cookie": f"sessionid={staff}", **HTML})
            looped = app.loop.started
        finally:
            app.close()
    assert answer.status_code == 303
    assert "/admin/_2fa/" in answer.headers["location"]
    assert threads == [threading.get_ident()]
    assert not looped
