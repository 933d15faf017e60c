"""The sections beside the interfaces: ``provider``, ``limits``, ``branding``, ``database_pool``."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self, get_args
from urllib.parse import urlsplit

from phonenumbers import SUPPORTED_REGIONS as REGIONS
from phonenumbers import region_codes_for_country_code
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    WrapValidator,
    model_validator,
)
from pydantic import ValidatorFunctionWrapHandler as Handler

from .types import NonEmpty, Secret, Section, StrList, between, check, invalid, raise_any, sid

ProviderName = Literal["sandbox", "authy", "twilio_verify"]
PROVIDER_NAMES: tuple[str, ...] = get_args(ProviderName)
DEFAULT_API_URLS = {"authy": "https://api.authy.com", "twilio_verify": "https://verify.twilio.com"}
MAX_CODE_TTL_SECONDS = 600  # security requirement 4: a code lives at most 10 minutes
HOURLY_FAILURE_CEILING = 100  # security requirement 6: never more, whatever the file says
MIN_BRAND_CONTRAST = 4.5  # WCAG AA for normal text: white on the colour, the colour on white
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HTTP = r"(?s)https?://[^\s/]+.*"
Url = Annotated[NonEmpty, check(_HTTP, "must be an http:// or https:// URL", lambda t: t.rstrip("/"))]


def _domain(text: str) -> str:
    if len(text) > 200 or not re.fullmatch(rf"{_LABEL}(?:\.{_LABEL})+", text.lower()):
        raise invalid("must be a domain name, e.g. users.invalid or 2fa.example.com")
    return text.lower()


_HTTPS_ONLY = (
    "must be an https:// URL in production mode (http:// only to 127.0.0.1 or localhost, "
    "e.g. `tfa-middleware fake-provider`): the credentials travel with every request"
)


def _loopback(url: str) -> bool:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return host in ("localhost", "::1") or re.fullmatch(r"127(\.\d{1,3}){3}", host) is not None


class ProviderSettings(Section):
    """Who sends and checks the codes. With ``production_mode`` false the sandbox is used whatever
    ``name`` says; the other fields are read only by the provider they belong to."""

    name: ProviderName = "sandbox"
    production_mode: StrictBool = False
    #: The provider's base URL: ``DEFAULT_API_URLS[name]`` unless the file says otherwise.
    api_url: Url | None = Field(default_factory=lambda data: DEFAULT_API_URLS.get(data.get("name")))
    timeout_seconds: Annotated[StrictFloat, between(0.1, 60)] = 5.0
    # authy; emails are pseudonymous (<keyed hash of the user id>@email_domain) unless email_from_user
    api_key: Secret | None = None
    email_domain: Annotated[NonEmpty, AfterValidator(_domain)] = "users.invalid"
    email_from_user: StrictBool = False  # opt-in: send the user id when it is an email address
    # twilio_verify; with api_key_sid (SK...), Basic auth with that API key, auth_token being its secret
    account_sid: Annotated[StrictStr, sid("AC")] | None = None
    api_key_sid: Annotated[StrictStr, sid("SK")] | None = None
    auth_token: Secret | None = None
    service_sid: Annotated[StrictStr, sid("VA")] | None = None
    # sandbox
    code_length: Annotated[StrictInt, between(6, 10)] = 6
    code_ttl_seconds: Annotated[StrictInt, between(60, MAX_CODE_TTL_SECONDS)] = MAX_CODE_TTL_SECONDS
    max_attempts_per_code: Annotated[StrictInt, between(1, 10)] = 5

    @model_validator(mode="after")
    def _production_ready(self) -> Self:
        if not self.production_mode:  # the credentials are needed only now: else the sandbox is used
            return self
        if self.name == "sandbox":
            why = "the sandbox provider never sends anything; set production_mode: false, or choose "
            raise_any([("production_mode", why + "the authy or twilio_verify provider")])
        needed = ("api_key",) if self.name == "authy" else ("account_sid", "auth_token", "service_sid")
        required = f"is required with name: {self.name} and production_mode: true"
        found = [(key, required) for key in needed if not getattr(self, key)]  # an empty Secret is false
        if self.api_url and not self.api_url.startswith("https://") and not _loopback(self.api_url):
            found.append(("api_url", _HTTPS_ONLY))
        raise_any(found)
        return self


# Where SMS may go unless the file says otherwise: the US and Canada, and the larger European and
# Oceanian markets. Regions, not calling codes (security requirement 28): +1 is also Jamaica and
# 22 other regions, +44 also Jersey, Guernsey and the Isle of Man, whose premium-rate ranges are
# what SMS pumping targets. A shop selling elsewhere lists its own (or "*", at its own risk).
DEFAULT_ALLOWED_REGIONS = (
    *("US", "CA", "NL", "BE", "FR", "ES", "IT", "CH", "AT", "GB"),
    *("DK", "SE", "NO", "DE", "AU", "NZ", "PT", "IE", "FI"),
)
# Codes people write for a region that ISO 3166-1 spells otherwise.
_REGION_HINTS = {"UK": "; the United Kingdom is GB", "EL": "; Greece is GR", "KO": "; Kosovo is XK"}


def _no_booleans(value: Any) -> Any:
    """YAML 1.1 reads an unquoted NO (Norway) as false: say so rather than "expected a string"."""
    quote = 'not a region: quote the codes, e.g. ["NO"] (YAML reads an unquoted NO as false)'
    if isinstance(value, list):
        raise_any(
            (f"[{i}]", f"got {str(v).lower()}, {quote}") for i, v in enumerate(value) if isinstance(v, bool)
        )
    return value


def _star(items: list[str]) -> int:
    """Where ``"*"`` (every region) is: the items after it are not read."""
    return items.index("*") if "*" in items else len(items)


def _regions(items: tuple[str, ...]) -> tuple[str, ...]:
    if not items:
        raise invalid('needs at least one region (or "*" for every region)')
    regions = [item.strip().upper() for item in items]
    star = _star(regions)
    known = "(ISO 3166-1 alpha-2, e.g. US, GB, DE)"
    raise_any(
        (f"[{i}]", f"{items[i]!r} is not a region phonenumbers knows {known}{_REGION_HINTS.get(region, '')}")
        for i, region in enumerate(regions[:star])
        if region not in REGIONS
    )
    return ("*",) if star < len(items) else tuple(dict.fromkeys(regions))


def _default(value: Any, handler: Handler, info: ValidationInfo) -> Any:
    """Not given: the regions of ``allowed_country_codes`` when that is given, else the default."""
    if value is None:
        return info.data.get("allowed_country_codes") or DEFAULT_ALLOWED_REGIONS
    return handler(value)


def _codes_as_text(value: Any) -> Any:
    if isinstance(value, list):
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


def _code_regions(items: tuple[str, ...]) -> tuple[str, ...]:
    """Each calling code as its one region; a code shared by several regions is refused: +1 would
    let Jamaica through for a shop that means the US and Canada."""
    if not items:
        raise invalid('needs at least one calling code (or "*" for every country)')
    star = _star([item.strip() for item in items])
    regions: list[str] = []
    found: list[tuple[str, str]] = []
    for i, item in enumerate(items[:star]):
        code = item.strip().lstrip("+")
        # Non-geographic codes (+800, +882 …) belong to region "001", where no SMS goes.
        shared = [
            r for r in region_codes_for_country_code(int(code) if code.isdigit() else 0) if r in REGIONS
        ]
        if not (code.isdigit() and 1 <= len(code) <= 3):
            found.append((f"[{i}]", f'{item!r} is not a country calling code (1 to 3 digits, or "*")'))
        elif not shared:
            found.append((f"[{i}]", f"{item!r} is not a country calling code"))
        elif len(shared) > 1:
            why = "list the ones you mean under limits.allowed_regions instead, e.g. allowed_regions: "
            why += "[US, CA]" if code == "1" else f"[{shared[0]}]"
            found.append(
                (f"[{i}]", f"+{code} is shared by {len(shared)} regions ({', '.join(shared)}): {why}")
            )
        else:
            regions.append(shared[0])
    raise_any(found)
    return ("*",) if star < len(items) else tuple(dict.fromkeys(regions))


CallingCodes = Annotated[StrList, BeforeValidator(_codes_as_text), AfterValidator(_code_regions)]
Regions = Annotated[StrList, BeforeValidator(_no_booleans), AfterValidator(_regions), WrapValidator(_default)]


class LimitSettings(Section):
    """Verify lockout and send limits (security requirements 6-8)."""

    verify_max_failures: Annotated[StrictInt, between(1, 20)] = 5
    verify_lock_seconds: Annotated[StrictInt, between(15 * 60, 7 * 24 * 3600)] = 15 * 60
    verify_delay_base_seconds: Annotated[StrictFloat, between(0, 60)] = 1.0
    verify_max_failures_per_hour: Annotated[StrictInt, between(1, HOURLY_FAILURE_CEILING)] = (
        HOURLY_FAILURE_CEILING
    )
    send_cooldown_seconds: Annotated[StrictInt, between(30, 3600)] = 30
    send_max_per_10_minutes: Annotated[StrictInt, between(1, 10)] = 3
    send_max_per_hour: Annotated[StrictInt, between(1, 20)] = 5
    send_max_per_phone_per_hour: Annotated[StrictInt, between(1, 20)] = 5
    send_max_per_ip_per_hour: Annotated[StrictInt, between(1, 1_000_000)] = 20
    send_budget_per_hour: Annotated[StrictInt, between(1, 1_000_000)] = 300
    send_budget_per_day: Annotated[StrictInt, between(1, 1_000_000)] = 2000
    # The older spelling: calling codes, each read as its one region (not described).
    allowed_country_codes: CallingCodes | None = Field(default=None, exclude=True, repr=False)
    allowed_regions: Regions = Field(default=None, validate_default=True)

    def region_allowed(self, region: str | None) -> bool:
        """``region`` as ``phonenumbers.region_code_for_number`` gives it (None: no region)."""
        return "*" in self.allowed_regions or (region is not None and region in self.allowed_regions)

    @model_validator(mode="after")
    def _in_order(self) -> Self:
        pairs = (
            ("send_max_per_10_minutes", "send_max_per_hour"),
            ("send_budget_per_hour", "send_budget_per_day"),
        )
        found = [
            (key, f"must not be more than {than}")
            for key, than in pairs
            if getattr(self, key) > getattr(self, than)
        ]
        if self.allowed_country_codes is not None and "allowed_regions" in self.model_fields_set:
            found.append(
                ("allowed_country_codes", "set either allowed_regions or allowed_country_codes, not both")
            )
        raise_any(found)
        return self


# An https logo's origin goes into the pages' Content-Security-Policy, so it must be a plain host:
# a ';' or a quote there would add directives of its own.
_HTTPS_LOGO_PATTERN = re.compile(
    r"^(https://[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?)"
    r"(?:[/?#][^\s\"'<>\\`]*)?$",
    re.IGNORECASE,
)


def _plain_logo(text: str) -> bool:
    plain = len(text) <= 2048 and not any(c.isspace() or ord(c) < 0x20 or c in "\"'<>\\`" for c in text)
    return plain and (
        (text.startswith("/") and not text.startswith("//")) or bool(_HTTPS_LOGO_PATTERN.match(text))
    )


def _brand_color(text: str) -> str:
    if not re.fullmatch(r"#(?:[0-9a-fA-F]{3}){1,2}", text := text.strip()):
        raise invalid(f"must be a colour as #rgb or #rrggbb, got {text!r}")
    digits = text[1:].lower()
    color = "#" + (digits if len(digits) == 6 else "".join(c * 2 for c in digits))
    if (ratio := contrast_with_white(color)) < MIN_BRAND_CONTRAST:
        shown = int(ratio * 10) / 10  # rounded down: 4.46 must not read as the 4.5 it misses
        raise invalid(
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


_NOT_LOGO = "must be a path on this site (e.g. /static/logo.svg) or an https:// URL, without spaces, quotes, "
Title = Annotated[NonEmpty, check(r"[^\x00-\x1f\x7f]{0,80}", "must be one line of at most 80 characters")]
Logo = Annotated[NonEmpty, check(_plain_logo, _NOT_LOGO + "'<', '>' or '\\'")]
Color = Annotated[StrictStr, AfterValidator(_brand_color)]


class BrandingSettings(Section):
    """What the challenge pages show of the shop, without editing a template."""

    # Shown at the top and in the window title; the logo's alt text.
    title: Title | None = None
    logo_url: Logo | None = None
    primary_color: Color | None = None  # buttons, links, focus rings

    @property
    def logo_origin(self) -> str | None:
        """``https://host[:port]`` of an https logo (the CSP must allow it), else None."""
        match = _HTTPS_LOGO_PATTERN.match(self.logo_url or "")
        return match.group(1).lower() if match else None


class PoolSettings(Section):
    """PostgreSQL connection pool, per process (SQLite needs none)."""

    size: Annotated[StrictInt, between(1, 100)] = 5
    max_overflow: Annotated[StrictInt, between(0, 100)] = 10
    timeout_seconds: Annotated[StrictFloat, between(0.5, 120)] = 10.0
    recycle_seconds: Annotated[StrictInt, between(60, 24 * 3600)] = 1800
    connect_timeout_seconds: Annotated[StrictFloat, between(0.5, 60)] = 5.0
