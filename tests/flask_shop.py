"""A Flask shop for the flask_session tests: cookies signed exactly as Flask signs them (at a chosen
time), and what Flask's own session loader makes of a Cookie header."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.sessions import session_json_serializer
from itsdangerous import URLSafeTimedSerializer
from werkzeug.test import EnvironBuilder

from tfa_middleware.identity.flask import FlaskSessionResolver
from tfa_middleware.signing import ClockedTimestampSigner

SECRET = "flask-shop-secret-key-for-the-tests-0123456789"
OLD_SECRET = "flask-shop-old-secret-rotated-out-9876543210"
LIFETIME = 31 * 24 * 3600  # Flask's PERMANENT_SESSION_LIFETIME default


def flask_app(secret: str = SECRET, fallbacks: tuple[str, ...] = (), lifetime: int | None = None) -> Flask:
    app = Flask("shop")
    app.config["SECRET_KEY"] = secret
    app.config["SECRET_KEY_FALLBACKS"] = list(fallbacks)
    if lifetime is not None:
        app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=lifetime)
    return app


def sign(session: Any, *, secret: str = SECRET, at: float | None = None, salt: str = "cookie-session") -> str:
    """A session cookie's value as Flask's SecureCookieSessionInterface writes it, signed at ``at``."""
    stamp = time.time() if at is None else at
    return URLSafeTimedSerializer(
        secret,
        salt=salt,
        serializer=session_json_serializer,
        signer=ClockedTimestampSigner,
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1, "clock": lambda: stamp},
    ).dumps(session)


def sign_payload(payload: bytes, *, secret: str = SECRET, at: float | None = None) -> str:
    """Any bytes signed as a session payload: what only the secret's owner can produce."""
    stamp = time.time() if at is None else at
    signer = ClockedTimestampSigner(
        secret, salt="cookie-session", key_derivation="hmac", digest_method=hashlib.sha1, clock=lambda: stamp
    )
    return signer.sign(payload).decode("latin-1")


def flask_sees(app: Flask, cookie_header: bytes | None) -> tuple[str, Any]:
    """Flask's own loader on this Cookie header: ("session", the mapping) or ("error", the exception)
    (Flask answers that request with a 500)."""
    environ = EnvironBuilder(path="/admin/").get_environ()
    if cookie_header is not None:
        environ["HTTP_COOKIE"] = cookie_header.decode("latin-1")  # PEP 3333: headers as latin-1 text
    with app.app_context():
        try:
            session = app.session_interface.open_session(app, app.request_class(environ))
        except Exception as exc:
            return "error", exc
    return "session", session


def resolver_for(app: Flask, **options: Any) -> FlaskSessionResolver:
    """Our resolver with the app's settings, on the real clock (Flask's)."""
    keys = [*app.config["SECRET_KEY_FALLBACKS"], app.config["SECRET_KEY"]]
    lifetime = int(app.permanent_session_lifetime.total_seconds())
    options.setdefault("max_age_seconds", lifetime)
    return FlaskSessionResolver(app.config["SESSION_COOKIE_NAME"], keys, clock=time.time, **options)


def scope_with(*cookie_headers: bytes) -> dict[str, Any]:
    return {"type": "http", "path": "/admin/", "headers": [(b"cookie", h) for h in cookie_headers]}
