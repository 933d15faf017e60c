"""Small readers of an ASGI scope: one header, one cookie, the client address, a path's canonical form.

They sit on the hot path, so they read the raw header list once and build nothing they don't return.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import unquote

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower-case bytes), decoded as latin-1."""
    for key, value in scope.get("headers", ()):
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def cookie(scope: Scope, name: str) -> str | None:
    """The value of cookie ``name``, or None. Several Cookie headers (HTTP/2) are all searched."""
    prefix = name + "="
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            text: str = value.decode("latin-1")
            for part in text.split(";"):
                part = part.strip()
                if part.startswith(prefix):
                    return part[len(prefix) :]
    return None


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
    forwarded = header(scope, b"x-forwarded-for")
    if not forwarded:
        return peer
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not in_networks(hop, trusted_proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


def canonical_path(path: str) -> str:
    """The path as a lenient router might read it, for security comparisons only.

    Percent-decoding is repeated (``%252e`` hides ``.`` twice), backslashes count as slashes,
    empty and ``.`` segments vanish, ``..`` climbs, and the result is lower-case without a
    trailing slash. Any smuggling trick therefore lands on the path it really names.
    """
    for _ in range(3):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
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


def inside(path: str, prefix: str) -> bool:
    """Whether canonical ``path`` is ``prefix`` or below it, at a segment boundary."""
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")
