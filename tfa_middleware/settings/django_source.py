"""``identity: {from: django_session}``: the shop's Django session, read in the shop's own process
through Django's session engine and auth code (:mod:`tfa_middleware.identity.django`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StrictInt

from .types import Section, ShopCookieName, between, one_as_list

# The user's attributes a condition may name. is_active is always required (as Django's
# ModelBackend requires it); naming it changes nothing.
DjangoFlag = Literal["is_staff", "is_superuser", "is_active"]


class DjangoSessionSource(Section):
    """The shop's Django session (whatever ``SESSION_ENGINE`` says), the user as Django's own
    ``get_user`` finds it; only users with every attribute in ``require`` belong to the interface."""

    source: Literal["django_session"] = Field(default="django_session", alias="from")
    cookie: ShopCookieName | None = None  # None: Django's SESSION_COOKIE_NAME
    require: Annotated[tuple[DjangoFlag, ...], BeforeValidator(one_as_list)] = ("is_staff",)
    # How long a session key's reading is remembered: a returning browser costs no query and no
    # thread hop; a logout in the shop is seen at most this late (and the shop refuses it anyway).
    cache_seconds: Annotated[StrictInt, between(0, 300)] = 5
