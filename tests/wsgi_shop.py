"""A tiny WSGI shop (no framework) for the WSGI middleware's tests, in-process and under gunicorn.

Who is logged in: a Starlette-compatible signed session cookie (``/login?user=…&sid=…`` sets it,
``/admin/logout`` clears it), so the cookie resolver reads what the shop reads; or, for the
harness, the plain ``x-test-user`` header that ``tests.harness:header_resolver`` reads. The shop
itself serves its pages to anybody (as a shop whose login the middleware cannot see looks), so the
guard has something to withhold.

``gunicorn 'tests.wsgi_shop:create_app()'`` with TFA_TEST_CONFIG naming the settings file;
TFA_TEST_WARM=1 uses the middleware's loop and database in the master (with ``--preload``: the
loop and the connections a fork must leave behind).
"""

from __future__ import annotations

import json
import os
from base64 import b64decode, b64encode
from collections.abc import Iterable, Iterator
from http.cookies import SimpleCookie
from wsgiref.types import StartResponse, WSGIEnvironment

from itsdangerous import BadSignature, TimestampSigner

from tfa_middleware import second_factor
from tfa_middleware.wsgi import TwoFactorWSGIMiddleware

SHOP_SECRET = "wsgi-shop-secret-0123456789-abcdefghij"
POSTED: list[str] = []


def session_cookie(session: dict[str, str], secret: str = SHOP_SECRET) -> str:
    """The value Starlette's SessionMiddleware would set for ``session``."""
    return TimestampSigner(secret).sign(b64encode(json.dumps(session).encode())).decode()


def _session(environ: WSGIEnvironment) -> dict[str, str]:
    cookie = SimpleCookie()
    try:
        cookie.load(environ.get("HTTP_COOKIE", ""))
    except Exception:
        return {}
    morsel = cookie.get("session")
    if morsel is None:
        return {}
    try:
        data: dict[str, str] = json.loads(b64decode(TimestampSigner(SHOP_SECRET).unsign(morsel.value)))
    except (BadSignature, ValueError):
        return {}
    return data


def _text(start_response: StartResponse, body: str, status: str = "200 OK", **headers: str) -> list[bytes]:
    encoded = body.encode()
    extra = [(k.replace("_", "-"), v) for k, v in headers.items()]
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(encoded))), *extra])
    return [encoded]


def _streamed(start_response: StartResponse) -> Iterator[bytes]:
    # Starts the response from inside the body, as a WSGI generator may.
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(3):
        yield f"secret chunk {i}\n".encode()


def shop(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    path, method = environ.get("PATH_INFO", "/"), environ["REQUEST_METHOD"]
    query = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
    if path == "/login":
        value = session_cookie({"user_id": query["user"], "sid": query["sid"]})
        return _text(start_response, "logged in", Set_Cookie=f"session={value}; Path=/; HttpOnly")
    if path == "/admin/logout":
        gone = "session=null; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        start_response("303 See Other", [("Location", "/"), ("Set-Cookie", gone), ("Content-Length", "0")])
        return [b""]
    if path == "/admin/pid":
        return _text(start_response, str(os.getpid()))
    if path == "/admin/api/orders":
        body = json.dumps({"ok": True, "tfa": second_factor(environ) is not None}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/admin/stream":
        return _streamed(start_response)
    if path.startswith("/admin/status/"):
        return _text(start_response, "shop says", f"{path.rsplit('/', 1)[1]} Whatever")
    if path == "/admin/orders/delete":
        POSTED.append(f"{method} {path}")
        start_response("303 See Other", [("Location", "/admin/orders"), ("Content-Length", "0")])
        return [b""]
    user = _session(environ).get("user_id")
    if path == "/admin/orders" and user:
        return _text(start_response, f"orders of {user}")
    return _text(start_response, f"shop page {path}")


def mounted(prefix: str, app: TwoFactorWSGIMiddleware) -> object:
    """``app`` under ``prefix``, as a dispatcher moves the prefix from PATH_INFO to SCRIPT_NAME."""

    def dispatch(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == prefix or path.startswith(prefix + "/"):
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
            environ["PATH_INFO"] = path[len(prefix) :]
            return app(environ, start_response)
        return _text(start_response, "not here", "404 Not Found")

    return dispatch


def create_app() -> TwoFactorWSGIMiddleware:
    app = TwoFactorWSGIMiddleware.from_yaml(shop, os.environ["TFA_TEST_CONFIG"])
    if os.environ.get("TFA_TEST_WARM"):
        app.run(app.service.store.ping())  # the loop and a pooled connection, in the master
    return app
