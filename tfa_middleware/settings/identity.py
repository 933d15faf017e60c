"""``identity``: how the shop's logged-in user is found in a request, one model per ``from:``.

A discriminated union on ``from``, so each source carries exactly its own keys, typed and
required where it needs them (a resolver never meets a missing one); see
:mod:`tfa_middleware.identity` for the resolvers they build.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, Discriminator, Field, StrictBool, StrictInt

from .types import (
    Dotted,
    Identifier,
    NonEmpty,
    OneOrMore,
    SecretText,
    Section,
    ShopCookieName,
    between,
    invalid,
)


class _SessionKeys(Section):
    key: NonEmpty  # the session key holding the user id
    session_id_key: NonEmpty | None = None  # the session key holding a login id: the proof is bound to it
    roles_key: NonEmpty | None = None  # the session key with the user's role or roles (manage page)


class SessionSource(_SessionKeys):
    """``scope["session"]``, as the shop's own ``SessionMiddleware`` left it."""

    source: Literal["session"] = Field(default="session", alias="from")


class StarletteSessionCookieSource(_SessionKeys):
    """The shop's Starlette session cookie, read and checked here with the shop's secret."""

    source: Literal["starlette_session_cookie"] = Field(default="starlette_session_cookie", alias="from")
    cookie: ShopCookieName = "session"
    secret_key: SecretText
    # None: the signature alone decides, as the shop's own middleware judges the age; a stricter
    # age here would read a session the shop still honours as "nobody".
    max_age_seconds: Annotated[StrictInt, between(60, 366 * 24 * 3600)] | None = None


def _identifiers(names: tuple[str, ...]) -> tuple[str, ...]:
    for name in names:
        if not name.isidentifier():
            raise invalid(f"{name!r} is not a Python attribute name")
    return names


class ScopeUserSource(Section):
    """``scope["user"]`` (Starlette's ``AuthenticationMiddleware``)."""

    source: Literal["scope_user"] = Field(default="scope_user", alias="from")
    attribute: Identifier = "identity"
    require: Annotated[OneOrMore, AfterValidator(_identifiers)] = ()  # attributes that must be true


class HeaderSource(Section):
    """A header set by a trusted proxy (``trusted_proxies``)."""

    source: Literal["header"] = Field(default="header", alias="from")
    header: NonEmpty


class CallableSource(Section):
    """The shop's own function, ``package.module:function``."""

    source: Literal["callable"] = Field(default="callable", alias="from")
    callable_path: Dotted = Field(alias="path")
    # A sync function may block (Django's ORM), so it runs in a worker thread; false runs it on
    # the event loop, saving the thread hop, for a function that never blocks.
    blocking: StrictBool = True


IdentitySettings = Annotated[
    SessionSource | StarletteSessionCookieSource | ScopeUserSource | HeaderSource | CallableSource,
    Discriminator("source"),
]
IdentitySource = Literal["session", "starlette_session_cookie", "scope_user", "header", "callable"]
IDENTITY_SOURCES: tuple[str, ...] = get_args(IdentitySource)
SOURCE_MODELS: dict[str, type[Section]] = {
    "session": SessionSource,
    "starlette_session_cookie": StarletteSessionCookieSource,
    "scope_user": ScopeUserSource,
    "header": HeaderSource,
    "callable": CallableSource,
}
