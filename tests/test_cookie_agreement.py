"""The Starlette cookie resolver and Starlette's own SessionMiddleware agree on every cookie.

The middleware reads the shop's session cookie from outside the shop. Whenever the two disagree
about who is logged in, the middleware may see "nobody" where the shop sees a user: a second
factor skipped (the outside review's one-byte bypass). So the shop's real middleware is the
judge, on generated Cookie headers: random bytes inside and after the value, quotes, octal
escapes, duplicates, several Cookie headers, non-ASCII text, spaces around '='.
"""

from __future__ import annotations

import asyncio
import json
import time
from base64 import b64encode
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import Receive, Scope, Send

from tfa_middleware.identity import StarletteSessionCookieResolver

SECRET = "shop-session-secret-for-agreement-0123456789"
MAX_AGE = 14 * 24 * 3600  # Starlette's default, on both sides


def signed(session: dict[str, Any]) -> bytes:
    """A cookie value exactly as SessionMiddleware writes it."""
    return TimestampSigner(SECRET).sign(b64encode(json.dumps(session).encode()))


ALICE = signed({"admin_id": "alice", "sid": "s1"})
BOB = signed({"admin_id": "bob", "sid": "s2"})
ANONYMOUS = signed({"cart": [1, 2]})


async def _who(scope: Scope, _receive: Receive, _send: Send) -> None:
    scope["state_seen"] = scope["session"].get("admin_id")


def shop_sees(headers: list[bytes]) -> tuple[str, Any]:
    """What the shop's own SessionMiddleware makes of these Cookie headers."""
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/admin",
        "headers": [(b"cookie", h) for h in headers],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(_message: Any) -> None:
        return None

    app = SessionMiddleware(_who, secret_key=SECRET, max_age=MAX_AGE)
    try:
        asyncio.run(app(scope, receive, send))
    except Exception as exc:  # the shop answers 500 here: nobody is served anything
        return ("error", type(exc).__name__)
    return ("user", scope["state_seen"])


def middleware_sees(headers: list[bytes]) -> tuple[str, Any]:
    resolver = StarletteSessionCookieResolver(
        "session", SECRET, "admin_id", "sid", max_age_seconds=MAX_AGE, clock=time.time
    )
    try:
        identity = resolver({"type": "http", "headers": [(b"cookie", h) for h in headers]})
    except Exception as exc:
        return ("error", type(exc).__name__)
    return ("user", identity.user_id if identity else None)


def agree(headers: list[bytes]) -> None:
    shop = shop_sees(headers)
    ours = middleware_sees(headers)
    if shop[0] == "error":
        # The shop fails on this cookie and serves nothing; we must not see a user it doesn't.
        assert ours[0] == "error" or ours[1] is None, (headers, shop, ours)
        return
    assert ours == shop, (headers, shop, ours)


# --------------------------------------------------------------------------- generated headers

values = st.sampled_from([ALICE, BOB, ANONYMOUS, b"", b"garbage", b"null"])
junk = st.one_of(
    st.binary(min_size=1, max_size=4),
    st.sampled_from([b"\xe9", b"\xc3\xa9", b"\x80", b"\xff", b"=", b"\\", b'"', b" ", b"\t", b".", b"\\351"]),
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    value = draw(values)
    for _ in range(draw(st.integers(0, 2))):
        where = draw(st.integers(0, len(value)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(junk)
        if kind == "insert" or not value:
            value = value[:where] + piece + value[where:]
        elif kind == "delete":
            value = value[:where] + value[where + 1 :]
        else:
            value = value[:where] + piece + value[where + 1 :]
    if draw(st.booleans()):
        value = b'"' + value + b'"'
    return value


@st.composite
def pair(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from([b"session", b" session", b"session ", b"Session", b"sess\xe9ion", b"theme"]))
    eq = draw(st.sampled_from([b"=", b" = ", b"= "]))
    return name + eq + draw(mutated())


@st.composite
def cookie_headers(draw: st.DrawFn) -> list[bytes]:
    headers = []
    for _ in range(draw(st.integers(1, 3))):
        pairs = draw(st.lists(pair(), min_size=1, max_size=4))
        headers.append(draw(st.sampled_from([b"; ", b";", b" ;"])).join(pairs))
    return headers


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cookie_headers())
# The outside review's bypass: one raw byte >= 0x80 after, inside, or quoted around the value.
@example([b"session=" + ALICE + b"\xe9"])
@example([b"session=" + ALICE[:-3] + b"\xe9" + ALICE[-3:]])
@example([b'session="' + ALICE + b'\xe9"'])
@example([b"session=" + ALICE + b"\xc3\xa9\xc3\xa9"])
@example([b"session=" + BOB, b"session=" + ALICE])
@example([b"session=" + ALICE + b"; session=" + BOB + b"\xff"])
def test_the_resolver_and_starlette_agree_on_every_cookie(headers: list[bytes]) -> None:
    agree(headers)


def test_the_review_bypass_is_read_as_the_shop_reads_it() -> None:
    # Before the fix: the shop saw alice, the middleware saw a bad signature ("nobody").
    headers = [b"session=" + ALICE + b"\xe9"]
    assert shop_sees(headers) == ("user", "alice")
    assert middleware_sees(headers) == ("user", "alice")
