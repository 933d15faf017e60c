"""The sections beside the interfaces: ``provider``, ``limits``, ``branding``, ``database_pool``."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self, get_args
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from .regions import CallingCodes, Regions
from .types import NonEmpty, Secret, Section, between, invalid, raise_any, sid

ProviderName = Literal["sandbox", "authy", "twilio_verify"]
PROVIDER_NAMES: tuple[str, ...] = get_args(ProviderName)
DEFAULT_API_URLS = {"authy": "https://api.authy.com", "twilio_verify": "https://verify.twilio.com"}
MAX_CODE_TTL_SECONDS = 600  # security requirement 4: a code lives at most 10 minutes
HOURLY_FAILURE_CEILING = 100  # security requirement 6: never more, whatever the file says
MIN_BRAND_CONTRAST = 4.5  # WCAG AA for normal text: white on the colour, the colour on white
# An https logo's origin goes into the pages' Content-Security-Policy, so it must be a plain host:
# a ';' or a quote there would add directives of its own.
_HTTPS_LOGO_PATTERN = re.compile(
    r"^(https://[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?)"
    r"(?:[/?#][^\s\"'<>\\`]*)?$",
    re.IGNORECASE,
)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"


def _url(text: str) -> str:
    if not re.match(r"^https?://[^\s/]+", text):
        raise invalid("must be an http:// or https:// URL")
    return text.rstrip("/")


def _domain(text: str) -> str:
    text = text.lower()
    if len(text) > 200 or not re.fullmatch(rf"{_LABEL}(?:\.{_LABEL})+", text):
        raise invalid("must be a domain name, e.g. users.invalid or 2fa.example.com")
    return text


def _default_api_url(data: dict[str, Any]) -> str | None:
    return DEFAULT_API_URLS.get(data.get("name", "sandbox"))


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
    api_url: Annotated[NonEmpty, AfterValidator(_url)] | None = Field(default_factory=_default_api_url)
    timeout_seconds: Annotated[StrictFloat, between(0.1, 60)] = 5.0
    # authy
    api_key: Secret | None = None
    # pseudonymous emails: <keyed hash of the user id>@email_domain
    email_domain: Annotated[NonEmpty, AfterValidator(_domain)] = "users.invalid"
    email_from_user: StrictBool = False  # opt-in: send the user id to Authy when it is an email address
    # twilio_verify
    account_sid: Annotated[StrictStr, sid("AC")] | None = None
    # SK...: Basic auth with this API key, auth_token being its secret
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
            raise_any(
                [
                    (
                        "production_mode",
                        "the sandbox provider never sends anything; set production_mode: false, "
                        "or choose the authy or twilio_verify provider",
                    )
                ]
            )
        secret = self.api_key if self.name == "authy" else self.auth_token
        needed = (
            {"api_key": secret}
            if self.name == "authy"
            else {"account_sid": self.account_sid, "auth_token": secret, "service_sid": self.service_sid}
        )
        found = [
            (key, f"is required with name: {self.name} and production_mode: true")
            for key, value in needed.items()
            if not (value.reveal() if isinstance(value, Secret) else value)
        ]
        if self.api_url and not self.api_url.startswith("https://") and not _loopback(self.api_url):
            found.append(
                (
                    "api_url",
                    "must be an https:// URL in production mode (http:// only to 127.0.0.1 or "
                    "localhost, e.g. `tfa-middleware fake-provider`): the credentials travel with "
                    "every request",
                )
            )
        raise_any(found)
        return self


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
    # The older spelling, calling codes, is read before the regions it becomes; not described.
    allowed_country_codes: CallingCodes | None = Field(default=None, exclude=True, repr=False)
    allowed_regions: Regions = Field(default=None, validate_default=True)

    def region_allowed(self, region: str | None) -> bool:
        """``region`` as ``phonenumbers.region_code_for_number`` gives it (None: no region)."""
        return "*" in self.allowed_regions or (region is not None and region in self.allowed_regions)

    @model_validator(mode="after")
    def _in_order(self) -> Self:
        found: list[tuple[str, str]] = []
        if self.send_max_per_10_minutes > self.send_max_per_hour:
            found.append(("send_max_per_10_minutes", "must not be more than send_max_per_hour"))
        if self.send_budget_per_hour > self.send_budget_per_day:
            found.append(("send_budget_per_hour", "must not be more than send_budget_per_day"))
        if self.allowed_country_codes is not None and "allowed_regions" in self.model_fields_set:
            found.append(
                ("allowed_country_codes", "set either allowed_regions or allowed_country_codes, not both")
            )
        raise_any(found)
        return self


def _title(text: str) -> str:
    if len(text) > 80 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise invalid("must be one line of at most 80 characters")
    return text


def _logo_url(text: str) -> str:
    plain = not any(c.isspace() or ord(c) < 0x20 or c in "\"'<>\\`" for c in text)
    local = text.startswith("/") and not text.startswith("//")
    if len(text) <= 2048 and plain and (local or _HTTPS_LOGO_PATTERN.match(text)):
        return text
    raise invalid(
        "must be a path on this site (e.g. /static/logo.svg) or an https:// URL, "
        "without spaces, quotes, '<', '>' or '\\'"
    )


def _brand_color(text: str) -> str:
    text = text.strip()
    if not re.match(r"^#(?:[0-9a-fA-F]{3}){1,2}$", text):
        raise invalid(f"must be a colour as #rgb or #rrggbb, got {text!r}")
    digits = text[1:].lower()
    color = "#" + (digits if len(digits) == 6 else "".join(c * 2 for c in digits))
    ratio = contrast_with_white(color)
    if ratio < MIN_BRAND_CONTRAST:
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


class BrandingSettings(Section):
    """What the challenge pages show of the shop, without editing a template."""

    title: Annotated[NonEmpty, AfterValidator(_title)] | None = None  # also the window title, the logo's alt
    logo_url: Annotated[NonEmpty, AfterValidator(_logo_url)] | None = None  # a path here, or https://
    primary_color: Annotated[StrictStr, AfterValidator(_brand_color)] | None = None  # buttons, links, focus

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
