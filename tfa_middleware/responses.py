"""The middleware's own short answers when it stops a request before the shop or the pages: a
small page with a status, or a websocket closed with a code.

Built as raw ASGI messages in one place: the guard answers in the middle of the shop's own
``send``, where no ``receive`` (and no Starlette ``Response``) fits, and the rest answer the same
way so every refusal carries the same headers. A HEAD request gets the headers alone.
"""

from __future__ import annotations

import html
import json
from urllib.parse import quote

from starlette.types import Receive, Scope, Send

from .asgi import header
from .i18n import N_, Languages
from .pages import SECURITY_HEADERS, UNAVAILABLE

HTML = "text/html; charset=utf-8"
_SECURITY = tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items())

# The middleware's own pages (title, text): whole sentences, in the reader's language.
BLOCKED = (
    N_("This page can't be shown"),
    N_(
        "We could not confirm your sign-in for this page. Sign in again; "
        "if this keeps happening, please tell the shop."
    ),
)
MISCONFIGURED = (
    N_("Sign-in check unavailable"),
    N_(
        "This part of the shop is closed for now because its sign-in check is not set up right. "
        "The shop's staff can see why in their log. Please try again later."
    ),
)
TEMPORARILY_UNAVAILABLE = (N_("Temporarily unavailable"), UNAVAILABLE)


class RefusalPages:
    """The middleware's refusals (403, 500, 503) in the language of the browser's Accept-Language:
    the shipped catalogues only (no settings reach this far), each page built once per language.
    Asked only when a request is refused, never on the hot path."""

    def __init__(self) -> None:
        self._languages = Languages()
        self._built: dict[tuple[str, str], str] = {}

    def html(self, page: tuple[str, str], accept_language: str | None = None) -> str:
        lang = self._languages.negotiate(accept_language=accept_language)
        key = (page[0], lang.code)
        built = self._built.get(key)
        if built is None:
            title, text = (html.escape(lang.gettext(part), quote=False) for part in page)
            built = self._built[key] = (
                f'<!doctype html><html lang="{lang.tag}" dir="{lang.direction}"><meta charset=utf-8>'
                f"<meta name=viewport content='width=device-width'><title>{title}</title>"
                f"<h1>{title}</h1><p>{text}</p></html>"
            )
        return built


REFUSAL_PAGES = RefusalPages()
BLOCKED_HTML = REFUSAL_PAGES.html(BLOCKED)
MISCONFIGURED_HTML = REFUSAL_PAGES.html(MISCONFIGURED)
UNAVAILABLE_HTML = REFUSAL_PAGES.html(TEMPORARILY_UNAVAILABLE)


def refusal_html(page: tuple[str, str], scope: Scope) -> str:
    """One of the middleware's pages in the language the request's browser asks for."""
    return REFUSAL_PAGES.html(page, header(scope, b"accept-language"))


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
