"""Identity resolvers: who has the shop logged in, for this request?

A resolver is any callable that takes the ASGI scope and returns an :class:`Identity` (or a plain
user id string), or None when nobody is logged in. Five come built in and are chosen per
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

Why our own cookie reader instead of running Starlette's ``SessionMiddleware``: the middleware sits
outside the shop and must not touch ``scope["session"]``; and decoded cookies are cached here so a
returning browser costs a dictionary look-up. It agrees with Starlette byte for byte (the same
Cookie parser, the header text re-encoded as UTF-8 before the signature check, exactly as
``SessionMiddleware`` does): ``tests/test_cookie_agreement.py`` checks that on generated cookies.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from base64 import b64decode
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from itsdangerous import BadSignature, SignatureExpired
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from .asgi import Network, cookie, in_networks, peer_address
from .errors import IdentityUnreadable, UnusableIdentity
from .imports import import_callable as import_callable
from .settings import (
    CallableSource,
    HeaderSource,
    IdentitySettings,
    ScopeUserSource,
    SessionSource,
    StarletteSessionCookieSource,
)
from .signing import ClockedTimestampSigner
from .tables import MAX_USER_ID_LENGTH as MAX_USER_ID_LENGTH

__all__ = [
    "CallableResolver",
    "Check",
    "HeaderResolver",
    "Identity",
    "IdentityUnreadable",
    "Reading",
    "Resolver",
    "ScopeUserResolver",
    "SessionKeyResolver",
    "StarletteSessionCookieResolver",
    "UnusableIdentity",
    "as_identity",
    "build_resolver",
]

log = logging.getLogger("tfa_middleware")
WARN_EVERY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    session_id: str | None = None
    roles: frozenset[str] = frozenset()  # only for the management page's allow_roles


ResolverResult = Identity | str | None
Resolver = Callable[[Scope], ResolverResult | Awaitable[ResolverResult]]
# The steps of reading a session cookie, in order (StarletteSessionCookieResolver.CHECKS).
Check = Literal["cookie", "signature", "age", "session", "key"]


@dataclass(frozen=True, slots=True)
class Reading:
    """What a built-in resolver made of a request: the identity, or why there is none.

    ``why`` is for the operator (the rate-limited warning, ``tfa-middleware doctor``): it names
    cookies and keys, never a value or a secret. ``notable`` marks the readings that suggest a
    setting does not match the shop (a signature that fails, a key that is missing), as opposed
    to the ordinary "no cookie at all". ``check`` names the step that stopped the reading, so that
    ``doctor`` can show the steps before it as passed and this one as the cause.
    """

    identity: Identity | None
    why: str = ""
    notable: bool = False
    check: Check | None = None


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


class _Warnings:
    """At most one WARNING a minute per interface and reason: a typo must show up in the log, and an
    attacker's garbage cookies must not flood it."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._last: dict[str, float] = {}

    def __call__(self, reading: Reading) -> None:
        if not reading.notable:
            return
        now = time.monotonic()
        last = self._last.get(reading.why)
        if last is not None and now - last < WARN_EVERY_SECONDS:
            return
        if len(self._last) > 64:
            self._last.clear()
        self._last[reading.why] = now
        if reading.identity is None:
            log.warning("%s: %s; the request counts as nobody logged in", self.label, reading.why)
        else:
            log.warning("%s: %s", self.label, reading.why)


def _roles(value: Any) -> frozenset[str]:
    """A session's roles: one string or a list of them; anything else is no role at all."""
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list | tuple):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


def _session_value(value: Any, what: str) -> str | None:
    """A session's user id: None or "" means nobody; a value of another type fails closed."""
    if value is None or value == "":
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise UnusableIdentity(f"{what} holds a {type(value).__name__}, not a user id")


def _from_session(
    session: dict[Any, Any], key: str, sid_key: str | None, roles_key: str | None, what: str
) -> Reading:
    """The identity in a decoded session mapping (Starlette's cookie, ``scope["session"]``)."""
    user_id = _session_value(session.get(key), f"{what} key {key!r}")
    if user_id is None:
        if not session:
            return Reading(None, f"{what} is empty", check="key")
        # Key names are fine to log, values are not: a typo in `key` shows here at once.
        return Reading(
            None, f"{what} holds no {key!r} (its keys: {_keys(session)})", notable=True, check="key"
        )
    sid = _session_value(session.get(sid_key), f"{what} key {sid_key!r}") if sid_key else None
    roles = _roles(session.get(roles_key)) if roles_key else frozenset()
    identity = as_identity(Identity(user_id, sid, roles))
    if sid_key and sid is None:
        # Logged in, but the proof cannot be bound to the login: a typo in session_id_key quietly
        # undoes "logging out of the shop ends the proof".
        return Reading(
            identity,
            f"{what} holds a user but no session_id_key {sid_key!r} (its keys: {_keys(session)}): "
            "proofs are not bound to the login",
            notable=True,
        )
    return Reading(identity, f"{what} holds user {user_id!r}")


def _keys(session: dict[Any, Any]) -> str:
    return ", ".join(sorted(str(k) for k in session)[:20])


class SessionKeyResolver:
    """``from: session``: a key of ``scope["session"]`` (the middleware sits inside the shop's stack)."""

    def __init__(
        self,
        key: str,
        session_id_key: str | None = None,
        roles_key: str | None = None,
        *,
        label: str = "identity",
    ) -> None:
        self.key = key
        self.session_id_key = session_id_key
        self.roles_key = roles_key
        self._warn = _Warnings(label)

    def __call__(self, scope: Scope) -> Identity | None:
        reading = self.read(scope)
        self._warn(reading)
        return reading.identity

    def read(self, scope: Scope) -> Reading:
        session = scope.get("session")
        if session is None:
            raise IdentityUnreadable(
                'from: session, but the request has no scope["session"]: TwoFactorMiddleware must sit '
                "inside the shop's SessionMiddleware (wrap the app that SessionMiddleware wraps), or "
                "read the cookie from outside with from: starlette_session_cookie"
            )
        if not isinstance(session, dict):
            raise IdentityUnreadable(f'scope["session"] is a {type(session).__name__}, not a mapping')
        return _from_session(session, self.key, self.session_id_key, self.roles_key, 'scope["session"]')


class StarletteSessionCookieResolver:
    """``from: starlette_session_cookie``: reads a Starlette ``SessionMiddleware`` cookie from outside.

    Starlette signs ``base64(json(session))`` with ``itsdangerous.TimestampSigner(secret)`` and
    checks the cookie's text, encoded as UTF-8, after ``max_age``; this does exactly the same.
    ``max_age_seconds=None`` (the default) checks no age: the shop's own middleware judges that,
    and a stricter age here could only read a session the shop still honours as "nobody".
    Decoded cookies are remembered for a while, so a returning browser is not decoded again.
    """

    CACHE_SECONDS = 3600.0
    CHECKS: tuple[Check, ...] = ("cookie", "signature", "age", "session", "key")

    def __init__(
        self,
        cookie_name: str,
        secret_key: str,
        key: str,
        session_id_key: str | None = None,
        max_age_seconds: int | None = None,
        *,
        clock: Callable[[], float],
        roles_key: str | None = None,
        cache_size: int = 10_000,
        label: str = "identity",
    ) -> None:
        self.cookie_name = cookie_name
        self.key = key
        self.session_id_key = session_id_key
        self.roles_key = roles_key
        self.max_age = max_age_seconds
        self._signer = ClockedTimestampSigner(secret_key, clock=clock)
        self._clock = clock
        self._cache: dict[str, tuple[Reading, float]] = {}
        self._cache_size = cache_size
        self._warn = _Warnings(label)

    def __call__(self, scope: Scope) -> Identity | None:
        value = cookie(scope, self.cookie_name)
        if value is None:
            return None
        now = self._clock()
        hit = self._cache.get(value)
        if hit is not None and now < hit[1]:
            return hit[0].identity
        reading, expires = self._decode(value, now)
        self._warn(reading)
        if expires > now:
            if len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]
            self._cache[value] = (reading, expires)
        return reading.identity

    def read(self, scope: Scope) -> Reading:
        value = cookie(scope, self.cookie_name)
        if value is None:
            return Reading(None, f"no cookie {self.cookie_name!r}", check="cookie")
        return self._decode(value, self._clock())[0]

    def _decode(self, value: str, now: float) -> tuple[Reading, float]:
        what = f"the cookie {self.cookie_name!r}"
        # Starlette: connection.cookies[name].encode("utf-8"). Any other encoding can read a cookie
        # the shop accepts as invalid, and an invalid session is "nobody" to us: a bypass.
        data = value.encode("utf-8")
        if not data:
            return Reading(None, f"{what} is empty", check="cookie"), 0.0
        try:
            payload, timestamp = self._signer.unsign(data, max_age=self.max_age, return_timestamp=True)
        except SignatureExpired:
            return Reading(
                None, f"{what} is older than identity.max_age_seconds", notable=True, check="age"
            ), 0.0
        except BadSignature:
            return Reading(
                None,
                f"{what} is present but its signature does not match identity.secret_key "
                "(a different or rotated secret?)",
                notable=True,
                check="signature",
            ), 0.0
        try:
            session = json.loads(b64decode(payload))
        except ValueError:
            # The shop's SessionMiddleware raises on this too: it answers 500, never a page.
            why = f"{what} is signed but does not hold a JSON session"
            return Reading(None, why, notable=True, check="session"), 0.0
        if not isinstance(session, dict):
            why = f"{what} is signed but does not hold a mapping"
            return Reading(None, why, notable=True, check="session"), 0.0
        limit = timestamp.timestamp() + self.max_age if self.max_age is not None else now + self.CACHE_SECONDS
        return _from_session(session, self.key, self.session_id_key, self.roles_key, what), limit


class ScopeUserResolver:
    """``from: scope_user``: ``scope["user"]`` set by an authentication middleware, when authenticated.

    ``require`` names attributes of the user that must all be true (``[is_staff]``): anybody else
    is not a user of this interface, and reads as nobody.
    """

    def __init__(self, attribute: str = "identity", require: Sequence[str] = (), *, label: str = "identity"):
        self.attribute = attribute
        self.require = tuple(require)
        self._warn = _Warnings(label)

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

    def __init__(self, header_name: str, trusted_proxies: Sequence[Network], *, label: str = "identity"):
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


def build_resolver(
    settings: IdentitySettings,
    *,
    trusted_proxies: Sequence[Network],
    where: str,
) -> Resolver:
    """The resolver an interface's ``identity`` section asks for; ``where`` labels its log lines."""
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
            )
        case ScopeUserSource():
            return ScopeUserResolver(settings.attribute, settings.require, label=where)
        case HeaderSource():
            return HeaderResolver(settings.header, trusted_proxies, label=where)
        case CallableSource():
            return CallableResolver(
                import_callable(settings.callable_path, f"{where}.path"), blocking=settings.blocking
            )
