"""Identity resolvers: who has the shop logged in, for this request?

A resolver is any callable that takes the ASGI scope and returns an :class:`Identity` (or a plain
user id string), or None when nobody is logged in; it may be sync or async. Five come built in and
are chosen per interface in the YAML file (``identity: {from: ...}``). A shop with its own scheme
points ``from: callable`` at a function::

    # myshop/auth.py
    async def current_admin(scope):
        token = dict(scope["headers"]).get(b"x-shop-token")
        user = await lookup(token) if token else None
        return Identity(user_id=str(user.id), session_id=token.decode()) if user else None

    # config.yaml
    identity: {from: callable, path: myshop.auth:current_admin}

When a resolver also gives a shop session id, the proof cookie is bound to it: logging out of the
shop, or a stolen proof cookie replayed with another session, needs the second factor again.
"""

from __future__ import annotations

import importlib
import inspect
import json
import time
from base64 import b64decode
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature
from starlette.types import Scope

from .asgi import Network, cookie, in_networks, peer_address
from .errors import ConfigError
from .settings import IdentitySettings
from .signing import ClockedTimestampSigner

MAX_USER_ID_LENGTH = 320  # the longest e-mail address, a common user id


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    session_id: str | None = None
    roles: frozenset[str] = frozenset()  # only for the management page's allow_roles


ResolverResult = Identity | str | None
Resolver = Callable[[Scope], ResolverResult | Awaitable[ResolverResult]]


class UnusableIdentity(ValueError):
    """The shop has someone logged in, but their id cannot be used; the request fails closed."""


def as_identity(result: object) -> Identity | None:
    """Normalise what a resolver returned: None or "" is nobody logged in.

    Anything else that is not a usable id raises UnusableIdentity: somebody *is* logged in, so
    treating it as "nobody" would hand the request to the shop without a second factor.
    """
    if result is None or result == "":
        return None
    if isinstance(result, Identity):
        identity = result
    elif isinstance(result, str | int) and not isinstance(result, bool):
        identity = Identity(str(result))
    else:
        raise UnusableIdentity(f"a resolver returned {type(result).__name__}, not a user id")
    if not identity.user_id or len(identity.user_id) > MAX_USER_ID_LENGTH:
        raise UnusableIdentity(f"user ids must be 1 to {MAX_USER_ID_LENGTH} characters")
    return identity


def _roles(value: Any) -> frozenset[str]:
    """A session's roles: one string or a list of them; anything else is no role at all."""
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list | tuple):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


def _session_value(value: Any) -> str | None:
    """A session's user id: None or "" means nobody; a value of another type fails closed."""
    if value is None or value == "":
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise UnusableIdentity(f"the session holds a {type(value).__name__}, not a user id")


class SessionKeyResolver:
    """``from: session``: a key of ``scope["session"]`` (the middleware sits inside the shop's stack)."""

    def __init__(self, key: str, session_id_key: str | None = None, roles_key: str | None = None) -> None:
        self.key = key
        self.session_id_key = session_id_key
        self.roles_key = roles_key

    def __call__(self, scope: Scope) -> Identity | None:
        session = scope.get("session")
        if not isinstance(session, dict):
            return None
        user_id = _session_value(session.get(self.key))
        if user_id is None:
            return None
        sid = _session_value(session.get(self.session_id_key)) if self.session_id_key else None
        roles = _roles(session.get(self.roles_key)) if self.roles_key else frozenset()
        return as_identity(Identity(user_id, sid, roles))


class StarletteSessionCookieResolver:
    """``from: starlette_session_cookie``: reads a Starlette ``SessionMiddleware`` cookie from outside.

    Starlette signs ``base64(json(session))`` with ``itsdangerous.TimestampSigner(secret)`` and
    refuses it after ``max_age``; this does exactly the same. Decoded cookies are remembered until
    they would expire, so a returning browser is not decoded again.
    """

    def __init__(
        self,
        cookie_name: str,
        secret_key: str,
        key: str,
        session_id_key: str | None = None,
        max_age_seconds: int | None = 14 * 24 * 3600,
        *,
        clock: Callable[[], float],
        roles_key: str | None = None,
        cache_size: int = 10_000,
    ) -> None:
        self.cookie_name = cookie_name
        self.key = key
        self.session_id_key = session_id_key
        self.roles_key = roles_key
        self.max_age = max_age_seconds
        self._signer = ClockedTimestampSigner(secret_key, clock=clock)
        self._clock = clock
        self._cache: dict[str, tuple[Identity | None, float]] = {}
        self._cache_size = cache_size

    def __call__(self, scope: Scope) -> Identity | None:
        value = cookie(scope, self.cookie_name)
        if not value:
            return None
        now = self._clock()
        hit = self._cache.get(value)
        if hit is not None and now < hit[1]:
            return hit[0]
        identity, expires = self._decode(value, now)
        if expires > now:
            if len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]
            self._cache[value] = (identity, expires)
        return identity

    def _decode(self, value: str, now: float) -> tuple[Identity | None, float]:
        try:
            data, timestamp = self._signer.unsign(
                value.encode("latin-1"), max_age=self.max_age, return_timestamp=True
            )
            session = json.loads(b64decode(data))
        except (BadSignature, ValueError, UnicodeError):
            return None, 0.0
        if not isinstance(session, dict):
            return None, 0.0
        expires = timestamp.timestamp() + self.max_age if self.max_age is not None else now + 3600
        user_id = _session_value(session.get(self.key))
        if user_id is None:
            return None, expires
        sid = _session_value(session.get(self.session_id_key)) if self.session_id_key else None
        roles = _roles(session.get(self.roles_key)) if self.roles_key else frozenset()
        return as_identity(Identity(user_id, sid, roles)), expires


class ScopeUserResolver:
    """``from: scope_user``: ``scope["user"]`` set by an authentication middleware, when authenticated."""

    def __init__(self, attribute: str = "identity") -> None:
        self.attribute = attribute

    def __call__(self, scope: Scope) -> Identity | None:
        user = scope.get("user")
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        return as_identity(getattr(user, self.attribute, None))


class HeaderResolver:
    """``from: header``: a user id header set by a trusted reverse proxy, and only by one."""

    def __init__(self, header_name: str, trusted_proxies: Sequence[Network]) -> None:
        self.header = header_name.lower().encode("latin-1")
        self.trusted = tuple(trusted_proxies)

    def __call__(self, scope: Scope) -> Identity | None:
        if not in_networks(peer_address(scope), self.trusted):
            return None
        values = [v for k, v in scope.get("headers", ()) if k == self.header]
        if len(values) > 1:
            # Two copies: the client sent one and the proxy appended its own. Never guess.
            raise UnusableIdentity(f"{self.header.decode()} appears {len(values)} times")
        return as_identity(values[0].decode("latin-1") if values else None)


class CallableResolver:
    """``from: callable``: ``package.module:function``, sync or async, given the scope."""

    def __init__(self, func: Callable[[Scope], Any]) -> None:
        self.func = func
        self.is_async = inspect.iscoroutinefunction(func)

    async def __call__(self, scope: Scope) -> Identity | None:
        result = self.func(scope)
        if inspect.isawaitable(result):
            result = await result
        return as_identity(result)


def import_callable(path: str, where: str) -> Callable[..., Any]:
    module_name, _, attribute = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except Exception as exc:  # any failure while importing the shop's module is a config problem
        raise ConfigError([f"{where}: cannot import {path!r}: {type(exc).__name__}: {exc}"]) from None
    if not callable(target):
        raise ConfigError([f"{where}: {path!r} is not callable"])
    return target  # type: ignore[no-any-return]


def build_resolver(
    settings: IdentitySettings,
    *,
    trusted_proxies: Sequence[Network],
    where: str,
) -> Resolver:
    """The resolver an interface's ``identity`` section asks for."""
    if settings.source == "session":
        assert settings.key is not None
        return SessionKeyResolver(settings.key, settings.session_id_key, settings.roles_key)
    if settings.source == "starlette_session_cookie":
        assert settings.key is not None and settings.secret_key is not None
        # The shop judges its cookie's age by the real time; to agree with it, so do we.
        return StarletteSessionCookieResolver(
            settings.cookie,
            settings.secret_key.reveal(),
            settings.key,
            settings.session_id_key,
            settings.max_age_seconds,
            clock=time.time,
            roles_key=settings.roles_key,
        )
    if settings.source == "scope_user":
        return ScopeUserResolver(settings.attribute)
    if settings.source == "header":
        assert settings.header is not None
        return HeaderResolver(settings.header, trusted_proxies)
    assert settings.callable_path is not None
    return CallableResolver(import_callable(settings.callable_path, f"{where}.path"))
