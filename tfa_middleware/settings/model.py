"""The whole file: :class:`Settings`, and the checks between its sections, run once every
section has validated."""

from __future__ import annotations

import importlib.util
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic import ValidatorFunctionWrapHandler as Handler

from ..i18n import Languages
from ..public_keys import is_public
from .flask_session import FlaskSessionSource
from .interfaces import NAME_KEY, Dotted, HeaderSource, InterfaceSettings, StarletteSessionCookieSource
from .jwt_source import JwtSource
from .operations import OperationsSettings, outside_interfaces
from .origins import LOCALHOST
from .sections import BrandingSettings, LimitSettings, PoolSettings, ProviderSettings
from .types import Networks, NonEmpty, Secret, Section, between, invalid, one_as_list, raise_any

MIN_SECRET_KEY_LENGTH = 32
_SESSION_COOKIE_SOURCES = (StarletteSessionCookieSource, FlaskSessionSource)  # the shop's cookie, its secret
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./tfa.sqlite3"
NEW_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
InterfaceName = Annotated[str, StringConstraints(strict=True, pattern=r"^[a-z][a-z0-9_]{0,31}$")]


def _signing_keys(keys: tuple[Secret, ...]) -> tuple[Secret, ...]:
    if not keys:
        raise invalid("needs at least one key")
    short = f"must be at least {MIN_SECRET_KEY_LENGTH} characters (make one with: {NEW_KEY})"
    raise_any(("", f"item {i}: {short}") for i, key in enumerate(keys) if len(key) < MIN_SECRET_KEY_LENGTH)
    return keys


def _database_url(value: Any) -> Any:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not isinstance(value, str):
        return value
    if not (text := value.strip()):
        raise invalid("must not be empty")
    try:
        driver = make_url(text).drivername
    except ArgumentError:
        raise invalid("is not a database URL (expected e.g. sqlite+aiosqlite:///./tfa.sqlite3)") from None
    if driver not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        use = "(use sqlite+aiosqlite:///FILE or postgresql+asyncpg://USER@HOST/DB)"
        raise invalid(f"driver {driver!r} is not supported {use}")
    return text


def _directory(text: str) -> str:
    if not Path(text).is_dir():
        raise invalid(f"{text!r} is not a directory")
    return text


SigningKeys = Annotated[tuple[Secret, ...], BeforeValidator(one_as_list), AfterValidator(_signing_keys)]


class Settings(Section):
    secret_keys: SigningKeys  # newest last; the older ones still verify (rotation)
    database_url: Annotated[Secret, BeforeValidator(_database_url)] = Secret(DEFAULT_DATABASE_URL)
    revocation_check_seconds: Annotated[StrictFloat, between(0, 300)] = 10.0
    trusted_proxies: Networks = ()
    templates_dir: Annotated[NonEmpty, AfterValidator(_directory)] | None = None
    max_form_bytes: Annotated[StrictInt, between(1024, 1024 * 1024)] = 16 * 1024
    on_event: Dotted | None = None  # package.module:function given every audit event
    provider: ProviderSettings = ProviderSettings()
    limits: LimitSettings = LimitSettings()
    database_pool: PoolSettings = PoolSettings()
    auto_migrate: StrictBool | None = None  # None: yes for SQLite, no for PostgreSQL
    branding: BrandingSettings = BrandingSettings()
    # Metrics, the readiness path, and who may read them.
    operations: OperationsSettings = OperationsSettings()
    interfaces: Mapping[InterfaceName, InterfaceSettings]
    _source: str | None = PrivateAttr(None)

    @property
    def source(self) -> str | None:
        """The file the settings were read from, if any."""
        return self._source

    def interface(self, name: str) -> InterfaceSettings:
        from ..errors import UnknownInterface

        try:
            return self.interfaces[name]
        except KeyError:
            known = ", ".join(sorted(self.interfaces)) or "none"
            raise UnknownInterface(f"unknown interface {name!r} (configured: {known})") from None

    def describe(self) -> dict[str, Any]:
        """The resolved settings as plain data with every secret masked (for check-config)."""
        out = self.model_dump(mode="json", by_alias=True)
        out["database_url"] = mask_database_url(self.database_url.reveal())
        for name, iface in self.interfaces.items():
            described = out["interfaces"][name]
            described["manage"]["interfaces"] = list(iface.manage_interfaces)
            described["identity"] = {"from": described["identity"].pop("from"), **described["identity"]}
        return out

    @field_validator("interfaces", mode="wrap")
    @classmethod
    def _named(cls, value: Any, handler: Handler) -> Mapping[str, InterfaceSettings]:
        """Each interface learns its name, the key it has in the file; ``tfa_<name>`` is its cookie
        unless the file names one."""
        if isinstance(value, dict):
            if not value:
                raise invalid("needs at least one interface, e.g. admin: {path_prefix: /admin, ...}")
            value = {
                name: {"proof_cookie": f"tfa_{name}", **body, NAME_KEY: str(name)}
                if isinstance(body, dict)
                else body
                for name, body in value.items()
            }
        interfaces: Mapping[str, InterfaceSettings] = handler(value)
        return interfaces

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        found = [*_shared_places(self.interfaces.values()), *_unknown_managed(self.interfaces)]
        header = "from: header needs trusted_proxies (the addresses allowed to set that header)"
        found += [
            (f"interfaces.{iface.name}.identity", header)
            for iface in self.interfaces.values()
            if isinstance(iface.identity, HeaderSource) and not self.trusted_proxies
        ]
        found += _passkeys(self.interfaces.values(), self.provider.production_mode)
        found += _locales(self.interfaces.values(), self.templates_dir)
        found += outside_interfaces(self.operations, self.interfaces.values())
        raise_any(found + (_public_keys(self) if self.provider.production_mode else []))
        return self


def _locales(interfaces: Collection[InterfaceSettings], templates_dir: str | None) -> list[tuple[str, str]]:
    """A fixed ``locale`` needs a catalogue: one we ship, or the shop's in ``templates_dir/locale``."""
    fixed = [iface for iface in interfaces if iface.locale]
    if not fixed:
        return []
    languages = Languages(templates_dir)
    known = ", ".join(languages.codes)
    return [
        (
            f"interfaces.{iface.name}.locale",
            f"{iface.locale!r} has no catalogue (we ship {known}); a shop adds one as "
            f"templates_dir/locale/{iface.locale}/LC_MESSAGES/tfa.po",
        )
        for iface in fixed
        if iface.locale and languages.match([iface.locale.replace("_", "-")]) is None
    ]


def _passkeys(interfaces: Collection[InterfaceSettings], production: bool) -> list[tuple[str, str]]:
    """Passkeys need py_webauthn (the ``passkeys`` extra), and, in production, the shop's domain:
    the demo's localhost would make every passkey fail (closed, but for everybody)."""
    using = [iface for iface in interfaces if "webauthn" in iface.factors]
    found: list[tuple[str, str]] = []
    if using and importlib.util.find_spec("webauthn") is None:
        found.append(
            (
                f"interfaces.{using[0].name}.factors",
                "webauthn needs py_webauthn: pip install 'tfa-middleware[passkeys]'",
            )
        )
    found += [
        (f"interfaces.{iface.name}.rp_id", "set it to the shop's domain (localhost is for the demo)")
        for iface in using
        if production and iface.rp_id == LOCALHOST
    ]
    return found


def _shared_places(interfaces: Collection[InterfaceSettings]) -> list[tuple[str, str]]:
    """Two interfaces on one prefix, or one browser cookie for two purposes: one browser holds
    every interface's proof, and a proof named like the shop's session would replace its login."""
    found: list[tuple[str, str]] = []
    prefixes: dict[str, str] = {}
    cookies: dict[str, str] = {}
    sessions = {
        i.identity.cookie: i.name for i in interfaces if isinstance(i.identity, _SESSION_COOKIE_SOURCES)
    }
    for iface in interfaces:
        at, cookie = f"interfaces.{iface.name}", iface.proof_cookie
        if iface.enabled and (other := prefixes.setdefault(iface.path_prefix, iface.name)) != iface.name:
            found.append(
                (f"{at}.path_prefix", f"{iface.path_prefix!r} is already used by interfaces.{other}")
            )
        if (other := cookies.setdefault(cookie, iface.name)) != iface.name:
            found.append((f"{at}.proof_cookie", f"{cookie!r} is already used by interfaces.{other}"))
        if cookie in sessions:
            session = f"interfaces.{sessions[cookie]}.identity.cookie"
            found.append((f"{at}.proof_cookie", f"{cookie!r} is the shop's session cookie ({session})"))
    return found


def _unknown_managed(interfaces: Mapping[str, InterfaceSettings]) -> list[tuple[str, str]]:
    known = ", ".join(sorted(interfaces))
    return [
        (f"interfaces.{iface.name}.manage.interfaces", f"unknown interface {other!r} (configured: {known})")
        for iface in interfaces.values()
        for other in iface.manage.interfaces
        if other not in interfaces
    ]


def _public_keys(settings: Settings) -> list[tuple[str, str]]:
    """Production mode starts with no key this project publishes (security requirement 29)."""
    why = "is a public example key from tfa-middleware's own files, so anyone can sign with it"
    found = [
        ("secret_keys", f"item {i}: {why}; make a new one with: {NEW_KEY}")
        for i, key in enumerate(settings.secret_keys)
        if is_public(key.reveal())
    ]
    own = "give the shop's session a secret of its own and the same one here"
    found += [
        (f"interfaces.{name}.identity.secret_key", f"{why}; {own}")
        for name, iface in settings.interfaces.items()
        if isinstance(iface.identity, _SESSION_COOKIE_SOURCES)
        and is_public(iface.identity.secret_key.reveal())
    ]
    own_jwt = "give the shop's JWT signing a secret of its own and the same one here"
    found += [
        (f"interfaces.{name}.identity.secret", f"{why}; {own_jwt}")
        for name, iface in settings.interfaces.items()
        if isinstance(iface.identity, JwtSource)
        and iface.identity.secret is not None
        and is_public(iface.identity.secret.reveal())
    ]
    return found


def mask_database_url(url: str) -> str:
    """The URL with its password and every query value masked (asyncpg takes ?password=...).

    Done by hand on the text: the last '@' ends the credentials even when a password holds an
    unescaped '@', which a URL parser would split in the wrong place.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "**********"
    rest, qmark, query = rest.partition("?")
    if "@" in rest:
        credentials, _, rest = rest.rpartition("@")
        user, colon, _ = credentials.partition(":")
        rest = f"{user}:**********@{rest}" if colon else f"{user}@{rest}"
    if qmark:
        masked = "&".join(f"{part.partition('=')[0]}=***" for part in query.split("&") if part)
        rest = f"{rest}?{masked}"
    return f"{scheme}://{rest}"
