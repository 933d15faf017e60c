"""tfa-middleware: a second factor (a one-time code by SMS) in front of any ASGI web shop."""

from __future__ import annotations

from .errors import (
    ConfigError,
    InvalidInput,
    InvalidPhoneNumber,
    ProviderError,
    ProviderMisconfigured,
    ProviderUnavailable,
    SchemaOutdated,
    StoreUnavailable,
    TwoFactorError,
    UnknownInterface,
)
from .identity import Identity
from .middleware import SCOPE_KEY, TwoFactorMiddleware
from .proof import Proof
from .service import EnrollmentStatus, RequestInfo, TwoFactor
from .settings import Settings, load_settings, settings_from_mapping
from .store import AuditEvent

__version__ = "0.1.0"

__all__ = [
    "SCOPE_KEY",
    "AuditEvent",
    "ConfigError",
    "EnrollmentStatus",
    "Identity",
    "InvalidInput",
    "InvalidPhoneNumber",
    "Proof",
    "ProviderError",
    "ProviderMisconfigured",
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
    "settings_from_mapping",
]
