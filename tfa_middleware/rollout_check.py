"""Issue 17's checks as both middlewares make them on a request (the ASGI one awaits them, the
WSGI one runs them on its loop thread): whether a proof meets the step-up rule of its path, and
report mode's record of a user who would have been stopped.

Only requests a step-up rule holds, or that an interface in report mode would have stopped, come
here: the hot path (a valid proof on a path no rule holds) never does.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from .cache import BoundedCache
from .errors import StoreUnavailable
from .policy import StepUp, fresh_enough, spent_key
from .proof import Proof
from .rollout import utc_day
from .service import TwoFactor
from .settings import InterfaceSettings

log = logging.getLogger("tfa_middleware")
REPORTED_CACHE_SIZE = 10_000


class RolloutCheck:
    """The step-up and report-mode checks of one middleware (its cache of users reported today)."""

    def __init__(self, service: TwoFactor) -> None:
        self.service = service
        # Who this process recorded today: the database is asked once a user and day, not per request.
        self.reported: BoundedCache[tuple[str, str], str] = BoundedCache(REPORTED_CACHE_SIZE)

    def step_up(
        self, iface: InterfaceSettings, proof: Proof, step: StepUp, method: str, now: float
    ) -> bool | Coroutine[Any, Any, bool]:
        """Whether a request on a path ``step`` holds goes on (False: the re-check). Answered at
        once unless the database must be asked (a max-age-0 rule's spend, report mode's record):
        then a coroutine, which the ASGI middleware awaits and the WSGI one runs on its loop.
        Raises StoreUnavailable when a spend cannot be recorded (nobody passes)."""
        limit = step.limit(method)
        if limit is None:
            return True
        fresh = fresh_enough(proof, limit, now)
        if fresh and limit > 0:
            return True
        if not fresh and iface.mode != "report":
            return False
        return self._settled(iface, proof, fresh, now)

    async def _settled(self, iface: InterfaceSettings, proof: Proof, once: bool, now: float) -> bool:
        # ``once``: young enough for a max-age-0 rule, if this request is the first to spend it
        # (on any worker: one INSERT ... ON CONFLICT DO NOTHING of its digest).
        if once and await self.service.rollout.spend(spent_key(proof), iface.name, proof.user_id):
            return True
        if iface.mode == "report":
            await self.report(iface.name, proof.user_id, "step_up", now)
            return True
        return False

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
