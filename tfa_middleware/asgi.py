"""Small readers of an ASGI scope: one header, one cookie, the client address, a path's canonical form.

They sit on the hot path, so they read the raw header list once and build nothing they don't return.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import unquote

from starlette.requests import cookie_parser
from starlette.types import Scope

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
    """The value of cookie ``name`` exactly as a Starlette app reads it, or None.

    The shop and the middleware must agree on who is logged in, so this uses Starlette's own
    parser the way ``Request.cookies`` does: every Cookie header in order, the last duplicate
    wins, spaces around ``=`` are ignored, quotes are removed. A header that does not contain
    the name cannot define it, so only those are parsed.
    """
    found: str | None = None
    for key, value in scope.get("headers", ()):
        if key == b"cookie" and name.encode() in value:
            found = _parsed(value).get(name, found)
    return found


# A browser sends the same Cookie header again and again, and the middleware reads two cookies
# from it (the shop's session, our proof): parse each distinct header once.
_PARSED: dict[bytes, dict[str, str]] = {}
_PARSED_MAX = 4096
_PARSED_MAX_HEADER = 4096


def _parsed(value: bytes) -> dict[str, str]:
    parsed = _PARSED.get(value)
    if parsed is None:
        parsed = cookie_parser(value.decode("latin-1"))
        if len(value) <= _PARSED_MAX_HEADER:
            if len(_PARSED) >= _PARSED_MAX:
                del _PARSED[next(iter(_PARSED))]
            _PARSED[value] = parsed
    return parsed


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
