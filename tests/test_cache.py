"""The bounded cache, and who owns request data: each middleware its own caches, no module at all."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Scope

import tfa_middleware
from tests.asgi_helpers import Recorder, asgi_request
from tests.harness import Harness, config, shop_app
from tests.sessions import SHOP_SECRET, real_session_cookie
from tfa_middleware import Identity, TwoFactor, TwoFactorMiddleware, asgi, settings_from_mapping
from tfa_middleware.asgi import CookieParser, cookie
from tfa_middleware.cache import BoundedCache
from tfa_middleware.identity import StarletteSessionCookieResolver

# ------------------------------------------------------------------------------ BoundedCache


def test_a_full_cache_drops_the_oldest_entry() -> None:
    cache: BoundedCache[str, int] = BoundedCache(3)
    for number, key in enumerate("abcd"):
        cache.put(key, number)
    assert len(cache) == 3
    assert cache.get("a") is None
    assert [cache.get(k) for k in "bcd"] == [1, 2, 3]


def test_a_hit_does_not_save_an_entry_from_eviction() -> None:
    # First in, first out: reading "a" does not make it young.
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert "a" not in cache
    assert "b" in cache


def test_replacing_a_value_in_a_full_cache_evicts_nothing() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("b", 20)
    assert (cache.get("a"), cache.get("b"), len(cache)) == (1, 20, 2)


def test_pop_and_clear() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.pop("a") == 1
    assert cache.pop("a") is None
    cache.clear()
    assert len(cache) == 0
    assert cache.get("b") is None


def test_the_mapping_is_the_live_entries() -> None:
    cache: BoundedCache[str, int] = BoundedCache(1)
    entries = cache.mapping
    cache.put("a", 1)
    assert entries.get("a") == 1
    cache.put("b", 2)
    assert dict(entries) == {"b": 2}


@pytest.mark.parametrize("limit", [0, -1])
def test_a_cache_holds_at_least_one_entry(limit: int) -> None:
    with pytest.raises(ValueError, match="at least one"):
        BoundedCache(limit)


# ------------------------------------------------------------------------------ CookieParser


def with_cookie_header(value: bytes) -> dict[str, Any]:
    return {"type": "http", "headers": [(b"cookie", value)]}


def test_a_parser_remembers_each_header_once_and_only_short_ones() -> None:
    parser = CookieParser(limit=2)
    short = with_cookie_header(b"session=s; tfa_admin=p")
    assert parser.read(short, "session") == "s"
    assert parser.read(short, "tfa_admin") == "p"
    assert parser.remembered() == 1
    long = with_cookie_header(b"tfa_admin=p; big=" + b"x" * CookieParser.MAX_HEADER)
    assert parser.read(long, "tfa_admin") == "p"
    assert parser.remembered() == 1


def test_cookie_outside_the_middleware_remembers_nothing() -> None:
    scope = with_cookie_header(b"session=alone")
    assert cookie(scope, "session") == "alone"
    assert cookie(scope, "session") == "alone"
    parsers = [held for held in vars(asgi).values() if isinstance(held, CookieParser)]
    assert [parser.remembered() for parser in parsers] == [0]  # the one that parses and forgets


# ------------------------------------------------------------------- who owns the parsed cookies


async def shop_session(user: str) -> str:
    """The cookie the shop's Starlette SessionMiddleware sets when ``user`` logs in."""
    return await real_session_cookie({"admin_id": user, "sid": f"login-of-{user}"})


@pytest.fixture
async def cookie_service(tmp_path: Path) -> AsyncIterator[TwoFactor]:
    """A service whose admin interface reads the shop's Starlette session cookie."""
    identity = {
        "from": "starlette_session_cookie",
        "secret_key": SHOP_SECRET,
        "key": "admin_id",
        "session_id_key": "sid",
    }
    interfaces = {"admin": {"path_prefix": "/admin", "exempt": ["/admin/login"], "identity": identity}}
    async with TwoFactor.from_settings(settings_from_mapping(config(tmp_path, interfaces=interfaces))) as tfa:
        yield tfa


def cookie_resolver(app: TwoFactorMiddleware) -> StarletteSessionCookieResolver:
    (iface,) = app._router.interfaces
    assert isinstance(iface.resolver, StarletteSessionCookieResolver)
    return iface.resolver


async def test_two_middlewares_in_one_process_share_no_parsed_cookies(cookie_service: TwoFactor) -> None:
    shop = Recorder(shop_app())
    first = TwoFactorMiddleware(shop, service=cookie_service)
    second = TwoFactorMiddleware(shop, service=cookie_service)
    mine, theirs = cookie_resolver(first).cookies, cookie_resolver(second).cookies
    # Each middleware's cookie resolver reads through that middleware's own parser.
    assert mine is first._cookies
    assert theirs is second._cookies
    assert mine is not theirs

    alice, bob = f"session={await shop_session('alice')}", f"session={await shop_session('bob')}"
    assert (await asgi_request(first, "/admin/orders", headers={"cookie": alice})).status == 303
    assert (await asgi_request(second, "/admin/orders", headers={"cookie": bob})).status == 303
    await asgi_request(first, "/admin/login", headers={"cookie": bob})  # exempt: no resolver, no parse

    assert (mine.remembered(), theirs.remembered()) == (1, 1)
    assert mine.read(with_cookie_header(bob.encode()), "session") == bob.removeprefix("session=")
    assert mine.remembered() == 2  # bob's header was not in the first middleware's cache


def test_a_cookie_resolver_built_alone_has_a_parser_of_its_own() -> None:
    first = StarletteSessionCookieResolver("session", SHOP_SECRET, "admin_id", clock=lambda: 0.0)
    second = StarletteSessionCookieResolver("session", SHOP_SECRET, "admin_id", clock=lambda: 0.0)
    assert first.cookies is not second.cookies


async def test_a_resolver_of_the_shops_own_reads_cookies_too(harness: Harness) -> None:
    # A resolver of the shop's that reads a cookie with asgi.cookie() gets Starlette's answer,
    # parsed for the call and forgotten.
    def own_resolver(scope: Scope) -> Identity | None:
        user = cookie(scope, "shop_user")
        return Identity(user, None) if user else None

    app = TwoFactorMiddleware(shop_app(), service=harness.service, resolvers={"admin": own_resolver})
    response = await asgi_request(app, "/admin/orders", headers={"cookie": "a=1; shop_user=alice"})
    assert response.status == 303  # alice, identified, is sent to the challenge


def _contents(value: Any, depth: int = 3) -> Iterator[Any]:
    """``value`` and what it holds (containers, caches), a few levels deep."""
    yield value
    if depth == 0:
        return
    if isinstance(value, BoundedCache):
        value = value._items
    if isinstance(value, CookieParser):
        value = value._parsed
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _contents(key, depth - 1)
            yield from _contents(item, depth - 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _contents(item, depth - 1)


async def test_no_module_keeps_request_data(harness: Harness) -> None:
    # The cookie header, the shop's session id and our proof of a few requests, each with a
    # marker that no module holds unless it kept them.
    marker = "m4rk3r-7f3a"
    value = await harness.pass_challenge("alice", session=f"login-{marker}")
    resolver = StarletteSessionCookieResolver("session", SHOP_SECRET, "admin_id", "sid", clock=harness.clock)
    app = TwoFactorMiddleware(shop_app(), service=harness.service, resolvers={"admin": resolver})
    headers = {"cookie": f"session={await shop_session(marker)}; tfa_admin={value}"}
    await asgi_request(app, "/admin/orders", headers=headers)
    await asgi_request(
        harness.app, "/admin/orders", headers={**harness.as_user("alice", f"login-{marker}"), **headers}
    )

    # The instances did remember them: the search below could see them in a module.
    assert resolver.cookies.remembered() == 1
    assert app._cookies.remembered() == 1
    found = []
    for name, module in list(sys.modules.items()):
        if name != tfa_middleware.__name__ and not name.startswith(f"{tfa_middleware.__name__}."):
            continue
        for attribute, held in vars(module).items():
            ours = str(getattr(held, "__module__", "")).startswith(tfa_middleware.__name__)
            assert not (ours and hasattr(held, "cache_info")), f"{name}.{attribute} caches at module level"
            for item in _contents(held):
                text = item.decode("latin-1") if isinstance(item, bytes) else item
                if isinstance(text, str) and (marker in text or value in text):
                    found.append(f"{name}.{attribute}")
    assert found == []
