"""The shop's own logout, and this browser's second factor ends with it: the shop's answer clears
the proof cookie, and the proofs bound to the login it ends are revoked (when the resolver can
tell which login that is). Two ways to see a logout:

- the interface's ``logout_url`` (:class:`ShopLogout`): always open, passed to the shop;
- without it, for a resolver that reads a cookie: any answer of the shop that deletes that cookie,
  on a request carrying the interface's proof cookie (:func:`logout_watch`, the ``send`` given to
  the shop; the headers are read in ``session_end.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .asgi import is_https
from .errors import StoreUnavailable
from .identity import Identity
from .proof import proof_clear_cookie
from .routes import Interface
from .service import TwoFactor
from .session_end import Ended, Reissued, SessionEnds, same_login, set_cookies_asgi

log = logging.getLogger("tfa_middleware")


class ShopLogout:
    """Handles a request to the shop's logout path of one or more interfaces.

    ``identify`` is the middleware's resolver call; ``forget`` drops a user's cached revocations
    (key: interface, user id) so the revocation is seen at once in this process.
    """

    def __init__(
        self,
        service: TwoFactor,
        identify: Callable[[Interface, Scope], Awaitable[Identity | None]],
        forget: Callable[[tuple[str, str]], object],
        *,
        ends: SessionEnds | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.identify = identify
        self.forget = forget
        self.ends = ends
        self.clock = clock

    async def __call__(
        self, app: ASGIApp, ifaces: tuple[Interface, ...], scope: Scope, receive: Receive, send: Send
    ) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        https = is_https(scope)
        clear = [proof_clear_cookie(i.proof_cookie(https), https).encode("latin-1") for i in ifaces]
        for iface in ifaces:
            await self._revoke_login(iface, scope)

        async def clearing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [*message.get("headers", ()), *((b"set-cookie", c) for c in clear)],
                }
            await send(message)

        await app(scope, receive, clearing_send)

    async def _revoke_login(self, iface: Interface, scope: Scope) -> None:
        """Revoke the proofs bound to the login this logout ends, when the resolver can tell it."""
        try:
            identity = await self.identify(iface, scope)
        except Exception as exc:
            cannot_tell(iface, exc)
            return
        await revoke_login(self.service, self.forget, iface, identity)

    async def ended(
        self, message: Message, scope: Scope, iface: Interface | None, identity: Identity | None
    ) -> Message:
        """The shop's response start, with the proof cookies of the sessions it deletes cleared
        (and those logins' proofs revoked). ``iface`` and ``identity``: what the middleware
        already knows of this request (on a protected path), read before the shop ran."""
        assert self.ends is not None
        headers = message.get("headers") or ()
        found, reissued = self.ends.ended(set_cookies_asgi(headers), scope, self.clock())
        for new in reissued:
            if await self._ends_login(new):
                found.append(new.end)
        if not found:
            return message
        for end in found:
            await self._revoke_ended(end, scope, identity if end.iface is iface else None)
        cleared = [(b"set-cookie", end.clear.encode("latin-1")) for end in found]
        return {**message, "headers": [*headers, *cleared]}

    async def _ends_login(self, new: Reissued) -> bool:
        """Whether the session cookie the shop writes anew holds anybody but the proof's user."""
        try:
            identity = await self.identify(new.end.iface, new.scope)
        except Exception:
            return True  # a cookie the resolver cannot read holds no login it can vouch for
        return identity is None or identity.user_id != new.user_id

    async def _revoke_ended(self, end: Ended, scope: Scope, identity: Identity | None) -> None:
        if end.proof is None:
            return  # no genuine proof bound to a login: clearing the cookie is all there is
        if identity is None:
            # The request still carries the shop's cookie it logs out of: the resolver reads it.
            try:
                identity = await self.identify(end.iface, scope)
            except Exception as exc:
                cannot_tell(end.iface, exc)
                return
        if same_login(end.proof, identity):
            await revoke_login(self.service, self.forget, end.iface, identity)


def logout_watch(
    logout: ShopLogout,
    scope: Scope,
    send: Send,
    iface: Interface | None = None,
    identity: Identity | None = None,
) -> Send:
    """The ``send`` given to the shop on a request carrying a watched proof cookie: the response
    start is scanned for ``set-cookie``, and only an answer setting a cookie is read further.

    One closure (cheaper to make than an object), and not a coroutine itself: a message passes on
    as the shop's send's own awaitable, so the watch adds no coroutine per message, and only an
    answer setting a cookie makes one (:func:`_read_ended`)."""

    def watched(message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            for key, _ in message.get("headers") or ():
                if key == b"set-cookie":
                    return _read_ended(logout, message, scope, send, iface, identity)
        return send(message)

    return watched


async def _read_ended(
    logout: ShopLogout,
    message: Message,
    scope: Scope,
    send: Send,
    iface: Interface | None,
    identity: Identity | None,
) -> None:
    await send(await logout.ended(message, scope, iface, identity))


async def revoke_login(
    service: TwoFactor,
    forget: Callable[[tuple[str, str]], object],
    iface: Interface,
    identity: Identity | None,
) -> None:
    """Revoke the proofs of ``identity``'s login, when it names one; ``forget`` drops the user's
    cached revocations so this process sees it at once (the WSGI middleware calls this too)."""
    if identity is None or identity.session_id is None:
        return
    name = iface.settings.name
    try:
        await service.sign_out(name, identity.user_id, identity.session_id)
    except StoreUnavailable as exc:
        log.error("logout on %s: cannot revoke the proofs of this login: %s", name, exc)
    forget((name, identity.user_id))


def cannot_tell(iface: Interface, exc: Exception) -> None:
    log.warning(
        "logout on %s: cannot tell who logs out (%s); their proof cookie is cleared only",
        iface.settings.name,
        type(exc).__name__,
    )
