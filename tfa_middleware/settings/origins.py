"""A passkey's relying party as the settings name it: ``rp_id`` (a domain) and ``origins`` (where
the browser may run the ceremony), checked the way browsers check them, so that a mistake is a
settings error at start-up rather than a passkey that no browser will make.

- The RP ID is a domain: browsers refuse an IP address (``127.0.0.1`` is no RP ID; the demo is
  opened at ``http://localhost:8000`` for its passkeys).
- An origin is ``scheme://host[:port]``: ``https``, or ``http`` on ``localhost`` alone (the one
  plain-HTTP host browsers count as a secure context for passkeys); its host is the RP ID or a
  name below it. It is compared with what the browser writes in the client data, which has no
  path and no default port: the settings' form is normalised to that.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import StrictStr

from .types import check

LOCALHOST = "localhost"
DEMO_ORIGIN = "http://localhost:8000"
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_DEFAULT_PORTS = {"https": 443, "http": 80}


def _is_domain(text: str) -> bool:
    if len(text) > 253 or not _DOMAIN.fullmatch(text):
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return True
    return False


RpId = Annotated[
    StrictStr,
    check(
        lambda text: _is_domain(text.strip().lower()),
        "must be a domain name like shop.example, without scheme or port (not an IP address: browsers "
        "refuse passkeys on one; the demo uses localhost)",
        lambda text: text.strip().lower(),
    ),
]


def _is_local(host: str) -> bool:
    return host == LOCALHOST or host.endswith("." + LOCALHOST)


def origin_problem(origin: str, rp_id: str) -> str | None:
    """What is wrong with ``origin`` for ``rp_id``, or None."""
    example = f"e.g. https://{rp_id}" if not _is_local(rp_id) else f"e.g. {DEMO_ORIGIN}"
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return f"{origin!r} is not an origin ({example})"
    host = parts.hostname or ""
    if parts.scheme not in _DEFAULT_PORTS or not host or parts.username or parts.password:
        return f"{origin!r} is not an origin: scheme://host[:port], {example}"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"{origin!r} is an origin, without a path or query ({example})"
    if parts.scheme == "http" and not _is_local(host):
        return f"{origin!r}: passkeys need https (plain http only on localhost)"
    if host != rp_id and not host.endswith("." + rp_id):
        return f"{origin!r} is not on rp_id {rp_id!r} (its host must be {rp_id} or a name below it)"
    if port is not None and not 0 < port < 65536:
        return f"{origin!r} has no valid port"
    return None


def normal_origin(origin: str) -> str:
    """The origin as a browser reports it: lower case, no trailing slash, no default port."""
    parts = urlsplit(origin.strip())
    host = (parts.hostname or "").lower()
    port = parts.port
    shown = host if port in (None, _DEFAULT_PORTS[parts.scheme.lower()]) else f"{host}:{port}"
    return f"{parts.scheme.lower()}://{shown}"
