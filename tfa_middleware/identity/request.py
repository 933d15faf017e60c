"""Resolvers that read the request itself: ``scope["user"]`` (an authentication middleware's),
a header set by a trusted proxy, or the shop's own function."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from ..asgi import Network, in_networks, peer_address
from ..errors import IdentityUnreadable, UnusableIdentity
from .base import Identity, Reading, Warnings, as_identity


class ScopeUserResolver:
    """``from: scope_user``: ``scope["user"]`` set by an authentication middleware, when authenticated.

    ``require`` names attributes of the user that must all be true (``[is_staff]``): anybody else
    is not a user of this interface, and reads as nobody.
    """

    def __init__(self, attribute: str = "identity", require: Sequence[str] = (), *, label: str = "identity"):
        self.attribute = attribute
        self.require = tuple(require)
        self._warn = Warnings(label)

    def __call__(self, scope: Scope) -> Identity | None:
        reading = self.read(scope)
        self._warn(reading)
        return reading.identity

    def read(self, scope: Scope) -> Reading:
        if "user" not in scope:
            raise IdentityUnreadable(
                'from: scope_user, but the request has no scope["user"]: TwoFactorMiddleware must sit '
                "inside the shop's AuthenticationMiddleware (wrap the app it wraps)"
            )
        user = scope["user"]
        if user is None or not getattr(user, "is_authenticated", False):
            return Reading(None, 'scope["user"] is not authenticated')
        for name in self.require:
            if not getattr(user, name, False):
                return Reading(None, f'scope["user"] is not {name}: not a user of this interface')
        identity = as_identity(getattr(user, self.attribute, None))
        if identity is None:
            raise UnusableIdentity(f'scope["user"] is authenticated but its {self.attribute!r} is empty')
        return Reading(identity, f"scope['user'] is user {identity.user_id!r}")


class HeaderResolver:
    """``from: header``: a user id header set by a trusted reverse proxy, and only by one.

    The header from a peer outside ``trusted_proxies`` is an error, not "nobody": the shop behind
    us may believe it (a proxy on the same host whose client address uvicorn rewrote from
    X-Forwarded-For looks exactly like that), so the request fails closed.
    """

    def __init__(self, header_name: str, trusted_proxies: Sequence[Network]):
        self.header = header_name.lower().replace("_", "-").encode("latin-1")
        self.trusted = tuple(trusted_proxies)

    def __call__(self, scope: Scope) -> Identity | None:
        return self.read(scope).identity

    def read(self, scope: Scope) -> Reading:
        # X-Remote_User is the same header to a shop that reads CGI-style names (Django turns both
        # '-' and '_' into '_'): every spelling counts, so a variant can't slip past as "nobody".
        values = [v for k, v in scope.get("headers", ()) if k.lower().replace(b"_", b"-") == self.header]
        name = self.header.decode("latin-1")
        if not values:
            return Reading(None, f"no {name} header")
        peer = peer_address(scope)
        if not in_networks(peer, self.trusted):
            raise IdentityUnreadable(
                f"the identity header {name} came from {peer}, which is not in trusted_proxies; if the "
                "proxy runs on this host, the server may have replaced the peer address from "
                "X-Forwarded-For (uvicorn --forwarded-allow-ips, gunicorn forwarded_allow_ips)"
            )
        if len(values) > 1:
            # Two copies: the client sent one and the proxy appended its own. Never guess.
            raise UnusableIdentity(f"{name} appears {len(values)} times")
        identity = as_identity(values[0].decode("latin-1"))
        if identity is None:
            return Reading(None, f"the {name} header is empty")
        return Reading(identity, f"the {name} header names user {identity.user_id!r}")


class CallableResolver:
    """``from: callable``: ``package.module:function``, given the scope.

    An async function (or an object with an async ``__call__``) runs on the event loop; a sync one
    runs in a worker thread, so that a blocking look-up (Django's ORM, a file, a socket) neither
    stalls the server nor trips Django's ``SynchronousOnlyOperation``. ``blocking=False`` runs a
    sync function on the loop instead, saving the thread hop (tens of microseconds): only for a
    function that never waits on anything.
    """

    def __init__(self, func: Callable[[Scope], Any], *, blocking: bool = True) -> None:
        self.func = func
        self.is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            getattr(func, "__call__", None)  # noqa: B004 - an object with an async __call__
        )
        self.blocking = blocking

    async def __call__(self, scope: Scope) -> Identity | None:
        if self.is_async:
            result = await self.func(scope)
        elif not self.blocking:
            result = self.func(scope)
            if inspect.isawaitable(result):
                result = await result
        else:
            result = await run_in_threadpool(self.func, scope)
            if inspect.isawaitable(result):
                result = await result
        return as_identity(result)

    async def read(self, scope: Scope) -> Reading:
        identity = await self(scope)
        if identity is None:
            return Reading(None, "the callable returned nobody")
        return Reading(identity, f"the callable returned user {identity.user_id!r}")
