"""Resolvers that read the shop's session: ``scope["session"]`` from inside the shop's stack, or
Starlette's signed session cookie from outside it.

Why our own cookie reader instead of running Starlette's ``SessionMiddleware``: the middleware sits
outside the shop and must not touch ``scope["session"]``; and decoded cookies are cached here so a
returning browser costs a dictionary look-up. It agrees with Starlette byte for byte (the same
Cookie parser, the header text re-encoded as UTF-8 before the signature check, exactly as
``SessionMiddleware`` does): ``tests/test_cookie_agreement.py`` checks that on generated cookies.
"""

from __future__ import annotations

import json
from base64 import b64decode
from collections.abc import Callable
from typing import Any

from itsdangerous import BadSignature, SignatureExpired
from starlette.types import Scope

from ..asgi import CookieParser
from ..cache import BoundedCache
from ..errors import IdentityUnreadable, UnusableIdentity
from ..signing import ClockedTimestampSigner
from .base import Check, Identity, Reading, Warnings, as_identity


def _roles(value: Any) -> frozenset[str]:
    """A session's roles: one string or a list of them; anything else is no role at all."""
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list | tuple):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


def _session_value(value: Any, what: str) -> str | None:
    """A session's user id: None or "" means nobody; a value of another type fails closed."""
    if value is None or value == "":
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise UnusableIdentity(f"{what} holds a {type(value).__name__}, not a user id")


def _from_session(
    session: dict[Any, Any], key: str, sid_key: str | None, roles_key: str | None, what: str
) -> Reading:
    """The identity in a decoded session mapping (Starlette's cookie, ``scope["session"]``)."""
    user_id = _session_value(session.get(key), f"{what} key {key!r}")
    if user_id is None:
        if not session:
            return Reading(None, f"{what} is empty", check="key")
        # Key names are fine to log, values are not: a typo in `key` shows here at once.
        return Reading(
            None, f"{what} holds no {key!r} (its keys: {_keys(session)})", notable=True, check="key"
        )
    sid = _session_value(session.get(sid_key), f"{what} key {sid_key!r}") if sid_key else None
    roles = _roles(session.get(roles_key)) if roles_key else frozenset()
    identity = as_identity(Identity(user_id, sid, roles))
    if sid_key and sid is None:
        # Logged in, but the proof cannot be bound to the login: a typo in session_id_key quietly
        # undoes "logging out of the shop ends the proof".
        return Reading(
            identity,
            f"{what} holds a user but no session_id_key {sid_key!r} (its keys: {_keys(session)}): "
            "proofs are not bound to the login",
            notable=True,
        )
    return Reading(identity, f"{what} holds user {user_id!r}")


def _keys(session: dict[Any, Any]) -> str:
    return ", ".join(sorted(str(k) for k in session)[:20])


class SessionKeyResolver:
    """``from: session``: a key of ``scope["session"]`` (the middleware sits inside the shop's stack)."""

    def __init__(
        self,
        key: str,
        session_id_key: str | None = None,
        roles_key: str | None = None,
        *,
        label: str = "identity",
    ) -> None:
        self.key = key
        self.session_id_key = session_id_key
        self.roles_key = roles_key
        self._warn = Warnings(label)

    def __call__(self, scope: Scope) -> Identity | None:
        reading = self.read(scope)
        self._warn(reading)
        return reading.identity

    def read(self, scope: Scope) -> Reading:
        session = scope.get("session")
        if session is None:
            raise IdentityUnreadable(
                'from: session, but the request has no scope["session"]: TwoFactorMiddleware must sit '
                "inside the shop's SessionMiddleware (wrap the app that SessionMiddleware wraps), or "
                "read the cookie from outside with from: starlette_session_cookie"
            )
        if not isinstance(session, dict):
            raise IdentityUnreadable(f'scope["session"] is a {type(session).__name__}, not a mapping')
        return _from_session(session, self.key, self.session_id_key, self.roles_key, 'scope["session"]')


class StarletteSessionCookieResolver:
    """``from: starlette_session_cookie``: reads a Starlette ``SessionMiddleware`` cookie from outside.

    Starlette signs ``base64(json(session))`` with ``itsdangerous.TimestampSigner(secret)`` and
    checks the cookie's text, encoded as UTF-8, after ``max_age``; this does exactly the same.
    ``max_age_seconds=None`` (the default) checks no age: the shop's own middleware judges that,
    and a stricter age here could only read a session the shop still honours as "nobody".
    Decoded cookies are remembered for a while, so a returning browser is not decoded again.
    ``cookies`` is the middleware's parser (its cache of Cookie headers, shared with the proof
    cookie's read); a resolver built alone gets a parser of its own.
    """

    # Reads nothing of the request but its headers (and the scheme): the WSGI middleware gives it
    # the light scope (wsgi/environ.py), without the client and server it would never look at.
    READS_HEADERS_ONLY = True
    CACHE_SECONDS = 3600.0
    CHECKS: tuple[Check, ...] = ("cookie", "signature", "age", "session", "key")

    def __init__(
        self,
        cookie_name: str,
        secret_key: str,
        key: str,
        session_id_key: str | None = None,
        max_age_seconds: int | None = None,
        *,
        clock: Callable[[], float],
        roles_key: str | None = None,
        cache_size: int = 10_000,
        label: str = "identity",
        cookies: CookieParser | None = None,
    ) -> None:
        self.cookie_name = cookie_name
        self.key = key
        self.session_id_key = session_id_key
        self.roles_key = roles_key
        self.max_age = max_age_seconds
        self._signer = ClockedTimestampSigner(secret_key, clock=clock)
        self._clock = clock
        self.cookies = cookies if cookies is not None else CookieParser()
        self._cache: BoundedCache[str, tuple[Reading, float]] = BoundedCache(cache_size)
        self._warn = Warnings(label)

    @staticmethod
    def same_content(old: str, new: str) -> bool:
        """Whether two cookie values hold the same session: itsdangerous's timestamp signer writes
        ``payload.timestamp.signature``, and the shop re-signs an unchanged session with a new
        timestamp on every write (``session_end``: such a write is no logout, and costs no read)."""
        return old.rsplit(".", 2)[0] == new.rsplit(".", 2)[0]

    def __call__(self, scope: Scope) -> Identity | None:
        value = self.cookies.read(scope, self.cookie_name)
        if value is None:
            return None
        now = self._clock()
        hit = self._cache.get(value)
        if hit is not None and now < hit[1]:
            return hit[0].identity
        reading, expires = self._decode(value, now)
        self._warn(reading)
        if expires > now:
            self._cache.put(value, (reading, expires))
        return reading.identity

    def read(self, scope: Scope) -> Reading:
        value = self.cookies.read(scope, self.cookie_name)
        if value is None:
            return Reading(None, f"no cookie {self.cookie_name!r}", check="cookie")
        return self._decode(value, self._clock())[0]

    def _decode(self, value: str, now: float) -> tuple[Reading, float]:
        what = f"the cookie {self.cookie_name!r}"
        # Starlette: connection.cookies[name].encode("utf-8"). Any other encoding can read a cookie
        # the shop accepts as invalid, and an invalid session is "nobody" to us: a bypass.
        data = value.encode("utf-8")
        if not data:
            return Reading(None, f"{what} is empty", check="cookie"), 0.0
        try:
            payload, timestamp = self._signer.unsign(data, max_age=self.max_age, return_timestamp=True)
        except SignatureExpired:
            return Reading(
                None, f"{what} is older than identity.max_age_seconds", notable=True, check="age"
            ), 0.0
        except BadSignature:
            return Reading(
                None,
                f"{what} is present but its signature does not match identity.secret_key "
                "(a different or rotated secret?)",
                notable=True,
                check="signature",
            ), 0.0
        try:
            session = json.loads(b64decode(payload))
        except ValueError:
            # The shop's SessionMiddleware raises on this too: it answers 500, never a page.
            why = f"{what} is signed but does not hold a JSON session"
            return Reading(None, why, notable=True, check="session"), 0.0
        if not isinstance(session, dict):
            why = f"{what} is signed but does not hold a mapping"
            return Reading(None, why, notable=True, check="session"), 0.0
        limit = timestamp.timestamp() + self.max_age if self.max_age is not None else now + self.CACHE_SECONDS
        return _from_session(session, self.key, self.session_id_key, self.roles_key, what), limit
