"""The fail-closed cases (tests/test_fail_closed.py) for the framework resolvers: a mistake in the
identity settings of ``flask_session`` (a Flask-Login shop under WSGI) or ``jwt`` (fastapi-users'
cookie transport under ASGI) never lets a logged-in user reach the shop's page without the second
factor. With the right settings the same login is challenged (the control); with a wrong secret,
salt, key, claim, audience or cookie name the resolver sees nobody and the guard withholds the
shop's page, or the verified token without a usable claim is the error page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.harness import Harness
from tests.test_session_end import flask_login_shop, jwt_shop
from tests.wsgi_harness import WSGIHarness

HTML = {"accept": "text/html"}


def outcome(response: httpx.Response, page: str) -> str:
    """What the browser got: the challenge, the guard's refusal, an error page, or the shop's page."""
    if response.status_code == 303 and "/_2fa/" in response.headers.get("location", ""):
        return "challenged"
    if response.status_code == 403 and "This page can't be shown" in response.text:
        return "withheld"
    if response.status_code >= 500 and page not in response.text:
        return "error page"
    return f"{response.status_code}: {response.text[:80]!r}"


def flask_identity(**overrides: Any) -> dict[str, Any]:
    from tests.flask_shop import SECRET

    return {"from": "flask_session", "secret_key": SECRET, **overrides}


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        pytest.param(flask_identity(), "challenged", id="right"),
        pytest.param(
            flask_identity(secret_key="another-secret-key-0123456789-abcdefghijk"), "withheld", id="secret"
        ),
        pytest.param(flask_identity(salt="cookie-sessions"), "withheld", id="salt"),
        pytest.param(flask_identity(user_key="user_id"), "withheld", id="user_key"),
        pytest.param(flask_identity(cookie="flask_session"), "withheld", id="cookie"),
    ],
)
def test_flask_login_under_wsgi(
    make_wsgi: Callable[..., WSGIHarness], identity: dict[str, Any], expected: str
) -> None:
    h = make_wsgi(flask_login_shop(), interfaces={"admin": {"path_prefix": "/admin", "identity": identity}})
    assert h.client.get("/login/7").text == "in"
    assert outcome(h.client.get("/admin/orders", headers=HTML), "orders") == expected


def jwt_identity(**overrides: Any) -> dict[str, Any]:
    from tests.tokens import AUDIENCE, COOKIE, SECRET

    return {"from": "jwt", "cookie": COOKIE, "secret": SECRET, "audience": AUDIENCE, **overrides}


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        pytest.param(jwt_identity(), "challenged", id="right"),
        pytest.param(
            jwt_identity(secret="another-shop-jwt-secret-0123456789-abcdefgh"), "withheld", id="secret"
        ),
        pytest.param(jwt_identity(audience="fastapi-users:other"), "withheld", id="audience"),
        pytest.param(jwt_identity(algorithms=["HS512"]), "withheld", id="algorithm"),
        pytest.param(jwt_identity(cookie="fastapiusers"), "withheld", id="cookie"),
        pytest.param(jwt_identity(claim="user_id"), "error page", id="claim"),
    ],
)
async def test_a_fastapi_users_cookie_under_asgi(
    make_harness: Callable[..., Any], identity: dict[str, Any], expected: str
) -> None:
    h: Harness = await make_harness(
        jwt_shop(), interfaces={"admin": {"path_prefix": "/admin", "identity": identity}}
    )
    assert (await h.client.get("/login", params={"user": "alice"})).text == "token written"
    assert outcome(await h.client.get("/admin/orders", headers=HTML), "orders") == expected
