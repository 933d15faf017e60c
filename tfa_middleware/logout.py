"""The shop's own logout (an interface's ``logout_url``): always open, passed to the shop, and this
browser's second factor ends with it: the shop's answer clears the proof cookie, and the proofs
bound to the login it ends are revoked (when the resolver can tell which login that is).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .asgi import is_https
from .errors import StoreUnavailable
from .identity import Identity
from .proof import proof_clear_cookie
from .routes import Interface
from .service import TwoFactor

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
    ) -> None:
        self.service = service
        self.identify = identify
        self.forget = forget

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
