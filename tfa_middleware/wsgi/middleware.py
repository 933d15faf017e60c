"""The WSGI entry point: the ASGI middleware's journey (ARCHITECTURE.md) in front of a WSGI app.

The same settings, interfaces, routes, resolvers, proof check and pages as
:class:`~tfa_middleware.TwoFactorMiddleware`. The hot path (the route, the identity, a valid proof
whose user's revocations are cached) runs in the WSGI call itself, in the server's thread, with no
event loop: ``Router``, ``ProofCheck`` and the resolvers are synchronous there. A sync ``from:
callable`` resolver runs right here too (the server's thread may block: no worker-thread hop as
under ASGI); an async one runs on the loop below.

What is asynchronous (the pages, the database look-up of revocations that are not cached, the
shop's logout, ``on_missing_phone: skip``) runs on ONE event loop per process, in a background
thread started on first need (``loop.py``), so that it survives gunicorn's fork. The request's
thread waits for it; the pages answer small, whole pages, so their answer is collected on the loop
and returned as one body.

Why not a2wsgi's ``ASGIMiddleware`` for the pages: it starts its loop thread when it is built (in
gunicorn's master with ``--preload``: dead in the workers) unless handed a loop, builds a scope of
its own from the environ (the pages need the one our resolvers read, and the identity and proof
worked out here), and streams the body through events with a thread hop per message; a page
answer is a few kilobytes. Running one coroutine with ``run_coroutine_threadsafe`` on our own lazily
started loop is a few lines (``loop.py``) and needs no dependency.

``SCRIPT_NAME`` is the application's root, as ``root_path`` is under ASGI: the prefixes are
relative to it, the redirects and the pages' links carry it.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any
from urllib.parse import quote
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from starlette.types import Receive, Scope, Send

from ..asgi import is_https
from ..errors import HostilePath, IdentityUnreadable, StoreUnavailable
from ..guard import ErrorLog
from ..identity import CallableResolver, Identity, Resolver, ResolverResult, as_identity
from ..logout import cannot_tell, revoke_login
from ..pages import SECURITY_HEADERS, Pages
from ..policy import StepUp, step_up_url
from ..probes import Probes
from ..proof import Proof, proof_clear_cookie
from ..proof_check import ProofCheck
from ..responses import (
    BAD_PATH_TEXT,
    MISCONFIGURED,
    REFUSAL_PAGES,
    TEMPORARILY_UNAVAILABLE,
    challenge_json,
    challenge_url,
    wants_json,
)
from ..rollout_check import RolloutCheck
from ..routes import Interface, Route, Router, build_interfaces
from ..service import TwoFactor
from ..session_end import Reissued, SessionEnds, same_login, set_cookies_wsgi
from ..settings import Settings, load_settings
from .environ import (
    ENVIRON_KEY,
    EnvironCookies,
    complete,
    http_scope,
    light_scope,
    read_body,
    refuse,
    respond,
    text,
)
from .guard import ExcInfo, Write, clearing_cookies, unidentified
from .loop import LoopThread, collect

log = logging.getLogger("tfa_middleware")
_SECURITY = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]
_LOCATION_SAFE = ":/%#?=@[]!$&'()*+,;"  # what Starlette's RedirectResponse leaves unquoted, as ASGI sends it


class TwoFactorWSGIMiddleware:
    """Puts a second factor in front of the interfaces of a WSGI app (Flask, Django, …)::

        app = TwoFactorWSGIMiddleware.from_yaml(flask_app.wsgi_app, "tfa.yaml")  # or the app itself

    Exactly one of ``settings`` (the middleware builds its own service) or ``service`` (a
    ``TwoFactor`` the shop's code shares). The app finds the verified proof with
    ``tfa_middleware.second_factor(request)`` (a Werkzeug/Flask or Django request, or the environ).
    ``run(coroutine)`` runs one of the service's coroutines on the middleware's loop, for a WSGI
    shop's own calls (``run(tfa.sign_out(...))``); ``close()`` closes a service built here.
    """

    def __init__(
        self,
        app: WSGIApplication,
        settings: Settings | None = None,
        *,
        service: TwoFactor | None = None,
        resolvers: Mapping[str, Resolver] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if (settings is None) == (service is None):
            raise TypeError(
                "TwoFactorWSGIMiddleware takes exactly one of settings= or service= "
                f"(got {'both' if service is not None else 'neither'})"
            )
        if service is not None:
            settings = service.settings
        assert settings is not None
        clock = clock or (service.clock if service is not None else time.time)
        self.owns_service = service is None
        self.app = app
        self.settings = settings
        self.clock = clock
        self.service = service or TwoFactor.from_settings(settings, clock=clock)
        self.loop = LoopThread(on_fork=self._forked)
        self._cookies = EnvironCookies()  # the Cookie header read from the environ: no headers built
        self._proofs = ProofCheck(self.service, self._cookies, settings.revocation_check_seconds)
        self._valid_proof = self._proofs.check
        self._errors = ErrorLog()
        self._rollout = RolloutCheck(self.service)
        interfaces = [self._here(i) for i in build_interfaces(settings, resolvers, self._cookies)]
        self._router = Router(interfaces)
        self._routes = self._router.cached
        self._interfaces = self._router.interfaces
        codecs = {i.settings.name: i.codec for i in interfaces}
        # A shop answer deleting the cookie a resolver reads ends that interface's proof too.
        self._ends = SessionEnds(interfaces, self._cookies)
        self._watching = bool(self._ends.watched)
        self.pages = Pages(settings, self.service, codecs, clock)
        self._probes = Probes(settings, self.service)  # the metrics and readiness paths
        self._probe_paths = self._probes.paths

    @classmethod
    def from_yaml(
        cls,
        app: WSGIApplication,
        path: str | os.PathLike[str],
        *,
        resolvers: Mapping[str, Resolver] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> TwoFactorWSGIMiddleware:
        """The middleware with a service of its own, built from a YAML file."""
        return cls(app, load_settings(path), resolvers=resolvers, clock=clock)

    def run(self, awaitable: Any) -> Any:
        """Run a coroutine (the service's) on this process's loop and return its result."""
        return self.loop.run(awaitable)

    def close(self) -> None:
        """Close the service built here (one passed in is the shop's), then stop the loop."""
        if self.owns_service:
            self.loop.run(self.service.close())
        self.loop.stop()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raw = environ.get("PATH_INFO") or "/"
        if not raw.isascii():
            raw = text(raw)  # as the shop reads it; and never a cache key of another reading
        route = self._routes.get(raw) or self._route(raw)
        if not isinstance(route, tuple):
            return route(environ, start_response)  # answered here: a hostile path, or ours
        iface, path, logouts, in_pages, step = route
        if iface is None:
            if logouts or self._watching:
                return self._unprotected(logouts, environ, start_response)
            return self.app(environ, start_response)

        root = environ.get("SCRIPT_NAME", "")
        if not root.isascii():  # "" is ASCII
            root = text(root)
        scope = light_scope(environ, raw, root) if iface.light_scope else http_scope(environ, raw, root)
        try:
            result = iface.resolver(scope)
            identity = as_identity(self.loop.run(result) if iface.resolver_is_async else result)  # type: ignore[arg-type]
        except Exception as exc:
            return self._resolver_failed(iface, exc, environ, start_response)

        if identity is None and not in_pages:
            return unidentified(self.app, iface.settings, self._errors, raw, environ, start_response)

        now = self.clock()
        try:
            checked = self._valid_proof(iface, scope, identity, now)
            proof = checked if checked is None or isinstance(checked, Proof) else self.loop.run(checked)
        except StoreUnavailable as exc:
            log.error("cannot check revocation for %s: %s", iface.settings.name, exc)
            return self._unavailable(environ, start_response)

        if in_pages:
            return self._pages(iface, identity, proof, path, root, scope, environ, start_response)
        if proof is not None:
            stopped = step and self._step_up(
                iface, proof, step, now, raw, root, scope, environ, start_response
            )
            if stopped:
                return stopped
            environ[ENVIRON_KEY] = proof
            watched = iface.session_cookie is not None  # the shop may log out here: watch its answer
            go = self._watch(environ, start_response, scope, iface, identity) if watched else start_response
            return self.app(environ, go)
        assert identity is not None
        return self._without_proof(iface, identity, raw, root, scope, environ, start_response)

    def _here(self, iface: Interface) -> Interface:
        """The interface with a resolver fit for the server's thread: a sync ``from: callable``
        function is called directly (this thread may block), and so is Django's session read
        (``in_this_thread``); an async one stays async (the loop). A built-in resolver that reads
        only the headers gets the light scope."""
        resolver = iface.resolver
        light = getattr(resolver, "READS_HEADERS_ONLY", False) is True
        here = getattr(resolver, "in_this_thread", None)
        if callable(here):
            return replace(iface, resolver=here, resolver_is_async=False, light_scope=light)
        if not isinstance(resolver, CallableResolver) or resolver.is_async:
            return replace(iface, light_scope=light) if light else iface
        func = resolver.func
        run = self.run

        def in_this_thread(scope: Scope) -> ResolverResult:
            result = func(scope)
            return run(result) if inspect.isawaitable(result) else result  # type: ignore[no-any-return]

        return _replace(iface, in_this_thread)

    def _identify(self, iface: Interface, scope: Scope) -> Identity | None:
        result = iface.resolver(scope)
        return as_identity(self.loop.run(result) if iface.resolver_is_async else result)  # type: ignore[arg-type]

    def _resolver_failed(
        self, iface: Interface, exc: Exception, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        name = iface.settings.name
        if isinstance(exc, IdentityUnreadable):
            message = "identity resolver of interface %s cannot tell who is logged in: %s"
            self._errors(name, "resolver", message, name, exc)
            page = REFUSAL_PAGES.html(MISCONFIGURED, environ.get("HTTP_ACCEPT_LANGUAGE"))
            return refuse(start_response, environ, 500, page)
        log.error("identity resolver of interface %s failed", name, exc_info=exc)
        return self._unavailable(environ, start_response)

    @staticmethod
    def _unavailable(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        page = REFUSAL_PAGES.html(TEMPORARILY_UNAVAILABLE, environ.get("HTTP_ACCEPT_LANGUAGE"))
        return refuse(start_response, environ, 503, page, retry_after=30)

    def _shop_logout(
        self, ifaces: tuple[Interface, ...], environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """The shop's logout: passed to the shop; its answer clears the proof cookies, and the
        proofs of the login it ends are revoked (as ``logout.py`` does under ASGI)."""
        scope = http_scope(
            environ, text(environ.get("PATH_INFO") or "/"), text(environ.get("SCRIPT_NAME", ""))
        )
        https = is_https(scope)
        for iface in ifaces:
            try:
                identity = self._identify(iface, scope)
            except Exception as exc:
                cannot_tell(iface, exc)
                continue
            if identity is not None and identity.session_id is not None:
                self.loop.run(revoke_login(self.service, self._proofs.forget, iface, identity))
        clear = [proof_clear_cookie(i.proof_cookie(https), https) for i in ifaces]
        return self.app(environ, clearing_cookies(start_response, clear))

    def _unprotected(
        self, logouts: tuple[Interface, ...], environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """A path no interface protects: the shop's ``logout_url``, or (the shop's logout may
        live here) the shop's answer watched when the request carries a watched proof cookie."""
        if logouts:
            return self._shop_logout(logouts, environ, start_response)
        if self._ends.carried_text(environ.get("HTTP_COOKIE")):
            return self.app(environ, self._watch(environ, start_response, None, None, None))
        return self.app(environ, start_response)

    def _watch(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        scope: Scope | None,
        iface: Interface | None,
        identity: Identity | None,
    ) -> StartResponse:
        """``start_response`` for a request carrying a watched proof cookie: only an answer
        setting a cookie is read further (:meth:`_ended`). One closure, nothing else, per request."""
        ended = self._ended

        def start(status: str, headers: list[tuple[str, str]], exc_info: ExcInfo = None) -> Write:
            for key, _ in headers:
                if len(key) == 10 and key.lower() == "set-cookie":
                    headers = ended(headers, environ, scope, iface, identity)
                    break
            return start_response(status, headers, exc_info)

        return start

    def _ended(
        self,
        headers: list[tuple[str, str]],
        environ: WSGIEnvironment,
        scope: Scope | None,
        iface: Interface | None,
        identity: Identity | None,
    ) -> list[tuple[str, str]]:
        """The shop's headers, with the proof cookies of the sessions they delete cleared (and
        those logins' proofs revoked, as ``logout.py`` does under ASGI)."""
        here = scope or http_scope(
            environ, text(environ.get("PATH_INFO") or "/"), text(environ.get("SCRIPT_NAME", ""))
        )
        found, reissued = self._ends.ended(set_cookies_wsgi(headers), here, self.clock())
        found += [new.end for new in reissued if self._ends_login(new)]
        for end in found:
            if end.proof is None:
                continue
            known = identity if end.iface is iface else None
            try:
                known = known or self._identify(end.iface, here)
            except Exception as exc:
                cannot_tell(end.iface, exc)
                continue
            if same_login(end.proof, known):
                self.loop.run(revoke_login(self.service, self._proofs.forget, end.iface, known))
        return [*headers, *(("Set-Cookie", end.clear) for end in found)]

    def _ends_login(self, new: Reissued) -> bool:
        """Whether the session cookie the shop writes anew holds anybody but the proof's user."""
        try:
            identity = self._identify(new.end.iface, new.scope)
        except Exception:
            return True  # a cookie the resolver cannot read holds no login it can vouch for
        return identity is None or identity.user_id != new.user_id

    def _pages(
        self,
        iface: Interface,
        identity: Identity | None,
        proof: Proof | None,
        path: str,
        root: str,
        scope: Scope,
        environ: WSGIEnvironment,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        complete(scope)
        body = read_body(environ, self.settings.max_form_bytes) if scope["method"] == "POST" else b""

        def call(receive: Receive, send: Send) -> Any:
            return self.pages(scope, receive, send, iface.settings, identity, proof, path=path, root=root)

        answer = self.loop.run(collect(call, body))
        return respond(start_response, environ, answer.status, answer.headers, bytes(answer.body))

    def _route(self, raw: str) -> Route | WSGIApplication:
        """A path not in the route cache: routed (and remembered), or the answer that is not the
        shop's: a hostile path's 400, or our metrics or readiness path (never cached as a route:
        no other request pays for looking)."""
        if raw in self._probe_paths:
            return partial(self._probe, raw)
        try:
            return self._router.route(raw)
        except HostilePath:
            return lambda environ, start: refuse(start, environ, 400, BAD_PATH_TEXT, content_type=None)

    def _probe(self, raw: str, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        root = environ.get("SCRIPT_NAME", "")
        scope = http_scope(environ, raw, root if root.isascii() else text(root))

        def call(receive: Receive, send: Send) -> Any:
            return self._probes(raw, scope, receive, send)

        answer = self.loop.run(collect(call, b""))
        return respond(start_response, environ, answer.status, answer.headers, bytes(answer.body))

    def _without_proof(
        self,
        iface: Interface,
        identity: Identity,
        relative: str,
        root: str,
        scope: Scope,
        environ: WSGIEnvironment,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        """Somebody logged in without a valid proof: the challenge (or, for a user without a phone
        on an interface with ``on_missing_phone: skip``, the app; in report mode, the app, the
        user recorded once a day)."""
        if iface.settings.mode == "report":
            self.loop.run(self._rollout.report(iface.settings.name, identity.user_id, None, self.clock()))
            return self.app(environ, start_response)
        if iface.settings.on_missing_phone == "skip" and self._unenrolled(iface, identity):
            return self.app(environ, start_response)
        complete(scope)
        url = challenge_url(scope, relative, root, iface.prefix, iface.pages_path)
        return self._challenge(url, scope, environ, start_response)

    def _step_up(
        self,
        iface: Interface,
        proof: Proof,
        step: StepUp,
        now: float,
        relative: str,
        root: str,
        scope: Scope,
        environ: WSGIEnvironment,
        start_response: StartResponse,
    ) -> Iterable[bytes] | None:
        """A path a step-up rule holds (as the ASGI middleware's ``_stepped_back``): None when the
        request goes on, else the answer (the re-check, or 503)."""
        method = environ.get("REQUEST_METHOD") or "GET"
        try:
            verdict = self._rollout.step_up(iface.settings, proof, step, method, now)
            if verdict if isinstance(verdict, bool) else self.loop.run(verdict):
                return None
        except StoreUnavailable as exc:
            log.error("cannot record a step-up on %s: %s", iface.settings.name, exc)
            return self._unavailable(environ, start_response)
        complete(scope)
        url = step_up_url(scope, relative, root, iface.prefix, iface.pages_path)
        return self._challenge(url, scope, environ, start_response)

    def _challenge(
        self, url: str, scope: Scope, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """To ``url``: a navigation by 303 (a POST is never replayed), fetch/XHR by 401 JSON."""
        if wants_json(scope):
            body = challenge_json(url)
            headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
            return respond(start_response, environ, 401, [*headers, *_SECURITY], body)
        location = quote(url, safe=_LOCATION_SAFE).encode("latin-1")
        headers = [(b"content-length", b"0"), (b"location", location)]
        return respond(start_response, environ, 303, [*headers, *_SECURITY], b"")

    def _unenrolled(self, iface: Interface, identity: Identity) -> bool:
        try:
            status = self.loop.run(self.service.status(iface.settings.name, identity.user_id))
        except StoreUnavailable:
            return False  # unknown: challenge (and the pages will say the service is unavailable)
        return status.state == "none" and not status.factors  # an app is a second factor too

    def _forked(self) -> None:
        """In a forked worker: the database connections the parent's loop opened are not ours."""
        self.service.store.engine.sync_engine.dispose(close=False)


def _replace(iface: Interface, resolver: Resolver) -> Interface:
    return replace(iface, resolver=resolver, resolver_is_async=False)
