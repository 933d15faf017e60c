"""``identity: {from: flask_session}``: the shop's Flask session cookie (Flask's default
``SecureCookieSessionInterface``), read with the shop's ``SECRET_KEY``; Flask-Login's keys by default."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StrictBool, StrictInt, StrictStr

from .types import NonEmpty, SecretText, Section, between, check, one_as_list

# Flask's PERMANENT_SESSION_LIFETIME default. Flask checks every session cookie's age against it,
# permanent or not (SecureCookieSessionInterface.open_session), so the default agrees with Flask's.
FLASK_SESSION_LIFETIME = 31 * 24 * 3600
ShopCookieName = Annotated[
    StrictStr, check(r"[A-Za-z0-9_\-]{1,64}", "must be 1-64 letters, digits, '_' or '-'")
]


class FlaskSessionSource(Section):
    """The shop's Flask session cookie, checked here as Flask checks it."""

    source: Literal["flask_session"] = Field(default="flask_session", alias="from")
    secret_key: SecretText  # the shop's SECRET_KEY
    # The shop's SECRET_KEY_FALLBACKS (Flask 3.1): older keys that still verify.
    secret_key_fallbacks: Annotated[tuple[SecretText, ...], BeforeValidator(one_as_list)] = ()
    cookie: ShopCookieName = "session"  # SESSION_COOKIE_NAME
    user_key: NonEmpty = "_user_id"  # Flask-Login's
    # Flask-Login's _id: a hash of the address and user agent, the same at every login from one
    # browser, so it binds a proof to the browser rather than to one login.
    session_id_key: NonEmpty | None = "_id"
    roles_key: NonEmpty | None = None  # the session key with the user's role or roles (manage page)
    # PERMANENT_SESSION_LIFETIME in seconds; null checks no age (the signature alone decides).
    max_age_seconds: Annotated[StrictInt, between(0, 100 * 366 * 24 * 3600)] | None = FLASK_SESSION_LIFETIME
    salt: NonEmpty = "cookie-session"  # SecureCookieSessionInterface.salt
    # Only a fresh login (Flask-Login's _fresh: not one restored from a remember-me cookie) counts.
    require_fresh: StrictBool = False
