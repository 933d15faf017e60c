"""The WSGI forms of the answers the ASGI middleware changes on their way out, by wrapping
``start_response`` where the ASGI middleware wraps ``send``:

- :func:`unidentified`: a request on a protected path in which nobody was identified (the rules
  of ``tfa_middleware/guard.py``: an unsafe method never reaches the shop under ``block``; a 2xx
  is withheld with the same page and the same ERROR line);
- :func:`clearing_cookies`: the shop's logout, whose answer clears the proof cookies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from ..guard import SAFE_METHODS, ErrorLog, report_served
from ..responses import BLOCKED, REFUSAL_PAGES, page_headers
from ..settings import InterfaceSettings
from .environ import refuse, status_line

ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None] | None
Write = Callable[[bytes], object]


def unidentified(
    app: WSGIApplication,
    iface: InterfaceSettings,
    errors: ErrorLog,
    path: str,
    environ: WSGIEnvironment,
    start_response: StartResponse,
) -> Iterable[bytes]:
    """Pass the request to the shop (which handles its own login), with its answer guarded."""
    block = iface.unidentified == "block"
    if block and environ.get("REQUEST_METHOD") not in SAFE_METHODS:
        # A withheld answer cannot undo what a POST did: it never reaches the shop.
        return refuse(start_response, environ, 403, _blocked(environ))
    guard = Guard(errors, iface, environ, path, start_response)
    result = app(environ, guard.start_response)
    if guard.started:  # most frameworks start the response before returning the body
        if guard.blocked:
            _close(result)
            return guard.page()
        return result
    return guard.watch(result)  # started lazily, by the first chunk: watch each chunk


def _blocked(environ: WSGIEnvironment) -> str:
    return REFUSAL_PAGES.html(BLOCKED, environ.get("HTTP_ACCEPT_LANGUAGE"))


def _discard(_data: bytes) -> None:
    return None


class Guard:
    """The ``start_response`` given to the shop for a request on a protected path where the
    resolver saw nobody: a 2xx means the shop served someone we could not identify."""

    __slots__ = ("blocked", "environ", "errors", "iface", "path", "start", "started")

    def __init__(
        self,
        errors: ErrorLog,
        iface: InterfaceSettings,
        environ: WSGIEnvironment,
        path: str,
        start_response: StartResponse,
    ) -> None:
        self.errors, self.iface, self.environ, self.path = errors, iface, environ, path
        self.start = start_response
        self.started = self.blocked = False

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo = None) -> Write:
        self.started = True
        if self.blocked:
            return _discard  # our page stands; the shop's second thoughts never leave
        code = status[:3]
        if not (code.isdigit() and 200 <= int(code) < 300):
            return self.start(status, headers, exc_info)
        report_served(
            self.errors, self.iface, self.environ.get("REQUEST_METHOD", "GET"), self.path, int(code)
        )
        if self.iface.unidentified != "block":
            return self.start(status, headers, exc_info)
        self.blocked = True
        encoded = _blocked(self.environ).encode()
        self.start(status_line(403), [(k.decode(), v.decode()) for k, v in page_headers(encoded)], exc_info)
        return _discard

    def page(self) -> list[bytes]:
        return [b"" if self.environ.get("REQUEST_METHOD") == "HEAD" else _blocked(self.environ).encode()]

    def watch(self, result: Iterable[bytes]) -> Iterator[bytes]:
        try:
            for chunk in result:
                if self.blocked:
                    break  # this chunk and the rest of the shop's body never leave
                yield chunk
            if self.blocked:
                yield from self.page()
        finally:
            _close(result)


def clearing_cookies(start_response: StartResponse, cookies: list[str]) -> StartResponse:
    """``start_response`` that adds ``Set-Cookie: <cookie>`` for each of ``cookies``."""

    def start(status: str, headers: list[tuple[str, str]], exc_info: ExcInfo = None) -> Write:
        return start_response(status, [*headers, *(("Set-Cookie", c) for c in cookies)], exc_info)

    return start


def _close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()
