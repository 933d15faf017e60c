"""How ``tfa-middleware doctor`` tells a resolver's reading step by step: each check that passed,
then the one that stopped it, with the setting to look at (a session cookie's, a JWT's, Django's),
and what cannot be seen from outside the shop (``session``, ``scope_user``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from starlette.types import Scope

from .errors import IdentityUnreadable
from .identity import Reading, ScopeUserResolver, SessionKeyResolver, StarletteSessionCookieResolver
from .identity.django import DjangoSessionResolver
from .identity.flask import FlaskSessionResolver

if TYPE_CHECKING:  # PyJWT is an extra: the module is imported only for a from: jwt interface
    from .identity.tokens import JwtResolver

Outcome = Literal["user", "nobody", "broken", "blind"]  # blind: cannot be seen from outside the shop
OK, NO, NOT_GIVEN = "  [ok] ", "  [NO] ", "  [--] "
STOP = "\0"  # the mark of the step that stopped a reading: NO, or NOT_GIVEN when that is no failure


async def django_steps(resolver: DjangoSessionResolver, scope: Scope, say: Callable[[str], None]) -> Reading:
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


def blind(
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


def cookie_steps(
    resolver: StarletteSessionCookieResolver | FlaskSessionResolver,
    reading: Reading,
    sent: list[str],
    say: Callable[[str], None],
) -> None:
    """The cookie's checks in order: the passed ones, then the one that stopped the reading."""
    name, key, age = resolver.cookie_name, resolver.key, resolver.max_age
    flask = isinstance(resolver, FlaskSessionResolver)
    key_setting = "identity.user_key" if flask else "identity.key"
    secret = (
        "the shop's SECRET_KEY (or one of SECRET_KEY_FALLBACKS)"
        if flask
        else ("the secret_key of the shop's SessionMiddleware")
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


def jwt_steps(resolver: JwtResolver, reading: Reading, say: Callable[[str], None]) -> None:
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
