"""A request on a protected path in which the resolver saw nobody logged in.

The middleware cannot tell "nobody is logged in" from "the identity settings do not match the
shop". So an unsafe method (POST, PUT, PATCH, DELETE) never reaches the shop under
``unidentified: block`` (the default), and the shop's answer to the rest is watched by
:class:`Guard`: a 2xx there means the shop served a protected page to someone we could not
identify, and the page is withheld (``block``) or served and logged (``warn``).
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .responses import BLOCKED, refusal_html, send_page
from .settings import InterfaceSettings

log = logging.getLogger("tfa_middleware")
ERROR_EVERY_SECONDS = 60.0  # one log line a minute per interface and cause: visible, never a flood
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ErrorLog:
    """One ERROR line a minute per interface and cause; the rest would say the same."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], float] = {}

    def __call__(self, interface: str, cause: str, message: str, *args: object) -> None:
        key = (interface, cause)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < ERROR_EVERY_SECONDS:
            return
        self._last[key] = now
        log.error(message, *args)


async def unidentified(
    app: ASGIApp,
    iface: InterfaceSettings,
    errors: ErrorLog,
    path: str,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Pass the request to the shop (which handles its own login), with its answer guarded."""
    if iface.unidentified == "block" and scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
        # The guard can withhold an answer, not undo what the request did: a POST the shop
        # would accept from someone we cannot see must not reach it. Nobody logged in has
        # anything to post to a protected, non-exempt path (log-in forms are exempt).
        await send_page(scope, send, 403, refusal_html(BLOCKED, scope))
        return
    await app(scope, receive, Guard(errors, iface, scope, path, send))


class Guard:
    """The ``send`` given to the shop for a request on a protected path where the resolver saw
    nobody: a 2xx answer (or an accepted websocket) means the shop served someone we could not
    identify, so it is withheld and logged. Redirects, 304 and errors pass untouched."""

    __slots__ = ("blocked", "errors", "iface", "path", "scope", "send")

    def __init__(self, errors: ErrorLog, iface: InterfaceSettings, scope: Scope, path: str, send: Send):
        self.errors, self.iface, self.scope, self.path, self.send = errors, iface, scope, path, send
        self.blocked = False

    async def __call__(self, message: Message) -> None:
        if self.blocked:
            return  # the rest of the shop's answer (body chunks, trailers) never leaves
        kind = message["type"]
        # A websocket can also be answered with a plain HTTP response (the denial extension).
        served = kind == "websocket.accept" or (
            kind in ("http.response.start", "websocket.http.response.start")
            and 200 <= message["status"] < 300
        )
        if not served:
            await self.send(message)
            return
        block = self.iface.unidentified == "block"
        method = self.scope.get("method", "WEBSOCKET")
        report_served(self.errors, self.iface, method, self.path, message.get("status", "accept"))
        if not block:
            await self.send(message)
            return
        self.blocked = True
        if kind.startswith("websocket."):
            await self.send({"type": "websocket.close", "code": 1008, "reason": "second factor required"})
            return
        await send_page(self.scope, self.send, 403, refusal_html(BLOCKED, self.scope))


def report_served(errors: ErrorLog, iface: InterfaceSettings, method: str, path: str, status: object) -> None:
    """The ERROR (one a minute) for a 2xx served to a request in which nobody was identified."""
    name = iface.name
    errors(
        name,
        "unidentified",
        "interface %s: the shop served %s %r (%s) to a request in which the identity resolver saw "
        "nobody logged in; %s. Either the path is public (add it to interfaces.%s.exempt, as a "
        "login page or static files must be) or the identity settings do not match the shop's "
        "login (run: tfa-middleware doctor --config FILE --cookie '...')",
        name,
        method,
        path,
        status,
        "the answer was withheld" if iface.unidentified == "block" else "served anyway (unidentified: warn)",
        name,
    )
