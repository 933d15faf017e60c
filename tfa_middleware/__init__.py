"""tfa-middleware: a second factor (a one-time code by SMS) in front of any ASGI web shop.

    tfa = TwoFactor.from_yaml("tfa.yaml")
    app = TwoFactorMiddleware(Starlette(routes=routes, lifespan=tfa.lifespan), service=tfa)

What is listed in ``__all__`` is the public API; everything else may change between releases.
"""

from __future__ import annotations

from .errors import (
    ConfigError,
    IdentityUnreadable,
    InvalidInput,
    InvalidPhoneNumber,
    ProviderBlocked,
    ProviderError,
    ProviderMisconfigured,
    ProviderRateLimited,
    ProviderUnavailable,
    SchemaOutdated,
    StoreUnavailable,
    TwoFactorError,
    UnknownInterface,
)
from .identity import Identity
from .middleware import SCOPE_KEY as SCOPE_KEY  # importable for code older than second_factor()
from .middleware import TwoFactorMiddleware
from .proof import Proof
from .scope import second_factor
from .service import EnrollmentStatus, RequestInfo, TwoFactor
from .settings import Settings, load_settings, settings_from_mapping
from .store import AuditEvent

__version__ = "0.1.0"

__all__ = [
    "AuditEvent",
    "ConfigError",
    "EnrollmentStatus",
    "Identity",
    "IdentityUnreadable",
    "InvalidInput",
    "InvalidPhoneNumber",
    "Proof",
    "ProviderBlocked",
    "ProviderError",
    "ProviderMisconfigured",
    "ProviderRateLimited",
    "ProviderUnavailable",
    "RequestInfo",
    "SchemaOutdated",
    "Settings",
    "StoreUnavailable",
    "TwoFactor",
    "TwoFactorError",
    "TwoFactorMiddleware",
    "UnknownInterface",
    "load_settings",
    "second_factor",
    "settings_from_mapping",
]
