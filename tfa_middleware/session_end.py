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
empty: a browser holding an empty session cookie holds no login either. Anything else (a new
session, a refreshed token) is not an end.

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

    def ended(self, set_cookies: list[str], scope: Scope, now: float) -> list[Ended]:
        """The watched interfaces whose session cookie ``set_cookies`` delete and whose proof
        cookie this request carries."""
        gone = ended_cookies(set_cookies, self.names, now)
        if not gone:
            return []
        https = is_https(scope)
        found = []
        for iface in self.watched:
            if iface.session_cookie not in gone:
                continue
            name = iface.proof_cookie(https)
            value = self.cookies.read(scope, name)
            if not value:
                continue
            proof = iface.codec.read(value, now)
            bound = proof if proof is not None and proof.session_digest else None
            found.append(Ended(iface, proof_clear_cookie(name, https), bound))
        return found


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


def ended_cookies(headers: Iterable[str], names: frozenset[str], now: float) -> set[str]:
    """Which of ``names`` the ``Set-Cookie`` values ``headers`` delete (the last one of a name
    decides, as in the browser: a deletion followed by a new cookie is a new session)."""
    ended: set[str] = set()
    for header in headers:
        name = header.partition("=")[0].strip()
        if name not in names:
            continue
        if ended_cookie(header, now) == name:
            ended.add(name)
        else:
            ended.discard(name)
    return ended


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
