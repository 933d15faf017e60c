"""The ASGI entry point: find the interface, the user and their proof; let them in or send them to
the challenge. See the request flow in DESIGN.md.

A request with a valid proof costs a path match, the shop's identity (cached), one cached HMAC
check and dictionary look-ups for the user's generation and the logins the shop signed out: no
database query while the revocation cache is warm, no template, no provider call.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .asgi import HostilePath, canonical_path, cookie, header, inside, is_https, simple_path
from .errors import StoreUnavailable
from .identity import Identity, Resolver, as_identity, build_resolver
from .pages import SECURITY_HEADERS, UNAVAILABLE, Pages
from .proof import CLOCK_SKEW_SECONDS, Proof, ProofCodec, session_digest
from .service import Revocations, TwoFactor
from .settings import InterfaceSettings, Settings, load_settings

log = logging.getLogger("tfa_middleware")
SCOPE_KEY = "tfa_middleware"  # what the app finds in its scope after we let a request through
_GENERATION_CACHE_SIZE = 100_000
_ROUTE_CACHE_SIZE = 4096
_ROUTE_CACHE_MAX_PATH = 1024


@dataclass(frozen=True, slots=True)
class _Interface:
    settings: InterfaceSettings
    prefix: str
    pages_path: str
    exempt_exact: frozenset[str]
    exempt_folders: tuple[str, ...]
    codec: ProofCodec
    resolver: Resolver
    resolver_is_async: bool
    cookie_http: str
    cookie_https: str

    def exempt(self, path: str) -> bool:
        return path in self.exempt_exact or any(inside(path, folder) for folder in self.exempt_folders)


class TwoFactorMiddleware:
    """Puts a second factor in front of the interfaces configured in ``settings``::

        app = TwoFactorMiddleware(shop_app, load_settings("config.yaml"))
        # or, in one line:
        app = TwoFactorMiddleware.from_yaml(shop_app, "config.yaml")

    Pass ``service`` to share one :class:`TwoFactor` with the shop's own code, ``resolvers`` to
    replace an interface's identity resolver in code, and ``clock`` in tests.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        *,
        service: TwoFactor | None = None,
        resolvers: Mapping[str, Resolver] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.settings = settings
        self.clock = clock
        self.service = service or TwoFactor.from_settings(settings, clock=clock)
        self._revocation_seconds = settings.revocation_check_seconds
        self._generations: dict[tuple[str, str], tuple[Revocations, float]] = {}
        # What a path means (which interface, exempt or not) depends on the path alone: each
        # distinct path is worked out once. Bounded, and only short paths are remembered, so a
        # flood of made-up paths evicts entries but never grows it.
        self._routes: dict[str, tuple[_Interface | None, str]] = {}
        interfaces = []
        for name, iface in settings.interfaces.items():
            if not iface.enabled:
                continue  # a disabled interface is simply absent: its paths fall to a wider one, if any
            if iface.on_missing_phone == "skip":
                log.warning(
                    "interfaces.%s.on_missing_phone is 'skip': users without a phone get in "
                    "with the password alone",
                    name,
                )
            resolver = (resolvers or {}).get(name) or build_resolver(
                iface.identity,
                trusted_proxies=settings.trusted_proxies,
                where=f"interfaces.{name}.identity",
            )
            interfaces.append(
                _Interface(
                    settings=iface,
                    prefix=iface.path_prefix,
                    pages_path=iface.pages_path,
                    exempt_exact=frozenset(e.rstrip("/") for e in iface.exempt if not e.endswith("/")),
                    exempt_folders=tuple(e.rstrip("/") for e in iface.exempt if e.endswith("/")),
                    codec=ProofCodec(name, settings.secret_keys, iface.proof_max_age_seconds),
                    resolver=resolver,
                    resolver_is_async=inspect.iscoroutinefunction(resolver)
                    or inspect.iscoroutinefunction(type(resolver).__call__),
                    cookie_http=iface.proof_cookie,
                    cookie_https=f"__Host-{iface.proof_cookie}",
                )
            )
        # Longest prefix first, so /admin/vendor wins over /admin.
        self._interfaces = tuple(sorted(interfaces, key=lambda i: len(i.prefix), reverse=True))
        self.pages = Pages(settings, self.service, {i.settings.name: i.codec for i in interfaces}, clock)

    @classmethod
    def from_yaml(cls, app: ASGIApp, path: str | os.PathLike[str], **kwargs: object) -> TwoFactorMiddleware:
        return cls(app, load_settings(path), **kwargs)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        route = self._routes.get(scope["path"])
        if route is None:
            try:
                route = self._route(scope["path"])
            except HostilePath:
                await self._bad_path(scope, receive, send)
                return
        iface, path = route
        if iface is None:
            await self.app(scope, receive, send)
            return

        try:
            result = iface.resolver(scope)
            identity = as_identity(await result if iface.resolver_is_async else result)  # type: ignore[misc]
        except Exception:
            # Somebody may be logged in and we cannot tell who: nobody passes.
            log.exception("identity resolver of interface %s failed", iface.settings.name)
            await self._unavailable(scope, receive, send)
            return

        in_pages = inside(path, iface.pages_path)
        if identity is None and not in_pages:
            await self.app(scope, receive, send)  # the shop handles its own login
            return

        now = self.clock()
        try:
            proof = await self._valid_proof(iface, scope, identity, now) if identity else None
        except StoreUnavailable as exc:
            log.error("cannot check revocation for %s: %s", iface.settings.name, exc)
            await self._unavailable(scope, receive, send)
            return

        if in_pages:
            if scope["type"] != "http":
                await self._close_websocket(receive, send)
                return
            await self.pages(scope, receive, send, iface.settings, identity, proof)
            return
        if proof is not None:
            scope[SCOPE_KEY] = proof
            await self.app(scope, receive, send)
            return
        assert identity is not None
        if iface.settings.on_missing_phone == "skip" and await self._unenrolled(iface, identity):
            await self.app(scope, receive, send)
            return
        await self._challenge(iface, scope, receive, send)

    def _route(self, raw: str) -> tuple[_Interface | None, str]:
        """The interface that protects ``raw`` (None: unprotected or exempt) and its canonical form."""
        literal = simple_path(raw)
        path = _canonical(raw, literal)
        # Match both readings: a lenient router resolves "..", a strict one (Starlette) does not,
        # so /admin/files/../../x must be protected although it names /x.
        iface = self._match(path) or (self._match(literal) if literal != path else None)
        if iface is not None and iface.exempt(path) and (literal is path or iface.exempt(literal)):
            iface = None
        if len(raw) <= _ROUTE_CACHE_MAX_PATH:
            if len(self._routes) >= _ROUTE_CACHE_SIZE:
                del self._routes[next(iter(self._routes))]
            self._routes[raw] = (iface, path)
        return iface, path

    def _match(self, path: str) -> _Interface | None:
        for iface in self._interfaces:
            if inside(path, iface.prefix):
                return iface
        return None

    async def _valid_proof(
        self, iface: _Interface, scope: Scope, identity: Identity, now: float
    ) -> Proof | None:
        value = cookie(scope, iface.cookie_https if is_https(scope) else iface.cookie_http)
        if not value:
            return None
        proof = iface.codec.read(value, now)
        if (
            proof is None
            or proof.user_id != identity.user_id
            or proof.session_digest != session_digest(identity.session_id)
        ):
            return None
        key = (iface.settings.name, identity.user_id)
        # The usual case needs no await: the user's revocations are in the cache and fresh.
        current = self._cached_generation(key, proof.generation, now)
        if current is None:
            current = await self._generation(key, now)
        if proof.generation != current.generation:
            return None
        if proof.session_digest and current.sessions:
            # That login was signed out by the shop: its proofs from before then are void. A
            # clock a little ahead on the host that issued the proof must not save it.
            revoked_at = current.sessions.get(proof.session_digest)
            if revoked_at is not None and proof.issued_at <= revoked_at + CLOCK_SKEW_SECONDS:
                return None
        return proof

    def _cached_generation(self, key: tuple[str, str], claimed: int, now: float) -> Revocations | None:
        """The cached revocations (generation and signed-out logins) while younger than
        revocation_check_seconds, else None.

        A cookie claiming a newer generation than the cache knows (just verified, perhaps on
        another worker) gets None too, so the database is asked at once instead of refusing it.
        """
        cached = self._generations.get(key)
        if (
            cached is not None
            and claimed <= cached[0].generation
            and now - cached[1] < self._revocation_seconds
        ):
            return cached[0]
        return None

    async def _generation(self, key: tuple[str, str], now: float) -> Revocations:
        """The user's current revocations from the database (one query), remembered for the cache."""
        interface, user_id = key
        cached = self._generations.get(key)
        try:
            current = await self.service.revocations(interface, user_id)
        except StoreUnavailable:
            if cached is None:
                raise
            # Proofs stay stateless while the database is away: the last revocations we saw hold.
            log.warning("database unavailable; using the cached generation for %s/%s", interface, user_id)
            return cached[0]
        if len(self._generations) >= _GENERATION_CACHE_SIZE:
            del self._generations[next(iter(self._generations))]
        self._generations[key] = (current, now)
        return current

    async def _unenrolled(self, iface: _Interface, identity: Identity) -> bool:
        try:
            status = await self.service.status(iface.settings.name, identity.user_id)
        except StoreUnavailable:
            return False  # unknown: challenge (and the pages will say the service is unavailable)
        return status.state == "none"

    async def _challenge(self, iface: _Interface, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._close_websocket(receive, send)
            return
        if scope["method"] in ("GET", "HEAD"):
            query = scope.get("query_string", b"").decode("latin-1")
            target = scope["path"] + (f"?{query}" if query else "")
        else:
            target = iface.prefix  # a POST cannot be replayed by a redirect
        url = f"{iface.pages_path}/challenge?next={quote(target, safe='')}"
        response: Response
        if _wants_json(scope):
            body = {"error": "second_factor_required", "challenge_url": url}
            response = Response(json.dumps(body), status_code=401, media_type="application/json")
        else:
            response = RedirectResponse(url, status_code=303)
        response.headers.update(SECURITY_HEADERS)
        await response(scope, receive, send)

    async def _unavailable(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._close_websocket(receive, send, code=1011)
            return
        html = (
            "<!doctype html><meta charset=utf-8><title>Temporarily unavailable</title>"
            f"<h1>Temporarily unavailable</h1><p>{UNAVAILABLE}</p>"
        )
        response = Response(html, status_code=503, media_type="text/html")
        response.headers.update(SECURITY_HEADERS)
        response.headers["Retry-After"] = "30"
        await response(scope, receive, send)

    async def _bad_path(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._close_websocket(receive, send)
            return
        response = Response("Bad request: the path is encoded too many times.", status_code=400)
        response.headers.update(SECURITY_HEADERS)
        await response(scope, receive, send)

    @staticmethod
    async def _close_websocket(receive: Receive, send: Send, code: int = 1008) -> None:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close", "code": code, "reason": "second factor required"})


def _canonical(path: str, literal: str) -> str:
    # Most paths are plain; only those that could hide something pay for the full canonical form.
    if "%" in path or "\\" in path or "//" in path or "/." in path:
        return canonical_path(path)
    return literal


def _wants_json(scope: Scope) -> bool:
    if header(scope, b"x-requested-with") == "XMLHttpRequest":
        return True
    accept = header(scope, b"accept")
    return accept is not None and "text/html" not in accept
