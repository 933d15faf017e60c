"""Small readers of an ASGI scope: one header, one cookie, the client address, a path's canonical form.

They sit on the hot path, so they read the raw header list once and build nothing they don't return.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import unquote

from starlette.requests import cookie_parser
from starlette.types import Scope

from .cache import BoundedCache
from .errors import HostilePath as HostilePath  # its old home: still importable from here

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower-case bytes), decoded as latin-1."""
    for key, value in scope.get("headers", ()):
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def cookie(scope: Scope, name: str) -> str | None:
    """The value of cookie ``name`` exactly as a Starlette app reads it, or None; parsed for this
    call and forgotten (a middleware's resolver reads through the middleware's :class:`CookieParser`)."""
    return _UNREMEMBERED.read(scope, name)


def scope_value(scope: Scope, key: str) -> object:
    """A key the shop's own middleware put in the scope (under WSGI: in the environ)."""
    if key in scope:
        return scope[key]
    environ = scope.get("wsgi.environ")
    return environ.get(key) if isinstance(environ, dict) else None


class CookieParser:
    """Reads one cookie from a scope, remembering the last ``limit`` distinct Cookie headers parsed.

    The shop and the middleware must agree on who is logged in, so this uses Starlette's own
    parser the way ``Request.cookies`` does: every Cookie header in order, the last duplicate
    wins, spaces around ``=`` are ignored, quotes are removed. A header that does not contain
    the name cannot define it, so only those are parsed.

    A browser sends the same Cookie header again and again, and the middleware reads two cookies
    from it (the shop's session, our proof): each distinct header is parsed once. The headers hold
    the shop's sessions, so each middleware owns its parser: nothing is shared between apps, and
    nothing of a request stays at module level.
    """

    __slots__ = ("_parsed",)

    MAX_HEADER = 4096  # a longer header is parsed every time: it would only crowd the cache

    def __init__(self, limit: int | None = 4096) -> None:
        self._parsed: BoundedCache[bytes, dict[str, str]] | None = BoundedCache(limit) if limit else None

    def read(self, scope: Scope, name: str) -> str | None:
        found: str | None = None
        encoded = name.encode()
        cache = self._parsed
        for key, value in scope.get("headers", ()):
            if key == b"cookie" and encoded in value:
                # The look-up is inline: a returning browser's header costs no further call.
                parsed = None if cache is None else cache.get(value)
                if parsed is None:
                    parsed = self._parse(value)
                found = parsed.get(name, found)
        return found

    def _parse(self, value: bytes) -> dict[str, str]:
        parsed = cookie_parser(value.decode("latin-1"))
        if self._parsed is not None and len(value) <= self.MAX_HEADER:
            self._parsed.put(value, parsed)
        return parsed

    def remembered(self) -> int:
        """How many parsed headers are remembered."""
        return len(self._parsed) if self._parsed is not None else 0


_UNREMEMBERED = CookieParser(limit=None)  # holds nothing: parses and forgets


def is_https(scope: Scope) -> bool:
    return scope.get("scheme") in ("https", "wss")


def peer_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def in_networks(address: str | None, networks: Sequence[Network]) -> bool:
    if address is None or not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_ip(scope: Scope, trusted_proxies: Sequence[Network]) -> str | None:
    """The client's address: from X-Forwarded-For only when the direct peer is a trusted proxy.

    The list is read from the right, skipping our own trusted proxies, so a client cannot
    choose its address by prepending entries.
    """
    peer = peer_address(scope)
    if not in_networks(peer, trusted_proxies):
        return peer
    # Several header lines are one list, in order (RFC 9110 5.3): the nearest proxy's comes last.
    lines = [value.decode("latin-1") for key, value in scope.get("headers", ()) if key == b"x-forwarded-for"]
    hops = [h.strip() for line in lines for h in line.split(",") if h.strip()]
    if not hops:
        return peer
    for hop in reversed(hops):
        if not in_networks(hop, trusted_proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


MAX_DECODING_ROUNDS = 8


def canonical_path(path: str) -> str:
    """The path as a lenient router might read it, for security comparisons only.

    Percent-decoding is repeated until nothing changes (``%252e`` hides ``.`` twice),
    backslashes count as slashes, empty and ``.`` segments vanish, ``..`` climbs, and the result
    is lower-case without a trailing slash. Any smuggling trick therefore lands on the path it
    really names. A path still changing after MAX_DECODING_ROUNDS raises HostilePath.
    """
    for _ in range(MAX_DECODING_ROUNDS + 1):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    else:
        raise HostilePath("the path is percent-encoded too many times")
    segments: list[str] = []
    for segment in path.replace("\\", "/").split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return ("/" + "/".join(segments)).lower()


def simple_path(path: str) -> str:
    """The literal path, lower-case and without a trailing slash: how a strict router matches it."""
    lowered = path.lower()
    return lowered[:-1] if len(lowered) > 1 and lowered.endswith("/") else lowered


def inside(path: str, prefix: str) -> bool:
    """Whether canonical ``path`` is ``prefix`` or below it, at a segment boundary."""
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")
