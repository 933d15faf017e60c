"""The provider contract.

A provider sends a one-time code to a phone and later checks a code. It is small and fails closed:
a wrong, expired or used code is the result ``CheckResult.REJECTED``, never an exception, and the
only result that lets anyone in is ``CheckResult.APPROVED``. A provider that cannot do its job
raises a :class:`~tfa_middleware.errors.ProviderError`. A custom provider looks like this::

    class MyProvider:
        name = "mine"
        supports_call = False

        needs_registration = False
        code_lengths = (6, 6)
        fingerprint = None

        async def register(self, target: Target) -> str | None:
            return None  # nothing to register

        async def send(self, target: Target, channel: str) -> SendResult:
            await my_gateway.text(target.phone, ...)
            return SendResult(channel=channel)

        async def check(self, target: Target, code: str) -> CheckResult:
            ok = await my_gateway.check(target.phone, code)
            return CheckResult.APPROVED if ok else CheckResult.REJECTED

        async def close(self) -> None:
            pass
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class Purpose(enum.StrEnum):
    LOGIN = "login"  # a code to the active phone, to enter
    ENROLL = "enroll"  # a code to a new phone, to confirm it


class CheckResult(enum.Enum):
    APPROVED = "approved"
    REJECTED = "rejected"  # wrong, expired or already used: deliberately one value


@dataclass(frozen=True, slots=True)
class Target:
    """Whom a code is for: a user of one interface, at one phone, for one purpose."""

    interface: str
    user_id: str
    phone: str  # E.164
    purpose: Purpose
    provider_user_id: str | None = None
    # The reader's language (a catalogue's name: de, pt_BR, zh_Hans) for the message; None: the
    # provider's default. Twilio Verify's Locale, Authy's locale, the sandbox's own text.
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    channel: str


class Provider(Protocol):
    """What the service needs of a provider.

    The descriptive members are read-only properties, so a plain class attribute satisfies them
    (``fingerprint = None`` in the example above is a ``str | None``); nothing sets them from outside.
    """

    @property
    def name(self) -> str: ...

    @property
    def supports_call(self) -> bool: ...

    @property
    def needs_registration(self) -> bool:
        """True when send/check need ``Target.provider_user_id`` from :meth:`register` first (Authy)."""
        ...

    @property
    def code_lengths(self) -> tuple[int, int]:
        """Shortest and longest code the provider issues; longer or shorter input is refused unsent."""
        ...

    @property
    def fingerprint(self) -> str | None:
        """A digest of the credentials and endpoint in use, or None.

        When it changes between runs, every stored provider user id is cleared (they belong to the
        old account).
        """
        ...

    async def register(self, target: Target) -> str | None: ...

    async def send(self, target: Target, channel: str) -> SendResult: ...

    async def check(self, target: Target, code: str) -> CheckResult: ...

    async def close(self) -> None: ...
