"""Code providers: who sends the one-time code and who checks it."""

from __future__ import annotations

from .base import CheckResult, Provider, SendResult, Target
from .sandbox import SandboxProvider

__all__ = ["CheckResult", "Provider", "SandboxProvider", "SendResult", "Target"]
