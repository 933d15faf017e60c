"""The ASGI entry point: find the interface, the user and their proof; let them in or send them to
the challenge. See the request flow in ARCHITECTURE.md.

A request with a valid proof costs a path match, the shop's identity (cached), one cached HMAC
check and dictionary look-ups for the user's generation and the logins the shop signed out: no
database query while the revocation cache is warm, no template, no provider call.

Paths are matched relative to the application's root (``scope["root_path"]``: ``uvicorn
--root-path``, a Starlette ``Mount``), and the pages' links and redirects put the root back.

The parts the journey hands off live beside it: what a path means (``routes.py``), the guard on a
request in which nobody was identified (``guard.py``), the shop's logout (``logout.py``), the
lifespan that closes a service built here (``lifespan.py``) and the short refusals
(``responses.py``). Every cache here belongs to this instance (``cache.py``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping

from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .asgi import CookieParser
from .errors import HostilePath, IdentityUnreadable, StoreUnavailable
from .guard import ErrorLog, unidentified
from .identity import Identity, Resolver, as_identity
from .lifespan import lifespan
from .logout import ShopLogout, logout_watch
from .pages import SECURITY_HEADERS, Pages
from .policy import StepUp, step_up_url
from .probes import Probes
from .proof import Proof
from .proof_check import ProofCheck
from .responses import (
    BAD_PATH_TEXT,
    MISCONFIGURED,
    TEMPORARILY_UNAVAILABLE,
    challenge_json,
    challenge_url,
    close_websocket,
    refusal_html,
    refuse,
    wants_json,
)
from .rollout_check import RolloutCheck
from .routes import Interface, Route, Router, build_interfaces, relative, warn_unrouted
from .service import TwoFactor
from .session_end import SessionEnds
from .settings import Settings, load_settings

log = logging.getLogger("tfa_middleware")
SCOPE_KEY = "tfa_middleware"  # what the app finds in its scope after we let a request through


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
        # The shop's session cookie and our proof come from the same Cookie header: parsed once,
        # in a cache of this instance, which the cookie resolvers built here read through too.
        self._cookies = CookieParser()
        self._proofs = ProofCheck(self.service, self._cookies, settings.revocation_check_seconds)
        self._generations = self._proofs.generations
        self._valid_proof = self._proofs.check  # bound once: the hot path looks up one attribute
        self._errors = ErrorLog()
        self._rollout = RolloutCheck(self.service)
        interfaces = build_interfaces(settings, resolvers, self._cookies)
        self._router = Router(interfaces)
        self._routes = self._router.cached
        self._interfaces = self._router.interfaces
        warn_unrouted(app, interfaces)
        # A shop answer deleting the cookie a resolver reads ends that interface's proof too.
        self._ends = SessionEnds(interfaces, self._cookies)
        self._watching = bool(self._ends.watched)
        self._logout = ShopLogout(
            self.service, self._identify, self._proofs.forget, ends=self._ends, clock=clock
        )
        self.pages = Pages(settings, self.service, {i.settings.name: i.codec for i in interfaces}, clock)
        # The metrics and readiness paths (operations), outside every interface.
        self._probes = Probes(settings, self.service)
        self._probe_paths = self._probes.paths

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._not_http(scope, receive, send)
            return
        root = scope.get("root_path") or ""
        raw = relative(scope["path"], root) if root else scope["path"]
        route = self._routes.get(raw) or await self._route(raw, scope, receive, send)
        if route is None:
            return
        iface, path, logouts, in_pages, step = route
        if iface is None:
            if logouts:
                await self._logout(self.app, logouts, scope, receive, send)
                return
            if self._watching:
                # The shop's logout may live here. Cheaper to watch every answer (a closure; its
                # headers scanned for set-cookie) than to scan the request's headers first for a
                # proof cookie: the proof cookie is looked for only in an answer setting a cookie.
                send = logout_watch(self._logout, scope, send)
            await self.app(scope, receive, send)
            return

        # Inlined here rather than through _identify: the hot path saves a coroutine.
        try:
            result = iface.resolver(scope)
            identity = as_identity(await result if iface.resolver_is_async else result)  # type: ignore[misc]
        except Exception as exc:
            await self._resolver_failed(iface, exc, scope, receive, send)
            return

        if identity is None and not in_pages:
            await unidentified(self.app, iface.settings, self._errors, raw, scope, receive, send)
            return

        now = self.clock()
        try:
            checked = self._valid_proof(iface, scope, identity, now)
            proof = checked if checked is None or isinstance(checked, Proof) else await checked
        except StoreUnavailable as exc:
            log.error("cannot check revocation for %s: %s", iface.settings.name, exc)
            await self._unavailable(scope, receive, send)
            return

        if in_pages:
            await self._pages(iface, identity, proof, path, root, scope, receive, send)
            return
        if proof is not None:
            if step is not None and await self._stepped_back(
                iface, proof, step, now, raw, root, scope, receive, send
            ):
                return
            scope[SCOPE_KEY] = proof
            # A shop whose session cookie we read may log out here: its answer is watched.
            watch = iface.session_cookie is not None
            watched = logout_watch(self._logout, scope, send, iface, identity) if watch else send
            await self.app(scope, receive, watched)
            return
        assert identity is not None
        await self._without_proof(iface, identity, raw, root, scope, receive, send)

    async def _route(self, raw: str, scope: Scope, receive: Receive, send: Send) -> Route | None:
        """A path not in the route cache: routed (and remembered), or refused as hostile (None).
        Our metrics and readiness paths are answered here (None), never cached as routes: every
        request for them misses the cache, and no other request pays for looking."""
        if raw in self._probe_paths:
            await self._probes(raw, scope, receive, send)
            return None
        try:
            return self._router.route(raw)
        except HostilePath:
            await refuse(scope, receive, send, 400, BAD_PATH_TEXT, content_type=None)
            return None

    async def _not_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Step 1: the app's, untouched; but a lifespan closes the service built here at its end."""
        if scope["type"] == "lifespan" and self.owns_service:
            await lifespan(self.app, self.service.close, scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _resolver_failed(
        self, iface: Interface, exc: Exception, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Step 3 failed: nobody passes. IdentityUnreadable (somebody may be logged in and we
        cannot tell who) is a 500 and an ERROR a minute that says why; anything else a 503."""
        name = iface.settings.name
        if isinstance(exc, IdentityUnreadable):
            message = "identity resolver of interface %s cannot tell who is logged in: %s"
            self._errors(name, "resolver", message, name, exc)
            await refuse(scope, receive, send, 500, refusal_html(MISCONFIGURED, scope), close_code=1011)
            return
        log.error("identity resolver of interface %s failed", name, exc_info=exc)
        await self._unavailable(scope, receive, send)

    async def _identify(self, iface: Interface, scope: Scope) -> Identity | None:
        """The interface's resolver on this request (what __call__ does inline), for the logout."""
        result = iface.resolver(scope)
        return as_identity(await result if iface.resolver_is_async else result)  # type: ignore[misc]

    async def _pages(
        self,
        iface: Interface,
        identity: Identity | None,
        proof: Proof | None,
        path: str,
        root: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        if scope["type"] != "http":
            await close_websocket(receive, send)
            return
        await self.pages(scope, receive, send, iface.settings, identity, proof, path=path, root=root)

    async def _stepped_back(
        self,
        iface: Interface,
        proof: Proof,
        step: StepUp,
        now: float,
        raw: str,
        root: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> bool:
        """A path a step-up rule holds: False when the request goes on (the proof meets the rule
        for its method, or report mode), True when it was answered (the re-check, or 503)."""
        try:
            verdict = self._rollout.step_up(iface.settings, proof, step, scope.get("method") or "GET", now)
            if verdict if isinstance(verdict, bool) else await verdict:
                return False
        except StoreUnavailable as exc:
            log.error("cannot record a step-up on %s: %s", iface.settings.name, exc)
            await self._unavailable(scope, receive, send)
            return True
        await self._challenge(iface, scope, receive, send, raw, root, step_up=True)
        return True

    async def _without_proof(
        self,
        iface: Interface,
        identity: Identity,
        raw: str,
        root: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Somebody logged in without a valid proof: the challenge (or, for a user without a phone
        on an interface with ``on_missing_phone: skip``, the app; in report mode, the app, the
        user recorded once a day)."""
        if iface.settings.mode == "report":
            await self._rollout.report(iface.settings.name, identity.user_id, None, self.clock())
            await self.app(scope, receive, send)
            return
        if iface.settings.on_missing_phone == "skip" and await self._unenrolled(iface, identity):
            await self.app(scope, receive, send)
            return
        await self._challenge(iface, scope, receive, send, raw, root)

    async def _unenrolled(self, iface: Interface, identity: Identity) -> bool:
        try:
            status = await self.service.status(iface.settings.name, identity.user_id)
        except StoreUnavailable:
            return False  # unknown: challenge (and the pages will say the service is unavailable)
        return status.state == "none" and not status.factors  # an app is a second factor too

    @staticmethod
    async def _challenge(
        iface: Interface,
        scope: Scope,
        receive: Receive,
        send: Send,
        raw: str,
        root: str,
        *,
        step_up: bool = False,
    ) -> None:
        """To the challenge (a step-up's re-check): a navigation by 303 (a POST is never
        replayed), a fetch/XHR or API client by 401 with JSON, a websocket closed (1008)."""
        if scope["type"] == "websocket":
            await close_websocket(receive, send)
            return
        url = (step_up_url if step_up else challenge_url)(scope, raw, root, iface.prefix, iface.pages_path)
        response: Response
        if wants_json(scope):
            response = Response(challenge_json(url), status_code=401, media_type="application/json")
        else:
            response = RedirectResponse(url, status_code=303)
        response.headers.update(SECURITY_HEADERS)
        await response(scope, receive, send)

    @staticmethod
    async def _unavailable(scope: Scope, receive: Receive, send: Send) -> None:
        page = refusal_html(TEMPORARILY_UNAVAILABLE, scope)
        await refuse(scope, receive, send, 503, page, retry_after=30, close_code=1011)
