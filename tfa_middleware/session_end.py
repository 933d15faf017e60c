"""Does the shop's answer end its session? Read from its ``Set-Cookie`` headers, shared by the ASGI
and the WSGI middleware (and a logout of the shop ends the proof, with or without ``logout_url``).

A shop logs out by deleting its session cookie (or the JWT cookie) in its answer. Each framework
writes that deletion in its own words, all of them an expiry:

- Starlette ``Response.delete_cookie``: ``name=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; …``
- Starlette ``SessionMiddleware`` after ``session.clear()``: ``name=null; path=/; expires=Thu, 01 Jan 1970 …``
  (an Expires in the past, no Max-Age)
- Flask's session interface (Werkzeug's ``delete_cookie``): ``name=; Expires=Thu, 01 Jan 1970 …; Max-Age=0``
- Django's ``HttpResponse.delete_cookie`` (its logout flushes the session, and ``SessionMiddleware``
  deletes the cookie of an empty session): ``name=""; expires=Thu, 01 Jan 1970 …; Max-Age=0``
- fastapi-users' ``CookieTransport`` logout: ``name=""; Max-Age=0; …`` (no Expires)

So a header for the cookie ``name`` ends the session when its Max-Age is zero or less, or (without
a Max-Age, which takes precedence: RFC 6265 5.3) its Expires lies in the past, or its value is
empty: a browser holding an empty session cookie holds no login either.

A shop may also log out by writing its session cookie anew: Flask-Login's ``logout_user()`` leaves a
Flask session with other keys (a CSRF token, flashed messages), and Flask re-issues the cookie
without the user. So a new value is read by the interface's own resolver, as the browser will
send it back (:class:`Reissued`): nobody, another user, or a cookie the resolver cannot read ends
the proof just the same. A value equal to the request's own, or one whose signed content is the
same (``same_content``: Starlette's and Flask's cookies are re-signed with a new timestamp on
every write), is no change and costs no read; a refreshed token of the same user is no end.

What is watched, when some interface's resolver reads a cookie (``Interface.session_cookie``): on a
protected path, the answers to requests with a valid proof of that interface; elsewhere (the
shop's logout may sit outside every prefix), under ASGI every answer (a closure scanning the
response start for ``set-cookie`` is cheaper than scanning the request's headers first), under
WSGI the answers to requests whose ``HTTP_COOKIE`` names a proof cookie (a substring test). The
proof cookie itself is looked for only in an answer that sets a watched cookie.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

from starlette.types import Scope

from .asgi import CookieParser, is_https
from .identity import Identity
from .proof import Proof, proof_clear_cookie, session_digest
from .routes import Interface

_EMPTY = ("", '""')


@dataclass(frozen=True, slots=True)
class Ended:
    """An interface whose shop session the answer ends, on a request carrying its proof cookie:
    ``clear`` is the ``Set-Cookie`` value that drops the proof; ``proof`` the carried proof when it
    is genuine and bound to a login (whose proofs are then revoked, as ``logout_url`` does)."""

    iface: Interface
    clear: str
    proof: Proof | None


class SessionEnds:
    """The watch of one middleware over the answers of the shop, for the interfaces whose resolver
    reads a cookie. ``watched`` is empty when none does: then nothing is ever watched."""

    __slots__ = ("cookies", "names", "texts", "watched")

    def __init__(self, interfaces: Iterable[Interface], cookies: CookieParser) -> None:
        self.watched = tuple(i for i in interfaces if i.session_cookie)
        self.names = frozenset(i.session_cookie for i in self.watched if i.session_cookie)
        # "tfa_admin=" is in both of the proof cookie's names (over https: "__Host-tfa_admin="):
        # a request whose Cookie header holds none of these carries no proof to drop.
        self.texts = tuple({f"{i.settings.proof_cookie}=" for i in self.watched})
        self.cookies = cookies

    def carried_text(self, cookie_header: str | None) -> bool:
        """Whether a WSGI request's ``HTTP_COOKIE`` may hold a proof cookie of a watched
        interface (a substring test; a false yes only costs a scan of the answer's headers)."""
        if cookie_header:
            for text in self.texts:  # a loop, not any(): no generator on every request
                if text in cookie_header:
                    return True
        return False

    def ended(self, set_cookies: list[str], scope: Scope, now: float) -> tuple[list[Ended], list[Reissued]]:
        """What ``set_cookies`` do to the watched interfaces whose proof cookie this request
        carries: the sessions they delete, and the sessions they write anew (to be read)."""
        changes = cookie_changes(set_cookies, self.names, now)
        if not changes:
            return [], []
        https = is_https(scope)
        ended: list[Ended] = []
        reissued: list[Reissued] = []
        for iface in self.watched:
            if iface.session_cookie not in changes:
                continue
            name = iface.proof_cookie(https)
            value = self.cookies.read(scope, name)
            if not value:
                continue
            proof = iface.codec.read(value, now)
            bound = proof if proof is not None and proof.session_digest else None
            end = Ended(iface, proof_clear_cookie(name, https), bound)
            new = changes[iface.session_cookie]
            if new is None or proof is None:
                ended.append(end)  # deleted; or a proof that is no proof: nothing lost by clearing it
            elif not self._unchanged(iface, scope, new):
                reissued.append(Reissued(end, _as_sent_back(scope, iface.session_cookie, new), proof.user_id))
        return ended, reissued

    def _unchanged(self, iface: Interface, scope: Scope, new: str) -> bool:
        """Whether the shop wrote back the session the request came with (a cookie parser's
        reading of the Set-Cookie value: quotes are the browser's to keep and the parser's to drop)."""
        assert iface.session_cookie is not None
        old = self.cookies.read(scope, iface.session_cookie)
        if old is None:
            return False
        if old == new or old == _unquoted(new):
            return True
        same = getattr(iface.resolver, "same_content", None)
        return bool(same is not None and same(old, _unquoted(new)))


@dataclass(frozen=True, slots=True)
class Reissued:
    """A new value of an interface's session cookie in the shop's answer, on a request carrying a
    genuine proof of that interface: ``scope`` is the request as the browser will send the next
    one (the new cookie alone), for the resolver to read; if it finds anybody but the proof's user,
    ``end`` applies."""

    end: Ended
    scope: Scope
    user_id: str


def same_login(proof: Proof, identity: Identity | None) -> bool:
    """Whether ``identity`` (the resolver's, on the request that logs out) is the login the proof
    was bound to: then revoking that login's proofs is what the logout means."""
    return (
        identity is not None
        and identity.session_id is not None
        and identity.user_id == proof.user_id
        and session_digest(identity.session_id) == proof.session_digest
    )


def ended_cookie(header: str, now: float) -> str | None:
    """The name of the cookie that the ``Set-Cookie`` value ``header`` deletes, or None."""
    pair, _, attributes = header.partition(";")
    name, equals, value = pair.partition("=")
    if not equals:
        return None  # not a cookie at all (RFC 6265 5.2: ignored by the browser)
    name = name.strip()
    if value.strip() in _EMPTY:
        return name
    max_age: str | None = None
    expires: str | None = None
    for attribute in attributes.split(";"):
        key, _, text = attribute.partition("=")
        key = key.strip().lower()
        if key == "max-age":
            max_age = text.strip()
        elif key == "expires":
            expires = text.strip()
    if max_age is not None and _integer(max_age):
        return name if int(max_age) <= 0 else None
    if expires is not None:
        return name if _in_the_past(expires, now) else None
    return None


def cookie_changes(headers: Iterable[str], names: frozenset[str], now: float) -> dict[str, str | None]:
    """What the ``Set-Cookie`` values ``headers`` do to the cookies ``names``: None for one they
    delete, the new value (as written) for one they set. The last header of a name decides, as in
    the browser: a deletion followed by a new cookie is a new session."""
    changes: dict[str, str | None] = {}
    for header in headers:
        pair = header.partition(";")[0]
        name, equals, value = pair.partition("=")
        name = name.strip()
        if not equals or name not in names:
            continue
        changes[name] = None if ended_cookie(header, now) == name else value.strip()
    return changes


def ended_cookies(headers: Iterable[str], names: frozenset[str], now: float) -> set[str]:
    """Which of ``names`` the ``Set-Cookie`` values ``headers`` delete."""
    return {name for name, value in cookie_changes(headers, names, now).items() if value is None}


def _unquoted(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _as_sent_back(scope: Scope, name: str, value: str) -> Scope:
    """The request as the browser sends the next one after storing ``name=value``: its headers
    with that one cookie in place of the Cookie header (the environ's too, under WSGI)."""
    cookie = f"{name}={value}"
    headers = [(k, v) for k, v in scope.get("headers", ()) if k.lower() != b"cookie"]
    headers.append((b"cookie", cookie.encode("latin-1", "replace")))
    sent = {**scope, "headers": headers}
    environ = scope.get("wsgi.environ")
    if environ is not None:
        sent["wsgi.environ"] = {**environ, "HTTP_COOKIE": cookie}
    return sent


def set_cookies_asgi(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """The ``Set-Cookie`` values among an ASGI response's raw headers (names are lower-case)."""
    return [v.decode("latin-1") for k, v in headers if k == b"set-cookie"]


def set_cookies_wsgi(headers: Iterable[tuple[str, str]]) -> list[str]:
    """The ``Set-Cookie`` values among the headers a WSGI app gives ``start_response`` (any case)."""
    return [v for k, v in headers if len(k) == 10 and k.lower() == "set-cookie"]


def _integer(text: str) -> bool:
    # RFC 6265 5.2.2: a Max-Age that is not -?DIGIT+ is ignored (then Expires decides).
    digits = text[1:] if text.startswith("-") else text
    return digits.isascii() and digits.isdigit()


def _in_the_past(text: str, now: float) -> bool:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return False  # an Expires the browser cannot read either: no end here
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # cookie dates are GMT (RFC 6265 5.1.1)
    return when.timestamp() <= now
