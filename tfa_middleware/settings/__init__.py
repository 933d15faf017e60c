"""YAML → typed, validated, immutable settings (pydantic models).

Every problem in a file is reported at once by its key path
(``interfaces.admin.path_prefix: must start with '/'``); unknown keys are refused, because a typo
must never silently switch protection off. Strings may use ``${NAME}`` or ``${NAME:-default}`` so
that secrets stay in the environment; secrets are kept in :class:`Secret`, which never prints.

pydantic does the types, the required and unknown keys and the masking; the modules keep what it
cannot say for us: ``types`` (the shared value types and our error texts), ``identity`` (one model
per ``identity.from``), ``interfaces``, ``sections`` (provider, limits, branding, pool),
``regions`` (where SMS may go), ``model`` (the whole file and the checks between its sections),
``loader`` (YAML, ``${VAR}``, and pydantic's errors in the words users read).
"""

from __future__ import annotations

from .identity import (
    IDENTITY_SOURCES,
    CallableSource,
    HeaderSource,
    IdentitySettings,
    IdentitySource,
    ScopeUserSource,
    SessionSource,
    StarletteSessionCookieSource,
)
from .interfaces import InterfaceSettings, ManageSettings
from .loader import load_settings, settings_from_mapping
from .model import MIN_SECRET_KEY_LENGTH, Settings, mask_database_url
from .regions import DEFAULT_ALLOWED_REGIONS
from .sections import (
    DEFAULT_API_URLS,
    HOURLY_FAILURE_CEILING,
    MAX_CODE_TTL_SECONDS,
    MIN_BRAND_CONTRAST,
    PROVIDER_NAMES,
    BrandingSettings,
    LimitSettings,
    PoolSettings,
    ProviderSettings,
    contrast_with_white,
)
from .types import Secret

__all__ = [
    "DEFAULT_ALLOWED_REGIONS",
    "DEFAULT_API_URLS",
    "HOURLY_FAILURE_CEILING",
    "IDENTITY_SOURCES",
    "MAX_CODE_TTL_SECONDS",
    "MIN_BRAND_CONTRAST",
    "MIN_SECRET_KEY_LENGTH",
    "PROVIDER_NAMES",
    "BrandingSettings",
    "CallableSource",
    "HeaderSource",
    "IdentitySettings",
    "IdentitySource",
    "InterfaceSettings",
    "LimitSettings",
    "ManageSettings",
    "PoolSettings",
    "ProviderSettings",
    "ScopeUserSource",
    "Secret",
    "SessionSource",
    "Settings",
    "StarletteSessionCookieSource",
    "contrast_with_white",
    "load_settings",
    "mask_database_url",
    "settings_from_mapping",
]
