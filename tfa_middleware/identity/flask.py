"""``from: flask_session``: the shop's Flask session cookie, read from outside the shop as Flask reads it.

Flask's default session (``flask.sessions.SecureCookieSessionInterface``) is an itsdangerous
``URLSafeTimedSerializer``: salt ``cookie-session``, HMAC key derivation, SHA-1, Flask's
``TaggedJSONSerializer`` (tuples, bytes, datetimes, ... in the session), a payload that starts with
``.`` when it is zlib-compressed; ``SECRET_KEY_FALLBACKS`` (Flask 3.1) verify too. Flask checks the
cookie's age against ``PERMANENT_SESSION_LIFETIME`` on every load, permanent session or not. This
module builds that same serializer from Flask's own classes (flask is imported only when a
``flask_session`` interface is configured: ``pip install 'tfa-middleware[flask]'``) and checks the
age on the same clock, so the shop and the middleware agree on who is logged in:
``tests/test_flask_session.py`` holds it to Flask's ``open_session`` on generated cookies.

The cookie is found as Flask finds it, with Werkzeug's parser, not Starlette's: every Cookie header
joined with ``;``, and of two cookies with one name the *first* counts (Starlette keeps the last).
Read with Starlette's parser, ``session=<a stolen session>; session=<the attacker's own>`` would show
the middleware the attacker, whose proof is valid, while Flask serves the victim's pages.

The user id is Flask-Login's ``_user_id`` by default, and its ``_id`` the session id. ``_id`` is a
hash of the browser's address and user agent, the same at every login from that browser: it binds a
proof to a browser, not to one login.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from itsdangerous import BadData, BadSignature, SignatureExpired
from starlette.types import Scope

from ..cache import BoundedCache
from ..errors import ConfigError, UnusableIdentity
from ..signing import ClockedTimestampSigner
from .base import Check, Identity, Reading, Warnings, as_identity
from .sessions import _keys, _roles

if TYPE_CHECKING:
    from itsdangerous import URLSafeTimedSerializer

# Keys Flask-Login leaves only in a logged-in session: without the user key, the key is likely wrong.
LOGIN_MARKS = ("_user_id", "_fresh")


def _flask(label: str) -> tuple[type[URLSafeTimedSerializer], Any]:
    try:
        from flask.sessions import session_json_serializer
        from itsdangerous import URLSafeTimedSerializer
    except ImportError as exc:
        raise ConfigError(
            [f"{label}: from: flask_session needs Flask: pip install 'tfa-middleware[flask]'"]
        ) from exc
    return URLSafeTimedSerializer, session_json_serializer


def _werkzeug_parser() -> Callable[[str], Mapping[str, str]]:
    from werkzeug.sansio.http import parse_cookie

    def parse(header: str) -> dict[str, str]:
        return parse_cookie(header).to_dict()  # each name's first value, as request.cookies.get

    return parse


class WerkzeugCookies:
    """Reads one cookie the way a Flask request does (``request.cookies``): every Cookie header, as
    latin-1 text, joined with ``;``, parsed by Werkzeug; the first of two cookies with one name wins.
    Remembers the last ``limit`` distinct headers parsed, like the middleware's own parser."""

    __slots__ = ("_parse", "_parsed")

    MAX_HEADER = 4096

    def __init__(self, limit: int = 4096) -> None:
        self._parse = _werkzeug_parser()
        # Keyed by the raw header (bytes, ASGI) or the environ's text (str, WSGI): never equal.
        self._parsed: BoundedCache[bytes | str, Mapping[str, str]] = BoundedCache(limit)

    def read(self, scope: Scope, name: str) -> str | None:
        environ = scope.get("wsgi.environ")
        if environ is not None:
            return self._read_environ(environ, name)
        headers = [value for key, value in scope.get("headers", ()) if key == b"cookie"]
        if not headers:
            return None
        raw = headers[0] if len(headers) == 1 else b";".join(headers)
        if name.encode() not in raw:  # names are plain ASCII; a header without it cannot hold it
            return None
        parsed = self._parsed.get(raw)
        if parsed is None:
            parsed = self._parse(raw.decode("latin-1"))
            if len(raw) <= self.MAX_HEADER:
                self._parsed.put(raw, parsed)
        return parsed.get(name)

    def _read_environ(self, environ: Mapping[str, Any], name: str) -> str | None:
        """Under WSGI, as a Werkzeug request reads it there: the environ's one ``HTTP_COOKIE``
        text (the server joined repeated headers), latin-1 as PEP 3333 has it, parsed as it is."""
        header = environ.get("HTTP_COOKIE")
        if not header or name not in header:
            return None
        parsed = self._parsed.get(header)
        if parsed is None:
            parsed = self._parse(header)
            if len(header) <= self.MAX_HEADER:
                self._parsed.put(header, parsed)
        return parsed.get(name)


def _value(value: Any, what: str) -> str | None:
    """A user or session id: None or "" is none; any other type than a string or an integer
    fails closed (somebody is logged in, with an id we cannot use)."""
    if value is None or value == "":
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise UnusableIdentity(f"{what} holds a {type(value).__name__}, not an id")


class FlaskSessionResolver:
    """``from: flask_session``: the user in the shop's Flask session cookie (Flask-Login's keys).

    ``secret_keys`` is the shop's ``SECRET_KEY_FALLBACKS`` followed by its ``SECRET_KEY``, as Flask
    lists them. ``max_age_seconds`` is the shop's ``PERMANENT_SESSION_LIFETIME`` (Flask checks it on
    every cookie; None checks no age). ``require_fresh``: a session Flask-Login marks as not fresh
    (restored from a remember-me cookie, or an address change under session protection) is nobody.
    Decoded cookies are remembered until their age runs out, so a returning browser costs a
    dictionary look-up::

        resolver = FlaskSessionResolver("session", [app.secret_key], clock=time.time)
    """

    # Reads nothing of the request but its headers (and the scheme): the WSGI middleware gives it
    # the light scope (wsgi/environ.py), without the client and server it would never look at.
    READS_HEADERS_ONLY = True
    CACHE_SECONDS = 3600.0
    CHECKS: tuple[Check, ...] = ("cookie", "signature", "age", "session", "key")

    def __init__(
        self,
        cookie_name: str,
        secret_keys: Sequence[str],
        *,
        clock: Callable[[], float],
        key: str = "_user_id",
        session_id_key: str | None = "_id",
        roles_key: str | None = None,
        max_age_seconds: int | None = 31 * 24 * 3600,
        salt: str = "cookie-session",
        require_fresh: bool = False,
        cache_size: int = 10_000,
        label: str = "identity",
        cookies: WerkzeugCookies | None = None,
    ) -> None:
        if not secret_keys:
            raise ConfigError([f"{label}.secret_key: the shop's SECRET_KEY is needed"])
        serializer, tagged_json = _flask(label)
        # Flask's get_signing_serializer, on our clock so that tests can move time.
        self._serializer = serializer(
            list(secret_keys),
            salt=salt,
            serializer=tagged_json,
            signer=ClockedTimestampSigner,
            signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1, "clock": clock},
        )
        self.cookie_name = cookie_name
        self.key = key
        self.session_id_key = session_id_key
        self.roles_key = roles_key
        self.max_age = max_age_seconds
        self.require_fresh = require_fresh
        self._clock = clock
        self.cookies = cookies if cookies is not None else WerkzeugCookies()
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
        if not value:
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
        if not value:
            return Reading(None, f"no cookie {self.cookie_name!r}", check="cookie")
        return self._decode(value, self._clock())[0]

    def _decode(self, value: str, now: float) -> tuple[Reading, float]:
        what = f"the cookie {self.cookie_name!r}"
        try:
            data, signed_at = self._serializer.loads(value, max_age=self.max_age, return_timestamp=True)
        except SignatureExpired:
            why = f"{what} is older than identity.max_age_seconds (the shop's PERMANENT_SESSION_LIFETIME)"
            return Reading(None, why, notable=True, check="age"), 0.0
        except BadSignature:
            why = (
                f"{what} is present but its signature does not match identity.secret_key or "
                "secret_key_fallbacks (the shop's SECRET_KEY? a different salt?)"
            )
            return Reading(None, why, notable=True, check="signature"), 0.0
        except BadData:
            # Signed, but no payload Flask can load: Flask fails the request (500) on it too.
            why = f"{what} is signed but its payload cannot be loaded"
            return Reading(None, why, notable=True, check="session"), 0.0
        try:
            # Flask: session_class(data), a dict built from whatever the payload held.
            session = {} if data is None else dict(data)
        except (TypeError, ValueError):
            why = f"{what} is signed but does not hold a mapping"
            return Reading(None, why, notable=True, check="session"), 0.0
        # Remembered while the age holds: itsdangerous refuses once int(now) - signed_at > max_age.
        age = self.max_age
        limit = now + self.CACHE_SECONDS if age is None else signed_at.timestamp() + age + 1
        return self._identity(session, what), limit

    def _identity(self, session: dict[Any, Any], what: str) -> Reading:
        user_id = _value(session.get(self.key), f"{what} key {self.key!r}")
        if user_id is None:
            if not session:
                return Reading(None, f"{what} holds an empty session", check="key")
            # A visitor's session (a CSRF token, flashed messages) is ordinary; Flask-Login's marks
            # of a login without the user key suggest a wrong identity.user_key.
            notable = any(mark in session for mark in LOGIN_MARKS)
            why = f"{what} holds no {self.key!r} (its keys: {_keys(session)})"
            return Reading(None, why, notable=notable, check="key")
        if self.require_fresh and not session.get("_fresh"):  # Flask-Login's login_fresh()
            why = f"{what} holds a login that is not fresh (identity.require_fresh): not a user here"
            return Reading(None, why, check="key")
        sid_key = self.session_id_key
        sid = _value(session.get(sid_key), f"{what} key {sid_key!r}") if sid_key else None
        roles = _roles(session.get(self.roles_key)) if self.roles_key else frozenset()
        identity = as_identity(Identity(user_id, sid, roles))
        if sid_key and sid is None:
            why = (
                f"{what} holds a user but no session_id_key {sid_key!r} (its keys: {_keys(session)}): "
                "proofs are not bound to the login"
            )
            return Reading(identity, why, notable=True)
        return Reading(identity, f"{what} holds user {user_id!r}")
