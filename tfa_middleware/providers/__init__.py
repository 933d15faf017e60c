"""Code providers: who sends the one-time code and who checks it."""

from __future__ import annotations

from .authy import AuthyProvider
from .base import CheckResult, Provider, SendResult, Target
from .build import build_provider, remote_provider
from .sandbox import SandboxProvider
from .twilio_verify import TwilioVerifyProvider

__all__ = [
    "AuthyProvider",
    "CheckResult",
    "Provider",
    "SandboxProvider",
    "SendResult",
    "Target",
    "TwilioVerifyProvider",
    "build_provider",
    "remote_provider",
]
