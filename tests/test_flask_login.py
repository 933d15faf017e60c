"""``from: flask_session`` with the real parts: a Flask-Login login made by Flask's test client and
read by the resolver, the middleware in front of a shop keeping a Flask session, and doctor."""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session
from flask_login import LoginManager, login_user, logout_user

from tests.flask_shop import OLD_SECRET, SECRET, flask_app, scope_with, sign
from tests.harness import ADMIN_PHONE, Harness
from tfa_middleware import load_settings
from tfa_middleware.cli import main
from tfa_middleware.identity import Identity, build_resolver
from tfa_middleware.identity.flask import FlaskSessionResolver
from tfa_middleware.wsgi import TwoFactorWSGIMiddleware

LOG = "tfa_middleware"
LOGIN = {"_user_id": "7", "_id": "5" * 128, "_fresh": True}


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOG and r.levelno == logging.WARNING]


# --------------------------------------------------------------------------- a real Flask-Login login


class User:
    """What Flask-Login asks of a user (its UserMixin, spelled out)."""

    is_authenticated, is_active, is_anonymous = True, True, False

    def __init__(self, user_id: str) -> None:
        self.id = user_id

    def get_id(self) -> str:
        return self.id


def login_shop() -> Flask:
    app = flask_app()
    manager = LoginManager(app)
    manager.user_loader(User)

    @app.get("/login/<user_id>")
    def login(user_id: str) -> str:
        session["csrf_token"] = "t"  # the shop's own key: the session outlives the logout
        login_user(User(user_id))
        return "in"

    @app.get("/logout")
    def logout() -> str:
        logout_user()
        return "out"

    return app


def test_a_real_flask_login_cookie_is_read() -> None:
    app = login_shop()
    r = FlaskSessionResolver("session", [SECRET], clock=time.time)
    client = app.test_client()
    client.get("/login/42", headers={"User-Agent": "browser-a"})
    first = client.get_cookie("session")
    assert first is not None
    found = r(scope_with(f"session={first.value}".encode()))
    assert found is not None
    assert found.user_id == "42"
    with client.session_transaction() as session:
        assert found.session_id == session["_id"]

    client.get("/logout", headers={"User-Agent": "browser-a"})
    out = client.get_cookie("session")
    assert out is not None
    assert r(scope_with(f"session={out.value}".encode())) is None
    assert not r.read(scope_with(f"session={out.value}".encode())).notable

    # Logging in again from the same browser gives the same _id: it binds weakly (README).
    client.get("/login/42", headers={"User-Agent": "browser-a"})
    again = client.get_cookie("session")
    assert again is not None
    assert r(scope_with(f"session={again.value}".encode())) == found


# --------------------------------------------------------------------------- behind the middleware


async def _orders(_scope: Any, _receive: Any, send: Any) -> None:
    """A shop page that is served to anybody: the middleware alone decides."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"orders"})


def flask_identity(**overrides: Any) -> dict[str, Any]:
    identity = {"from": "flask_session", "secret_key": SECRET, **overrides}
    return {"admin": {"path_prefix": "/admin", "identity": identity}}


async def test_the_middleware_challenges_a_flask_login(make_harness: Callable[..., Any]) -> None:
    h: Harness = await make_harness(_orders, interfaces=flask_identity())
    await h.service.set_phone("admin", "7", *ADMIN_PHONE, confirmed=True)
    headers = {"cookie": f"session={sign(LOGIN)}", "accept": "text/html"}
    answer = await h.client.get("/admin/orders", headers=headers)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/admin/_2fa/challenge?")


async def test_the_middleware_with_another_secret_withholds_the_page(
    make_harness: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    h: Harness = await make_harness(_orders, interfaces=flask_identity(secret_key=OLD_SECRET))
    with caplog.at_level(logging.WARNING, logger=LOG):
        answer = await h.client.get("/admin/orders", headers={"cookie": f"session={sign(LOGIN)}"})
    assert answer.status_code == 403
    assert "orders" not in answer.text
    assert any("signature does not match" in said for said in warnings(caplog))


async def test_the_middleware_answers_an_unusable_user_id_with_an_error(
    make_harness: Callable[..., Any],
) -> None:
    h: Harness = await make_harness(_orders, interfaces=flask_identity())
    unusable = sign({**LOGIN, "_user_id": [7]})
    answer = await h.client.get("/admin/orders", headers={"cookie": f"session={unusable}"})
    assert answer.status_code >= 500
    assert "orders" not in answer.text


# --------------------------------------------------------------------------- doctor


def doctor_config(tmp_path: Path, identity: str) -> Path:
    path = tmp_path / "tfa.yaml"
    path.write_text(
        f"""
secret_keys: ["{"d" * 40}"]
database_url: "sqlite+aiosqlite:///{tmp_path / "tfa.sqlite3"}"
interfaces:
  admin:
    path_prefix: /admin
    exempt: [/admin/login]
    logout_url: /admin/logout
    identity: {identity}
""",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("identity", "signing", "expected"),
    [
        pytest.param(
            f'{{from: flask_session, secret_key: "{SECRET}"}}',
            {},
            [
                "  [ok] its signature matches identity.secret_key",
                "  [ok] it is younger than identity.max_age_seconds (2678400 s)",
                "  [ok] the session holds identity.user_key '_user_id'",
                "  [ok] it holds identity.session_id_key '_id': the proof is bound to this login",
            ],
            id="read",
        ),
        pytest.param(
            f'{{from: flask_session, secret_key: "{SECRET}"}}',
            {"secret": OLD_SECRET},
            [
                "  [NO] its signature does not match identity.secret_key -- a different or rotated secret? "
                "It must be the shop's SECRET_KEY (or one of SECRET_KEY_FALLBACKS)"
            ],
            id="wrong-secret",
        ),
        pytest.param(
            f'{{from: flask_session, secret_key: "{SECRET}", max_age_seconds: 3600}}',
            {"at": time.time() - 7200},
            [
                "  [NO] it is older than identity.max_age_seconds (3600 s), so the middleware reads it as "
                "nobody while the shop may still honour it: give the shop's PERMANENT_SESSION_LIFETIME"
            ],
            id="too-old",
        ),
    ],
)
def test_doctor_explains_a_flask_cookie(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    identity: str,
    signing: dict[str, Any],
    expected: list[str],
) -> None:
    path = doctor_config(tmp_path, identity)
    value = sign(LOGIN, **signing)
    cookie = f"theme=dark; session={value}"
    main(["doctor", "--config", str(path), "--path", "/admin/orders", "--cookie", cookie])
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    for line in expected:
        assert line in lines
    assert value not in out
    assert SECRET not in out


# --------------------------------------------------------------------------- examples/flask_login


def test_the_flask_login_example_is_read_with_its_own_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In-process; tests/test_example_flask_login.py walks it under gunicorn."""
    example = Path(__file__).resolve().parent.parent / "examples" / "flask_login"
    monkeypatch.setenv("FLASK_SECRET", SECRET)
    monkeypatch.setenv("TFA_SECRET_KEY", "e" * 40)
    monkeypatch.setenv("TFA_DB", str(tmp_path / "tfa.sqlite3"))
    spec = importlib.util.spec_from_file_location("flask_login_example", example / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    shop: Flask = module.app
    wrap: TwoFactorWSGIMiddleware = shop.wsgi_app  # type: ignore[assignment]
    assert isinstance(wrap, TwoFactorWSGIMiddleware)  # the example's one line
    try:
        client = shop.test_client()
        assert client.get("/admin/").status_code == 302  # the shop's own login_required
        client.post("/admin/login", data={"name": "alice", "password": "alice-password"})
        stopped = client.get("/admin/", headers={"accept": "text/html"})
        assert stopped.status_code == 303
        assert stopped.headers["location"].startswith("/admin/_2fa/")
        value = client.get_cookie("session")
        assert value is not None
    finally:
        wrap.close()

    settings = load_settings(example / "config.yaml")
    admin = settings.interfaces["admin"]
    resolver = build_resolver(admin.identity, trusted_proxies=(), where="interfaces.admin.identity")
    found = resolver(scope_with(f"session={value.value}".encode()))
    assert isinstance(found, Identity)
    assert found.user_id == "1"
    assert found.session_id is not None
