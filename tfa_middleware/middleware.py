"""The ASGI entry point: find the interface, the user and their proof; let them in or send them to
the challenge. See the request flow in ARCHITECTURE.md.

A request with a valid proof costs a path match, the shop's identity (cached), one cached HMAC
check and dictionary look-ups for the user's generation and the logins the shop signed out: no
database query while the revocation cache is warm, no template, no provider call.

Paths are matched relative to the application's root (``scope["root_path"]``: ``uvicorn
--root-path``, a Starlette ``Mount``), and the pages' links and redirects put the root back.

The guard: when the resolver sees nobody on a protected path, the middleware cannot tell "nobody
is logged in" from "the identity settings do not match the shop". So it watches the shop's
answer: a 2xx there means the shop served a protected page to someone we could not identify, and
the page is withheld (``unidentified: block``, the default) or logged (``warn``).
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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .app_routes import covers, route_paths
from .asgi import canonical_path, cookie, header, inside, is_https, simple_path
from .errors import HostilePath, IdentityUnreadable, StoreUnavailable
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
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ERROR_EVERY_SECONDS = 60.0  # one log line a minute per interface and cause: visible, never a flood

BLOCKED_HTML = (
    "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
    "<title>This page can't be shown</title><h1>This page can't be shown</h1>"
    "<p>We could not confirm your sign-in for this page. Sign in again; if this keeps happening, "
    "please tell the shop.</p>"
)
MISCONFIGURED_HTML = (
    "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
    "<title>Sign-in check unavailable</title><h1>Sign-in check unavailable</h1>"
    "<p>This part of the shop is closed for now because its sign-in check is not set up right. "
    "The shop's staff can see why in their log. Please try again later.</p>"
)

# The app's last word in a lifespan: after these the server sends nothing more, so we close then.
_LIFESPAN_ENDS = frozenset(
    {"lifespan.startup.failed", "lifespan.shutdown.complete", "lifespan.shutdown.failed"}
)


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
    logout_path: str | None
    block_unsafe: bool  # unidentified: block also keeps unsafe methods from the shop

    def exempt(self, path: str) -> bool:
        return path in self.exempt_exact or any(inside(path, folder) for folder in self.exempt_folders)


class TwoFactorMiddleware:
    """Puts a second factor in front of the interfaces configured in the settings. Give it exactly
    one of ``settings`` or ``service``::

        app = TwoFactorMiddleware.from_yaml(shop_app, "tfa.yaml")      # builds and owns the service

        tfa = TwoFactor.from_yaml("tfa.yaml")                           # the shop's code calls it too
        app = TwoFactorMiddleware(shop_app, service=tfa)                # the shop closes it (tfa.lifespan)

    A service the middleware built itself is closed when the ASGI lifespan shuts down, after the
    app's own shutdown; a service passed in is the shop's to close. ``resolvers`` replaces an
    interface's identity resolver in code; ``clock`` (tests) defaults to the service's.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings | None = None,
        *,
        service: TwoFactor | None = None,
        resolvers: Mapping[str, Resolver] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if (settings is None) == (service is None):
            raise TypeError(
                "TwoFactorMiddleware takes exactly one of settings= or service= "
                f"(got {'both' if service is not None else 'neither'}): pass service=tfa to share a "
                "TwoFactor with the shop's code (its settings are used), or settings to let the "
                "middleware build and close its own"
            )
        if service is not None:
            settings = service.settings
        assert settings is not None
        clock = clock or (service.clock if service is not None else time.time)
        # Only a service built here is closed here: one passed in may outlive this middleware.
        self.owns_service = service is None
        self.app = app
        self.settings = settings
        self.clock = clock
        self.service = service or TwoFactor.from_settings(settings, clock=clock)
        self._revocation_seconds = settings.revocation_check_seconds
        self._generations: dict[tuple[str, str], tuple[Revocations, float]] = {}
        # What a path means (which interface, exempt or not) depends on the path alone: each
        # distinct path is worked out once. Bounded, and only short paths are remembered, so a
        # flood of made-up paths evicts entries but never grows it.
        self._routes: dict[str, _Route] = {}
        self._last_error: dict[tuple[str, str], float] = {}
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
                    logout_path=simple_path(iface.logout_url) if iface.logout_url else None,
                    block_unsafe=iface.unidentified == "block",
                )
            )
        # Longest prefix first, so /admin/vendor wins over /admin.
        self._interfaces = tuple(sorted(interfaces, key=lambda i: len(i.prefix), reverse=True))
        self._warn_unrouted(app, interfaces)
        self._logouts: dict[str, tuple[_Interface, ...]] = {}
        for i in interfaces:
            if i.logout_path:
                self._logouts[i.logout_path] = (*self._logouts.get(i.logout_path, ()), i)
        self.pages = Pages(settings, self.service, {i.settings.name: i.codec for i in interfaces}, clock)

    @staticmethod
    def _warn_unrouted(app: ASGIApp, interfaces: list[_Interface]) -> None:
        """A prefix that no route of the app can serve protects nothing: say so at start."""
        templates = route_paths(app)
        if not templates:
            return
        for iface in interfaces:
            if not covers(iface.prefix, templates):
                shown = ", ".join(sorted(set(templates))[:8])
                log.warning(
                    "interfaces.%s.path_prefix %r matches no route of the app (its routes: %s%s); "
                    "nothing is protected there. A typo, or an app mounted under a root path "
                    "(then the prefix is relative to where TwoFactorMiddleware sits)?",
                    iface.settings.name,
                    iface.prefix,
                    shown,
                    ", …" if len(set(templates)) > 8 else "",
                )

    @classmethod
    def from_yaml(
        cls,
        app: ASGIApp,
        path: str | os.PathLike[str],
        *,
        resolvers: Mapping[str, Resolver] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> TwoFactorMiddleware:
        """The middleware with a service of its own, built from a YAML file and closed at shutdown."""
        return cls(app, load_settings(path), resolvers=resolvers, clock=clock)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app's lifespan, passed through; the service we built is closed once the app has
        finished shutting down (or failed to start), before the server hears so and exits.

        An app that does not take part (it raises, or returns, before answering the startup, as
        uvicorn's ``lifespan: auto`` reads it) gets the lifespan answered for it, so the service
        is still closed at shutdown.
        """
        received: set[str] = set()
        answered: set[str] = set()

        async def app_receive() -> Message:
            message = await receive()
            received.add(message["type"])
            return message

        async def app_send(message: Message) -> None:
            if message["type"] in _LIFESPAN_ENDS:
                await self._close_service()
            answered.add(message["type"])
            await send(message)

        try:
            await self.app(scope, app_receive, app_send)
        except Exception as exc:
            if answered:
                raise  # the app runs the lifespan and failed in it: the server decides what follows
            # Not a failed startup: a framework's app answers lifespan.startup.failed before it raises.
            log.info("the app does not handle the ASGI lifespan (%r); the middleware answers it", exc)
        if answered:
            return
        if "lifespan.startup" not in received:
            await receive()
        if "lifespan.shutdown" not in received:
            await send({"type": "lifespan.startup.complete"})
            while (await receive())["type"] != "lifespan.shutdown":
                pass
        await self._close_service()
        await send({"type": "lifespan.shutdown.complete"})

    async def _close_service(self) -> None:
        try:
            await self.service.close()
        except Exception:
            # The server is shutting down either way; a failed close must not hide the app's answer.
            log.exception("closing the two-factor service at shutdown failed")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            if scope["type"] == "lifespan" and self.owns_service:
                await self._lifespan(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        raw = scope["path"]
        root = scope.get("root_path")
        if root:
            raw = _relative(raw, root)
        route = self._routes.get(raw)
        if route is None:
            try:
                route = self._route(raw)
            except HostilePath:
                await self._bad_path(scope, receive, send)
                return
        iface, path, logouts = route
        if iface is None:
            if logouts:
                await self._shop_logout(logouts, scope, receive, send)
                return
            await self.app(scope, receive, send)
            return

        try:
            result = iface.resolver(scope)
            identity = as_identity(await result if iface.resolver_is_async else result)  # type: ignore[misc]
        except IdentityUnreadable as exc:
            # Somebody may be logged in and we cannot tell who: nobody passes, and the log says why.
            self._error(
                iface,
                "resolver",
                "identity resolver of interface %s cannot tell who is logged in: %s",
                iface.settings.name,
                exc,
            )
            await self._misconfigured(scope, receive, send)
            return
        except Exception:
            log.exception("identity resolver of interface %s failed", iface.settings.name)
            await self._unavailable(scope, receive, send)
            return

        in_pages = inside(path, iface.pages_path)
        if identity is None and not in_pages:
            if iface.block_unsafe and scope["type"] == "http" and scope["method"] not in _SAFE_METHODS:
                # The guard can withhold an answer, not undo what the request did: a POST the shop
                # would accept from someone we cannot see must not reach it. Nobody logged in has
                # anything to post to a protected, non-exempt path (log-in forms are exempt).
                await _Guard.refuse(scope, send)
                return
            # The shop handles its own login; its answer is watched, because "nobody" may also
            # mean that the identity settings do not match the shop.
            await self.app(scope, receive, _Guard(self, iface, scope, raw, send))
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
            await self.pages(
                scope, receive, send, iface.settings, identity, proof, path=path, root=root or ""
            )
            return
        if proof is not None:
            scope[SCOPE_KEY] = proof
            await self.app(scope, receive, send)
            return
        assert identity is not None
        if iface.settings.on_missing_phone == "skip" and await self._unenrolled(iface, identity):
            await self.app(scope, receive, send)
            return
        await self._challenge(iface, scope, receive, send, raw, root or "")

    def _route(self, raw: str) -> _Route:
        """The interface that protects ``raw`` (None: unprotected or exempt), its canonical form,
        and the interfaces whose shop logout it is."""
        literal = simple_path(raw)
        path = _canonical(raw, literal)
        # Match both readings: a lenient router resolves "..", a strict one (Starlette) does not,
        # so /admin/files/../../x must be protected although it names /x.
        iface = self._match(path) or (self._match(literal) if literal != path else None)
        logouts = self._logouts.get(path, ()) if literal is path or literal in self._logouts else ()
        if logouts:
            iface = None  # the shop's logout is always open: nobody must need a code to leave
        elif iface is not None and iface.exempt(path) and (literal is path or iface.exempt(literal)):
            iface = None
        route = (iface, path, logouts)
        if len(raw) <= _ROUTE_CACHE_MAX_PATH:
            if len(self._routes) >= _ROUTE_CACHE_SIZE:
                del self._routes[next(iter(self._routes))]
            self._routes[raw] = route
        return route

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

    async def _challenge(
        self, iface: _Interface, scope: Scope, receive: Receive, send: Send, raw: str, root: str
    ) -> None:
        if scope["type"] == "websocket":
            await self._close_websocket(receive, send)
            return
        if scope["method"] in ("GET", "HEAD"):
            query = scope.get("query_string", b"").decode("latin-1")
            target = raw + (f"?{query}" if query else "")
        else:
            target = iface.prefix  # a POST cannot be replayed by a redirect
        # `next` is relative to the application's root, like every path in the settings.
        url = f"{root}{iface.pages_path}/challenge?next={quote(target, safe='')}"
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

    async def _misconfigured(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._close_websocket(receive, send, code=1011)
            return
        response = Response(MISCONFIGURED_HTML, status_code=500, media_type="text/html")
        response.headers.update(SECURITY_HEADERS)
        await response(scope, receive, send)

    def _error(self, iface: _Interface, cause: str, message: str, *args: object) -> None:
        """One ERROR line a minute per interface and cause; the rest would say the same."""
        key = (iface.settings.name, cause)
        now = time.monotonic()
        last = self._last_error.get(key)
        if last is not None and now - last < ERROR_EVERY_SECONDS:
            return
        self._last_error[key] = now
        log.error(message, *args)

    async def _shop_logout(
        self, ifaces: tuple[_Interface, ...], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """The shop's own logout: passed to the shop, and this browser's proofs end in its answer."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = is_https(scope)
        clear = [
            (
                f"{i.cookie_https}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=lax"
                if https
                else f"{i.cookie_http}=; Max-Age=0; Path=/; HttpOnly; SameSite=lax"
            ).encode("latin-1")
            for i in ifaces
        ]
        for iface in ifaces:
            await self._revoke_login(iface, scope)

        async def clearing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [*message.get("headers", ()), *((b"set-cookie", c) for c in clear)],
                }
            await send(message)

        await self.app(scope, receive, clearing_send)

    async def _revoke_login(self, iface: _Interface, scope: Scope) -> None:
        """Revoke the proofs bound to the login this logout ends, when the resolver can tell it."""
        try:
            result = iface.resolver(scope)
            identity = as_identity(await result if iface.resolver_is_async else result)  # type: ignore[misc]
        except Exception as exc:
            log.warning(
                "logout on %s: cannot tell who logs out (%s); their proof cookie is cleared only",
                iface.settings.name,
                type(exc).__name__,
            )
            return
        if identity is None or identity.session_id is None:
            return
        try:
            await self.service.sign_out(iface.settings.name, identity.user_id, identity.session_id)
        except StoreUnavailable as exc:
            log.error("logout on %s: cannot revoke the proofs of this login: %s", iface.settings.name, exc)
        self._generations.pop((iface.settings.name, identity.user_id), None)

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


_Route = tuple[_Interface | None, str, tuple[_Interface, ...]]


class _Guard:
    """The ``send`` given to the shop for a request on a protected path where the resolver saw
    nobody: a 2xx answer (or an accepted websocket) means the shop served someone we could not
    identify, so it is withheld and logged. Redirects, 304 and errors pass untouched."""

    __slots__ = ("blocked", "iface", "mw", "path", "scope", "send")

    def __init__(self, mw: TwoFactorMiddleware, iface: _Interface, scope: Scope, path: str, send: Send):
        self.mw, self.iface, self.scope, self.path, self.send = mw, iface, scope, path, send
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
        name = self.iface.settings.name
        block = self.iface.settings.unidentified == "block"
        self.mw._error(
            self.iface,
            "unidentified",
            "interface %s: the shop served %s %r (%s) to a request in which the identity resolver saw "
            "nobody logged in; %s. Either the path is public (add it to interfaces.%s.exempt, as a "
            "login page or static files must be) or the identity settings do not match the shop's "
            "login (run: tfa-middleware doctor --config FILE --cookie '...')",
            name,
            self.scope.get("method", "WEBSOCKET"),
            self.path,
            message.get("status", "accept"),
            "the answer was withheld" if block else "served anyway (unidentified: warn)",
            name,
        )
        if not block:
            await self.send(message)
            return
        self.blocked = True
        if kind.startswith("websocket."):
            await self.send({"type": "websocket.close", "code": 1008, "reason": "second factor required"})
            return
        await self.refuse(self.scope, self.send)

    @staticmethod
    async def refuse(scope: Scope, send: Send) -> None:
        """The plain page in place of the shop's answer: no detail of the configuration."""
        body = b"" if scope.get("method") == "HEAD" else BLOCKED_HTML.encode()
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(BLOCKED_HTML.encode())).encode()),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()),
        ]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _relative(path: str, root: str) -> str:
    """``path`` relative to the application's root: ASGI puts the root path in front of it."""
    root = root.rstrip("/")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path  # a server that left the root out of the path: the path is already relative


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
