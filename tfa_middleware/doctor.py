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
from typing import TYPE_CHECKING, Literal

from sqlalchemy.engine import make_url
from starlette.requests import cookie_parser
from starlette.types import Scope

from .asgi import canonical_path, in_networks, inside
from .errors import ConfigError, IdentityUnreadable, StoreUnavailable
from .identity import (
    CallableResolver,
    HeaderResolver,
    Identity,
    Reading,
    ScopeUserResolver,
    SessionKeyResolver,
    StarletteSessionCookieResolver,
    build_resolver,
    import_callable,
)
from .identity.django import DjangoSessionResolver, setup_for_command_line
from .identity.flask import FlaskSessionResolver
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

if TYPE_CHECKING:  # PyJWT is an extra: the module is imported only for a from: jwt interface
    from .identity.tokens import JwtResolver

Outcome = Literal["user", "nobody", "broken", "blind"]  # blind: cannot be seen from outside the shop
OK, NO, NOT_GIVEN = "  [ok] ", "  [NO] ", "  [--] "
STOP = "\0"  # the mark of the step that stopped a reading: NO, or NOT_GIVEN when that is no failure


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
            _cookie_steps(resolver, reading, sent, say)
        elif isinstance(iface.identity, JwtSource):
            jwt_resolver: JwtResolver = resolver  # type: ignore[assignment]
            reading = jwt_resolver.read(scope)
            _jwt_steps(jwt_resolver, reading, say)
        elif isinstance(resolver, HeaderResolver) and isinstance(iface.identity, HeaderSource):
            name, peer = iface.identity.header, scope["client"][0]
            if in_networks(peer, settings.trusted_proxies):
                say(f"{OK}the peer {peer} (--peer) is in trusted_proxies: it may set {name}")
            else:
                say(f"  the peer {peer} (--peer) is not in trusted_proxies: {name} from it fails closed")
            reading = resolver.read(scope)
            say((OK if reading.identity else STOP) + reading.why)
        elif isinstance(resolver, DjangoSessionResolver):
            reading = await _django_steps(resolver, scope, say)
        elif isinstance(resolver, CallableResolver) and isinstance(iface.identity, CallableSource):
            kind = "async: awaited" if resolver.is_async else "sync: run in a worker thread"
            say(f"{OK}imported {iface.identity.callable_path} ({kind}); called with this request:")
            reading = await resolver.read(scope)
            say((OK if reading.identity else STOP) + reading.why)
        else:
            assert isinstance(resolver, SessionKeyResolver | ScopeUserResolver)
            return _blind(resolver, scope, say), None
    except IdentityUnreadable as exc:
        say(f"{NO}{exc}\n  (the middleware answers such a request with an error page and logs this)")
        return "broken", None
    except Exception as exc:  # the shop's callable: whatever it raises, the middleware answers 503
        say(f"{NO}raised {type(exc).__name__}: {str(exc)[:200]}\n  (the middleware answers 503 and logs it)")
        return "broken", None
    return ("user" if reading.identity else "nobody"), reading.identity


async def _django_steps(resolver: DjangoSessionResolver, scope: Scope, say: Callable[[str], None]) -> Reading:
    """Django's own code reads the session: the cookie, then what Django's get_user says."""
    bound = "" if resolver.binds else " (signed cookies: the proof is not bound to the login)"
    say(f"{OK}Django is set up: SESSION_ENGINE {resolver.engine}{bound}")
    key = resolver.session_key(scope)
    if not key:
        name = resolver.cookie_name
        say(f"{STOP}the browser sent no cookie {name!r} (identity.cookie, or Django's SESSION_COOKIE_NAME)")
        return Reading(None, "no session cookie", check="cookie")
    say(f"{OK}the browser sent the cookie {resolver.cookie_name!r}")
    reading = await resolver.read(scope)
    say((OK if reading.identity else STOP) + reading.why)
    return reading


def _blind(
    resolver: SessionKeyResolver | ScopeUserResolver, scope: Scope, say: Callable[[str], None]
) -> Outcome:
    """``session`` and ``scope_user`` read what the shop's own middleware puts in the scope."""
    key = "session" if isinstance(resolver, SessionKeyResolver) else "user"
    say(f'  doctor runs outside the shop and cannot see scope["{key}"]: log in and check that the challenge')
    say("  appears. Without the shop's middleware around it, the resolver says:")
    try:
        resolver.read(scope)
    except IdentityUnreadable as exc:
        say(f"  {exc}")
    return "blind"


def _cookie_steps(
    resolver: StarletteSessionCookieResolver | FlaskSessionResolver,
    reading: Reading,
    sent: list[str],
    say: Callable[[str], None],
) -> None:
    """The cookie's checks in order: the passed ones, then the one that stopped the reading."""
    name, key, age = resolver.cookie_name, resolver.key, resolver.max_age
    flask = isinstance(resolver, FlaskSessionResolver)
    key_setting = "identity.user_key" if flask else "identity.key"
    secret = "the shop's SECRET_KEY (or one of SECRET_KEY_FALLBACKS)" if flask else (
        "the secret_key of the shop's SessionMiddleware"
    )
    too_old = "give the shop's PERMANENT_SESSION_LIFETIME" if flask else "remove max_age_seconds"
    cookie_setting = "SESSION_COOKIE_NAME" if flask else "SessionMiddleware session_cookie"
    empty = "the session holds no user" if flask else "the session is empty"
    passed = {
        "cookie": f"the browser sent the cookie {name!r} (identity.cookie)",
        "signature": "its signature matches identity.secret_key",
        "age": f"it is younger than identity.max_age_seconds ({age} s)"
        if age is not None
        else "no age limit (identity.max_age_seconds: null): the shop's own middleware judges the age",
        "session": "it holds a session",
        "key": f"the session holds {key_setting} {key!r}",
    }
    failed = {
        "cookie": f"{reading.why}: it holds no session"
        if name in sent
        else f"the browser sent no cookie {name!r} (it sent {', '.join(sent)}): is identity.cookie the "
        f"shop's session cookie name ({cookie_setting})?"
        if sent
        else f"no cookie {name!r} (no --cookie given)",
        "signature": "its signature does not match identity.secret_key -- a different or rotated secret? "
        f"It must be {secret}",
        "age": f"it is older than identity.max_age_seconds ({age} s), so the middleware reads it as "
        f"nobody while the shop may still honour it: {too_old}",
        "session": f"{reading.why}: is it the shop's {'Flask' if flask else 'Starlette'} session cookie?",
        "key": f"{reading.why}: is {key_setting} the session key in which the shop keeps the user id?"
        if reading.notable
        else f"{empty}: nobody is logged in in this browser (log in to the shop first)",
    }
    for check in resolver.CHECKS:
        if check == reading.check:
            say(STOP + failed[check])
            return
        say(OK + passed[check])
    sid = resolver.session_id_key
    if reading.identity is not None and sid:
        bound = reading.identity.session_id is not None
        say(
            f"{OK}it holds identity.session_id_key {sid!r}: the proof is bound to this login"
            if bound
            else f"  it holds no identity.session_id_key {sid!r}: the proof is not bound to this login"
        )


def _jwt_steps(resolver: JwtResolver, reading: Reading, say: Callable[[str], None]) -> None:
    """The token's checks in order, as for a session cookie; a claim that cannot be used is raised
    (UnusableIdentity) and said by the caller."""
    where = resolver.source
    passed = {
        "cookie": f"the request carries {where}",
        "signature": f"its signature verifies ({', '.join(resolver.algorithms)})",
        "age": "it has not expired (exp), and is already valid (nbf, iat)",
        "session": "its audience, issuer and required claims match identity.audience and identity.issuer",
        "key": f"it names a user in identity.claim {resolver.claim!r}",
    }
    hints = {
        "cookie": f"{reading.why}: is identity.cookie the shop's token cookie (fastapi-users: "
        "fastapiusersauth)?",
        "signature": f"{reading.why}: identity.secret (or public_key) must be the one the shop signs with",
        "age": f"{reading.why}: log in to the shop again (or check this machine's clock)",
        "session": f"{reading.why}: check identity.audience and identity.issuer against the shop's tokens",
        "key": reading.why,
    }
    for check in resolver.CHECKS:
        if check == reading.check:
            say(STOP + hints[check])
            return
        say(OK + passed[check])
    claim = resolver.session_claim
    if claim and reading.identity is not None:
        bound = reading.identity.session_id is not None
        say(
            f"{OK}it holds identity.session_claim {claim!r}: the proof is bound to this login"
            if bound
            else f"  it holds no identity.session_claim {claim!r}: the proof is not bound to this login"
        )


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
        who = f"user {identity.user_id} of {iface.name}"
        unknown = f"{who} would be challenged, or asked to enroll"
        if self.missing is not None:
            return f"{unknown} (the database file {self.missing} does not exist yet)"
        if self.store is None:
            self.store = Store(self.url, auto_migrate=False, pool=self.pool)
        try:
            row = await enrollment_rows.get(self.store, iface.name, identity.user_id)
        except StoreUnavailable as exc:
            return f"{unknown} (cannot read the database: {exc})"
        if row is None or not (row.phone or row.pending_phone):
            if iface.on_missing_phone == "skip":
                return f"{who} has no second factor yet: gets in with the password alone (on_missing_phone)"
            return f"{who} has no second factor yet: would be asked to enroll"
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


def import_problems(settings: Settings) -> list[str]:
    """Every ``from: callable`` path and ``on_event`` that cannot be imported, by key path."""
    targets = [
        (f"interfaces.{i.name}.identity.path", i.identity.callable_path)
        for i in settings.interfaces.values()
        if i.enabled and isinstance(i.identity, CallableSource)
    ]
    if settings.on_event:
        targets.append(("on_event", settings.on_event))
    problems: list[str] = []
    for where, target in targets:
        try:
            import_callable(str(target), where)
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
