"""The flask_session resolver and Flask's own session loader agree on every cookie.

Flask is the judge: for generated sessions (tagged values: bytes, tuples, datetimes, UUIDs, Markup,
non-ASCII text; sessions large enough to be zlib-compressed) and generated or tampered cookies
(another secret, a fallback key, another salt, expired or future timestamps, flipped, cut or added
bytes, payloads Flask cannot load, duplicates, quotes, spaces, other cookies around it),
``app.session_interface.open_session`` of a real Flask app with the same SECRET_KEY decides who is
logged in, and the resolver must say the same user, or nobody where Flask sees nobody or fails.
Ages stay clear of the limit by seconds, as both sides read the real clock.
"""

from __future__ import annotations

import time
import uuid
import zlib
from base64 import urlsafe_b64encode
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from tests.flask_shop import (
    LIFETIME,
    OLD_SECRET,
    SECRET,
    flask_app,
    flask_sees,
    resolver_for,
    scope_with,
    sign,
    sign_payload,
)
from tfa_middleware.errors import UnusableIdentity
from tfa_middleware.identity import MAX_USER_ID_LENGTH, Identity

APP = flask_app()
ROTATED = flask_app(fallbacks=(OLD_SECRET,))
SHORT = flask_app(lifetime=3600)
APPS = {"default": APP, "rotated": ROTATED, "short": SHORT}
RESOLVERS = {name: resolver_for(app) for name, app in APPS.items()}

MARGIN = 30  # seconds between a generated age and the limit: both sides read the real clock

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
tagged = (
    st.binary(max_size=20)
    | st.uuids()
    | st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ).map(lambda d: d.replace(microsecond=0))
    | st.text(max_size=10).map(Markup)
)
values = st.recursive(
    scalars | tagged,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
user_ids = (
    st.text(min_size=1, max_size=12)
    | st.integers(0, 10**12)
    | st.sampled_from(["", "1", "42", "ädmin", "0"])
    | values
)
sessions = st.fixed_dictionaries(
    {},
    optional={
        "_user_id": user_ids,
        "_id": st.text(alphabet="0123456789abcdef", min_size=128, max_size=128) | values,
        "_fresh": st.booleans(),
        "csrf_token": st.text(max_size=40),
        "_flashes": st.lists(st.tuples(st.just("message"), st.text(max_size=30)).map(tuple), max_size=3),
        "cart": values,
        # Repetitive bulk: Flask compresses the payload (a leading '.') when that is shorter.
        "notes": st.text(alphabet="ab", max_size=400),
    },
)
ages = st.one_of(
    st.integers(0, 3600 - MARGIN),  # fresh for every app
    st.integers(3600 + MARGIN, LIFETIME - MARGIN),  # too old for the short app only
    st.integers(LIFETIME + MARGIN, 3 * LIFETIME),  # expired everywhere
    st.integers(-3 * LIFETIME, -MARGIN),  # signed in the future: itsdangerous refuses
)
signers = st.sampled_from([SECRET] * 4 + [OLD_SECRET, "another-secret-altogether-0123456789"])


def signed_payloads() -> st.SearchStrategy[bytes]:
    """Payloads only the key's owner could sign, that Flask cannot load (or loads oddly)."""
    raw = st.sampled_from(
        [b"null", b"[]", b'"text"', b"7", b'[["_user_id","9"]]', b'["ab"]', b'{" t":5}', b"{", b'{" b":"%"}']
    ) | st.binary(max_size=30)
    return raw.flatmap(
        lambda b: st.sampled_from(
            [
                urlsafe_b64encode(b).rstrip(b"="),
                b"." + urlsafe_b64encode(zlib.compress(b)).rstrip(b"="),
                b"." + urlsafe_b64encode(b).rstrip(b"="),  # marked compressed, is not
                b,
            ]
        )
    )


@st.composite
def cookie_values(draw: st.DrawFn) -> str:
    now = time.time()
    if draw(st.booleans()):  # as the shop signs it: only what is inside varies
        return sign(draw(sessions), at=now - draw(st.integers(0, 3600 - MARGIN)))
    at = now - draw(ages)
    if draw(st.integers(0, 4)) == 0:
        return sign_payload(draw(signed_payloads()), secret=draw(signers), at=at)
    salt = draw(st.sampled_from(["cookie-session"] * 5 + ["other-salt"]))
    session = draw(sessions)
    if draw(st.booleans()):
        session["_user_id"] = draw(st.text(min_size=1, max_size=12) | st.integers(0, 10**12))
    return sign(session, secret=draw(signers), at=at, salt=salt)


@st.composite
def tampered(draw: st.DrawFn, value: str) -> bytes:
    data = bytearray(value.encode("latin-1", "replace"))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(data)))
        match draw(st.sampled_from(["flip", "cut", "insert"])):
            case "flip" if at < len(data):
                data[at] ^= draw(st.integers(1, 255))
            case "cut":
                del data[at:]
            case _:
                data[at:at] = draw(st.binary(min_size=1, max_size=3))
    return bytes(data)


@st.composite
def cookie_headers(draw: st.DrawFn) -> bytes:
    """A Cookie header holding one or two session cookies among others, spelled in odd ways."""
    value = draw(cookie_values())
    raw = draw(tampered(value)) if draw(st.integers(0, 2)) == 0 else value.encode("latin-1", "replace")
    quote = draw(st.sampled_from([b"", b"", b'"']))
    eq = draw(st.sampled_from([b"=", b"=", b" = ", b"= "]))
    parts = [b"session" + eq + quote + raw + quote]
    if draw(st.booleans()):
        other = draw(cookie_values()).encode("latin-1", "replace")
        parts.insert(draw(st.integers(0, 1)), b"session=" + other)
    for _ in range(draw(st.integers(0, 2))):
        junk = draw(st.binary(max_size=12).filter(lambda b: b"session" not in b))
        parts.insert(draw(st.integers(0, len(parts))), draw(st.sampled_from([b"theme=dark", b"x", junk])))
    return draw(st.sampled_from([b"; ", b";", b" ;  "])).join(parts)


def is_id(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


def read(name: str, scope: dict[str, Any]) -> Identity | str | None:
    try:
        return RESOLVERS[name](scope)
    except UnusableIdentity:
        return "refused"


def agree(app: Flask, header: bytes) -> None:
    name = next(n for n, a in APPS.items() if a is app)
    outcome, session = flask_sees(app, header)
    ours = read(name, scope_with(header))
    # Under WSGI the resolver reads the environ's text, as Flask's request does there.
    environ = {"HTTP_COOKIE": header.decode("latin-1")}
    assert read(name, {"type": "http", "headers": [], "wsgi.environ": environ}) == ours
    if outcome == "error":
        assert ours is None, f"Flask fails on the cookie ({session!r}), we read {ours!r}"
        return
    user = session.get("_user_id")
    if user is None or user == "":
        assert ours is None, f"Flask sees nobody, we read {ours!r}"
    elif is_id(user):
        if ours == "refused":  # an id longer than we store, or a session id we cannot use: fails closed
            sid = session.get("_id")
            assert len(str(user)) > MAX_USER_ID_LENGTH or not (sid in (None, "") or is_id(sid))
            return
        assert isinstance(ours, Identity), f"Flask sees user {user!r}, we read {ours!r}"
        assert ours.user_id == str(user)
        sid = session.get("_id")
        if is_id(sid) and sid != "":
            assert ours.session_id == str(sid)
    else:
        assert ours == "refused", f"Flask holds a {type(user).__name__} as the user, we read {ours!r}"


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(app=st.sampled_from(list(APPS.values())), header=cookie_headers())
@example(app=APP, header=b"session=" + sign({"_user_id": "1", "_id": "a" * 128}).encode())
@example(app=ROTATED, header=b"session=" + sign({"_user_id": "1"}, secret=OLD_SECRET).encode())
@example(app=APP, header=b"session=" + sign({"_user_id": "1"}, secret=OLD_SECRET).encode())
@example(app=APP, header=b"session=" + sign({"_user_id": "1", "n": "ab" * 300}).encode())
@example(app=SHORT, header=b"session=" + sign({"_user_id": "1"}, at=time.time() - 7200).encode())
@example(app=APP, header=b"session=" + sign({"_user_id": "1"}, at=time.time() + 120).encode())
@example(app=APP, header=b"session=" + sign({"_user_id": ("1",)}).encode())
@example(app=APP, header=b"session=" + sign({"_user_id": b"1"}).encode())
@example(app=APP, header=b"session=" + sign({"_user_id": "ädmin", "t": (b"x", uuid.UUID(int=5))}).encode())
@example(app=APP, header=b"session=" + sign_payload(b'[["_user_id","9"]]').encode())
@example(app=APP, header=b"session=" + sign_payload(b"." + urlsafe_b64encode(b"not zlib")).encode())
@example(app=APP, header=b'session="' + sign({"_user_id": "1"}).encode() + b'"')
# Two session cookies: Flask (Werkzeug) takes the first; Starlette's parser would take the last.
@example(
    app=APP,
    header=f"session={sign({'_user_id': 'victim'})}; session={sign({'_user_id': 'me'})}".encode(),
)
@example(app=APP, header=b"session=" + sign({"_user_id": "1"}).encode() + b" junk; theme=dark")
def test_flask_and_the_resolver_agree(app: Flask, header: bytes) -> None:
    agree(app, header)


@pytest.mark.parametrize("name", list(APPS))
def test_a_valid_cookie_is_the_user_for_both(name: str) -> None:
    """The property above is not vacuous: a plain valid login reads as its user on both sides."""
    header = b"session=" + sign({"_user_id": "7", "_id": "f" * 128, "_fresh": True}).encode()
    outcome, session = flask_sees(APPS[name], header)
    assert outcome == "session"
    assert session["_user_id"] == "7"
    assert RESOLVERS[name](scope_with(header)) == Identity("7", "f" * 128)
