"""YAML → typed, validated settings.

Every problem in a file is collected and reported by its key path
(``interfaces.admin.path_prefix: must start with '/'``); unknown keys are refused, because a typo
must never silently switch protection off. Strings may use ``${NAME}`` or ``${NAME:-default}`` so
that secrets stay in the environment; secrets are kept in :class:`Secret`, which never prints.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets as _secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import phonenumbers
import yaml

from .errors import ConfigError
from .public_keys import is_public

IdentitySource = Literal["session", "starlette_session_cookie", "scope_user", "header", "callable"]
IDENTITY_SOURCES: tuple[str, ...] = IdentitySource.__args__  # type: ignore[attr-defined]
PROVIDER_NAMES = ("sandbox", "authy", "twilio_verify")
DEFAULT_API_URLS = {"authy": "https://api.authy.com", "twilio_verify": "https://verify.twilio.com"}
MIN_SECRET_KEY_LENGTH = 32
MAX_CODE_TTL_SECONDS = 600  # security requirement 4: a code lives at most 10 minutes
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_COOKIE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")

T = TypeVar("T")


class Secret:
    """A secret string that shows as ``'**********'`` in ``repr``, ``str`` and logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return _secrets.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))


@dataclass(frozen=True, slots=True)
class IdentitySettings:
    """How the shop's logged-in user is found in a request; see :mod:`tfa_middleware.identity`."""

    source: IdentitySource
    key: str | None = None
    cookie: str = "session"
    secret_key: Secret | None = None
    session_id_key: str | None = None
    # None: the signature alone decides, as the shop's own middleware judges the age; a stricter
    # age here would read a session the shop still honours as "nobody".
    max_age_seconds: int | None = None
    attribute: str = "identity"
    require: tuple[str, ...] = ()  # scope_user: attributes that must be true (e.g. is_staff)
    # callable: a sync function may block (Django's ORM), so it runs in a worker thread; false
    # runs it on the event loop, saving the thread hop, for a function that never blocks.
    blocking: bool = True
    header: str | None = None
    callable_path: str | None = None
    roles_key: str | None = None  # session key with the user's role or list of roles (manage page)


@dataclass(frozen=True, slots=True)
class InterfaceSettings:
    name: str
    enabled: bool
    path_prefix: str
    pages_path: str
    exempt: tuple[str, ...]
    identity: IdentitySettings
    proof_max_age_seconds: int
    proof_cookie: str
    on_missing_phone: Literal["enroll", "skip"]
    # A phone change needs a second factor at most this old; older, and the old number is asked first.
    phone_change_fresh_seconds: int = 600
    # Who may open <pages_path>/manage: these user ids, or users with one of these roles.
    manage_user_ids: tuple[str, ...] = ()
    manage_roles: tuple[str, ...] = ()
    # What to do when the resolver sees nobody and the shop serves the protected page anyway (2xx):
    # "block" (the page is withheld) or "warn" (served, and logged), for a shop whose login form
    # answers 200 at the protected URL itself.
    unidentified: Literal["block", "warn"] = "block"
    # The shop's own logout, relative to the application's root: a link on every page, and a
    # request there ends this browser's proof in the same response.
    logout_url: str | None = None
    # The interfaces whose users those managers may list and act on (empty: this one alone).
    manage_interfaces: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """Who sends and checks the codes. With ``production_mode`` false the sandbox is used whatever
    ``name`` says; the other fields are read only by the provider they belong to."""

    name: str = "sandbox"
    production_mode: bool = False
    #: The provider's base URL: ``DEFAULT_API_URLS[name]`` unless the file says otherwise.
    api_url: str | None = None
    timeout_seconds: float = 5.0
    # authy
    api_key: Secret | None = None
    email_domain: str = "users.invalid"  # pseudonymous emails: <keyed hash of the user id>@email_domain
    email_from_user: bool = False  # opt-in: send the user id to Authy when it is an email address
    # twilio_verify
    account_sid: str | None = None  # AC...
    api_key_sid: str | None = None  # SK...: Basic auth with this API key, auth_token being its secret
    auth_token: Secret | None = None
    service_sid: str | None = None  # VA...
    # sandbox
    code_length: int = 6
    code_ttl_seconds: int = MAX_CODE_TTL_SECONDS
    max_attempts_per_code: int = 5


# Regions (ISO 3166-1 alpha-2) that SMS may go to unless the file says otherwise: the US and
# Canada, and the larger European and Oceanian markets. Regions, not calling codes (security
# requirement 28): +1 is also Jamaica and 22 other regions, +44 also Jersey, Guernsey and the Isle
# of Man, whose premium-rate ranges are what SMS pumping targets. A shop selling elsewhere lists
# its own (or "*" for every region, at its own risk).
DEFAULT_ALLOWED_REGIONS = (
    "US",
    "CA",
    "NL",
    "BE",
    "FR",
    "ES",
    "IT",
    "CH",
    "AT",
    "GB",
    "DK",
    "SE",
    "NO",
    "DE",
    "AU",
    "NZ",
    "PT",
    "IE",
    "FI",
)
HOURLY_FAILURE_CEILING = 100  # security requirement 6: never more, whatever the file says


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Verify lockout and send limits (security requirements 6-8)."""

    verify_max_failures: int = 5
    verify_lock_seconds: int = 15 * 60
    verify_delay_base_seconds: float = 1.0
    verify_max_failures_per_hour: int = HOURLY_FAILURE_CEILING
    send_cooldown_seconds: int = 30
    send_max_per_10_minutes: int = 3
    send_max_per_hour: int = 5
    send_max_per_phone_per_hour: int = 5
    send_max_per_ip_per_hour: int = 20
    send_budget_per_hour: int = 300
    send_budget_per_day: int = 2000
    allowed_regions: tuple[str, ...] = DEFAULT_ALLOWED_REGIONS

    def region_allowed(self, region: str | None) -> bool:
        """``region`` as ``phonenumbers.region_code_for_number`` gives it (None: no region)."""
        return "*" in self.allowed_regions or (region is not None and region in self.allowed_regions)


MIN_BRAND_CONTRAST = 4.5  # WCAG AA for normal text: white on the colour, the colour on white
_COLOR_PATTERN = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")
# An https logo's origin goes into the pages' Content-Security-Policy, so it must be a plain host:
# a ';' or a quote there would add directives of its own.
_HTTPS_LOGO_PATTERN = re.compile(
    r"^(https://[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?)"
    r"(?:[/?#][^\s\"'<>\\`]*)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class BrandingSettings:
    """What the challenge pages show of the shop, without editing a template."""

    title: str | None = None  # shown at the top and in the window title; the logo's alt text
    logo_url: str | None = None  # a path on the shop's own site, or an https:// URL
    primary_color: str | None = None  # "#rrggbb": buttons, links and focus rings

    @property
    def logo_origin(self) -> str | None:
        """``https://host[:port]`` of an https logo (the CSP must allow it), else None."""
        match = _HTTPS_LOGO_PATTERN.match(self.logo_url or "")
        return match.group(1).lower() if match else None


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """PostgreSQL connection pool, per process (SQLite needs none)."""

    size: int = 5
    max_overflow: int = 10
    timeout_seconds: float = 10.0
    recycle_seconds: int = 1800
    connect_timeout_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class Settings:
    secret_keys: tuple[Secret, ...]
    interfaces: Mapping[str, InterfaceSettings]
    provider: ProviderSettings = field(default_factory=ProviderSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    database_pool: PoolSettings = field(default_factory=PoolSettings)
    auto_migrate: bool | None = None  # None: yes for SQLite, no for PostgreSQL
    branding: BrandingSettings = field(default_factory=BrandingSettings)
    database_url: Secret = field(default_factory=lambda: Secret("sqlite+aiosqlite:///./tfa.sqlite3"))
    revocation_check_seconds: float = 10.0
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    templates_dir: str | None = None
    max_form_bytes: int = 16 * 1024
    on_event: str | None = None  # package.module:function given every audit event
    source: str | None = None

    def interface(self, name: str) -> InterfaceSettings:
        from .errors import UnknownInterface

        try:
            return self.interfaces[name]
        except KeyError:
            known = ", ".join(sorted(self.interfaces)) or "none"
            raise UnknownInterface(f"unknown interface {name!r} (configured: {known})") from None

    def describe(self) -> dict[str, Any]:
        """The resolved settings as plain data with every secret masked (for check-config)."""
        return {
            "secret_keys": [str(k) for k in self.secret_keys],
            "database_url": mask_database_url(self.database_url.reveal()),
            "revocation_check_seconds": self.revocation_check_seconds,
            "trusted_proxies": [str(n) for n in self.trusted_proxies],
            "templates_dir": self.templates_dir,
            "max_form_bytes": self.max_form_bytes,
            "on_event": self.on_event,
            "auto_migrate": self.auto_migrate,
            "database_pool": {f: getattr(self.database_pool, f) for f in PoolSettings.__dataclass_fields__},
            "branding": {
                "title": self.branding.title,
                "logo_url": self.branding.logo_url,
                "primary_color": self.branding.primary_color,
            },
            "limits": {
                name: list(value) if isinstance(value, tuple) else value
                for name, value in ((f, getattr(self.limits, f)) for f in LimitSettings.__dataclass_fields__)
            },
            "provider": {
                "name": self.provider.name,
                "production_mode": self.provider.production_mode,
                "api_url": self.provider.api_url,
                "timeout_seconds": self.provider.timeout_seconds,
                "api_key": None if self.provider.api_key is None else str(self.provider.api_key),
                "email_domain": self.provider.email_domain,
                "email_from_user": self.provider.email_from_user,
                "account_sid": self.provider.account_sid,
                "api_key_sid": self.provider.api_key_sid,
                "auth_token": None if self.provider.auth_token is None else str(self.provider.auth_token),
                "service_sid": self.provider.service_sid,
                "code_length": self.provider.code_length,
                "code_ttl_seconds": self.provider.code_ttl_seconds,
                "max_attempts_per_code": self.provider.max_attempts_per_code,
            },
            "interfaces": {
                name: {
                    "enabled": i.enabled,
                    "path_prefix": i.path_prefix,
                    "pages_path": i.pages_path,
                    "exempt": list(i.exempt),
                    "proof_max_age_seconds": i.proof_max_age_seconds,
                    "proof_cookie": i.proof_cookie,
                    "on_missing_phone": i.on_missing_phone,
                    "phone_change_fresh_seconds": i.phone_change_fresh_seconds,
                    "manage": {
                        "allow_user_ids": list(i.manage_user_ids),
                        "allow_roles": list(i.manage_roles),
                        "interfaces": list(i.manage_interfaces),
                    },
                    "identity": _describe_identity(i.identity),
                    "unidentified": i.unidentified,
                    "logout_url": i.logout_url,
                }
                for name, i in self.interfaces.items()
            },
        }


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


def _describe_identity(ident: IdentitySettings) -> dict[str, Any]:
    out: dict[str, Any] = {"from": ident.source}
    if ident.source in ("session", "starlette_session_cookie"):
        out["key"] = ident.key
        out["session_id_key"] = ident.session_id_key
        out["roles_key"] = ident.roles_key
    if ident.source == "starlette_session_cookie":
        out["cookie"] = ident.cookie
        out["secret_key"] = str(ident.secret_key)
        out["max_age_seconds"] = ident.max_age_seconds
    if ident.source == "scope_user":
        out["attribute"] = ident.attribute
        out["require"] = list(ident.require)
    if ident.source == "header":
        out["header"] = ident.header
    if ident.source == "callable":
        out["path"] = ident.callable_path
        out["blocking"] = ident.blocking
    return out


# --------------------------------------------------------------------------- loading


def load_settings(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a YAML settings file; raise :class:`ConfigError` listing every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror or exc}"], source) from None
    except UnicodeDecodeError:
        raise ConfigError(["the file is not UTF-8 text"], source) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError([f"{where}{problem}"], source) from None
    return settings_from_mapping(data, environ=environ, source=source)


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping.

    PyYAML keeps the last of two equal keys; two ``admin:`` sections would silently drop the first.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice in one section", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def settings_from_mapping(
    data: Any, environ: Mapping[str, str] | None = None, source: str | None = None
) -> Settings:
    """Validate already-parsed settings (a dict shaped like the YAML file)."""
    problems: list[str] = []
    env = os.environ if environ is None else environ
    data = _interpolate(data, "", env, problems)
    settings = _build(data, problems, source)
    if problems or settings is None:
        raise ConfigError(problems, source)
    return settings


def _interpolate(value: Any, path: str, env: Mapping[str, str], problems: list[str]) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env and env[name] != "":
                return env[name]
            if default is not None:
                return default
            problems.append(f"{path or '<root>'}: environment variable {name} is not set")
            return ""

        return _ENV_PATTERN.sub(replace, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, _join(path, str(k)), env, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env, problems) for i, v in enumerate(value)]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Section:
    """Typed reads from one mapping, recording problems by key path and refusing unknown keys."""

    def __init__(self, data: Any, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        self.seen: set[str] = set()
        if data is None:
            data = {}
        if not isinstance(data, dict):
            problems.append(f"{path or '<root>'}: expected a mapping, got {_kind(data)}")
            data = {}
        self.data: dict[Any, Any] = data

    def at(self, key: str) -> str:
        return _join(self.path, key)

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.at(key)}: {message}")

    def raw(self, key: str) -> Any:
        self.seen.add(key)
        return self.data.get(key)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(
        self,
        key: str,
        convert: Callable[[Any], T],
        default: T,
        *,
        required: bool = False,
    ) -> T:
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                self.problem(key, "is required")
            return default
        try:
            return convert(self.data[key])
        except _Invalid as exc:
            self.problem(key, str(exc))
            return default

    def finish(self) -> None:
        for key in self.data:
            if key not in self.seen:
                known = ", ".join(sorted(self.seen))
                self.problems.append(f"{self.at(str(key))}: unknown key (expected one of: {known})")


class _Invalid(Exception):
    pass


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        type(None): "nothing",
    }.get(type(value), type(value).__name__)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_kind(value)}")
    return value


def _nonempty_str(value: Any) -> str:
    text = _str(value).strip()
    if not text:
        raise _Invalid("must not be empty")
    return text


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_kind(value)}")
    return value


def _int_range(low: int, high: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected a whole number, got {_kind(value)}")
        if not low <= value <= high:
            raise _Invalid(f"must be between {low} and {high}, got {value}")
        return value

    return convert


def _float_range(low: float, high: float) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(f"expected a number, got {_kind(value)}")
        if not low <= value <= high:
            raise _Invalid(f"must be between {low:g} and {high:g}, got {value}")
        return float(value)

    return convert


def _choice(*options: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in options:
            raise _Invalid(f"must be one of {', '.join(options)}, got {value!r}")
        return str(value)

    return convert


def _str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Invalid(f"expected a list, got {_kind(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _Invalid(f"item {i}: expected a string, got {_kind(item)}")
    return tuple(value)


def _interface_names(value: Any) -> tuple[str, ...]:
    names = _str_list(value)
    if not names:
        raise _Invalid("must name at least one interface")
    return tuple(dict.fromkeys(names))


def _check_managed_interfaces(
    interfaces: Mapping[str, InterfaceSettings], data: Any, problems: list[str]
) -> None:
    """Each ``manage.interfaces`` entry names an interface of this file. Checked against the
    file's names, not the parsed interfaces, so a broken interface is reported once, not again here."""
    known = sorted(str(name) for name in data) if isinstance(data, dict) else []
    for iface in interfaces.values():
        for other in iface.manage_interfaces:
            if other not in known:
                problems.append(
                    f"interfaces.{iface.name}.manage.interfaces: unknown interface {other!r} "
                    f"(configured: {', '.join(known)})"
                )


def _path(value: Any) -> str:
    text = _str(value)
    if not text.startswith("/"):
        raise _Invalid("must start with '/'")
    if any(ord(c) < 0x21 or c in "\\?#%" for c in text):
        raise _Invalid("must be a plain path (no spaces, control characters, '\\', '?', '#', '%')")
    segments = text.split("/")
    if "" in segments[1:-1] or "." in segments or ".." in segments:
        raise _Invalid("must not contain '//', '/./' or '/../'")
    return text


def _prefix(value: Any) -> str:
    text = _path(value).lower()
    return text.rstrip("/") or "/"


def _build(data: Any, problems: list[str], source: str | None) -> Settings | None:
    root = _Section(data, "", problems)

    no_keys: tuple[Secret, ...] = ()
    keys = root.get("secret_keys", _secret_keys, no_keys, required=True)
    database_url = root.get("database_url", _database_url, "sqlite+aiosqlite:///./tfa.sqlite3")
    revocation = root.get("revocation_check_seconds", _float_range(0, 300), 10.0)
    no_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    proxies = root.get("trusted_proxies", _networks, no_proxies)
    templates_dir = root.get("templates_dir", _templates_dir, None)
    max_form = root.get("max_form_bytes", _int_range(1024, 1024 * 1024), 16 * 1024)
    on_event = root.get("on_event", _dotted, None)
    provider = _provider(_Section(root.raw("provider"), "provider", problems))
    limits = _limits(_Section(root.raw("limits"), "limits", problems))
    pool = _pool(_Section(root.raw("database_pool"), "database_pool", problems))
    auto_migrate = root.get("auto_migrate", _bool, None)
    branding = _branding(_Section(root.raw("branding"), "branding", problems))
    interfaces = _interfaces(root.raw("interfaces"), bool(proxies), problems)
    _check_managed_interfaces(interfaces, root.raw("interfaces"), problems)
    root.finish()
    if provider.production_mode:
        _refuse_public_keys(keys, interfaces, problems)

    if problems:
        return None
    return Settings(
        secret_keys=keys,
        interfaces=interfaces,
        provider=provider,
        database_url=Secret(database_url),
        revocation_check_seconds=revocation,
        trusted_proxies=proxies,
        templates_dir=templates_dir,
        max_form_bytes=max_form,
        limits=limits,
        branding=branding,
        on_event=on_event,
        database_pool=pool,
        auto_migrate=auto_migrate,
        source=source,
    )


def _secret_keys(value: Any) -> tuple[Secret, ...]:
    if isinstance(value, str):
        value = [value]
    items = _str_list(value)
    if not items:
        raise _Invalid("needs at least one key")
    for i, item in enumerate(items):
        if len(item) < MIN_SECRET_KEY_LENGTH:
            raise _Invalid(
                f"item {i}: must be at least {MIN_SECRET_KEY_LENGTH} characters "
                "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
    return tuple(Secret(item) for item in items)


def _refuse_public_keys(
    keys: tuple[Secret, ...], interfaces: Mapping[str, InterfaceSettings], problems: list[str]
) -> None:
    """Production mode starts with no key this project publishes (security requirement 29)."""
    why = "is a public example key from tfa-middleware's own files, so anyone can sign with it"
    for i, key in enumerate(keys):
        if is_public(key.reveal()):
            problems.append(
                f"secret_keys: item {i}: {why}; make a new one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
    for name, iface in interfaces.items():
        shop_key = iface.identity.secret_key
        if shop_key is not None and is_public(shop_key.reveal()):
            problems.append(
                f"interfaces.{name}.identity.secret_key: {why}; give the shop's SessionMiddleware "
                "a secret of its own and the same one here"
            )


def _database_url(value: Any) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = _nonempty_str(value)
    try:
        url = make_url(text)
    except ArgumentError:
        raise _Invalid("is not a database URL (expected e.g. sqlite+aiosqlite:///./tfa.sqlite3)") from None
    if url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise _Invalid(
            f"driver {url.drivername!r} is not supported "
            "(use sqlite+aiosqlite:///FILE or postgresql+asyncpg://USER@HOST/DB)"
        )
    return text


def _networks(value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for item in _str_list(value):
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise _Invalid(f"{item!r} is not an IP address or network") from None
    return tuple(out)


def _templates_dir(value: Any) -> str:
    text = _nonempty_str(value)
    if not Path(text).is_dir():
        raise _Invalid(f"{text!r} is not a directory")
    return text


def _branding(section: _Section) -> BrandingSettings:
    branding = BrandingSettings(
        title=section.get("title", _title, None),
        logo_url=section.get("logo_url", _logo_url, None),
        primary_color=section.get("primary_color", _brand_color, None),
    )
    section.finish()
    return branding


def _title(value: Any) -> str:
    text = _nonempty_str(value)
    if len(text) > 80 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise _Invalid("must be one line of at most 80 characters")
    return text


def _logo_url(value: Any) -> str:
    text = _nonempty_str(value)
    plain = not any(c.isspace() or ord(c) < 0x20 or c in "\"'<>\\`" for c in text)
    if len(text) <= 2048 and plain:
        if text.startswith("/") and not text.startswith("//"):
            return text
        if _HTTPS_LOGO_PATTERN.match(text):
            return text
    raise _Invalid(
        "must be a path on this site (e.g. /static/logo.svg) or an https:// URL, "
        "without spaces, quotes, '<', '>' or '\\'"
    )


def _brand_color(value: Any) -> str:
    text = _str(value).strip()
    if not _COLOR_PATTERN.match(text):
        raise _Invalid(f"must be a colour as #rgb or #rrggbb, got {text!r}")
    digits = text[1:].lower()
    color = "#" + (digits if len(digits) == 6 else "".join(c * 2 for c in digits))
    ratio = contrast_with_white(color)
    if ratio < MIN_BRAND_CONTRAST:
        shown = int(ratio * 10) / 10  # rounded down: 4.46 must not read as the 4.5 it misses
        raise _Invalid(
            f"{color} has a contrast of {shown}:1 with white; the pages put white text on it and "
            f"show links in it, which needs at least {MIN_BRAND_CONTRAST}:1 (WCAG AA): choose a darker shade"
        )
    return color


def contrast_with_white(color: str) -> float:
    """WCAG 2 contrast ratio of ``#rrggbb`` with white (1 to 21)."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    luminance = 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
    return 1.05 / (luminance + 0.05)


def _pool(section: _Section) -> PoolSettings:
    pool = PoolSettings(
        size=section.get("size", _int_range(1, 100), 5),
        max_overflow=section.get("max_overflow", _int_range(0, 100), 10),
        timeout_seconds=section.get("timeout_seconds", _float_range(0.5, 120), 10.0),
        recycle_seconds=section.get("recycle_seconds", _int_range(60, 24 * 3600), 1800),
        connect_timeout_seconds=section.get("connect_timeout_seconds", _float_range(0.5, 60), 5.0),
    )
    section.finish()
    return pool


def _limits(section: _Section) -> LimitSettings:
    d = LimitSettings()
    counts = _int_range(1, 1_000_000)
    limits = LimitSettings(
        verify_max_failures=section.get("verify_max_failures", _int_range(1, 20), d.verify_max_failures),
        verify_lock_seconds=section.get(
            "verify_lock_seconds", _int_range(15 * 60, 7 * 24 * 3600), d.verify_lock_seconds
        ),
        verify_delay_base_seconds=section.get(
            "verify_delay_base_seconds", _float_range(0, 60), d.verify_delay_base_seconds
        ),
        verify_max_failures_per_hour=section.get(
            "verify_max_failures_per_hour", _int_range(1, HOURLY_FAILURE_CEILING), HOURLY_FAILURE_CEILING
        ),
        send_cooldown_seconds=section.get(
            "send_cooldown_seconds", _int_range(30, 3600), d.send_cooldown_seconds
        ),
        send_max_per_10_minutes=section.get("send_max_per_10_minutes", _int_range(1, 10), 3),
        send_max_per_hour=section.get("send_max_per_hour", _int_range(1, 20), 5),
        send_max_per_phone_per_hour=section.get("send_max_per_phone_per_hour", _int_range(1, 20), 5),
        send_max_per_ip_per_hour=section.get("send_max_per_ip_per_hour", counts, d.send_max_per_ip_per_hour),
        send_budget_per_hour=section.get("send_budget_per_hour", counts, d.send_budget_per_hour),
        send_budget_per_day=section.get("send_budget_per_day", counts, d.send_budget_per_day),
        allowed_regions=_allowed_regions(section, d.allowed_regions),
    )
    section.finish()
    if limits.send_max_per_10_minutes > limits.send_max_per_hour:
        section.problem("send_max_per_10_minutes", "must not be more than send_max_per_hour")
    if limits.send_budget_per_hour > limits.send_budget_per_day:
        section.problem("send_budget_per_hour", "must not be more than send_budget_per_day")
    return limits


def _allowed_regions(section: _Section, default: tuple[str, ...]) -> tuple[str, ...]:
    """``allowed_regions``, or the older ``allowed_country_codes`` where a code means one region."""
    section.seen.update(("allowed_regions", "allowed_country_codes"))
    # A key given as null is not given, as everywhere else in the file.
    regions_given = section.data.get("allowed_regions") is not None
    codes_given = section.data.get("allowed_country_codes") is not None
    if regions_given and codes_given:
        section.problem(
            "allowed_country_codes", "set either allowed_regions or allowed_country_codes, not both"
        )
    if codes_given and not regions_given:
        return _calling_code_regions(section, section.data["allowed_country_codes"], default)
    if not regions_given:
        return default
    where = section.at("allowed_regions")
    raw = section.data["allowed_regions"]
    if isinstance(raw, list) and any(isinstance(v, bool) for v in raw):
        # YAML 1.1 reads an unquoted NO (Norway) as false: say so rather than "expected a string".
        i = next(i for i, v in enumerate(raw) if isinstance(v, bool))
        section.problems.append(
            f'{where}[{i}]: got {str(raw[i]).lower()}, not a region: quote the codes, e.g. ["NO"] '
            "(YAML reads an unquoted NO as false)"
        )
        return default
    before = len(section.problems)
    no_items: tuple[str, ...] = ()
    items = section.get("allowed_regions", _str_list, no_items)
    if len(section.problems) > before:
        return default
    if not items:
        section.problems.append(f'{where}: needs at least one region (or "*" for every region)')
        return default
    regions: list[str] = []
    for i, item in enumerate(items):
        region = item.strip().upper()
        if region == "*":
            return ("*",)
        if region not in phonenumbers.SUPPORTED_REGIONS:
            hint = _REGION_HINTS.get(region, "")
            section.problems.append(
                f"{where}[{i}]: {item!r} is not a region phonenumbers knows "
                f"(ISO 3166-1 alpha-2, e.g. US, GB, DE){hint}"
            )
        elif region not in regions:
            regions.append(region)
    return tuple(regions)


# Codes people write for a region that ISO 3166-1 spells otherwise.
_REGION_HINTS = {"UK": "; the United Kingdom is GB", "EL": "; Greece is GR", "KO": "; Kosovo is XK"}


def _calling_code_regions(section: _Section, value: Any, default: tuple[str, ...]) -> tuple[str, ...]:
    """Calling codes, each turned into its one region. A code shared by several regions is
    refused: +1 would let Jamaica through for a shop that means the US and Canada."""
    where = section.at("allowed_country_codes")
    try:
        items = _str_list(
            [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
            if isinstance(value, list)
            else value
        )
    except _Invalid as exc:
        section.problems.append(f"{where}: {exc}")
        return default
    if not items:
        section.problems.append(f'{where}: needs at least one calling code (or "*" for every country)')
        return default
    regions: list[str] = []
    for i, item in enumerate(items):
        code = item.strip().lstrip("+")
        if item.strip() == "*":
            return ("*",)
        if not (code.isdigit() and 1 <= len(code) <= 3):
            section.problems.append(
                f'{where}[{i}]: {item!r} is not a country calling code (1 to 3 digits, or "*")'
            )
            continue
        # Non-geographic codes (+800, +882 …) belong to region "001", where no SMS goes.
        shared = [
            r
            for r in phonenumbers.region_codes_for_country_code(int(code))
            if r in phonenumbers.SUPPORTED_REGIONS
        ]
        if not shared:
            section.problems.append(f"{where}[{i}]: {item!r} is not a country calling code")
        elif len(shared) > 1:
            example = "[US, CA]" if code == "1" else f"[{shared[0]}]"
            section.problems.append(
                f"{where}[{i}]: +{code} is shared by {len(shared)} regions ({', '.join(shared)}): "
                f"list the ones you mean under {section.at('allowed_regions')} instead, "
                f"e.g. allowed_regions: {example}"
            )
        elif shared[0] not in regions:
            regions.append(shared[0])
    return tuple(regions)


def _provider(section: _Section) -> ProviderSettings:
    name = section.get("name", _choice(*PROVIDER_NAMES), "sandbox")
    production = section.get("production_mode", _bool, False)
    api_url = section.get("api_url", _url, None)
    timeout = section.get("timeout_seconds", _float_range(0.1, 60), 5.0)
    api_key = section.get("api_key", lambda v: Secret(_str(v)), None)
    email_domain = section.get("email_domain", _domain, "users.invalid")
    email_from_user = section.get("email_from_user", _bool, False)
    account_sid = section.get("account_sid", _sid("AC"), None)
    api_key_sid = section.get("api_key_sid", _sid("SK"), None)
    auth_token = section.get("auth_token", lambda v: Secret(_str(v)), None)
    service_sid = section.get("service_sid", _sid("VA"), None)
    code_length = section.get("code_length", _int_range(6, 10), 6)
    ttl = section.get("code_ttl_seconds", _int_range(60, MAX_CODE_TTL_SECONDS), MAX_CODE_TTL_SECONDS)
    attempts = section.get("max_attempts_per_code", _int_range(1, 10), 5)
    section.finish()
    if production and name == "sandbox":
        section.problem(
            "production_mode",
            "the sandbox provider never sends anything; set production_mode: false, "
            "or choose the authy or twilio_verify provider",
        )
    elif production:
        # Only now are the credentials needed: without production_mode the sandbox is used.
        needed: dict[str, object] = (
            {"api_key": api_key and api_key.reveal()}
            if name == "authy"
            else {
                "account_sid": account_sid,
                "auth_token": auth_token and auth_token.reveal(),
                "service_sid": service_sid,
            }
        )
        for key, value in needed.items():
            if not value and not any(p.startswith(section.at(key) + ":") for p in section.problems):
                section.problem(key, f"is required with name: {name} and production_mode: true")
        if api_url and not api_url.startswith("https://") and not _loopback(api_url):
            section.problem(
                "api_url",
                "must be an https:// URL in production mode (http:// only to 127.0.0.1 or localhost, "
                "e.g. `tfa-middleware fake-provider`): the credentials travel with every request",
            )
    return ProviderSettings(
        name=name,
        production_mode=production,
        api_url=api_url or DEFAULT_API_URLS.get(name),
        timeout_seconds=timeout,
        api_key=api_key,
        email_domain=email_domain,
        email_from_user=email_from_user,
        account_sid=account_sid,
        api_key_sid=api_key_sid,
        auth_token=auth_token,
        service_sid=service_sid,
        code_length=code_length,
        code_ttl_seconds=ttl,
        max_attempts_per_code=attempts,
    )


def _sid(prefix: str) -> Callable[[Any], str]:
    """Twilio ids: two letters and 32 hexadecimal digits (``AC…``, ``SK…``, ``VA…``)."""

    def convert(value: Any) -> str:
        text = _str(value).strip()
        if not re.fullmatch(prefix + r"[0-9a-fA-F]{32}", text):
            raise _Invalid(f"must be {prefix} followed by 32 hexadecimal digits")
        return text

    return convert


def _domain(value: Any) -> str:
    text = _nonempty_str(value).lower()
    label = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
    if len(text) > 200 or not re.fullmatch(rf"{label}(?:\.{label})+", text):
        raise _Invalid("must be a domain name, e.g. users.invalid or 2fa.example.com")
    return text


def _loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return host in ("localhost", "::1") or re.fullmatch(r"127(\.\d{1,3}){3}", host) is not None


def _url(value: Any) -> str:
    text = _nonempty_str(value)
    if not re.match(r"^https?://[^\s/]+", text):
        raise _Invalid("must be an http:// or https:// URL")
    return text.rstrip("/")


def _interfaces(data: Any, have_proxies: bool, problems: list[str]) -> dict[str, InterfaceSettings]:
    if data is None:
        problems.append("interfaces: is required (at least one interface, e.g. admin)")
        return {}
    if not isinstance(data, dict):
        problems.append(f"interfaces: expected a mapping of interface names, got {_kind(data)}")
        return {}
    if not data:
        problems.append("interfaces: needs at least one interface, e.g. admin: {path_prefix: /admin, ...}")
        return {}
    out: dict[str, InterfaceSettings] = {}
    for name, body in data.items():
        path = f"interfaces.{name}"
        if not isinstance(name, str) or not _NAME_PATTERN.match(name):
            problems.append(f"{path}: interface names are lower-case letters, digits and '_'")
            continue
        built = _interface(name, _Section(body, path, problems), have_proxies)
        if built is not None:
            out[name] = built
    prefixes: dict[str, str] = {}
    for iface in out.values():
        if not iface.enabled:
            continue
        other = prefixes.setdefault(iface.path_prefix, iface.name)
        if other != iface.name:
            problems.append(
                f"interfaces.{iface.name}.path_prefix: {iface.path_prefix!r} is already used "
                f"by interfaces.{other}"
            )
    # One browser holds every interface's proof: two of the same name would overwrite each other,
    # and one named like the shop's session cookie would replace the shop's login.
    cookies: dict[str, str] = {}
    session_cookies = {
        i.identity.cookie: i.name for i in out.values() if i.identity.source == "starlette_session_cookie"
    }
    for iface in out.values():
        other = cookies.setdefault(iface.proof_cookie, iface.name)
        if other != iface.name:
            problems.append(
                f"interfaces.{iface.name}.proof_cookie: {iface.proof_cookie!r} is already used "
                f"by interfaces.{other}"
            )
        if iface.proof_cookie in session_cookies:
            problems.append(
                f"interfaces.{iface.name}.proof_cookie: {iface.proof_cookie!r} is the shop's session "
                f"cookie (interfaces.{session_cookies[iface.proof_cookie]}.identity.cookie)"
            )
    return out


def _interface(name: str, section: _Section, have_proxies: bool) -> InterfaceSettings | None:
    before = len(section.problems)
    enabled = section.get("enabled", _bool, True)
    prefix = section.get("path_prefix", _prefix, "", required=True)
    default_pages = ("" if prefix == "/" else prefix) + "/_2fa"
    pages = section.get("pages_path", _prefix, default_pages)
    no_paths: tuple[str, ...] = ()
    exempt = section.get("exempt", _str_list, no_paths)
    max_age = section.get("proof_max_age_seconds", _int_range(60, 30 * 24 * 3600), 12 * 3600)
    cookie = section.get("proof_cookie", _cookie_name, f"tfa_{name}")
    on_missing = section.get("on_missing_phone", _choice("enroll", "skip"), "enroll")
    fresh = section.get("phone_change_fresh_seconds", _int_range(60, 24 * 3600), 600)
    manage = _Section(section.raw("manage"), section.at("manage"), section.problems)
    manage_users = manage.get("allow_user_ids", _str_list, no_paths)
    manage_roles = manage.get("allow_roles", _str_list, no_paths)
    only_this: tuple[str, ...] = (name,)
    manage_interfaces = manage.get("interfaces", _interface_names, only_this)
    manage.finish()
    identity = _identity(_Section(section.raw("identity"), section.at("identity"), section.problems))
    unidentified = section.get("unidentified", _choice("block", "warn"), "block")
    logout_url = section.get("logout_url", _path, None)
    section.finish()

    if prefix:  # the checks below compare with the prefix, so only when it is valid itself
        if not _inside(pages, prefix) or pages == prefix:
            section.problem("pages_path", f"must be below path_prefix {prefix!r}, e.g. {default_pages!r}")
        exempt = _exemptions(section, exempt, prefix, pages)
    if logout_url and prefix:
        # The logout is open to everybody (nobody needs a code to leave): it must be the shop's
        # logout and nothing else, never the interface itself or our own pages.
        leaving = logout_url.lower().rstrip("/") or "/"
        if leaving == (prefix.rstrip("/") or "/") or _inside(leaving, pages):
            opened = "our pages" if _inside(leaving, pages) else "the whole interface"
            section.problem(
                "logout_url",
                f"{logout_url!r} would open {opened} to everybody: give the shop's own logout page, "
                "e.g. /admin/logout",
            )
    if manage_roles and identity is not None and not (identity.roles_key or identity.source == "callable"):
        section.problem(
            "manage.allow_roles",
            "needs identity.roles_key (the session key holding the user's roles) or a callable resolver",
        )
    if identity is not None and identity.source == "header" and not have_proxies:
        section.problem(
            "identity",
            "from: header needs trusted_proxies (the addresses allowed to set that header)",
        )
    if section.problems[before:] or identity is None:
        return None
    return InterfaceSettings(
        name=name,
        enabled=enabled,
        path_prefix=prefix,
        pages_path=pages,
        exempt=exempt,
        identity=identity,
        proof_max_age_seconds=max_age,
        proof_cookie=cookie,
        on_missing_phone=on_missing,  # type: ignore[arg-type]
        phone_change_fresh_seconds=fresh,
        manage_user_ids=manage_users,
        manage_roles=manage_roles,
        unidentified=unidentified,  # type: ignore[arg-type]
        logout_url=logout_url,
        manage_interfaces=manage_interfaces,
    )


def _exemptions(section: _Section, entries: tuple[str, ...], prefix: str, pages: str) -> tuple[str, ...]:
    cleaned: list[str] = []
    for i, entry in enumerate(entries):
        where = f"{section.at('exempt')}[{i}]"
        try:
            normal = _path(entry).lower()
        except _Invalid as exc:
            section.problems.append(f"{where}: {exc}")
            continue
        if not _inside(normal.rstrip("/") or "/", prefix):
            section.problems.append(f"{where}: {entry!r} is outside path_prefix {prefix!r}")
        elif normal.rstrip("/") == prefix.rstrip("/"):
            section.problems.append(
                f"{where}: exempting the whole prefix disables the interface; use enabled: false"
            )
        elif _covers(normal, pages):
            section.problems.append(
                f"{where}: {entry!r} covers pages_path {pages!r}, "
                "so the challenge pages could never be reached"
            )
        cleaned.append(normal)
    return tuple(cleaned)


def _covers(exempt_entry: str, path: str) -> bool:
    if exempt_entry.endswith("/"):
        return _inside(path, exempt_entry.rstrip("/") or "/")
    return exempt_entry.rstrip("/") == path


def _inside(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def _cookie_name(value: Any) -> str:
    text = _str(value)
    if not _COOKIE_NAME_PATTERN.match(text) or text.startswith("__"):
        raise _Invalid("must be 1-64 letters, digits, '_' or '-' and not start with '__'")
    return text


_IDENTITY_KEYS: dict[str, tuple[str, ...]] = {
    "session": ("key", "session_id_key", "roles_key"),
    "starlette_session_cookie": (
        "key",
        "session_id_key",
        "roles_key",
        "cookie",
        "secret_key",
        "max_age_seconds",
    ),
    "scope_user": ("attribute", "require"),
    "header": ("header",),
    "callable": ("path", "blocking"),
}


def _identity(section: _Section) -> IdentitySettings | None:
    if not section.data:
        section.problems.append(
            f"{section.path}: is required, e.g. {{from: starlette_session_cookie, cookie: session, "
            "secret_key: ${SHOP_SECRET}, key: user_id}"
        )
        return None
    source = section.get("from", _choice(*IDENTITY_SOURCES), "", required=True)
    if not source:
        section.seen.update(section.data)
        return None
    allowed = _IDENTITY_KEYS[source]
    for key in section.data:
        if key != "from" and key not in allowed:
            section.problem(str(key), f"is not used with from: {source} (expected: {', '.join(allowed)})")
            section.seen.add(key)
    needs_key = source in ("session", "starlette_session_cookie")
    key = section.get("key", _nonempty_str, None, required=needs_key) if needs_key else None
    sid = section.get("session_id_key", _nonempty_str, None) if needs_key else None
    roles_key = section.get("roles_key", _nonempty_str, None) if needs_key else None
    ident = IdentitySettings(source=source, key=key, session_id_key=sid, roles_key=roles_key)  # type: ignore[arg-type]
    if source == "starlette_session_cookie":
        ident = IdentitySettings(
            source="starlette_session_cookie",
            key=key,
            session_id_key=sid,
            roles_key=roles_key,
            cookie=section.get("cookie", _cookie_name_any, "session"),
            secret_key=section.get("secret_key", lambda v: Secret(_nonempty_str(v)), None, required=True),
            max_age_seconds=section.get("max_age_seconds", _int_range(60, 366 * 24 * 3600), None),
        )
    elif source == "scope_user":
        ident = IdentitySettings(
            source="scope_user",
            attribute=section.get("attribute", _identifier, "identity"),
            require=section.get("require", _identifiers, ()),
        )
    elif source == "header":
        ident = IdentitySettings(
            source="header", header=section.get("header", _nonempty_str, None, required=True)
        )
    elif source == "callable":
        ident = IdentitySettings(
            source="callable",
            callable_path=section.get("path", _dotted, None, required=True),
            blocking=section.get("blocking", _bool, True),
        )
    section.finish()
    return ident


def _cookie_name_any(value: Any) -> str:
    text = _str(value)
    if not _COOKIE_NAME_PATTERN.match(text):
        raise _Invalid("must be 1-64 letters, digits, '_' or '-'")
    return text


def _identifier(value: Any) -> str:
    text = _str(value)
    if not text.isidentifier():
        raise _Invalid("must be a Python attribute name")
    return text


def _identifiers(value: Any) -> tuple[str, ...]:
    items = _str_list([value] if isinstance(value, str) else value)
    for item in items:
        if not item.isidentifier():
            raise _Invalid(f"{item!r} is not a Python attribute name")
    return items


def _dotted(value: Any) -> str:
    text = _str(value)
    if not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$", text):
        raise _Invalid("must look like package.module:function")
    return text
