"""``tfa-middleware doctor``: what the middleware makes of a logged-in browser, in plain words.

The guard withholds a protected page that the shop serves to "nobody" (issue 12: never open by
mistake), but the shop owner still has to learn *why* the middleware sees nobody. doctor builds the
request such a browser sends (its Cookie header, ``--header`` lines, the peer address) and asks
each enabled interface's own resolver through ``read``, the same code the middleware runs, so the
explanation cannot drift from what happens at a request. Then it lists settings that look wrong.

It names cookies and session keys, never a value or a secret. Exit status: 0 nothing is wrong,
1 a callable cannot be imported or the request given could not be read as a user.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url
from starlette.requests import cookie_parser
from starlette.types import Scope

from .asgi import canonical_path, in_networks, inside, simple_path
from .doctor_steps import NO, NOT_GIVEN, OK, STOP, Outcome, blind, cookie_steps, django_steps, jwt_steps
from .errors import ConfigError, IdentityUnreadable, StoreUnavailable
from .identity import (
    CallableResolver,
    HeaderResolver,
    Identity,
    ScopeUserResolver,
    SessionKeyResolver,
    StarletteSessionCookieResolver,
    build_resolver,
    import_callable,
)
from .identity.django import DjangoSessionResolver, setup_for_command_line
from .identity.flask import FlaskSessionResolver
from .policy import StepUpRules
from .settings import (
    CallableSource,
    DjangoSessionSource,
    HeaderSource,
    InterfaceSettings,
    JwtSource,
    Settings,
    StarletteSessionCookieSource,
)
from .store import Store
from .store import enrollments as enrollment_rows
from .store import policy as policy_rows

if TYPE_CHECKING:  # PyJWT is an extra: the module is imported only for a from: jwt interface
    from .identity.tokens import JwtResolver


async def doctor(
    settings: Settings, *, cookie: str | None, headers: Sequence[tuple[str, str]], path: str | None, peer: str
) -> int:
    """Print the diagnosis of one request and the settings' warnings; the exit status."""
    given = bool(cookie or headers)
    ifaces = [i for i in settings.interfaces.values() if i.enabled]
    if path is not None:
        chosen = _protecting(ifaces, path)
        if chosen is None:
            print(f"No interface protects {path}: the middleware passes it to the shop untouched.")
            return 2
        ifaces = [chosen]
    sent = sorted(cookie_parser(cookie)) if cookie else []
    print(f"The request: from {peer}, " + (f"cookies {', '.join(sent)}" if sent else "no cookies"), end="")
    print("".join(f", header {name}" for name, _ in headers) + " (values are never printed).")
    results = []
    for iface in ifaces:
        lines = [
            f"\ninterfaces.{iface.name}: {path or iface.path_prefix}, identity from: {iface.identity.source}"
        ]
        if path is not None and _exempt(iface, canonical_path(path)):
            lines.append(f"  {path} is exempt: the shop answers it without a second factor; read anyway:")
        elif path is not None and (step := _step_up(iface, path)):
            lines.append(f"  {path} is held by step_up: {step}")
        scope = _scope(path or iface.path_prefix, cookie, headers, peer)
        results.append((iface, lines, *await _examine(settings, iface, scope, sent, lines.append)))
    outcomes = [outcome for _, _, outcome, _ in results]
    # A browser logged in to one interface is nobody on the others: that is no failure there.
    stop = NO if given and "user" not in outcomes else NOT_GIVEN
    enrollments = _Enrollments(settings)
    try:
        for iface, lines, outcome, identity in results:
            print("\n".join(line.replace(STOP, stop) for line in lines))
            if identity is not None:
                print("  => " + await enrollments.describe(iface, identity))
            elif outcome == "nobody":
                print(
                    f"  => nobody logged in for {iface.name}: the shop's answer is guarded (unidentified: "
                    f"{iface.unidentified})" + ("" if given else "; give what a logged-in browser sends")
                )
    finally:
        await enrollments.close()
    warnings = setting_warnings(settings)
    if warnings:
        print("\nWarnings:\n" + "\n".join(f"  - {line}" for line in warnings))
    seen = [o for o in outcomes if o != "blind"]
    if "broken" in outcomes or (given and seen and "user" not in seen):
        print("\nSomething is wrong: see the [NO] lines above.")
        return 1
    print("\nNothing is wrong" + (" with this request; the warnings are worth a look." if warnings else "."))
    return 0


async def _examine(
    settings: Settings, iface: InterfaceSettings, scope: Scope, sent: list[str], say: Callable[[str], None]
) -> tuple[Outcome, Identity | None]:
    """Runs the interface's resolver on ``scope`` and explains it, line by line, to ``say``."""
    where = f"interfaces.{iface.name}.identity"
    try:
        if isinstance(iface.identity, DjangoSessionSource):
            setup_for_command_line(where)
        resolver = build_resolver(iface.identity, trusted_proxies=settings.trusted_proxies, where=where)
    except ConfigError as exc:  # a callable imported here, or Django set up
        for problem in exc.problems:
            say(f"{NO}{problem}")
        return "broken", None
    try:
        if isinstance(resolver, StarletteSessionCookieResolver | FlaskSessionResolver):
            reading = resolver.read(scope)
            cookie_steps(resolver, reading, sent, say)
        elif isinstance(iface.identity, JwtSource):
            jwt_resolver: JwtResolver = resolver  # type: ignore[assignment]
            reading = jwt_resolver.read(scope)
            jwt_steps(jwt_resolver, reading, say)
        elif isinstance(resolver, HeaderResolver) and isinstance(iface.identity, HeaderSource):
            name, peer = iface.identity.header, scope["client"][0]
            if in_networks(peer, settings.trusted_proxies):
                say(f"{OK}the peer {peer} (--peer) is in trusted_proxies: it may set {name}")
            else:
                say(f"  the peer {peer} (--peer) is not in trusted_proxies: {name} from it fails closed")
            reading = resolver.read(scope)
            say((OK if reading.identity else STOP) + reading.why)
        elif isinstance(resolver, DjangoSessionResolver):
            reading = await django_steps(resolver, scope, say)
        elif isinstance(resolver, CallableResolver) and isinstance(iface.identity, CallableSource):
            kind = "async: awaited" if resolver.is_async else "sync: run in a worker thread"
            say(f"{OK}imported {iface.identity.callable_path} ({kind}); called with this request:")
            reading = await resolver.read(scope)
            say((OK if reading.identity else STOP) + reading.why)
        else:
            assert isinstance(resolver, SessionKeyResolver | ScopeUserResolver)
            return blind(resolver, scope, say), None
    except IdentityUnreadable as exc:
        say(f"{NO}{exc}\n  (the middleware answers such a request with an error page and logs this)")
        return "broken", None
    except Exception as exc:  # the shop's callable: whatever it raises, the middleware answers 503
        say(f"{NO}raised {type(exc).__name__}: {str(exc)[:200]}\n  (the middleware answers 503 and logs it)")
        return "broken", None
    return ("user" if reading.identity else "nobody"), reading.identity


class _Enrollments:
    """The user's second-factor state, read from the database without changing it; a database that
    cannot be read is said and the diagnosis carries on."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.database_url.reveal()
        self.pool = settings.database_pool
        self.store: Store | None = None
        url = make_url(self.url)
        database = url.database or ""
        # A diagnosis must not create the SQLite file that the middleware makes at its first start.
        sqlite_file = url.get_backend_name() == "sqlite" and database not in ("", ":memory:")
        self.missing = database if sqlite_file and not Path(database).exists() else None

    async def describe(self, iface: InterfaceSettings, identity: Identity) -> str:
        found = await self._describe(iface, identity)
        if iface.mode == "report":
            return f"{found}; but interfaces.{iface.name}.mode is report: nobody is stopped, it is recorded"
        return found

    async def _describe(self, iface: InterfaceSettings, identity: Identity) -> str:
        who = f"user {identity.user_id} of {iface.name}"
        unknown = f"{who} would be challenged, or asked to enroll"
        if self.missing is not None:
            return f"{unknown} (the database file {self.missing} does not exist yet)"
        if self.store is None:
            self.store = Store(self.url, auto_migrate=False, pool=self.pool)
        try:
            row = await enrollment_rows.get(self.store, iface.name, identity.user_id)
            exemption = await policy_rows.active(self.store, iface.name, identity.user_id, time.time())
        except StoreUnavailable as exc:
            return f"{unknown} (cannot read the database: {exc})"
        if exemption is not None:
            until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(exemption.until))
            return f"{who} is exempt until {until} ({exemption.reason}): gets in without a code"
        if row is None or not (row.phone or row.pending_phone):
            if iface.on_missing_phone == "skip":
                return f"{who} has no second factor yet: gets in with the password alone (on_missing_phone)"
            grace = " (enroll_grace lets them skip it for now)" if iface.enroll_grace else ""
            return f"{who} has no second factor yet: would be asked to enroll{grace}"
        if row.require_enrollment or not row.phone:
            return f"{who} would be asked to enroll (to confirm a phone with a code)"
        if row.locked_until > time.time():
            return f"{who} would be challenged; locked after wrong codes (tfa-middleware users unlock)"
        return f"{who} would be challenged"

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()


def setting_warnings(settings: Settings) -> list[str]:
    """Settings that are valid but look wrong, each with its key path."""
    out: list[str] = []
    for iface in (i for i in settings.interfaces.values() if i.enabled):
        at = f"interfaces.{iface.name}"
        if iface.unidentified == "warn":
            out.append(
                f"{at}.unidentified: warn gives up the safety net: when the identity settings do not "
                "match the shop's login, protected pages are served without a second factor"
            )
        if (
            isinstance(iface.identity, StarletteSessionCookieSource)
            and iface.identity.max_age_seconds is not None
        ):
            out.append(
                f"{at}.identity.max_age_seconds is set: an age stricter than the shop's own can only "
                "read sessions the shop still honours as nobody; leave it null"
            )
        if not iface.exempt and iface.path_prefix != "/":
            out.append(
                f"{at}.exempt is empty: if the shop's login page is under {iface.path_prefix}, exempt "
                "it, or the guard withholds it as a protected page served to nobody"
            )
        if iface.logout_url is None:
            out.append(f"{at}.logout_url is not set: our pages offer no way out{_logout_seen(iface)}")
        if iface.on_missing_phone == "skip":
            out.append(f"{at}.on_missing_phone: skip lets users without a phone in with the password alone")
        out += _policy_warnings(iface, at)
        if iface.identity.source == "header" and any(map(_loopback, settings.trusted_proxies)):
            out.append(
                f"trusted_proxies trusts this machine to set {at}.identity's header. uvicorn "
                "(--proxy-headers, on by default) and gunicorn replace the peer address with the "
                "X-Forwarded-For one when the peer is in --forwarded-allow-ips / forwarded_allow_ips "
                "(default 127.0.0.1): a local proxy's requests then come from the browser's address "
                "and fail closed, and with --forwarded-allow-ips '*' anybody who reaches the server "
                "can claim 127.0.0.1. Run the server with --no-proxy-headers (the middleware reads "
                "X-Forwarded-For from trusted_proxies itself) and let only the proxy reach it"
            )
    if not settings.provider.production_mode:
        out.append(
            "provider.production_mode: false: no text message is sent; codes only go to the outbox "
            "(tfa-middleware outbox --config FILE)"
        )
    return out


def _policy_warnings(iface: InterfaceSettings, at: str) -> list[str]:
    """Issue 17's settings that are valid but worth a second look."""
    out = []
    if iface.mode == "report":
        out.append(
            f"{at}.mode: report stops nobody: who would be stopped is recorded "
            f"(tfa-middleware report --interface {iface.name}); set enforce when they are ready"
        )
    ends = iface.enroll_grace.ends_at if iface.enroll_grace else None
    if ends is not None and ends <= time.time():
        out.append(f"{at}.enroll_grace.until is past: the grace is over, enrollment is required")
    for i, rule in enumerate(iface.step_up):
        if rule.max_age_seconds == 0 and (rule.methods is None or "GET" in rule.methods):
            out.append(
                f"{at}.step_up[{i}]: max_age_seconds 0 on GET asks for a code at every page view under "
                f"{rule.path} (its images and scripts too, if the shop serves them there)"
            )
    return out


def _step_up(iface: InterfaceSettings, path: str) -> str:
    """What the step-up rules ask of a request to ``path`` ("" for nothing)."""
    step = StepUpRules.of(iface.step_up).on(canonical_path(path), simple_path(path))
    if step is None:
        return ""
    asks = [f"{method} a code at most {age} s old" for method, age in sorted(step.ages.items())]
    if step.other is not None:
        asks.append(f"{'any other method' if asks else 'every method'}: a code at most {step.other} s old")
    return "; ".join(asks).replace("at most 0 s old", "typed for this request")


def start_problems(settings: Settings) -> list[str]:
    """What would stop the server at start, by key path: each enabled interface's resolver built
    as the middleware builds it (a ``from: callable`` imported; the extra of ``flask_session``,
    ``jwt`` and ``django_session`` installed, a JWT public key loaded; Django set up from
    ``DJANGO_SETTINGS_MODULE`` as ``manage.py`` would, its apps checked), and ``on_event`` imported."""
    problems: list[str] = []
    for iface in settings.interfaces.values():
        if not iface.enabled:
            continue
        where = f"interfaces.{iface.name}.identity"
        try:
            if isinstance(iface.identity, DjangoSessionSource):
                setup_for_command_line(where)
            build_resolver(iface.identity, trusted_proxies=settings.trusted_proxies, where=where)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if settings.on_event:
        try:
            import_callable(str(settings.on_event), "on_event")
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems


def _scope(path: str, cookie: str | None, headers: Sequence[tuple[str, str]], peer: str) -> Scope:
    # A browser sends non-ASCII text as UTF-8; the resolvers read the bytes as the shop would.
    raw = [(b"cookie", cookie.encode())] if cookie else []
    raw += [(n.lower().encode("latin-1"), v.encode()) for n, v in headers]
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "root_path": "",
        "query_string": b"",
        "scheme": "http",
        "headers": raw,
        "client": (peer, 50000),
        "server": ("127.0.0.1", 80),
    }


def _protecting(ifaces: list[InterfaceSettings], path: str) -> InterfaceSettings | None:
    # Longest prefix wins, as in the middleware.
    found = [i for i in ifaces if inside(canonical_path(path), i.path_prefix)]
    return max(found, key=lambda i: len(i.path_prefix), default=None)


def _exempt(iface: InterfaceSettings, path: str) -> bool:
    return any(
        inside(path, e.rstrip("/")) if e.endswith("/") else path == e.rstrip("/") for e in iface.exempt
    )


def _loopback(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    return any(ipaddress.ip_address(a) in net for a in ("127.0.0.1", "::1"))


def _logout_seen(iface: InterfaceSettings) -> str:
    """Whether the shop's logout ends the proof without ``logout_url`` (a resolver reading a cookie)."""
    identity = iface.identity
    cookie = identity.source in ("starlette_session_cookie", "flask_session", "django_session") or (
        identity.source == "jwt" and getattr(identity, "cookie", None) is not None
    )
    if cookie:
        return " (the shop's logout still ends the proof: its answer deletes the cookie we read)"
    return ", and the shop's logout does not end this browser's proof cookie"
