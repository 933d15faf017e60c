"""For every generated token the JWT resolver and the real decoders agree on who is logged in.

Tokens are drawn across algorithms (HS*, RS256, PS256, ES256/384, ``none``, an HMAC signature made
with the public key), right and wrong keys, random claims (``sub`` of every JSON type, audiences,
issuers, ``exp``/``nbf`` in the past and the future, or missing), and tampering (a changed byte, a
swapped payload). The reference is PyJWT's own ``jwt.decode`` on the PEM text with the same
settings, and, for fastapi-users' configuration, ``fastapi_users.jwt.decode_jwt`` followed by its
JWTStrategy's ``data.get("sub")``: never a user the framework refuses, never a different user.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi_users.jwt import decode_jwt
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from jwt.warnings import InsecureKeyLengthWarning

from tests.tokens import (
    AUDIENCE,
    COOKIE,
    OTHER_SECRET,
    SECRET,
    bearer_scope,
    cookie_scope,
    hmac_with_public_key,
    private_key,
    public_pem,
    sign,
    unsigned,
    with_payload,
)
from tfa_middleware import settings_from_mapping
from tfa_middleware.errors import UnusableIdentity
from tfa_middleware.identity import build_resolver
from tfa_middleware.identity.tokens import JwtResolver
from tfa_middleware.tables import MAX_USER_ID_LENGTH

ISSUER = "https://shop.example"


@dataclass(frozen=True)
class Setup:
    """One interface's identity settings, and the key PyJWT's reference decode is given."""

    name: str
    identity: dict[str, Any]
    reference_key: Any

    def resolver(self, leeway: int) -> JwtResolver:
        loaded = settings_from_mapping(
            {
                "secret_keys": ["k" * 40],
                "interfaces": {
                    "admin": {
                        "path_prefix": "/admin",
                        "identity": {**self.identity, "leeway_seconds": leeway},
                    }
                },
            },
            environ={},
        )
        built = build_resolver(loaded.interfaces["admin"].identity, trusted_proxies=(), where="admin")
        assert isinstance(built, JwtResolver)
        return built


def setups() -> dict[str, Setup]:
    rsa_pem = public_pem(private_key("rsa"))
    ec_pem = public_pem(private_key("secp256r1"))
    fastapi_users = {"from": "jwt", "cookie": COOKIE, "secret": SECRET, "audience": AUDIENCE}
    return {
        s.name: s
        for s in (
            Setup("fastapi-users", fastapi_users, SECRET),
            Setup(
                "hmac-issuer",
                {
                    "from": "jwt",
                    "header": "authorization",
                    "secret": SECRET,
                    "algorithms": ["HS256", "HS384", "HS512"],
                    "issuer": ISSUER,
                    "claim": "uid",
                    "session_claim": "jti",
                },
                SECRET,
            ),
            Setup(
                "rsa",
                {
                    "from": "jwt",
                    "cookie": "token",
                    "public_key": rsa_pem,
                    "algorithms": ["RS256", "PS256"],
                    "audience": [AUDIENCE, "other:app"],
                },
                rsa_pem,
            ),
            Setup(
                "ec",
                {"from": "jwt", "cookie": "token", "public_key": ec_pem, "algorithms": ["ES256"]},
                ec_pem,
            ),
        )
    }


SETUPS = setups()
RESOLVERS = {(name, leeway): s.resolver(leeway) for name, s in SETUPS.items() for leeway in (0, 10)}

# How a token is signed: an algorithm and its key, right or wrong for the setups above.
SIGNERS: dict[str, tuple[str, Callable[[], Any]]] = {
    "HS256": ("HS256", lambda: SECRET),
    "HS384": ("HS384", lambda: SECRET),
    "HS512": ("HS512", lambda: SECRET),
    "HS256-other": ("HS256", lambda: OTHER_SECRET),
    "RS256": ("RS256", lambda: private_key("rsa")),
    "PS256": ("PS256", lambda: private_key("rsa")),
    "RS256-other": ("RS256", lambda: private_key("rsa", 1)),
    "ES256": ("ES256", lambda: private_key("secp256r1")),
    "ES256-other": ("ES256", lambda: private_key("secp256r1", 1)),
    "ES384": ("ES384", lambda: private_key("secp384r1")),
}
IDS = st.one_of(
    st.text(max_size=12),
    st.integers(-(2**40), 2**40),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=2),
    st.text(min_size=MAX_USER_ID_LENGTH + 1, max_size=MAX_USER_ID_LENGTH + 2, alphabet="ab"),
)
MISSING = object()
OFFSETS = st.one_of(st.integers(-100_000, -30), st.integers(30, 100_000))


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(MISSING), values)


# The signers each setup accepts: most generated tokens start right, then some of it goes wrong.
RIGHT = {
    "fastapi-users": ["HS256"],
    "hmac-issuer": ["HS256", "HS384", "HS512"],
    "rsa": ["RS256", "PS256"],
    "ec": ["ES256"],
}
NAMES = st.text(min_size=1, max_size=12)


def valid_claims(now: int) -> dict[str, st.SearchStrategy[Any]]:
    return {
        "sub": NAMES,
        "uid": st.one_of(NAMES, st.integers(0, 2**40)),
        "aud": st.sampled_from([AUDIENCE, [AUDIENCE], [AUDIENCE, "x"]]),
        "iss": st.just(ISSUER),
        # Offsets, added to the time now: the strategy itself must not change from run to run.
        "exp": st.integers(30, 100_000).map(lambda d: now + d),
        "nbf": _maybe(st.integers(-100_000, -30).map(lambda d: now + d)),
        "jti": _maybe(NAMES),
    }


def any_claims(now: int) -> dict[str, st.SearchStrategy[Any]]:
    return {
        "sub": _maybe(IDS),
        "uid": _maybe(IDS),
        "aud": _maybe(st.sampled_from([AUDIENCE, "other:app", ["x", "other:app"], [], 5])),
        "iss": _maybe(st.sampled_from([ISSUER, "https://evil.example", 3])),
        "exp": _maybe(st.one_of(OFFSETS.map(lambda d: now + d), st.just("soon"))),
        "nbf": _maybe(OFFSETS.map(lambda d: now + d)),
        "jti": _maybe(st.one_of(st.text(max_size=8), st.integers())),
    }


@st.composite
def payloads(draw: st.DrawFn, valid: bool = False) -> dict[str, Any]:
    """Claims: with ``valid``, each one right for every setup, but one in twelve drawn from anything."""
    now = int(time.time())
    right, anything = valid_claims(now), any_claims(now)
    drawn = {}
    for name, strategy in right.items():
        wrong = not valid or draw(st.integers(0, 11)) == 11  # hypothesis favours 0: 0 is "right"
        drawn[name] = draw(anything[name] if wrong else strategy)
    return {k: v for k, v in drawn.items() if v is not MISSING}


@st.composite
def tokens(draw: st.DrawFn, setup: str = "fastapi-users") -> str:
    valid = draw(st.integers(0, 3)) < 3
    payload = draw(payloads(valid))
    others = [*SIGNERS, "none", "confusion-rsa", "confusion-ec"]
    how = draw(st.sampled_from(RIGHT[setup] if valid and draw(st.integers(0, 5)) < 5 else others))
    if how == "none":
        token = unsigned(payload, draw(st.sampled_from(["none", "None", "NONE"])))
    elif how.startswith("confusion"):
        token = hmac_with_public_key(
            payload, public_pem(private_key("rsa" if how.endswith("rsa") else "secp256r1"))
        )
    else:
        algorithm, key = SIGNERS[how]
        if not isinstance(payload.get("iss", ""), str):
            del payload["iss"]  # PyJWT will not sign it; a swapped payload (below) still carries one
        token = sign(payload, key(), algorithm)
    tamper = draw(st.sampled_from(["no"] * 6 + ["byte", "payload"]))
    if tamper == "byte":
        at = draw(st.integers(0, len(token) - 1))
        replacement = draw(st.sampled_from("AQgw-_"))
        token = token[:at] + replacement + token[at + 1 :]
    elif tamper == "payload":
        token = with_payload(token, draw(payloads()))
    return token


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str]:
    setup = draw(st.sampled_from(sorted(SETUPS)))
    return setup, draw(tokens(setup))


def reference(setup: Setup, token: str, leeway: int, claim: str) -> str | None:
    """PyJWT's verdict with the setup's settings: the user id, "" when the verified token names no
    usable id, None when PyJWT refuses the token."""
    identity = setup.identity
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            claims = jwt.decode(
                token,
                setup.reference_key,
                algorithms=identity.get("algorithms", ["HS256"]),
                audience=identity.get("audience"),
                issuer=identity.get("issuer"),
                leeway=leeway,
                options={"require": ["exp"]},
            )
    except jwt.PyJWTError:
        return None
    value = claims.get(claim)
    usable = isinstance(value, str | int) and not isinstance(value, bool) and value != ""
    if not usable or len(str(value)) > MAX_USER_ID_LENGTH:
        return ""
    session = claims.get("jti") if identity.get("session_claim") == "jti" else None
    if session is not None and (not isinstance(session, str | int) or session == ""):
        return ""  # a session claim that is there but unusable fails closed too
    return str(value)


def ours(r: JwtResolver, scope: dict[str, Any]) -> str | None:
    try:
        reading = r.read(scope)
    except UnusableIdentity:
        return ""
    if reading.identity is None:
        assert reading.notable, reading  # a token that is there but refused is always said
        return None
    return reading.identity.user_id


def _scope(setup: Setup, token: str) -> dict[str, Any]:
    if setup.identity.get("header"):
        return bearer_scope(f"Bearer {token}")
    return cookie_scope(token, setup.identity["cookie"])


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), leeway=st.sampled_from([0, 10]))
@example(case=("fastapi-users", unsigned({"sub": "1", "aud": AUDIENCE, "exp": 2**40})), leeway=0)
@example(
    case=(
        "rsa",
        hmac_with_public_key({"sub": "1", "aud": AUDIENCE, "exp": 2**40}, public_pem(private_key("rsa"))),
    ),
    leeway=0,
)
def test_the_resolver_agrees_with_pyjwt(case: tuple[str, str], leeway: int) -> None:
    setup, token = case
    chosen = SETUPS[setup]
    claim = chosen.identity.get("claim", "sub")
    expected = reference(chosen, token, leeway, claim)
    r = RESOLVERS[(setup, leeway)]
    scope = _scope(chosen, token)
    event("user" if expected else "unusable" if expected == "" else "refused")
    assert ours(r, scope) == expected
    # The request path (cached) answers as the reading does, every time.
    for _ in range(2):
        try:
            identity = r(scope)
        except UnusableIdentity:
            assert expected == ""
        else:
            assert (identity.user_id if identity else None) == expected


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(token=tokens())
def test_the_resolver_agrees_with_fastapi_users(token: str) -> None:
    # JWTStrategy.read_token: decode_jwt(token, secret, audience, [algorithm]); data.get("sub").
    try:
        data = decode_jwt(token, SECRET, [AUDIENCE], algorithms=["HS256"])
        theirs = data.get("sub")
    except jwt.PyJWTError:
        data, theirs = {}, None
    mine = ours(RESOLVERS[("fastapi-users", 0)], cookie_scope(token))
    event("user" if mine else "not a user")
    if mine:
        assert mine == theirs  # never a user fastapi-users would not log in, never another one
    if isinstance(theirs, str) and 0 < len(theirs) <= MAX_USER_ID_LENGTH and "exp" in data:
        assert mine == theirs  # fastapi-users' own tokens always carry exp (lifetime_seconds)
