"""What a path means to the middleware: which interface protects it, or whose shop logout it is.

The interfaces are built once from the settings (the resolver, the proof codec, the exemptions,
precomputed); :class:`Router` answers per path and remembers the answer, because it depends on
the path alone. Paths are relative to the application's root (``scope["root_path"]``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp

from .app_routes import covers, route_paths
from .asgi import CookieParser, canonical_path, inside, simple_path
from .cache import BoundedCache
from .identity import Resolver, build_resolver
from .policy import NO_RULES, StepUp, StepUpRules
from .proof import ProofCodec, proof_cookie_name
from .settings import (
    DjangoSessionSource,
    FlaskSessionSource,
    IdentitySettings,
    InterfaceSettings,
    JwtSource,
    Settings,
    StarletteSessionCookieSource,
)

log = logging.getLogger("tfa_middleware")
ROUTE_CACHE_SIZE = 4096
ROUTE_CACHE_MAX_PATH = 1024
_COOKIE_SOURCES = (StarletteSessionCookieSource, FlaskSessionSource, DjangoSessionSource, JwtSource)


@dataclass(frozen=True, slots=True)
class Interface:
    """One enabled interface, ready for requests."""

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
    # The shop's cookie the resolver reads (session or JWT), when a resolver built from the YAML
    # reads one: a shop answer deleting it is a logout, and the proof cookie goes with it.
    session_cookie: str | None = None
    # The resolver reads only the request's headers: the WSGI middleware builds it a light scope.
    light_scope: bool = False
    step_up: StepUpRules = NO_RULES

    def exempt(self, path: str) -> bool:
        return path in self.exempt_exact or any(inside(path, folder) for folder in self.exempt_folders)

    def proof_cookie(self, https: bool) -> str:
        return self.cookie_https if https else self.cookie_http


Route = tuple[Interface | None, str, tuple[Interface, ...], bool, StepUp | None]
"""The interface protecting a path (None: unprotected or exempt), the path's canonical form, the
interfaces whose shop logout it is, whether it is one of the interface's own pages, and the
step-up rules that hold it (None: none, the usual case)."""


def build_interfaces(
    settings: Settings, resolvers: Mapping[str, Resolver] | None, cookies: CookieParser
) -> list[Interface]:
    """The enabled interfaces; a resolver built here reads cookies through ``cookies``, the
    middleware's parser (its cache of Cookie headers, shared with the proof cookie's read)."""
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
        if iface.mode == "report":
            log.warning(
                "interfaces.%s.mode is 'report': nobody is stopped there; who would be is recorded "
                "(tfa-middleware report --interface %s)",
                name,
                name,
            )
        custom = (resolvers or {}).get(name)
        resolver = custom or build_resolver(
            iface.identity,
            trusted_proxies=settings.trusted_proxies,
            where=f"interfaces.{name}.identity",
            cookies=cookies,
        )
        interfaces.append(
            Interface(
                settings=iface,
                prefix=iface.path_prefix,
                pages_path=iface.pages_path,
                exempt_exact=frozenset(e.rstrip("/") for e in iface.exempt if not e.endswith("/")),
                exempt_folders=tuple(e.rstrip("/") for e in iface.exempt if e.endswith("/")),
                codec=ProofCodec(name, settings.secret_keys, iface.proof_max_age_seconds),
                resolver=resolver,
                resolver_is_async=inspect.iscoroutinefunction(resolver)
                or inspect.iscoroutinefunction(type(resolver).__call__),
                cookie_http=proof_cookie_name(iface.proof_cookie, https=False),
                cookie_https=proof_cookie_name(iface.proof_cookie, https=True),
                logout_path=simple_path(iface.logout_url) if iface.logout_url else None,
                session_cookie=None if custom else session_cookie(iface.identity, resolver),
                step_up=StepUpRules.of(iface.step_up),
            )
        )
    return interfaces


def session_cookie(identity: IdentitySettings, resolver: Resolver) -> str | None:
    """The name of the shop's cookie a resolver built from ``identity`` reads, or None (a header,
    ``scope["user"]``, the shop's own function: their logout needs ``logout_url``)."""
    if not isinstance(identity, _COOKIE_SOURCES):
        return None
    name = getattr(resolver, "cookie_name", None)  # Django's: SESSION_COOKIE_NAME unless set
    return name if isinstance(name, str) and name else None


class Router:
    """The route of each path, worked out once per distinct path. The cache is bounded and only
    short paths are remembered, so a flood of made-up paths evicts entries but never grows it."""

    def __init__(self, interfaces: list[Interface]) -> None:
        # Longest prefix first, so /admin/vendor wins over /admin.
        self.interfaces = tuple(sorted(interfaces, key=lambda i: len(i.prefix), reverse=True))
        self._logouts: dict[str, tuple[Interface, ...]] = {}
        for i in interfaces:
            if i.logout_path:
                self._logouts[i.logout_path] = (*self._logouts.get(i.logout_path, ()), i)
        self._routes: BoundedCache[str, Route] = BoundedCache(ROUTE_CACHE_SIZE)
        self.cached = self._routes.mapping  # the hot path: routes.get(path), a plain dict look-up

    def route(self, raw: str) -> Route:
        """The route of ``raw`` (relative to the root), remembered. Raises HostilePath."""
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
        pages = iface is not None and inside(path, iface.pages_path)
        # A rule holds the path if it holds either reading, like the prefixes (the stricter wins).
        step = iface.step_up.on(path, literal) if iface is not None and not pages else None
        route = (iface, path, logouts, pages, step)
        if len(raw) <= ROUTE_CACHE_MAX_PATH:
            self._routes.put(raw, route)
        return route

    def _match(self, path: str) -> Interface | None:
        for iface in self.interfaces:
            if inside(path, iface.prefix):
                return iface
        return None


def relative(path: str, root: str) -> str:
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


def warn_unrouted(app: ASGIApp, interfaces: list[Interface]) -> None:
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
