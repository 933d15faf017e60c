"""``interfaces.<name>``: one protected part of the shop, chosen by path prefix.

The checks between keys of one interface (the pages and the exemptions inside the prefix, a logout
that opens nothing, roles that can be read) run as validators of the later key, on the earlier
keys that validated: a type error elsewhere in the interface hides none of them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
)

from .identity import CallableSource, IdentitySettings
from .types import (
    CookieName,
    Path,
    Prefix,
    Section,
    StrList,
    as_prefix,
    between,
    inside,
    invalid,
    path_problem,
    raise_any,
)


def _interface_names(names: tuple[str, ...]) -> tuple[str, ...]:
    if not names:
        raise invalid("must name at least one interface")
    return tuple(dict.fromkeys(names))


class ManageSettings(Section):
    """Who may open ``<pages_path>/manage``: these user ids, or users with one of these roles."""

    allow_user_ids: StrList = ()
    allow_roles: StrList = ()
    # The interfaces whose users those managers may list and act on (empty: this one alone).
    interfaces: Annotated[StrList, AfterValidator(_interface_names)] = ()


def _default_pages(data: dict[str, Any]) -> str:
    prefix = data.get("path_prefix", "/")
    return ("" if prefix == "/" else prefix) + "/_2fa"


class InterfaceSettings(Section):
    _name: str = PrivateAttr("")
    enabled: StrictBool = True
    path_prefix: Prefix
    pages_path: Prefix = Field(default_factory=_default_pages)
    exempt: StrList = ()
    proof_max_age_seconds: Annotated[StrictInt, between(60, 30 * 24 * 3600)] = 12 * 3600
    proof_cookie: CookieName  # the file's default, tfa_<name>, is filled in by Settings
    on_missing_phone: Literal["enroll", "skip"] = "enroll"
    # A phone change needs a second factor at most this old; older, and the old number is asked first.
    phone_change_fresh_seconds: Annotated[StrictInt, between(60, 24 * 3600)] = 600
    identity: IdentitySettings
    manage: ManageSettings = ManageSettings()
    # What to do when the resolver sees nobody and the shop serves the protected page anyway (2xx):
    # "block" (the page is withheld) or "warn" (served, and logged), for a shop whose login form
    # answers 200 at the protected URL itself.
    unidentified: Literal["block", "warn"] = "block"
    # The shop's own logout, relative to the application's root: a link on every page, and a
    # request there ends this browser's proof in the same response.
    logout_url: Path | None = None

    @property
    def name(self) -> str:
        """The interface's key in ``interfaces``."""
        return self._name

    @property
    def manage_user_ids(self) -> tuple[str, ...]:
        return self.manage.allow_user_ids

    @property
    def manage_roles(self) -> tuple[str, ...]:
        return self.manage.allow_roles

    @property
    def manage_interfaces(self) -> tuple[str, ...]:
        return self.manage.interfaces or (self.name,)

    @field_validator("pages_path")
    @classmethod
    def _pages_inside(cls, pages: str, info: ValidationInfo) -> str:
        prefix = info.data.get("path_prefix")
        if prefix and (not inside(pages, prefix) or pages == prefix):
            raise invalid(f"must be below path_prefix {prefix!r}, e.g. {_default_pages(info.data)!r}")
        return pages

    @field_validator("exempt")
    @classmethod
    def _exemptions(cls, entries: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        prefix, pages = info.data.get("path_prefix"), info.data.get("pages_path")
        found: list[tuple[str, str]] = []
        for i, entry in enumerate(entries):
            problem = path_problem(entry)
            normal = entry.lower()
            if problem is None and prefix and pages:
                problem = _exemption_problem(entry, normal, prefix, pages)
            if problem:
                found.append((f"[{i}]", problem))
        raise_any(found)
        return tuple(entry.lower() for entry in entries)

    @field_validator("manage")
    @classmethod
    def _roles_readable(cls, manage: ManageSettings, info: ValidationInfo) -> ManageSettings:
        identity = info.data.get("identity")
        readable = (
            identity is None or isinstance(identity, CallableSource) or getattr(identity, "roles_key", None)
        )
        if manage.allow_roles and not readable:
            raise_any(
                [
                    (
                        "allow_roles",
                        "needs identity.roles_key (the session key holding the user's roles) "
                        "or a callable resolver",
                    )
                ]
            )
        return manage

    @field_validator("logout_url")
    @classmethod
    def _logout_opens_nothing(cls, logout_url: str | None, info: ValidationInfo) -> str | None:
        # The logout is open to everybody (nobody needs a code to leave): it must be the shop's
        # logout and nothing else, never the interface itself or our own pages.
        prefix, pages = info.data.get("path_prefix"), info.data.get("pages_path")
        if logout_url and prefix and pages:
            leaving = as_prefix(logout_url)
            if leaving == prefix or inside(leaving, pages):
                opened = "our pages" if inside(leaving, pages) else "the whole interface"
                raise invalid(
                    f"{logout_url!r} would open {opened} to everybody: give the shop's own logout page, "
                    "e.g. /admin/logout"
                )
        return logout_url


def _exemption_problem(entry: str, normal: str, prefix: str, pages: str) -> str | None:
    if not inside(normal.rstrip("/") or "/", prefix):
        return f"{entry!r} is outside path_prefix {prefix!r}"
    if normal.rstrip("/") == prefix.rstrip("/"):
        return "exempting the whole prefix disables the interface; use enabled: false"
    covers = inside(pages, normal.rstrip("/") or "/") if normal.endswith("/") else normal.rstrip("/") == pages
    if covers:
        return f"{entry!r} covers pages_path {pages!r}, so the challenge pages could never be reached"
    return None
