"""The middleware's own short answers when it stops a request before the shop or the pages: a
small page with a status, or a websocket closed with a code.

Built as raw ASGI messages in one place: the guard answers in the middle of the shop's own
``send``, where no ``receive`` (and no Starlette ``Response``) fits, and the rest answer the same
way so every refusal carries the same headers. A HEAD request gets the headers alone.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from starlette.types import Receive, Scope, Send

from .asgi import header
from .pages import SECURITY_HEADERS, UNAVAILABLE

HTML = "text/html; charset=utf-8"
_SECURITY = tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items())

BLOCKED_HTML = (
    "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
    "<title>This page can't be shown</title><h1>This page can't be shown</h1>"
    "<p>We could not confirm your sign-in for this page. Sign in again; if this keeps happening, "
    "please tell the shop.</p>"
)
MISCONFIGURED_HTML = (
    "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
    "<title>Sign-in check unavailable</title><h1>Sign-in check unavailable</h1>"
    "<p>This part of the shop is closed for now because its sign-in check is not set up right. "
    "The shop's staff can see why in their log. Please try again later.</p>"
)
UNAVAILABLE_HTML = (
    "<!doctype html><meta charset=utf-8><title>Temporarily unavailable</title>"
    f"<h1>Temporarily unavailable</h1><p>{UNAVAILABLE}</p>"
)
BAD_PATH_TEXT = "Bad request: the path is encoded too many times."


async def refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    body: str,
    *,
    content_type: str | None = HTML,
    retry_after: int | None = None,
    close_code: int = 1008,
) -> None:
    """Answer with ``body`` and ``status``; a websocket is closed with ``close_code`` instead."""
    if scope["type"] == "websocket":
        await close_websocket(receive, send, close_code)
        return
    await send_page(scope, send, status, body, content_type=content_type, retry_after=retry_after)


async def send_page(
    scope: Scope,
    send: Send,
    status: int,
    body: str,
    *,
    content_type: str | None = HTML,
    retry_after: int | None = None,
) -> None:
    """The one place the middleware builds a response of its own (HTTP only)."""
    encoded = body.encode()
    headers = page_headers(encoded, content_type, retry_after)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else encoded})


def page_headers(
    encoded: bytes, content_type: str | None = HTML, retry_after: int | None = None
) -> list[tuple[bytes, bytes]]:
    """The headers of a refusal: the same for the ASGI and the WSGI middleware."""
    headers = [(b"content-length", str(len(encoded)).encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type.encode("latin-1")))
    headers.extend(_SECURITY)
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    return headers


def challenge_url(scope: Scope, raw: str, root: str, prefix: str, pages_path: str) -> str:
    """Where a request without a valid proof is sent: the challenge, with ``next`` relative to
    the application's root, like every path in the settings."""
    if scope["method"] in ("GET", "HEAD"):
        query = scope.get("query_string", b"").decode("latin-1")
        target = raw + (f"?{query}" if query else "")
    else:
        target = prefix  # a POST cannot be replayed by a redirect
    return f"{root}{pages_path}/challenge?next={quote(target, safe='')}"


def wants_json(scope: Scope) -> bool:
    """A fetch/XHR or an API client: a 401 with JSON, not a redirect it would follow blindly."""
    if header(scope, b"x-requested-with") == "XMLHttpRequest":
        return True
    accept = header(scope, b"accept")
    return accept is not None and "text/html" not in accept


def challenge_json(url: str) -> bytes:
    return json.dumps({"error": "second_factor_required", "challenge_url": url}).encode()


async def close_websocket(receive: Receive, send: Send, code: int = 1008) -> None:
    """Close a websocket that has not been accepted yet (after reading its connect message)."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": code, "reason": "second factor required"})
