"""What the service answers: a user's enrollment status, the outcome of a send and of a verify,
what voids a user's proofs. Plain values, re-exported by ``tfa_middleware.service``."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from . import phone as phones
from .limits import Refusal
from .providers.base import Purpose, Target
from .store import Enrollment


@dataclass(frozen=True, slots=True)
class EnrollmentStatus:
    interface: str
    user_id: str
    state: Literal["none", "pending", "active"]
    masked_phone: str
    pending_masked_phone: str
    require_enrollment: bool
    generation: int
    last_verified_at: float | None
    locked_until: float = 0.0  # while the verify lock holds (limits.py), else 0
    pending_assigned: bool = False  # the pending number was set by a manager: binding
    # The kinds of the user's confirmed factors (sms, totp, recovery while a code is left), and the
    # ones they may sign in with on this interface, preferred first (None: only the phone counts,
    # for a status read without the interface's factors).
    factors: frozenset[str] = frozenset()
    usable: tuple[str, ...] | None = None

    @property
    def needs_enrollment(self) -> bool:
        """True when the user must (re-)enroll before a code can let them in."""
        usable = self.state == "active" if self.usable is None else bool(self.usable)
        return not usable or self.require_enrollment


class SendStatus(enum.Enum):
    SENT = "sent"
    NEEDS_ENROLLMENT = "needs_enrollment"
    REFUSED = "refused"  # a send limit: see ``refusal`` and ``retry_after``


@dataclass(frozen=True, slots=True)
class SendOutcome:
    status: SendStatus
    masked_phone: str = ""
    channel: str = "sms"
    refusal: Refusal | None = None
    retry_after: int = 0  # seconds


class VerifyStatus(enum.Enum):
    APPROVED = "approved"
    REJECTED = "rejected"  # wrong, expired or used: one outcome, one message
    MALFORMED = "malformed"  # not a code at all (letters, wrong length): no provider call made
    NEEDS_ENROLLMENT = "needs_enrollment"
    WAIT = "wait"  # the growing delay after a failure: try again at ``retry_at``
    LOCKED = "locked"  # too many failures: no code is checked until ``retry_at``


@dataclass(frozen=True, slots=True)
class VerifyOutcome:
    status: VerifyStatus
    generation: int = 0
    method: str = "sms"
    retry_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Revocations:
    """What voids a user's proof: another generation, or a login (session digest) that the shop
    signed out at ``sessions[digest]``, for a proof of that login that had not seen that sign-out."""

    generation: int
    sessions: Mapping[str, float]


def status_of(interface: str, user_id: str, row: Enrollment | None, now: float = 0.0) -> EnrollmentStatus:
    if row is None:
        return EnrollmentStatus(interface, user_id, "none", "", "", False, 0, None)
    state: Literal["none", "pending", "active"]
    state = "active" if row.phone else ("pending" if row.pending_phone else "none")
    return EnrollmentStatus(
        interface=interface,
        user_id=user_id,
        state=state,
        masked_phone=phones.mask(row.phone),
        pending_masked_phone=phones.mask(row.pending_phone),
        require_enrollment=row.require_enrollment,
        generation=row.generation,
        last_verified_at=row.last_verified_at,
        locked_until=row.locked_until if row.locked_until > now else 0.0,
        pending_assigned=row.pending_assigned and bool(row.pending_phone),
    )


def target_of(
    interface: str, user_id: str, row: Enrollment | None, purpose: Purpose | None = None
) -> Target | None:
    """Where a code goes now: the active phone to log in, or the pending one to confirm it."""
    if row is None:
        return None
    if purpose is Purpose.ENROLL:
        if not row.pending_phone:
            return None
        return Target(interface, user_id, row.pending_phone, Purpose.ENROLL, row.pending_provider_user_id)
    if row.phone and not row.require_enrollment:
        return Target(interface, user_id, row.phone, Purpose.LOGIN, row.provider_user_id)
    if row.pending_phone:
        return Target(interface, user_id, row.pending_phone, Purpose.ENROLL, row.pending_provider_user_id)
    return None
