"""6: what ``identity: {from: jwt}`` costs, per request and per call.

In-process requests as in ``hot_path.py`` (interleaved rounds, best round's median): the bare shop;
the middleware with a valid proof and a plain callable resolver that does no identity work (the
middleware's own floor); and the same with ``from: jwt`` reading fastapi-users' cookie, its
verified-token cache warm. The resolver's own share is the difference between the last two.

Then the resolver alone, per call: a repeated token (a cache hit: the Cookie header's parse is
cached too, so this is two dictionary look-ups) against a token verified every time (``read``
skips the cache: PyJWT's signature and claim checks) for HS256, RS256 and ES256, and PyJWT's
``jwt.decode`` by itself.
"""

from __future__ import annotations

import tempfile
import time
import timeit
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tfa_middleware import Identity, TwoFactor, TwoFactorMiddleware
from tfa_middleware.identity import build_resolver
from tfa_middleware.identity.tokens import JwtResolver
from tfa_middleware.settings import JwtSource

from .common import PROTECTED, Report, Table, bench_settings, median, p99, shop, sqlite_url
from .hot_path import USER, pass_challenge, timed

JWT_SECRET = "bench-jwt-secret-0123456789-abcdefghijklmnop"
COOKIE = "fastapiusersauth"
AUDIENCE = "fastapi-users:auth"


def fastapi_users_identity() -> dict[str, Any]:
    """fastapi-users' CookieTransport + JWTStrategy as its docs configure them."""
    return {"from": "jwt", "cookie": COOKIE, "secret": JWT_SECRET, "audience": AUDIENCE}


def user_only(_scope: Any) -> Identity:
    """A plain callable resolver with the same identity as the token's (no session id)."""
    return Identity(USER)


def token(key: Any = JWT_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode({"sub": USER, "aud": [AUDIENCE], "exp": int(time.time()) + 3600}, key, algorithm)


async def run(report: Report, *, requests: int, rounds: int = 6) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = bench_settings(sqlite_url(folder), fastapi_users_identity())
        service = TwoFactor.from_settings(settings)
        try:
            await service.set_phone("admin", USER, "1", "2015550123", confirmed=True)
            with_jwt = TwoFactorMiddleware(shop(), service=service)
            plain = TwoFactorMiddleware(shop(), service=service, resolvers={"admin": user_only})
            cookie = token()
            proof = await pass_challenge(with_jwt, service, cookie, cookie_name=COOKIE)
            both = f"{COOKIE}={cookie}; tfa_admin={proof}"
            cases = [
                ("bare Starlette app, protected path", shop()),
                ("tfa: valid proof, plain callable resolver", plain),
                ("tfa: valid proof, from: jwt (fastapi-users cookie, cache warm)", with_jwt),
            ]
            for _, app in cases:
                await timed(app, PROTECTED, both, max(100, requests // 10))
            per_round = max(1, requests // rounds)
            medians: list[list[float]] = [[] for _ in cases]
            samples: list[list[float]] = [[] for _ in cases]
            for round_ in range(rounds):
                for index in [(round_ + i) % len(cases) for i in range(len(cases))]:
                    got = await timed(cases[index][1], PROTECTED, both, per_round)
                    samples[index].extend(got)
                    medians[index].append(median(got))
        finally:
            await service.close()

    best = [min(m) for m in medians]
    table = Table(
        f"6. The JWT resolver in a request ({per_round * rounds:,} requests per case, µs)",
        ["case", "best round", "median", "p99", "added"],
    )
    for index, (name, _) in enumerate(cases):
        table.add(name, best[index], median(samples[index]), p99(samples[index]), best[index] - best[0])
    resolver_share = best[2] - best[1]
    table.notes += [
        "added: the best-round median minus the bare app's",
        f"the resolver's own share (from: jwt minus the plain callable): {resolver_share:.2f} µs",
    ]
    report.show(table)

    calls = Table("6b. The JWT resolver alone (µs per call)", ["operation", "µs"])
    costs = per_call_costs(number=max(200, requests // 10))
    for name, cost in costs:
        calls.add(name, cost)
    report.show(calls)
    warm, cold = costs[0][1], costs[1][1]
    report.target(
        "from: jwt, a repeated token",
        "no signature check: < ⅒ of one HS256 verification",
        f"{warm:.2f} µs vs {cold:.2f} µs",
        warm < cold / 10,
    )
    report.target(
        "from: jwt in a request, cache warm",
        "the resolver adds ≤ 5 µs",
        f"adds {resolver_share:.2f} µs",
        resolver_share <= 5,
    )


def _resolver(identity: dict[str, Any]) -> JwtResolver:
    source = bench_settings("sqlite+aiosqlite://", identity).interfaces["admin"].identity
    assert isinstance(source, JwtSource)
    built = build_resolver(source, trusted_proxies=(), where="bench")
    assert isinstance(built, JwtResolver)
    return built


def _public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _reading(resolver: JwtResolver, scope: dict[str, Any]) -> Callable[[], object]:
    return lambda: resolver.read(scope)


def per_call_costs(number: int) -> list[tuple[str, float]]:
    hs = _resolver(fastapi_users_identity())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    signed = {
        "RS256": (rsa_key, _public(rsa_key)),
        "ES256": (ec_key, _public(ec_key)),
    }
    hs_token = token()
    scope = {"type": "http", "headers": [(b"cookie", f"{COOKIE}={hs_token}".encode())]}
    hs(scope)  # the cache is warm from here on
    calls: list[tuple[str, Callable[[], object]]] = [
        ("repeated HS256 token (cache hit)", lambda: hs(scope)),
        ("HS256 token verified every time (read)", lambda: hs.read(scope)),
    ]
    for alg, (private, pem) in signed.items():
        resolver = _resolver(
            {**fastapi_users_identity(), "secret": None, "public_key": pem, "algorithms": [alg]}
        )
        scoped = {"type": "http", "headers": [(b"cookie", f"{COOKIE}={token(private, alg)}".encode())]}
        calls.append((f"{alg} token verified every time (read)", _reading(resolver, scoped)))
    calls.append(
        (
            "PyJWT jwt.decode of the HS256 token alone",
            lambda: jwt.decode(hs_token, JWT_SECRET.encode(), algorithms=["HS256"], audience=AUDIENCE),
        )
    )
    out = []
    for name, call in calls:
        best = min(timeit.repeat(call, number=number, repeat=5))
        out.append((name, best / number * 1e6))
    return out
