"""``from: jwt``: the user the shop's JSON Web Token names, verified with PyJWT.

The token comes from a cookie (fastapi-users' ``CookieTransport``: ``fastapiusersauth``) or from
``Authorization: Bearer``, read as FastAPI reads them (Starlette's cookie parser; the first
Authorization header, its scheme before the first space). PyJWT checks the signature against the
algorithms listed (never ``none``, never one the settings do not list), ``exp`` (required),
``nbf``, ``iat``, and the audience and issuer when set, with the real clock, as the shop does.

Fail closed: a token that does not verify is "nobody" with a notable :class:`Reading` (one WARNING
a minute), so the middleware's guard withholds the shop's answer; a token that verifies but names
no usable user is :class:`~tfa_middleware.errors.UnusableIdentity`. Verified tokens are remembered
by their text until ``exp`` (plus the leeway) or ``CACHE_SECONDS``, whichever comes first: a
returning browser pays a dictionary look-up, not a signature check (``make bench`` measures both).

PyJWT is the ``jwt`` extra (``PyJWT[crypto]``); :func:`build_jwt_resolver` is imported only when an
interface uses ``from: jwt``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError
from jwt.warnings import InsecureKeyLengthWarning
from starlette.types import Scope

from ..asgi import CookieParser, header
from ..cache import BoundedCache
from ..errors import ConfigError, UnusableIdentity
from ..settings import JwtSource
from ..settings.jwt_source import HMAC, RSA
from .base import Check, Identity, Reading, Warnings, as_identity
from .sessions import _roles

log = logging.getLogger("tfa_middleware")

# What each of PyJWT's refusals means, for the operator; the step of the reading it stopped.
_REFUSALS: tuple[tuple[type[jwt.PyJWTError], Check, str], ...] = (
    (jwt.InvalidSignatureError, "signature", "its signature does not match the key (another, or rotated?)"),
    (jwt.InvalidAlgorithmError, "signature", "its algorithm is not in identity.algorithms ('none' never is)"),
    (jwt.InvalidKeyError, "signature", "the key cannot verify its algorithm"),
    (jwt.ExpiredSignatureError, "age", "it has expired (exp)"),
    (jwt.ImmatureSignatureError, "age", "it is not valid yet (nbf or iat in the future)"),
    (jwt.InvalidAudienceError, "session", "its audience (aud) is not identity.audience"),
    (jwt.InvalidIssuerError, "session", "its issuer (iss) is not identity.issuer"),
    (jwt.MissingRequiredClaimError, "session", "it lacks a required claim"),
    (InvalidSubjectError, "session", "its sub claim is not a string (RFC 7519; PyJWT refuses it)"),
    (InvalidJTIError, "session", "its jti claim is not a string (RFC 7519; PyJWT refuses it)"),
    (jwt.InvalidIssuedAtError, "session", "its iat claim is not a number"),
    (jwt.DecodeError, "session", "it is not a well-formed JWT"),
    (jwt.PyJWTError, "session", "PyJWT refuses it"),
)


def _refusal(exc: jwt.PyJWTError) -> tuple[Check, str]:
    for kind, check, why in _REFUSALS:
        if isinstance(exc, kind):
            if isinstance(exc, jwt.MissingRequiredClaimError):
                return check, f"it lacks the claim {exc.claim!r} (required)"
            return check, why
    return "session", "PyJWT refuses it"  # pragma: no cover - PyJWTError is the last row


def _claim(value: Any, what: str) -> str:
    """A user or session id from a verified token: a non-empty string or an integer."""
    if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
        return str(value)
    shown = "is empty" if value == "" else f"holds a {type(value).__name__}"
    raise UnusableIdentity(f"{what} {shown}, not an id")


class JwtResolver:
    """``from: jwt``: the user id in the ``claim`` of a verified token; ``session_claim`` (``jti``,
    ``sid``) binds the proof to one login.

    ``key`` is what PyJWT verifies with: the secret's bytes for HS*, a loaded public key otherwise.
    ``clock`` decides only how long a verified token is remembered; PyJWT judges ``exp`` and
    ``nbf`` by the real time, as the shop's own PyJWT does.
    """

    # Reads nothing of the request but its headers (and the scheme): the WSGI middleware gives it
    # the light scope (wsgi/environ.py), without the client and server it would never look at.
    READS_HEADERS_ONLY = True
    CACHE_SECONDS = 60.0
    CHECKS: tuple[Check, ...] = ("cookie", "signature", "age", "session", "key")

    def __init__(
        self,
        key: Any,
        algorithms: tuple[str, ...],
        *,
        cookie: str | None = None,
        audience: tuple[str, ...] | None = None,
        issuer: tuple[str, ...] | None = None,
        leeway_seconds: int = 0,
        claim: str = "sub",
        session_claim: str | None = None,
        roles_claim: str | None = None,
        clock: Callable[[], float],
        quiet_short_key: bool = False,
        cache_size: int = 10_000,
        label: str = "identity",
        cookies: CookieParser | None = None,
    ) -> None:
        self.cookie_name = cookie  # None: the Authorization header
        self.key = key
        self.algorithms = list(algorithms)
        self.audience = list(audience) if audience else None
        self.issuer = list(issuer) if issuer else None
        self.leeway = leeway_seconds
        self.claim = claim
        self.session_claim = session_claim
        self.roles_claim = roles_claim
        self.source = f"the cookie {cookie!r}" if cookie else "the Authorization: Bearer token"
        self.missing = f"no cookie {cookie!r}" if cookie else "no Authorization: Bearer header"
        self._options: Any = {"require": ["exp"]}
        self._quiet = quiet_short_key
        self._clock = clock
        self.cookies = cookies if cookies is not None else CookieParser()
        self._cache: BoundedCache[str, tuple[Reading, float]] = BoundedCache(cache_size)
        self._warn = Warnings(label)

    def __call__(self, scope: Scope) -> Identity | None:
        token = self.token(scope)
        if not token:
            return None
        now = self._clock()
        hit = self._cache.get(token)
        if hit is not None and now < hit[1]:
            return hit[0].identity
        reading, expires = self._decode(token, now)
        self._warn(reading)
        if expires > now:
            self._cache.put(token, (reading, expires))
        return reading.identity

    def read(self, scope: Scope) -> Reading:
        token = self.token(scope)
        if token is None:
            return Reading(None, self.missing, check="cookie")
        if not token:
            return Reading(None, f"{self.source} is empty", check="cookie")
        return self._decode(token, self._clock())[0]

    def token(self, scope: Scope) -> str | None:
        """The token's text as the shop reads it, or None."""
        if self.cookie_name is not None:
            return self.cookies.read(scope, self.cookie_name)
        value = header(scope, b"authorization")
        if value is None:
            return None
        # FastAPI's get_authorization_scheme_param: the scheme ends at the first space.
        scheme, _, token = value.partition(" ")
        return token if scheme.lower() == "bearer" else None

    def _decode(self, token: str, now: float) -> tuple[Reading, float]:
        try:
            claims = self._verified(token)
        except jwt.PyJWTError as exc:
            check, why = _refusal(exc)
            return Reading(None, f"{self.source} is present but {why}", notable=True, check=check), 0.0
        what = f"{self.source} verifies, but its claim {self.claim!r}"
        if self.claim not in claims:
            # Claim names are fine to log, values are not: a typo in `claim` shows here at once.
            names = ", ".join(sorted(claims)[:20])
            raise UnusableIdentity(f"{what} is missing (its claims: {names})")
        user_id = _claim(claims[self.claim], what)
        sid = None
        if self.session_claim and claims.get(self.session_claim) is not None:
            sid = _claim(claims[self.session_claim], f"{self.source}'s session_claim {self.session_claim!r}")
        roles = _roles(claims.get(self.roles_claim)) if self.roles_claim else frozenset()
        identity = as_identity(Identity(user_id, sid, roles))
        # exp is a number: PyJWT refused the token otherwise.
        until = min(float(claims["exp"]) + self.leeway, now + self.CACHE_SECONDS)
        if self.session_claim and sid is None:
            why = (
                f"{self.source} holds a user but no session_claim {self.session_claim!r} "
                f"(its claims: {', '.join(sorted(claims)[:20])}): proofs are not bound to the login"
            )
            return Reading(identity, why, notable=True), until
        return Reading(identity, f"{self.source} names user {user_id!r}"), until

    def _verified(self, token: str) -> dict[str, Any]:
        def decode() -> dict[str, Any]:
            return jwt.decode(
                token,
                self.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options=self._options,
            )

        if not self._quiet:
            return decode()
        # The shop's own secret is short: said once at start, not on every token.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            return decode()


def build_jwt_resolver(
    settings: JwtSource, *, clock: Callable[[], float], label: str, cookies: CookieParser | None
) -> JwtResolver:
    """The resolver for an interface's ``identity: {from: jwt}``; ``label`` is its key path."""
    algorithms = settings.algorithms
    if algorithms[0] in HMAC:
        assert settings.secret is not None  # the settings require it
        key: Any = settings.secret.reveal().encode()
        if settings.short_secret:
            log.warning(
                "%s.secret is shorter than the %s bytes PyJWT advises for %s: the shop's tokens are "
                "only as strong as that secret",
                label,
                max(HMAC[a] for a in algorithms),
                ", ".join(algorithms),
            )
    else:
        key = _public_key(settings, label, rsa=algorithms[0] in RSA)
    return JwtResolver(
        key,
        algorithms,
        cookie=settings.cookie,
        audience=settings.audience,
        issuer=settings.issuer,
        leeway_seconds=settings.leeway_seconds,
        claim=settings.claim,
        session_claim=settings.session_claim,
        roles_claim=settings.roles_claim,
        clock=clock,
        quiet_short_key=settings.short_secret,
        label=label,
        cookies=cookies,
    )


def _public_key(settings: JwtSource, label: str, *, rsa: bool) -> Any:
    where = f"{label}.public_key" + ("_file" if settings.public_key_file is not None else "")
    try:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
    except ImportError as exc:  # PyJWT without its crypto extra
        raise ConfigError([f"{where}: needs cryptography: pip install 'tfa-middleware[jwt]'"]) from exc
    try:
        key = load_pem_public_key(settings.public_key_text().encode())
    except (OSError, ValueError) as exc:
        raise ConfigError([f"{where}: cannot load the public key ({type(exc).__name__})"]) from exc
    wanted = rsa_keys.RSAPublicKey if rsa else ec.EllipticCurvePublicKey
    if not isinstance(key, wanted):
        raise ConfigError([f"{where}: {settings.algorithms[0]} needs an {'RSA' if rsa else 'EC'} public key"])
    return key
