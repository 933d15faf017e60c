"""``interfaces.<name>``: one protected part of the shop, chosen by path prefix, and its
``identity``: one model per ``from:`` (a discriminated union), so each source carries exactly its
own keys; :mod:`tfa_middleware.identity` builds the resolvers from them.

The checks between keys of one interface are validators of the later key, run on the earlier keys
that validated: a type error elsewhere in the interface hides none of them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..i18n import valid_code
from .django_source import DjangoSessionSource
from .flask_session import FlaskSessionSource
from .jwt_source import JwtSource
from .origins import DEMO_ORIGIN, LOCALHOST, RpId, normal_origin, origin_problem
from .policy import EnrollGrace, StepUpRule
from .types import (
    COOKIE_NAME,
    NOT_A_COOKIE_NAME,
    NonEmpty,
    OneOrMore,
    SecretText,
    Section,
    ShopCookieName,
    StrList,
    between,
    check,
    invalid,
    one_as_list,
    raise_any,
)

_DOTTED = r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*"


def path_problem(text: str) -> str | None:
    if not text.startswith("/"):
        return "must start with '/'"
    if any(ord(c) < 0x21 or c in "\\?#%" for c in text):
        return "must be a plain path (no spaces, control characters, '\\', '?', '#', '%')"
    segments = text.split("/")
    if "" in segments[1:-1] or "." in segments or ".." in segments:
        return "must not contain '//', '/./' or '/../'"
    return None


def _path(text: str) -> str:
    if problem := path_problem(text):
        raise invalid(problem)
    return text


def as_prefix(text: str) -> str:
    return text.lower().rstrip("/") or "/"


def inside(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


Path = Annotated[StrictStr, AfterValidator(_path)]
Prefix = Annotated[Path, AfterValidator(as_prefix)]
# Our own cookie: never "__" first, the browser's prefixes are ours to add (__Host- over https).
CookieName = Annotated[
    StrictStr, check("(?!__)" + COOKIE_NAME, NOT_A_COOKIE_NAME + " and not start with '__'")
]
Dotted = Annotated[StrictStr, check(_DOTTED, "must look like package.module:function")]


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
    attribute: Annotated[StrictStr, check(str.isidentifier, "must be a Python attribute name")] = "identity"
    require: Annotated[OneOrMore, AfterValidator(_identifiers)] = ()  # attributes that must be true


class HeaderSource(Section):
    """A header set by a proxy in ``trusted_proxies``."""

    source: Literal["header"] = Field(default="header", alias="from")
    header: NonEmpty


class CallableSource(Section):
    """The shop's own function, ``package.module:function``."""

    source: Literal["callable"] = Field(default="callable", alias="from")
    callable_path: Dotted = Field(alias="path")
    # A sync function may block (Django's ORM), so it runs in a worker thread; false runs it on
    # the event loop, saving the thread hop, for a function that never blocks.
    blocking: StrictBool = True


_SOURCES = (
    SessionSource,
    StarletteSessionCookieSource,
    FlaskSessionSource,
    ScopeUserSource,
    HeaderSource,
    CallableSource,
    JwtSource,
    DjangoSessionSource,
)
IdentitySettings = Annotated[
    SessionSource
    | StarletteSessionCookieSource
    | FlaskSessionSource
    | ScopeUserSource
    | HeaderSource
    | CallableSource
    | JwtSource
    | DjangoSessionSource,
    Field(discriminator="source"),
]
SOURCE_MODELS: dict[str, type[Section]] = {model.model_fields["source"].default: model for model in _SOURCES}
IDENTITY_SOURCES = tuple(SOURCE_MODELS)


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


def _locale(text: str) -> str:
    code = text.strip().replace("-", "_")
    if not valid_code(code):
        raise invalid(
            f"{text!r} is not a language Babel knows: use a catalogue's name, e.g. de, pt_BR or zh_Hans"
        )
    return code


LocaleCode = Annotated[StrictStr, AfterValidator(_locale)]


class LocaleFrom(Section):
    """Where the shop keeps the reader's language: its own cookie, or a key its middleware puts in
    the scope (under WSGI: the environ). A value no catalogue matches falls through to the browser's."""

    cookie: ShopCookieName | None = None
    scope_key: NonEmpty | None = None

    @model_validator(mode="after")
    def _one(self) -> LocaleFrom:
        if (self.cookie is None) == (self.scope_key is None):
            raise invalid("give exactly one of cookie or scope_key")
        return self


NAME_KEY = "<name>"
FACTOR_KINDS = ("webauthn", "totp", "sms", "recovery")
FactorKind = Literal["webauthn", "totp", "sms", "recovery"]
WAYS_IN = ("webauthn", "totp", "sms")  # each lets a user in on its own; recovery codes only back
# Today's behaviour and more: a code by text message, and the user may add an authenticator app
# and recovery codes from their account page; nobody must.
DEFAULT_FACTORS: tuple[FactorKind, ...] = ("totp", "sms", "recovery")


def _factor_list(kinds: tuple[FactorKind, ...]) -> tuple[FactorKind, ...]:
    seen = [kind for i, kind in enumerate(kinds) if kind in kinds[:i]]
    if seen:
        raise invalid(f"{seen[0]!r} is listed twice")
    return kinds


def _sign_in_factor(kinds: tuple[FactorKind, ...]) -> tuple[FactorKind, ...]:
    if not kinds:
        raise invalid("must allow at least one factor, e.g. [totp, sms, recovery]")
    if not set(kinds) & set(WAYS_IN):
        raise invalid("recovery codes are a way back, not a way in: allow webauthn, totp or sms too")
    return kinds


FactorList = Annotated[tuple[FactorKind, ...], AfterValidator(_factor_list)]


def _default_pages(data: dict[str, Any]) -> str:
    prefix = data.get("path_prefix", "/")
    return ("" if prefix == "/" else prefix) + "/_2fa"


class InterfaceSettings(Section):
    # The interface's key in ``interfaces``, given by Settings: a plain field, because the
    # middleware reads it on every request (a pydantic private attribute costs microseconds there);
    # its alias keeps a ``name:`` in the file an unknown key.
    name: str = Field(default="", validation_alias=NAME_KEY, exclude=True)
    enabled: StrictBool = True
    path_prefix: Prefix
    pages_path: Prefix = Field(default_factory=_default_pages)
    exempt: StrList = ()
    proof_max_age_seconds: Annotated[StrictInt, between(60, 30 * 24 * 3600)] = 12 * 3600
    proof_cookie: CookieName  # the file's default, tfa_<name>, is filled in by Settings
    on_missing_phone: Literal["enroll", "skip"] = "enroll"
    # A phone change needs a second factor at most this old; older, and the old number is asked first.
    phone_change_fresh_seconds: Annotated[StrictInt, between(60, 24 * 3600)] = 600
    # What a user of this interface may sign in with (an admin interface may refuse sms), in the
    # order the challenge offers them; and what each user must have set up.
    factors: Annotated[FactorList, AfterValidator(_sign_in_factor)] = DEFAULT_FACTORS
    require_factors: FactorList = ()
    # "Remember this browser" for this many days after a code (0: never offered).
    remember_days: Annotated[StrictInt, between(0, 400)] = 0
    # Passkeys (factor webauthn): the relying party's id, a domain (never an IP address: browsers
    # refuse passkeys there), and the origins the browser may report, each on that domain or below
    # it. Default: the demo's, http://localhost:8000; for any other rp_id, https://<rp_id>.
    rp_id: RpId = LOCALHOST
    origins: Annotated[tuple[StrictStr, ...], BeforeValidator(one_as_list)] = Field((), validate_default=True)
    identity: IdentitySettings
    manage: ManageSettings = ManageSettings()
    # When the resolver sees nobody and the shop serves the protected page anyway (2xx): "block"
    # (withheld) or "warn" (served, and logged), for a shop whose login answers 200 right there.
    unidentified: Literal["block", "warn"] = "block"
    # The shop's own logout, relative to the application's root: a link on every page, and a
    # request there ends this browser's proof in the same response.
    logout_url: Path | None = None
    # Issue 17's rollout policy (policy.py): sensitive paths that need a recent code, report-only
    # mode (nobody stopped, who would be recorded), and a grace for users without a factor.
    step_up: tuple[StepUpRule, ...] = ()
    mode: Literal["enforce", "report"] = "enforce"
    enroll_grace: EnrollGrace | None = None
    # The pages' language: fixed (a catalogue's name: de, pt_BR), or the shop's own choice
    # (locale_from); otherwise the browser's Accept-Language, then English.
    locale: LocaleCode | None = None
    locale_from: LocaleFrom | None = None

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
        raise_any((f"[{i}]", p) for i, e in enumerate(entries) if (p := _exemption_problem(e, prefix, pages)))
        return tuple(entry.lower() for entry in entries)

    @field_validator("step_up")
    @classmethod
    def _step_up_inside(cls, rules: tuple[StepUpRule, ...], info: ValidationInfo) -> tuple[StepUpRule, ...]:
        prefix, pages = info.data.get("path_prefix"), info.data.get("pages_path")
        raise_any(
            (f"[{i}].path", p)
            for i, rule in enumerate(rules)
            if (p := _step_up_problem(rule.path, prefix, pages))
        )
        return rules

    @field_validator("require_factors")
    @classmethod
    def _required_allowed(cls, required: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        allowed = info.data.get("factors")
        sms = "sms: a phone is asked for at enrollment (on_missing_phone: enroll); list totp or recovery"
        found = [(f"[{i}]", sms) for i, kind in enumerate(required) if kind == "sms"]
        if allowed is not None:
            found += [
                (f"[{i}]", f"{kind!r} is not in factors {list(allowed)}")
                for i, kind in enumerate(required)
                if kind not in allowed and kind != "sms"
            ]
        raise_any(found)
        return required

    @field_validator("origins")
    @classmethod
    def _origins(cls, origins: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        rp_id = info.data.get("rp_id")
        if rp_id is None:
            return origins  # rp_id itself is wrong: that is the one error to read
        if not origins:
            return (DEMO_ORIGIN,) if rp_id == LOCALHOST else (f"https://{rp_id}",)
        found = [(f"[{i}]", p) for i, o in enumerate(origins) if (p := origin_problem(o, rp_id))]
        raise_any(found)
        return tuple(dict.fromkeys(normal_origin(o) for o in origins))

    @field_validator("manage")
    @classmethod
    def _roles_readable(cls, manage: ManageSettings, info: ValidationInfo) -> ManageSettings:
        identity = info.data.get("identity")
        readable = (
            isinstance(identity, CallableSource)
            or getattr(identity, "roles_key", None)
            or getattr(identity, "roles_claim", None)
        )
        if manage.allow_roles and identity and not readable:
            why = (
                "needs identity.roles_key (the session key holding the user's roles), roles_claim (from: "
                "jwt), or a callable resolver"
            )
            raise_any([("allow_roles", why)])
        return manage

    @field_validator("logout_url")
    @classmethod
    def _logout_opens_nothing(cls, logout_url: str | None, info: ValidationInfo) -> str | None:
        # The logout is open to everybody (nobody needs a code to leave): it must be the shop's
        # logout and nothing else, never the interface itself or our own pages.
        prefix, pages = info.data.get("path_prefix"), info.data.get("pages_path")
        leaving = as_prefix(logout_url or "")
        if logout_url and prefix and pages and (leaving == prefix or inside(leaving, pages)):
            opened = "our pages" if inside(leaving, pages) else "the whole interface"
            raise invalid(
                f"{logout_url!r} would open {opened} to everybody: "
                "give the shop's own logout page, e.g. /admin/logout"
            )
        return logout_url


def _exemption_problem(entry: str, prefix: str | None, pages: str | None) -> str | None:
    normal = entry.lower().rstrip("/") or "/"
    if path_problem(entry) or not (prefix and pages):
        return path_problem(entry)
    if not inside(normal, prefix):
        return f"{entry!r} is outside path_prefix {prefix!r}"
    if normal == prefix:
        return "exempting the whole prefix disables the interface; use enabled: false"
    if inside(pages, normal) if entry.endswith("/") else normal == pages:
        return f"{entry!r} covers pages_path {pages!r}, so the challenge pages could never be reached"
    return None


def _step_up_problem(path: str, prefix: str | None, pages: str | None) -> str | None:
    if (problem := path_problem(path)) or not (prefix and pages):
        return problem
    normal = as_prefix(path)
    if not inside(normal, prefix):
        return f"{path!r} is outside path_prefix {prefix!r}: a rule protects only its own interface"
    if inside(normal, pages) or inside(pages, normal):
        return f"{path!r} overlaps pages_path {pages!r}: the challenge itself must stay reachable"
    return None
