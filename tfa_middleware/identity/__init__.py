"""Identity resolvers: who has the shop logged in, for this request?

A resolver is any callable that takes the ASGI scope and returns an :class:`Identity` (or a plain
user id string), or None when nobody is logged in. Six come built in and are chosen per
interface in the YAML file (``identity: {from: ...}``). A shop with its own scheme points
``from: callable`` at a function, async or sync (a sync one runs in a worker thread, so it may
block, e.g. on Django's ORM)::

    # myshop/auth.py
    async def current_admin(scope):
        token = dict(scope["headers"]).get(b"x-shop-token")
        user = await lookup(token) if token else None
        if user is None or not user.is_staff:
            return None          # only the users of this interface: customers are not admins
        return Identity(user_id=str(user.id), session_id=token.decode())

    # config.yaml
    identity: {from: callable, path: myshop.auth:current_admin}

A resolver returns only the users who belong to its interface: a customer on ``/admin`` is
"nobody" there, and the shop's own answer decides (the middleware's guard stops a 2xx).

Three answers, and the difference matters:
- an :class:`Identity`: this user is logged in;
- None: nobody is logged in (the shop shows its login; the middleware guards its answer);
- :class:`~tfa_middleware.errors.IdentityUnreadable`: the resolver cannot tell (its input is
  missing or untrusted). The request fails closed: never read a broken input as "nobody".

When a resolver also gives a shop session id, the proof cookie is bound to it: logging out of the
shop, or a stolen proof cookie replayed with another session, needs the second factor again.

The resolvers live by what they read: :mod:`.sessions` (the shop's session), :mod:`.flask` (a
Flask shop's cookie), :mod:`.django` (a Django shop's session, through Django's own code),
:mod:`.request` (``scope["user"]``, a proxy's header, the shop's function), :mod:`.tokens` (a JWT);
the framework-specific ones are imported only when configured, so their extras stay optional.
:mod:`.base` holds what they share.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..asgi import CookieParser, Network
from ..errors import ConfigError, IdentityUnreadable, UnusableIdentity
from ..imports import import_callable as import_callable
from ..settings import (
    CallableSource,
    DjangoSessionSource,
    FlaskSessionSource,
    HeaderSource,
    IdentitySettings,
    JwtSource,
    ScopeUserSource,
    SessionSource,
    StarletteSessionCookieSource,
)
from ..tables import MAX_USER_ID_LENGTH as MAX_USER_ID_LENGTH
from .base import Check, Identity, Reading, Resolver, ResolverResult, as_identity
from .request import CallableResolver, HeaderResolver, ScopeUserResolver
from .sessions import SessionKeyResolver, StarletteSessionCookieResolver

__all__ = [
    "CallableResolver",
    "Check",
    "HeaderResolver",
    "Identity",
    "IdentityUnreadable",
    "Reading",
    "Resolver",
    "ResolverResult",
    "ScopeUserResolver",
    "SessionKeyResolver",
    "StarletteSessionCookieResolver",
    "UnusableIdentity",
    "as_identity",
    "build_resolver",
]


def build_resolver(
    settings: IdentitySettings,
    *,
    trusted_proxies: Sequence[Network],
    where: str,
    cookies: CookieParser | None = None,
) -> Resolver:
    """The resolver an interface's ``identity`` section asks for; ``where`` labels its log lines;
    ``cookies``, the middleware's Cookie-header parser, for a resolver that reads a cookie."""
    match settings:
        case SessionSource():
            return SessionKeyResolver(settings.key, settings.session_id_key, settings.roles_key, label=where)
        case StarletteSessionCookieSource():
            # The shop judges its cookie's age by the real time; to agree with it, so do we.
            return StarletteSessionCookieResolver(
                settings.cookie,
                settings.secret_key.reveal(),
                settings.key,
                settings.session_id_key,
                settings.max_age_seconds,
                clock=time.time,
                roles_key=settings.roles_key,
                label=where,
                cookies=cookies,
            )
        case FlaskSessionSource():
            # Flask finds its cookie with Werkzeug's parser, not the middleware's (Starlette's): the
            # resolver reads with one of its own (see .flask). flask is imported only here.
            from .flask import FlaskSessionResolver

            return FlaskSessionResolver(
                settings.cookie,
                [key.reveal() for key in (*settings.secret_key_fallbacks, settings.secret_key)],
                clock=time.time,
                key=settings.user_key,
                session_id_key=settings.session_id_key,
                roles_key=settings.roles_key,
                max_age_seconds=settings.max_age_seconds,
                salt=settings.salt,
                require_fresh=settings.require_fresh,
                label=where,
            )
        case ScopeUserSource():
            return ScopeUserResolver(settings.attribute, settings.require, label=where)
        case HeaderSource():
            return HeaderResolver(settings.header, trusted_proxies)
        case CallableSource():
            return CallableResolver(
                import_callable(settings.callable_path, f"{where}.path"), blocking=settings.blocking
            )
        case JwtSource():
            return _jwt_resolver(settings, where, cookies)
        case DjangoSessionSource():
            from .django import DjangoSessionResolver  # Django only where a shop uses it

            return DjangoSessionResolver(
                settings.cookie, settings.require, settings.cache_seconds, label=where
            )


def _jwt_resolver(settings: JwtSource, where: str, cookies: CookieParser | None) -> Resolver:
    try:  # PyJWT is an extra: imported only when an interface reads a JWT
        from .tokens import build_jwt_resolver
    except ImportError as exc:
        raise ConfigError([f"{where}.from: jwt needs PyJWT: pip install 'tfa-middleware[jwt]'"]) from exc
    # PyJWT judges exp by the real time, as the shop does; the cache follows the same clock.
    return build_jwt_resolver(settings, clock=time.time, label=where, cookies=cookies)
