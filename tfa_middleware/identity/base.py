"""What a resolver answers: :class:`Identity` (who is logged in), :class:`Reading` (what it saw,
for warnings and ``doctor``), and the rules every resolver shares: :func:`as_identity` (a usable
user id or a refusal, never a quiet "nobody") and :class:`Warnings` (rate-limited log lines)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from starlette.types import Scope

from ..errors import UnusableIdentity
from ..tables import MAX_USER_ID_LENGTH

log = logging.getLogger("tfa_middleware")
WARN_EVERY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    session_id: str | None = None
    roles: frozenset[str] = frozenset()  # only for the management page's allow_roles


ResolverResult = Identity | str | None
Resolver = Callable[[Scope], ResolverResult | Awaitable[ResolverResult]]
# The steps of reading a session cookie, in order (StarletteSessionCookieResolver.CHECKS); a Django
# session is read by Django, then its user is judged: found ("user"), of this interface ("require").
Check = Literal["cookie", "signature", "age", "session", "key", "user", "require"]


@dataclass(frozen=True, slots=True)
class Reading:
    """What a built-in resolver made of a request: the identity, or why there is none.

    ``why`` is for the operator (the rate-limited warning, ``tfa-middleware doctor``): it names
    cookies and keys, never a value or a secret. ``notable`` marks the readings that suggest a
    setting does not match the shop (a signature that fails, a key that is missing), as opposed
    to the ordinary "no cookie at all". ``check`` names the step that stopped the reading, so that
    ``doctor`` can show the steps before it as passed and this one as the cause.
    """

    identity: Identity | None
    why: str = ""
    notable: bool = False
    check: Check | None = None


def as_identity(result: object) -> Identity | None:
    """Normalise what a resolver returned: None or "" is nobody logged in.

    Anything else that is not a usable id raises UnusableIdentity: somebody *is* logged in, so
    treating it as "nobody" would hand the request to the shop without a second factor.
    """
    if result is None or result == "":
        return None
    if isinstance(result, Identity):
        identity = result
    elif isinstance(result, str | int) and not isinstance(result, bool):
        identity = Identity(str(result))
    else:
        raise UnusableIdentity(f"a resolver returned {type(result).__name__}, not a user id")
    if not identity.user_id or len(identity.user_id) > MAX_USER_ID_LENGTH:
        raise UnusableIdentity(f"user ids must be 1 to {MAX_USER_ID_LENGTH} characters")
    return identity


class Warnings:
    """At most one WARNING a minute per interface and reason: a typo must show up in the log, and an
    attacker's garbage cookies must not flood it."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._last: dict[str, float] = {}

    def __call__(self, reading: Reading) -> None:
        if not reading.notable:
            return
        now = time.monotonic()
        last = self._last.get(reading.why)
        if last is not None and now - last < WARN_EVERY_SECONDS:
            return
        if len(self._last) > 64:
            self._last.clear()
        self._last[reading.why] = now
        if reading.identity is None:
            log.warning("%s: %s; the request counts as nobody logged in", self.label, reading.why)
        else:
            log.warning("%s: %s", self.label, reading.why)
