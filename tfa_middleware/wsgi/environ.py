"""The WSGI request as the resolvers and pages read it, and the WSGI middleware's own answers.

The resolvers, the proof check and the pages read an ASGI scope; :func:`http_scope` builds a
minimal one from the environ, and only for a request on a protected path (an unprotected one
never pays for it), its headers only when something reads them (:class:`LazyHeaders`): the
method, the path (decoded as UTF-8, as Werkzeug and Django read it) with
``SCRIPT_NAME`` as ``root_path``, the query string, the headers as lower-case byte pairs (from
``HTTP_*``, ``CONTENT_TYPE`` and ``CONTENT_LENGTH``), the client from ``REMOTE_ADDR``/``REMOTE_PORT``,
the scheme from ``wsgi.url_scheme``; and the environ itself under ``"wsgi.environ"``, for a
``from: callable`` resolver of a WSGI shop.

A WSGI server joins repeated headers into one (gunicorn with ","): the scope has the one header
the shop sees too, so the resolvers read what the shop reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from http import HTTPStatus
from typing import overload
from wsgiref.types import StartResponse, WSGIEnvironment

from starlette.requests import cookie_parser
from starlette.types import Scope

from ..asgi import CookieParser
from ..cache import BoundedCache
from ..responses import HTML, page_headers

ENVIRON_KEY = "tfa_middleware.proof"  # where the app finds the verified Proof (second_factor())

# The usual request headers' names, worked out once; any other is translated per request.
_NAMES = {
    f"HTTP_{name.upper().replace('-', '_')}": name.encode("latin-1")
    for name in (
        "host",
        "cookie",
        "accept",
        "accept-encoding",
        "accept-language",
        "user-agent",
        "connection",
        "referer",
        "origin",
        "cache-control",
        "upgrade-insecure-requests",
        "sec-fetch-site",
        "sec-fetch-mode",
        "sec-fetch-dest",
        "sec-fetch-user",
        "sec-ch-ua",
        "sec-ch-ua-mobile",
        "sec-ch-ua-platform",
        "x-requested-with",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-real-ip",
        "authorization",
        "priority",
        "dnt",
        "pragma",
        "if-none-match",
        "if-modified-since",
    )
}


_ASGI = {"version": "3.0", "spec_version": "2.3"}
_VERSIONS = {"HTTP/1.0": "1.0", "HTTP/1.1": "1.1", "HTTP/2": "2", "HTTP/2.0": "2"}


def text(value: str) -> str:
    """A path from the environ (its bytes as latin-1, PEP 3333) as the shop reads it: UTF-8."""
    if value.isascii():
        return value
    return value.encode("latin-1").decode("utf-8", "replace")


def http_scope(environ: WSGIEnvironment, path: str, root: str) -> Scope:
    """The ASGI scope of a WSGI request: ``path`` relative to ``root`` (both decoded)."""
    return complete(light_scope(environ, path, root))


def light_scope(environ: WSGIEnvironment, path: str, root: str) -> Scope:
    """The part of the scope the hot path reads, for a resolver that reads only the request's
    headers (``LIGHT_SCOPE``): the rest costs more than the whole proof check (~1 µs, mostly the
    client's and server's ports), and only the pages, the challenge and other resolvers need it
    (:func:`complete` adds it in place)."""
    return {
        "type": "http",
        "method": environ["REQUEST_METHOD"],
        "scheme": environ.get("wsgi.url_scheme", "http"),
        "path": root + path,
        "root_path": root,
        "headers": LazyHeaders(environ),
        "wsgi.environ": environ,
    }


def complete(scope: Scope) -> Scope:
    """``scope`` (from :func:`light_scope`) with every key an ASGI http scope has, added in place."""
    if "client" in scope:
        return scope
    environ = scope["wsgi.environ"]
    address = environ.get("REMOTE_ADDR")
    port = environ.get("REMOTE_PORT")
    scope.update(
        {
            "asgi": _ASGI,
            "http_version": _VERSIONS.get(environ.get("SERVER_PROTOCOL", ""), "1.1"),
            "raw_path": scope["path"].encode("utf-8"),
            "query_string": environ.get("QUERY_STRING", "").encode("latin-1"),
            "client": (address, int(port) if port and port.isdigit() else 0) if address else None,
            "server": (environ.get("SERVER_NAME", ""), int(environ.get("SERVER_PORT") or 0)),
        }
    )
    return scope


class LazyHeaders(Sequence[tuple[bytes, bytes]]):
    """``scope["headers"]``, translated from the environ the first time anybody reads it: the
    cookie resolvers and the proof read the Cookie header from the environ itself
    (:class:`EnvironCookies`), so a request on the hot path never pays for the rest."""

    __slots__ = ("_environ", "_list")

    def __init__(self, environ: WSGIEnvironment) -> None:
        self._environ = environ
        self._list: list[tuple[bytes, bytes]] | None = None

    def _headers(self) -> list[tuple[bytes, bytes]]:
        if self._list is None:
            self._list = headers_of(self._environ)
        return self._list

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._headers())

    def __len__(self) -> int:
        return len(self._headers())

    @overload
    def __getitem__(self, index: int) -> tuple[bytes, bytes]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[bytes, bytes]]: ...
    def __getitem__(self, index: int | slice) -> tuple[bytes, bytes] | list[tuple[bytes, bytes]]:
        return self._headers()[index]

    def __eq__(self, other: object) -> bool:
        return self._headers() == (list(other) if isinstance(other, LazyHeaders) else other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._headers())


def headers_of(environ: WSGIEnvironment) -> list[tuple[bytes, bytes]]:
    """The request's headers as ASGI lists them: lower-case names, latin-1 bytes."""
    headers: list[tuple[bytes, bytes]] = []
    append = headers.append
    names = _NAMES
    for key, value in environ.items():
        if key[:5] == "HTTP_":
            name = names.get(key) or key[5:].replace("_", "-").lower().encode("latin-1")
            append((name, value.encode("latin-1")))
    content_type = environ.get("CONTENT_TYPE")
    if content_type:
        append((b"content-type", content_type.encode("latin-1")))
    length = environ.get("CONTENT_LENGTH")
    if length:
        append((b"content-length", length.encode("latin-1")))
    return headers


class EnvironCookies(CookieParser):
    """The middleware's cookie reader, reading a WSGI request's ``HTTP_COOKIE`` straight from the
    environ (parsed as the ASGI reader parses it, and remembered the same way, keyed by the text
    itself: no copy to bytes on a hit); any other scope is read as
    :class:`~tfa_middleware.asgi.CookieParser` reads it."""

    __slots__ = ("_texts",)

    def __init__(self, limit: int = 4096) -> None:
        super().__init__(limit)
        self._texts: BoundedCache[str, dict[str, str]] = BoundedCache(limit)

    def read(self, scope: Scope, name: str) -> str | None:
        environ = scope.get("wsgi.environ")
        if environ is None:
            return super().read(scope, name)
        header = environ.get("HTTP_COOKIE")
        if not header or name not in header:
            return None
        parsed = self._texts.get(header)
        if parsed is None:
            parsed = cookie_parser(header)
            if len(header) <= self.MAX_HEADER:
                self._texts.put(header, parsed)
        return parsed.get(name)

    def remembered(self) -> int:
        return super().remembered() + len(self._texts)


def status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def respond(
    start_response: StartResponse,
    environ: WSGIEnvironment,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> Iterable[bytes]:
    """Start the response with byte-pair headers (as ASGI writes them); a HEAD gets no body."""
    start_response(status_line(status), [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers])
    return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else body]


def refuse(
    start_response: StartResponse,
    environ: WSGIEnvironment,
    status: int,
    body: str,
    *,
    content_type: str | None = HTML,
    retry_after: int | None = None,
) -> Iterable[bytes]:
    """The middleware's own short page, with the headers and texts of the ASGI middleware's."""
    encoded = body.encode()
    return respond(start_response, environ, status, page_headers(encoded, content_type, retry_after), encoded)


def read_body(environ: WSGIEnvironment, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the request body (one more than a form may hold, so the
    pages can tell a form that is too large); never past ``CONTENT_LENGTH``."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit():
        wanted = min(int(length), limit + 1)
    elif environ.get("wsgi.input_terminated"):
        wanted = limit + 1  # chunked: the server ends the stream at the end of the body
    else:
        return b""  # no length and no end: reading could wait forever
    data: bytes = stream.read(wanted) if wanted else b""
    return data
