"""Issue 17's checks as both middlewares make them on a request (the ASGI one awaits them, the
WSGI one runs them on its loop thread): whether a proof meets the step-up rule of its path, and
report mode's record of a user who would have been stopped.

Only requests a step-up rule holds, or that an interface in report mode would have stopped, come
here: the hot path (a valid proof on a path no rule holds) never does.
"""

from __future__ import annotations

import logging

from .cache import BoundedCache
from .errors import StoreUnavailable
from .policy import fresh_enough, spent_key
from .proof import Proof
from .rollout import utc_day
from .service import TwoFactor

log = logging.getLogger("tfa_middleware")
REPORTED_CACHE_SIZE = 10_000


class RolloutCheck:
    """The step-up and report-mode checks of one middleware (its cache of users reported today)."""

    def __init__(self, service: TwoFactor) -> None:
        self.service = service
        # Who this process recorded today: the database is asked once a user and day, not per request.
        self.reported: BoundedCache[tuple[str, str], str] = BoundedCache(REPORTED_CACHE_SIZE)

    @staticmethod
    def fresh(proof: Proof, limit: int, now: float) -> bool | None:
        """Whether ``proof`` meets a step-up rule of ``limit`` seconds (a code typed that
        recently); None for a rule of 0 that the proof meets if this request is the first to
        spend it (:meth:`spend`)."""
        if not fresh_enough(proof, limit, now):
            return False
        return True if limit > 0 else None

    async def spend(self, interface: str, proof: Proof) -> bool:
        """Spend the proof on this request of a max-age-0 rule: True the first time, on any worker.
        Raises StoreUnavailable when it cannot be recorded (nobody passes)."""
        return await self.service.rollout.spend(spent_key(proof), interface, proof.user_id)

    async def report(self, interface: str, user_id: str, kind: str | None, now: float) -> None:
        """Report mode: record once a UTC day that the user would have been stopped (``kind``
        None: the challenge or, for a user who must enroll, the enrollment). A database that
        cannot record it is logged; the user goes on (report mode stops nobody)."""
        key, day = (interface, user_id), utc_day(now)
        if self.reported.get(key) == day:
            return
        try:
            if kind is None:
                status = await self.service.status(interface, user_id)
                kind = "enroll" if status.needs_enrollment else "challenge"
            await self.service.rollout.report(interface, user_id, kind)
        except StoreUnavailable as exc:
            log.error("report mode of interface %s cannot record %s: %s", interface, user_id, exc)
            return
        self.reported.put(key, day)
