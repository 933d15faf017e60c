"""``identity: {from: jwt}``: the settings refuse what cannot be safe, and the resolver refuses every
token PyJWT refuses (as "nobody", said in the log) and every verified token that names no usable
user (as UnusableIdentity); fastapi-users' cookie, as its docs configure it, names its user."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.harness import ADMIN_PHONE, Harness
from tests.helpers import Cli
from tests.tokens import (
    AUDIENCE,
    COOKIE,
    OTHER_SECRET,
    SECRET,
    bearer_scope,
    claims,
    cookie_scope,
    hmac_with_public_key,
    private_key,
    private_pem,
    public_pem,
    sign,
    unsigned,
    with_payload,
)
from tfa_middleware import ConfigError, settings_from_mapping
from tfa_middleware.errors import UnusableIdentity
from tfa_middleware.identity import Reading, build_resolver
from tfa_middleware.identity.tokens import JwtResolver
from tfa_middleware.settings import JwtSource

LOG = "tfa_middleware"
WHERE = "interfaces.admin.identity"
FASTAPI_USERS = {"from": "jwt", "cookie": COOKIE, "secret": SECRET, "audience": AUDIENCE}


def settings(identity: dict[str, Any], production: bool = False) -> Any:
    provider: dict[str, Any] = {"name": "sandbox"}
    if production:
        provider = {
            "name": "twilio_verify",
            "production_mode": True,
            "account_sid": "AC" + "0" * 32,
            "auth_token": "t" * 32,
            "service_sid": "VA" + "0" * 32,
        }
    return settings_from_mapping(
        {
            "secret_keys": ["k" * 40],
            "provider": provider,
            "interfaces": {"admin": {"path_prefix": "/admin", "identity": identity}},
        },
        environ={},
    )


def source(**identity: Any) -> JwtSource:
    found = settings({**FASTAPI_USERS, **identity}).interfaces["admin"].identity
    assert isinstance(found, JwtSource)
    return found


def resolver(**identity: Any) -> JwtResolver:
    built = build_resolver(source(**identity), trusted_proxies=(), where=WHERE)
    assert isinstance(built, JwtResolver)
    return built


def problems(identity: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings({"from": "jwt", "cookie": COOKIE, **identity})
    return caught.value.problems


# --------------------------------------------------------------------------- settings, at load


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        pytest.param(
            {"secret": SECRET, "algorithms": ["none"]},
            f"{WHERE}.algorithms: 'none' is never accepted: a token without a signature proves nothing",
            id="alg-none",
        ),
        pytest.param(
            {"secret": SECRET, "algorithms": "NONE"}, f"{WHERE}.algorithms: 'none' is never", id="alg-NONE"
        ),
        pytest.param(
            {"secret": SECRET, "algorithms": ["HS257"]},
            f"{WHERE}.algorithms: 'HS257' is not one of HS256,",
            id="unknown",
        ),
        pytest.param(
            {"secret": SECRET, "algorithms": []}, f"{WHERE}.algorithms: must name at least one", id="empty"
        ),
        pytest.param(
            {"secret": SECRET, "algorithms": ["HS256", "RS256"]},
            f"{WHERE}.algorithms: mixes HMAC and RSA algorithms",
            id="mixed-families",
        ),
        pytest.param(
            {"public_key": "PEM", "algorithms": ["RS256", "ES256"]},
            f"{WHERE}.algorithms: mixes EC and RSA algorithms",
            id="mixed-asymmetric",
        ),
        pytest.param(
            {"public_key": "-----BEGIN PUBLIC KEY-----\n...", "algorithms": ["HS256"]},
            f"{WHERE}.public_key: HS256 verifies with the shop's secret, not a key (a public key used as an "
            "HMAC secret lets anybody who has it sign tokens): give secret",
            id="key-confusion-hmac-with-public-key",
        ),
        pytest.param(
            {"secret": SECRET, "algorithms": ["RS256"]},
            f"{WHERE}.secret: RS256 verifies with a public key: give public_key or public_key_file",
            id="rsa-with-secret",
        ),
        pytest.param(
            {"secret": "-----BEGIN PUBLIC KEY-----\nMIIB..."},
            f"{WHERE}.secret: looks like a PEM key",
            id="pem-as-hmac-secret",
        ),
        pytest.param(
            {}, f"{WHERE}.secret: is required: HS256 verifies with the shop's signing secret", id="no-key"
        ),
        pytest.param(
            {"algorithms": ["ES256"]},
            f"{WHERE}.public_key: is required (or public_key_file)",
            id="no-public-key",
        ),
        pytest.param(
            {"secret": SECRET, "public_key": "x"},
            f"{WHERE}.public_key: give one key, not secret and",
            id="two-keys",
        ),
        pytest.param(
            {"secret": SECRET, "header": "authorization"},
            f"{WHERE}.header: give exactly one of cookie: NAME",
            id="cookie-and-header",
        ),
        pytest.param(
            {"secret": SECRET, "header": "x-token"},
            f"{WHERE}.header: must be one of authorization",
            id="header",
        ),
        pytest.param(
            {"secret": SECRET, "leeway_seconds": 3600},
            f"{WHERE}.leeway_seconds: must be between 0 and 300",
            id="leeway",
        ),
        pytest.param(
            {"secret": SECRET, "claims": "sub"},
            f"{WHERE}.claims: is not used with from: jwt (expected: cookie,",
            id="typo",
        ),
        pytest.param(
            {"public_key": "not a key", "algorithms": ["RS256"]},
            f"{WHERE}.public_key: expected a PEM public key (-----BEGIN PUBLIC KEY----- ...)",
            id="not-pem",
        ),
        pytest.param(
            {
                "public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
                "algorithms": ["RS256"],
            },
            f"{WHERE}.public_key: is not a readable PEM public key",
            id="broken-pem",
        ),
        pytest.param(
            {"public_key_file": "/nonexistent/key.pem", "algorithms": ["RS256"]},
            f"{WHERE}.public_key_file: cannot read '/nonexistent/key.pem': No such file or directory",
            id="missing-file",
        ),
    ],
)
def test_the_settings_refuse_what_cannot_be_safe(identity: dict[str, Any], expected: str) -> None:
    found = problems(identity)
    assert any(p.startswith(expected) for p in found), found


def test_neither_cookie_nor_header_is_named_at_the_identity() -> None:
    with pytest.raises(ConfigError) as caught:
        settings({"from": "jwt", "secret": SECRET})
    assert caught.value.problems == [
        f"{WHERE}: give exactly one of cookie: NAME (e.g. fastapiusersauth) or header: authorization"
    ]


@pytest.mark.parametrize(
    ("kind", "algorithms", "expected"),
    [
        ("rsa", ["ES256"], "ES256 needs an elliptic-curve public key"),
        ("secp256r1", ["RS256"], "RS256 needs an RSA public key"),
        ("secp384r1", ["ES256"], "a secp384r1 key cannot verify ES256"),
    ],
)
def test_a_public_key_must_fit_its_algorithms(kind: str, algorithms: list[str], expected: str) -> None:
    assert problems({"public_key": public_pem(private_key(kind)), "algorithms": algorithms}) == [
        f"{WHERE}.public_key: {expected}"
    ]


def test_a_private_key_is_refused_without_being_shown() -> None:
    pem = private_pem(private_key("secp256r1"))
    found = problems({"public_key": pem, "algorithms": ["ES256"]})
    assert found == [
        f"{WHERE}.public_key: is a private key: give only its public half (openssl pkey -pubout)"
    ]
    assert pem not in str(found)


def test_the_secret_never_prints() -> None:
    assert SECRET not in repr(source())
    assert SECRET not in str(settings(FASTAPI_USERS).describe())


def test_production_mode_refuses_a_published_example_secret() -> None:
    published = "example-only-fastapi-users-secret-change-me-0123456789"
    with pytest.raises(ConfigError) as caught:
        settings({**FASTAPI_USERS, "secret": published}, production=True)
    assert [p.split(":")[0] for p in caught.value.problems] == [f"{WHERE}.secret"]


def test_without_pyjwt_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jwt", None)
    monkeypatch.delitem(sys.modules, "tfa_middleware.identity.tokens")
    with pytest.raises(ConfigError) as caught:
        build_resolver(source(), trusted_proxies=(), where=WHERE)
    assert caught.value.problems == [f"{WHERE}.from: jwt needs PyJWT: pip install 'tfa-middleware[jwt]'"]


def test_a_short_secret_is_said_once_at_start_and_still_verifies(caplog: pytest.LogCaptureFixture) -> None:
    # fastapi-users' docs use SECRET = "SECRET": weak, but the shop's; refusing it would protect nothing.
    with caplog.at_level(logging.WARNING, logger=LOG):
        short = resolver(secret="SECRET")
    (said,) = [r.getMessage() for r in caplog.records]
    assert said.startswith(f"{WHERE}.secret is shorter than the 32 bytes PyJWT advises for HS256")
    assert "SECRET" not in said.replace(".secret", "")
    # filterwarnings = error: PyJWT's InsecureKeyLengthWarning would raise here if it escaped.
    identity = short(cookie_scope(sign(claims("7"), "SECRET")))
    assert identity is not None
    assert identity.user_id == "7"


# --------------------------------------------------------------------------- tokens PyJWT refuses: nobody


def _refused(
    r: JwtResolver, scope: dict[str, Any], check: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    reading = r.read(scope)
    assert reading.identity is None, reading
    assert reading.notable
    assert reading.check == check
    assert why in reading.why
    with caplog.at_level(logging.WARNING, logger=LOG):
        assert r(scope) is None
        assert r(scope) is None
    (said,) = [rec.getMessage() for rec in caplog.records if rec.name == LOG]  # once a minute
    assert why in said
    assert "the request counts as nobody logged in" in said


def _public(kind: str) -> dict[str, Any]:
    alg = "RS256" if kind == "rsa" else "ES256"
    return {
        "secret": None,
        "audience": AUDIENCE,
        "public_key": public_pem(private_key(kind)),
        "algorithms": [alg],
    }


REFUSED: list[Any] = [
    pytest.param(
        {}, lambda: sign(claims(), OTHER_SECRET), "signature", "signature does not match", id="wrong-secret"
    ),
    pytest.param({}, lambda: unsigned(claims()), "signature", "algorithm is not in identity", id="alg-none"),
    pytest.param({}, lambda: unsigned(claims(), "None"), "signature", "algorithm is not in", id="alg-None"),
    pytest.param(
        {}, lambda: sign(claims(), SECRET, "HS512"), "signature", "algorithm is not in", id="alg-not-listed"
    ),
    pytest.param(
        _public("rsa"),
        lambda: hmac_with_public_key(claims(), public_pem(private_key("rsa"))),
        "signature",
        "algorithm is not in",
        id="key-confusion-rsa",
    ),
    pytest.param(
        {**_public("rsa"), "algorithms": ["RS256", "RS512"]},
        lambda: sign(claims(), private_key("rsa", 1), "RS256"),
        "signature",
        "signature does not match",
        id="another-rsa-key",
    ),
    pytest.param(
        _public("secp256r1"),
        lambda: sign(claims(), private_key("secp256r1", 1), "ES256"),
        "signature",
        "signature does not match",
        id="another-ec-key",
    ),
    pytest.param({}, lambda: sign(claims(lifetime=-10)), "age", "it has expired (exp)", id="expired"),
    pytest.param(
        {"leeway_seconds": 5},
        lambda: sign(claims(lifetime=-10)),
        "age",
        "it has expired",
        id="expired-past-leeway",
    ),
    pytest.param(
        {}, lambda: sign(claims(nbf=int(time.time()) + 600)), "age", "not valid yet", id="nbf-future"
    ),
    pytest.param({}, lambda: sign(claims(lifetime=None)), "session", "lacks the claim 'exp'", id="no-exp"),
    pytest.param(
        {}, lambda: sign(claims(aud=["another:app"])), "session", "audience (aud) is not", id="other-aud"
    ),
    pytest.param({}, lambda: sign(claims(aud=None)), "session", "lacks the claim 'aud'", id="no-aud"),
    pytest.param(
        {"audience": None},
        lambda: sign(claims()),
        "session",
        "audience (aud) is not",
        id="aud-but-none-expected",
    ),
    pytest.param(
        {"issuer": "https://shop.example"},
        lambda: sign(claims(iss="https://evil.example")),
        "session",
        "issuer (iss) is not identity.issuer",
        id="other-issuer",
    ),
    pytest.param(
        {"issuer": "https://shop.example"},
        lambda: sign(claims()),
        "session",
        "lacks the claim 'iss'",
        id="no-issuer",
    ),
    pytest.param({}, lambda: "not-a-jwt", "session", "not a well-formed JWT", id="malformed"),
    pytest.param({}, lambda: "a.b.c", "session", "not a well-formed JWT", id="bad-base64"),
    pytest.param(
        {},
        lambda: with_payload(sign(claims("42")), claims("1")),
        "signature",
        "does not match",
        id="tampered",
    ),
    pytest.param({}, lambda: sign(claims(7)), "session", "its sub claim is not a string", id="int-sub"),
    pytest.param({}, lambda: sign(claims(jti=5)), "session", "its jti claim is not a string", id="int-jti"),
    pytest.param({}, lambda: sign(claims(iat="yesterday")), "session", "iat claim is not a number", id="iat"),
]


@pytest.mark.parametrize(("identity", "make", "check", "why"), REFUSED)
def test_a_token_pyjwt_refuses_is_nobody_and_said(
    identity: dict[str, Any],
    make: Callable[[], str],
    check: str,
    why: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = resolver(**identity)
    scope = cookie_scope(make())
    _refused(r, scope, check, why, caplog)
    assert SECRET not in caplog.text


# --------------------------------------------------------------------------- verified, but no usable user


@pytest.mark.parametrize(
    ("claim", "payload", "message"),
    [
        pytest.param("sub", claims(None), "its claim 'sub' is missing (its claims: aud, exp)", id="missing"),
        pytest.param("uid", claims(uid=[1]), "its claim 'uid' holds a list, not an id", id="list"),
        pytest.param("uid", claims(uid=1.5), "its claim 'uid' holds a float", id="float"),
        pytest.param("uid", claims(uid=True), "its claim 'uid' holds a bool", id="bool"),
        pytest.param("uid", claims(uid={"id": 1}), "its claim 'uid' holds a dict", id="dict"),
        pytest.param("uid", claims(uid=""), "its claim 'uid' is empty", id="empty"),
        pytest.param("uid", claims(uid="x" * 321), "user ids must be 1 to", id="too-long"),
        pytest.param("uid", claims(uid=7, sid=["a"]), "session_claim 'sid' holds a list", id="session-list"),
    ],
)
def test_a_verified_token_without_a_usable_id_fails_closed(
    claim: str, payload: dict[str, Any], message: str
) -> None:
    r = resolver(claim=claim, session_claim="sid")
    with pytest.raises(UnusableIdentity, match=re.escape(message)):
        r(cookie_scope(sign(payload)))


def test_fastapi_users_cookie_as_its_docs_configure_it() -> None:
    # CookieTransport(cookie_max_age=3600) + JWTStrategy(secret=SECRET, lifetime_seconds=3600): the
    # cookie fastapiusersauth holds {"sub": str(user.id), "aud": ["fastapi-users:auth"], "exp": ...}.
    from fastapi_users.jwt import generate_jwt

    token = generate_jwt({"sub": "4f0c-uuid", "aud": [AUDIENCE]}, SECRET, 3600)
    reading = resolver().read(cookie_scope(token))
    assert reading.identity is not None
    assert reading.identity.user_id == "4f0c-uuid"
    assert reading.identity.session_id is None
    assert not reading.notable


def test_an_integer_claim_is_a_user_id() -> None:
    identity = resolver(claim="user_id")(cookie_scope(sign(claims(user_id=7))))
    assert identity is not None
    assert identity.user_id == "7"


def test_the_session_claim_binds_the_login() -> None:
    identity = resolver(session_claim="jti")(cookie_scope(sign(claims("42", jti="login-1"))))
    assert identity is not None
    assert (identity.user_id, identity.session_id) == ("42", "login-1")


@pytest.mark.parametrize(
    ("value", "roles"),
    [("admin", {"admin"}), (["admin", "support", 3], {"admin", "support"}), (None, set()), ({"a": 1}, set())],
)
def test_the_roles_claim_gives_the_roles_for_the_manage_page(value: Any, roles: set[str]) -> None:
    token = sign(claims("42", roles=value) if value is not None else claims("42"))
    identity = resolver(roles_claim="roles")(cookie_scope(token))
    assert identity is not None
    assert identity.roles == frozenset(roles)


def test_allow_roles_needs_a_roles_claim() -> None:
    def with_manage(identity: dict[str, Any]) -> dict[str, Any]:
        return {
            "secret_keys": ["k" * 40],
            "interfaces": {
                "admin": {"path_prefix": "/admin", "identity": identity, "manage": {"allow_roles": ["2fa"]}}
            },
        }

    with pytest.raises(ConfigError, match=r"allow_roles: needs identity.roles_key .*roles_claim"):
        settings_from_mapping(with_manage(FASTAPI_USERS), environ={})
    loaded = settings_from_mapping(with_manage({**FASTAPI_USERS, "roles_claim": "roles"}), environ={})
    assert loaded.interfaces["admin"].manage.allow_roles == ("2fa",)


def test_a_missing_session_claim_is_said(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOG):
        identity = resolver(session_claim="sid")(cookie_scope(sign(claims("42"))))
    assert identity is not None
    assert identity.session_id is None
    assert "no session_claim 'sid' (its claims: aud, exp, sub): proofs are not bound" in caplog.text


def test_leeway_accepts_a_token_just_expired() -> None:
    identity = resolver(leeway_seconds=60)(cookie_scope(sign(claims(lifetime=-10))))
    assert identity is not None
    assert identity.user_id == "42"


@pytest.mark.parametrize("kind", ["rsa", "secp256r1", "secp384r1"])
def test_public_key_algorithms_verify(kind: str, tmp_path: Path) -> None:
    alg = {"rsa": "RS256", "secp256r1": "ES256", "secp384r1": "ES384"}[kind]
    key_file = tmp_path / "shop.pem"
    key_file.write_text(public_pem(private_key(kind)))
    r = resolver(secret=None, public_key_file=str(key_file), algorithms=[alg])
    identity = r(cookie_scope(sign(claims("9"), private_key(kind), alg)))
    assert identity is not None
    assert identity.user_id == "9"


def test_a_bearer_header_is_read_as_fastapi_reads_it() -> None:
    r = resolver(cookie=None, header="authorization")
    token = sign(claims("42"))
    for value in (f"Bearer {token}", f"bearer {token}", f"BEARER {token}"):
        identity = r(bearer_scope(value))
        assert identity is not None
        assert identity.user_id == "42"
    assert r(bearer_scope(f"Basic {token}")) is None
    assert r(bearer_scope("Bearer")) is None
    assert r({"type": "http", "headers": []}) is None
    assert r.read(bearer_scope(f"Basic {token}")) == Reading(
        None, "no Authorization: Bearer header", check="cookie"
    )
    # The first Authorization header counts, as in Starlette's request.headers.get.
    two = {
        "type": "http",
        "headers": [(b"authorization", b"Basic x"), (b"authorization", f"Bearer {token}".encode())],
    }
    assert r(two) is None


def test_no_cookie_or_an_empty_one_is_nobody_and_not_notable() -> None:
    r = resolver()
    assert r.read({"type": "http", "headers": []}) == Reading(None, f"no cookie {COOKIE!r}", check="cookie")
    assert r(cookie_scope('""')) is None
    assert not r.read(cookie_scope('""')).notable


# --------------------------------------------------------------------------- the cache


class CountingDecode:
    def __init__(self) -> None:
        self.calls = 0
        self.real = jwt.decode

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.real(*args, **kwargs)


def test_a_repeated_token_is_verified_once_until_the_cache_time(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [time.time()]
    decode = CountingDecode()
    monkeypatch.setattr(jwt, "decode", decode)
    built = build_resolver(source(), trusted_proxies=(), where=WHERE)
    assert isinstance(built, JwtResolver)
    r = JwtResolver(
        built.key, tuple(built.algorithms), cookie=COOKIE, audience=(AUDIENCE,), clock=lambda: now[0]
    )
    scope = cookie_scope(sign(claims("42", lifetime=3600)))
    for _ in range(5):
        assert r(scope) is not None
    assert decode.calls == 1
    now[0] += JwtResolver.CACHE_SECONDS + 1
    assert r(scope) is not None
    assert decode.calls == 2


def test_a_cached_token_is_not_used_past_its_exp(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [time.time()]
    decode = CountingDecode()
    monkeypatch.setattr(jwt, "decode", decode)
    r = JwtResolver(SECRET.encode(), ("HS256",), cookie=COOKIE, audience=(AUDIENCE,), clock=lambda: now[0])
    payload = claims("42", lifetime=20)
    scope = cookie_scope(sign(payload))
    assert r(scope) is not None
    assert r(scope) is not None
    assert decode.calls == 1
    now[0] = payload["exp"] + 0.5  # the cache follows the token's exp, not only its own time
    r(scope)
    assert decode.calls == 2


def test_refused_tokens_are_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    decode = CountingDecode()
    monkeypatch.setattr(jwt, "decode", decode)
    r = resolver()
    scope = cookie_scope(sign(claims(), OTHER_SECRET))
    assert r(scope) is None
    assert r(scope) is None
    assert decode.calls == 2


# --------------------------------------------------------------------------- doctor


@pytest.mark.parametrize(
    ("secret", "status", "expected"),
    [
        (SECRET, 0, "  [ok] it names a user in identity.claim 'sub'"),
        (OTHER_SECRET, 1, "  [NO] the cookie 'fastapiusersauth' is present but its signature does not match"),
    ],
)
def test_doctor_reads_the_token_step_by_step(
    cli: Cli, tmp_path: Path, secret: str, status: int, expected: str
) -> None:
    path = tmp_path / "tfa.yaml"
    path.write_text(
        f"""
secret_keys: ["{"k" * 40}"]
database_url: "sqlite+aiosqlite:///{tmp_path / "tfa.sqlite3"}"
interfaces:
  admin:
    path_prefix: /admin
    identity: {{from: jwt, cookie: {COOKIE}, secret: "{SECRET}", audience: "{AUDIENCE}", session_claim: exp}}
""",
        encoding="utf-8",
    )
    token = sign(claims("42"), secret)
    result = cli("doctor", "--config", str(path), "--cookie", f"{COOKIE}={token}")
    assert result.returncode == status, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "  [ok] the request carries the cookie 'fastapiusersauth'" in lines
    assert any(line.startswith(expected) for line in lines), result.stdout
    for never in (token, token.split(".")[-1], SECRET, OTHER_SECRET):
        assert never not in result.stdout


# --------------------------------------------------------------------------- behind the middleware


async def test_behind_the_middleware_a_refused_token_never_reaches_the_page(
    make_harness: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    # A careless shop that serves /admin/orders to anyone: only the guard stands between.
    interfaces = {"admin": {"path_prefix": "/admin", "identity": FASTAPI_USERS}}
    h: Harness = await make_harness(interfaces=interfaces)
    await h.service.set_phone("admin", "42", *ADMIN_PHONE, confirmed=True)
    html = {"accept": "text/html"}

    def get(token: str) -> Any:
        return h.client.get("/admin/orders", headers={**html, "cookie": f"{COOKIE}={token}"})

    challenged = await get(sign(claims("42")))
    assert challenged.status_code == 303
    assert challenged.headers["location"].startswith("/admin/_2fa/challenge?")
    with caplog.at_level(logging.WARNING, logger=LOG):
        for forged in (
            sign(claims("42"), OTHER_SECRET),
            unsigned(claims("42")),
            sign(claims("42", lifetime=-60)),
        ):
            withheld = await get(forged)
            assert withheld.status_code == 403
            assert "This page can't be shown" in withheld.text
    said = [r.getMessage() for r in caplog.records if r.name == LOG]
    assert any("signature does not match" in line for line in said), said
    assert any("the shop served GET '/admin/orders' (200)" in line for line in said), said
    unusable = await get(sign(claims(None)))
    assert unusable.status_code == 500
    assert "Sign-in check unavailable" in unusable.text
