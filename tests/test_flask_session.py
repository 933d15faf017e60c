"""``from: flask_session``: what the resolver reads, each refusal on its own, the cache, the
settings and the install. Agreement with Flask's own loader on generated cookies:
tests/test_flask_agreement.py; a real Flask-Login login, the middleware and doctor:
tests/test_flask_login.py."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tests.flask_shop import OLD_SECRET, SECRET, flask_app, flask_sees, scope_with, sign, sign_payload
from tests.harness import T0, FakeClock
from tests.helpers import ROOT
from tfa_middleware import settings_from_mapping
from tfa_middleware.errors import ConfigError, UnusableIdentity
from tfa_middleware.identity import MAX_USER_ID_LENGTH, Identity, build_resolver
from tfa_middleware.identity.flask import FlaskSessionResolver

LOG = "tfa_middleware"
SID = "5" * 128  # Flask-Login's _id: a SHA-512 hex digest
LOGIN = {"_user_id": "7", "_id": SID, "_fresh": True}


def resolver(clock: Callable[[], float] | None = None, **options: Any) -> FlaskSessionResolver:
    return FlaskSessionResolver("session", [SECRET], clock=clock or FakeClock(), **options)


def cookie(session: Any, **signing: Any) -> dict[str, Any]:
    signing.setdefault("at", T0)
    return scope_with(b"session=" + sign(session, **signing).encode())


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOG and r.levelno == logging.WARNING]


# --------------------------------------------------------------------------- what is read


def test_a_flask_login_session_is_its_user_and_login() -> None:
    assert resolver()(cookie(LOGIN)) == Identity("7", SID)


def test_an_integer_user_id_reads_as_text() -> None:
    assert resolver()(cookie({**LOGIN, "_user_id": 7})) == Identity("7", SID)


def test_a_compressed_session_with_tagged_values_is_read() -> None:
    session = {**LOGIN, "cart": [(1, b"\x00\xff")] * 50, "note": "ä" * 200}
    value = sign(session, at=T0)
    assert value.startswith(".")  # Flask compressed it
    assert resolver()(scope_with(b"session=" + value.encode())) == Identity("7", SID)


def test_a_fallback_key_still_verifies() -> None:
    rotated = FlaskSessionResolver("session", [OLD_SECRET, SECRET], clock=FakeClock())
    assert rotated(cookie(LOGIN, secret=OLD_SECRET)) == Identity("7", SID)
    assert rotated(cookie(LOGIN)) == Identity("7", SID)


def test_the_first_of_two_session_cookies_counts_as_in_flask() -> None:
    # Werkzeug keeps the first; Starlette's parser would keep the last and see the attacker's own.
    victim, own = sign({**LOGIN, "_user_id": "victim"}, at=T0), sign(LOGIN, at=T0)
    header = f"session={victim}; session={own}".encode()
    assert resolver()(scope_with(header)) == Identity("victim", SID)
    outcome, session = flask_sees(flask_app(), f"session={sign({'_user_id': 'victim'})}; session=x".encode())
    assert outcome == "session"
    assert session["_user_id"] == "victim"


def test_several_cookie_headers_are_joined_as_werkzeug_joins_them() -> None:
    first, second = sign({**LOGIN, "_user_id": "first"}, at=T0), sign(LOGIN, at=T0)
    scope = scope_with(f"theme=dark; session={first}".encode(), f"session={second}".encode())
    assert resolver()(scope) == Identity("first", SID)


def test_another_cookie_name_and_salt() -> None:
    custom = FlaskSessionResolver("shop", [SECRET], clock=FakeClock(), salt="my-salt")
    value = sign(LOGIN, at=T0, salt="my-salt").encode()
    assert custom(scope_with(b"shop=" + value)) == Identity("7", SID)
    assert custom(scope_with(b"session=" + value)) is None


# --------------------------------------------------------------------------- nobody, and why


def test_no_cookie_and_an_empty_session_are_nobody_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOG):
        assert resolver()(scope_with()) is None
        assert resolver()(scope_with(b"session=")) is None
        assert resolver()(cookie({})) is None
        assert resolver()(cookie({"csrf_token": "t", "_flashes": [("message", "hi")]})) is None
    assert warnings(caplog) == []
    assert resolver().read(cookie({"csrf_token": "t"})).why == (
        "the cookie 'session' holds no '_user_id' (its keys: csrf_token)"
    )


@pytest.mark.parametrize(
    ("signing", "check"),
    [
        pytest.param({"secret": "a-rotated-shop-secret-0123456789-abc"}, "signature", id="wrong-secret"),
        pytest.param({"secret": OLD_SECRET}, "signature", id="fallback-not-configured"),
        pytest.param({"salt": "itsdangerous"}, "signature", id="wrong-salt"),
        pytest.param({"at": T0 - 31 * 24 * 3600 - 1}, "age", id="older-than-the-lifetime"),
        pytest.param({"at": T0 + 5}, "age", id="signed-in-the-future"),
    ],
)
def test_a_cookie_flask_refuses_is_nobody_and_said(
    caplog: pytest.LogCaptureFixture, signing: dict[str, Any], check: str
) -> None:
    r = resolver()
    with caplog.at_level(logging.WARNING, logger=LOG):
        assert r(cookie(LOGIN, **signing)) is None
        assert r(cookie(LOGIN, **signing)) is None
    reading = r.read(cookie(LOGIN, **signing))
    assert (reading.identity, reading.notable, reading.check) == (None, True, check)
    (said,) = warnings(caplog)  # once a minute, not once a request
    assert said.startswith("identity: the cookie 'session' ")
    assert SECRET not in said
    assert "7" not in said.replace("PERMANENT_SESSION_LIFETIME", "")


def test_the_age_is_flask_lifetime_by_default_and_null_checks_none() -> None:
    at = T0 - 31 * 24 * 3600
    assert resolver()(cookie(LOGIN, at=at)) == Identity("7", SID)  # exactly the lifetime: still valid
    assert resolver()(cookie(LOGIN, at=at - 1)) is None
    assert resolver(max_age_seconds=3600)(cookie(LOGIN, at=T0 - 3601)) is None
    assert resolver(max_age_seconds=None)(cookie(LOGIN, at=T0 - 400 * 24 * 3600)) == Identity("7", SID)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b".bm90IHpsaWI", id="marked-compressed-but-not"),
        pytest.param(b"e30", id="base64-json-but-of-a-dict"),  # the control: {} is an empty session
        pytest.param(b"eyI", id="broken-json"),
        pytest.param(b"a", id="not-base64"),
        pytest.param(b"eyIgdCI6NX0", id="a-tag-flask-cannot-load"),  # {" t":5}
        pytest.param(b"InRleHQi", id="a-string"),  # "text": Flask's dict() fails on it
        pytest.param(b"Nw", id="a-number"),
    ],
)
def test_a_signed_payload_flask_cannot_load_is_nobody_and_notable(payload: bytes) -> None:
    scope = scope_with(b"session=" + sign_payload(payload, at=T0).encode())
    reading = resolver().read(scope)
    assert reading.identity is None
    if payload == b"e30":
        assert (reading.notable, reading.check) == (False, "key")
        return
    assert (reading.notable, reading.check) == (True, "session")
    # Flask fails the request on each of them (500): it never serves them as a user.
    outcome, _ = flask_sees(flask_app(), b"session=" + sign_payload(payload).encode())
    assert outcome == "error"


def test_a_list_of_pairs_is_a_session_as_in_flask() -> None:
    pairs = b"W1siX3VzZXJfaWQiLCI5Il1d"  # [["_user_id","9"]]
    scope = scope_with(b"session=" + sign_payload(pairs, at=T0).encode())
    assert resolver()(scope) == Identity("9")


@pytest.mark.parametrize(
    "session",
    [
        pytest.param({**LOGIN, "_user_id": ["7"]}, id="a-list"),
        pytest.param({**LOGIN, "_user_id": ("7",)}, id="a-tuple"),
        pytest.param({**LOGIN, "_user_id": b"7"}, id="bytes"),
        pytest.param({**LOGIN, "_user_id": True}, id="a-boolean"),
        pytest.param({**LOGIN, "_user_id": 7.0}, id="a-float"),
        pytest.param({**LOGIN, "_user_id": "7" * (MAX_USER_ID_LENGTH + 1)}, id="too-long"),
        pytest.param({**LOGIN, "_id": {"a": 1}}, id="a-session-id-mapping"),
    ],
)
def test_a_user_id_of_the_wrong_type_fails_closed(session: dict[str, Any]) -> None:
    with pytest.raises(UnusableIdentity):
        resolver()(cookie(session))


def test_a_login_without_the_user_key_is_notable(caplog: pytest.LogCaptureFixture) -> None:
    # identity.user_key names a key the shop does not use: Flask-Login's marks give it away.
    with caplog.at_level(logging.WARNING, logger=LOG):
        assert resolver(key="user_id")(cookie(LOGIN)) is None
    (said,) = warnings(caplog)
    assert "holds no 'user_id' (its keys: _fresh, _id, _user_id)" in said


def test_a_login_without_its_session_id_is_a_user_not_bound(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOG):
        assert resolver()(cookie({"_user_id": "7"})) == Identity("7")
    (said,) = warnings(caplog)
    assert "no session_id_key '_id'" in said
    assert resolver(session_id_key=None)(cookie(LOGIN)) == Identity("7")


def test_require_fresh_reads_a_restored_login_as_nobody() -> None:
    assert resolver(require_fresh=True)(cookie(LOGIN)) == Identity("7", SID)
    assert resolver(require_fresh=True)(cookie({**LOGIN, "_fresh": False})) is None
    assert resolver(require_fresh=True)(cookie({"_user_id": "7", "_id": SID})) is None
    assert resolver()(cookie({**LOGIN, "_fresh": False})) == Identity("7", SID)


def test_roles_from_a_session_key() -> None:
    found = resolver(roles_key="roles")(cookie({**LOGIN, "roles": ["manager", 3]}))
    assert found is not None
    assert found.roles == {"manager"}


# --------------------------------------------------------------------------- the cache


def test_a_decoded_cookie_is_remembered_until_its_age_runs_out() -> None:
    clock = FakeClock()
    r = resolver(clock, max_age_seconds=3600)
    scope = cookie(LOGIN)
    assert r(scope) == Identity("7", SID)
    assert len(r._cache) == 1
    clock.advance(3600)
    assert r(scope) == Identity("7", SID)  # age 3600: Flask still takes it
    clock.advance(1)
    assert r(scope) is None  # the cached reading ran out with the age


def test_refused_cookies_are_not_remembered() -> None:
    r = resolver()
    r(cookie(LOGIN, secret=OLD_SECRET))
    assert len(r._cache) == 0


# --------------------------------------------------------------------------- settings and install


def settings_for(identity: dict[str, Any], **interface: Any) -> Any:
    return settings_from_mapping(
        {
            "secret_keys": ["k" * 40],
            "interfaces": {"admin": {"path_prefix": "/admin", "identity": identity, **interface}},
        }
    )


def test_the_settings_default_to_flask_and_flask_login() -> None:
    identity = settings_for({"from": "flask_session", "secret_key": SECRET}).interfaces["admin"].identity
    assert (identity.cookie, identity.user_key, identity.session_id_key) == ("session", "_user_id", "_id")
    assert (identity.salt, identity.require_fresh) == ("cookie-session", False)
    assert identity.max_age_seconds == 31 * 24 * 3600  # Flask's PERMANENT_SESSION_LIFETIME
    built = build_resolver(identity, trusted_proxies=(), where="interfaces.admin.identity")
    assert isinstance(built, FlaskSessionResolver)
    assert built(scope_with(b"session=" + sign(LOGIN).encode())) == Identity("7", SID)


def test_the_settings_list_fallbacks_before_the_key_as_flask_does() -> None:
    identity = (
        settings_for({"from": "flask_session", "secret_key": SECRET, "secret_key_fallbacks": OLD_SECRET})
        .interfaces["admin"]
        .identity
    )
    built = build_resolver(identity, trusted_proxies=(), where="w")
    assert built(scope_with(b"session=" + sign(LOGIN, secret=OLD_SECRET).encode())) == Identity("7", SID)


def test_a_proof_cookie_named_like_the_flask_session_is_refused() -> None:
    with pytest.raises(ConfigError, match="is the shop's session cookie"):
        settings_for({"from": "flask_session", "secret_key": SECRET}, proof_cookie="session")


def test_without_flask_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "flask.sessions", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'tfa-middleware\[flask\]'"):
        FlaskSessionResolver("session", [SECRET], clock=FakeClock())


def test_the_package_imports_without_flask() -> None:
    code = (
        "import sys; sys.modules['flask'] = None; sys.modules['werkzeug'] = None\n"
        "import tfa_middleware, tfa_middleware.identity, tfa_middleware.identity.flask\n"
        "assert 'flask' not in [m for m in sys.modules if sys.modules[m] is not None]"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
