"""The bounded cache, and who owns request data: each middleware its own caches, no module at all."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

import tfa_middleware
from tfa_middleware import Identity, TwoFactorMiddleware
from tfa_middleware.asgi import COOKIE_PARSER_KEY, CookieParser, cookie
from tfa_middleware.cache import BoundedCache

from .conftest import Harness, Recorder, asgi_request, shop_app

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
    lent = CookieParser()
    assert cookie({**scope, COOKIE_PARSER_KEY: lent}, "session") == "alone"
    assert lent.remembered() == 1


# ------------------------------------------------------------------- who owns the parsed cookies


class CookieResolver:
    """A resolver that reads the shop's cookie the way the built-in ones do (asgi.cookie), and
    notes the parser the middleware lent it."""

    def __init__(self) -> None:
        self.lent: list[CookieParser] = []

    def __call__(self, scope: dict[str, Any]) -> Identity | None:
        self.lent.append(scope[COOKIE_PARSER_KEY])
        user = cookie(scope, "shop_session")
        return Identity(user, f"login-of-{user}") if user else None


async def test_two_middlewares_in_one_process_share_no_parsed_cookies(harness: Harness) -> None:
    first_resolver, second_resolver = CookieResolver(), CookieResolver()
    shop = Recorder(shop_app())
    first = TwoFactorMiddleware(shop, service=harness.service, resolvers={"admin": first_resolver})
    second = TwoFactorMiddleware(shop, service=harness.service, resolvers={"admin": second_resolver})

    await asgi_request(first, "/admin/orders", headers={"cookie": "shop_session=alice"})
    await asgi_request(second, "/admin/orders", headers={"cookie": "shop_session=bob"})
    await asgi_request(first, "/admin/login", headers={"cookie": "shop_session=carol"})  # exempt

    (mine,), (theirs,) = first_resolver.lent, second_resolver.lent
    assert mine is not theirs
    assert (mine.remembered(), theirs.remembered()) == (1, 1)
    assert mine.read(with_cookie_header(b"shop_session=bob"), "shop_session") == "bob"
    assert mine.remembered() == 2  # bob's header was not in the first middleware's cache
    # The parser is lent to the resolver only: the shop never finds it in its scope.
    assert shop.scopes
    assert all(COOKIE_PARSER_KEY not in scope for scope in shop.scopes)


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
    # The cookie header, the shop's session id and our proof of one request, each with a marker
    # that no module holds unless it kept them.
    marker = "m4rk3r-7f3a"
    value = await harness.pass_challenge("alice", session=f"login-{marker}")
    resolver = CookieResolver()
    app = TwoFactorMiddleware(shop_app(), service=harness.service, resolvers={"admin": resolver})
    headers = {"cookie": f"shop_session=alice-{marker}; tfa_admin={value}"}
    await asgi_request(app, "/admin/orders", headers=headers)
    await asgi_request(
        harness.app, "/admin/orders", headers={**harness.as_user("alice", f"login-{marker}"), **headers}
    )

    assert resolver.lent[0].remembered() == 1  # the instance did remember it: the search can see it
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
