"""Issue 17's use cases, ``TwoFactor.rollout``: exemptions of one user for a while, the enrollment
grace, report mode's daily record of who would have been stopped, and the single use of a proof
on a step-up rule of max age 0. Each change and its audit event commit in one transaction.

An exemption is time-limited, never open-ended: at most :data:`MAX_EXEMPTION_DAYS` ahead. The
proof an exempt user gets (``pages``) ends when the exemption does (its lifetime is cut to
``until``), and ending an exemption early moves the user's generation on, so that proof dies on
every worker within ``revocation_check_seconds``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from .audit import AuditTrail, RequestInfo
from .errors import InvalidInput
from .i18n import N_
from .outcomes import EnrollmentStatus
from .settings import Settings
from .store import Store
from .store import enrollments as enrollment_rows
from .store import events as event_rows
from .store import policy as policy_rows
from .store.policy import Exemption

MAX_EXEMPTION_DAYS = 30
MAX_REASON_LENGTH = 200
DAY = 86400


@dataclass(frozen=True, slots=True)
class Grace:
    """What is left of a user's enrollment grace: seconds (a date) or logins (a count)."""

    seconds: float | None = None
    logins: int | None = None


def utc_day(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def grace_eligible(status: EnrollmentStatus) -> bool:
    """A user the grace is for: asked to enroll, with no factor to sign in with."""
    return status.needs_enrollment and not status.usable


class Rollout:
    def __init__(
        self, settings: Settings, store: Store, trail: AuditTrail, clock: Callable[[], float]
    ) -> None:
        self.settings = settings
        self.store = store
        self.trail = trail
        self.clock = clock

    # ------------------------------------------------------------------ exemptions

    async def exempt(
        self, interface: str, user_id: str, until: float, reason: str, request: RequestInfo | None = None
    ) -> Exemption:
        """Exempt the user from the second factor until ``until`` (Unix time), replacing any
        exemption in force. Raises InvalidInput for a time past, or more than
        MAX_EXEMPTION_DAYS ahead, or an empty or overlong reason: nothing is changed then."""
        now = self.clock()
        reason = " ".join(reason.split())
        if not reason:
            raise InvalidInput(N_("An exemption needs a reason (who asked, and why)."))
        if len(reason) > MAX_REASON_LENGTH:
            raise InvalidInput(
                N_("The reason must be at most %(length)s characters."), length=MAX_REASON_LENGTH
            )
        if until <= now:
            raise InvalidInput(N_("An exemption must end in the future."))
        if until > now + MAX_EXEMPTION_DAYS * DAY:
            raise InvalidInput(N_("An exemption lasts at most %(days)s days."), days=MAX_EXEMPTION_DAYS)
        by = request.actor if request else None
        item = Exemption(interface, user_id, until, reason, by, now)
        shown = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(until))
        async with self.trail.recording(
            now, interface, user_id, "exempted", request, until=shown, reason=reason
        ) as conn:
            # The row, so that its generation (which the exempt proof names) is a real one.
            await enrollment_rows.ensure_row(conn, interface, user_id, now)
            await policy_rows.add(conn, item, now)
        return item

    async def end_exemption(self, interface: str, user_id: str, request: RequestInfo | None = None) -> bool:
        """End the user's exemption now; its proof dies (the generation moves on). Whether there was one."""
        now = self.clock()
        if await policy_rows.active(self.store, interface, user_id, now) is None:
            return False
        async with self.trail.recording(now, interface, user_id, "exemption_ended", request) as conn:
            ended = await policy_rows.end(conn, interface, user_id, now)
            await enrollment_rows.change(conn, interface, user_id, now, bump_generation=True)
        return ended

    async def exemption(self, interface: str, user_id: str) -> Exemption | None:
        return await policy_rows.active(self.store, interface, user_id, self.clock())

    async def exemptions(self, interface: str) -> list[Exemption]:
        return await policy_rows.active_all(self.store, interface, self.clock())

    # ------------------------------------------------------------------ enrollment grace

    async def grace_left(self, interface: str, user_id: str) -> Grace | None:
        """What is left of the interface's enroll_grace for the user, or None (none, or over)."""
        grace = self.settings.interface(interface).enroll_grace
        if grace is None:
            return None
        if grace.ends_at is not None:
            left = grace.ends_at - self.clock()
            return Grace(seconds=left) if left > 0 else None
        assert grace.logins is not None
        left_logins = grace.logins - await policy_rows.logins_skipped(self.store, interface, user_id)
        return Grace(logins=left_logins) if left_logins > 0 else None

    async def skip_enrollment(
        self, interface: str, user_id: str, request: RequestInfo | None = None
    ) -> Grace | None:
        """Use the grace once: what was left after this skip, or None (no grace left: refused).
        A count of logins is taken by one conditional statement, so parallel skips never pass N."""
        grace = self.settings.interface(interface).enroll_grace
        now = self.clock()
        if grace is None:
            return None
        if grace.ends_at is not None:
            if grace.ends_at <= now:
                return None
            left = Grace(seconds=grace.ends_at - now)
        else:
            assert grace.logins is not None
            used = await policy_rows.skip_login(self.store, interface, user_id, grace.logins, now)
            if used is None:
                return None
            left = Grace(logins=grace.logins - used)
        await self.trail.record(now, interface, user_id, "enrollment_skipped", request)
        return left

    # ------------------------------------------------------------------ report mode

    async def report(self, interface: str, user_id: str, kind: str) -> bool:
        """Record that the user would have been stopped (``kind``: challenge, enroll, step_up),
        once per UTC day whatever the number of workers: whether this call recorded it."""
        now = self.clock()
        item = self.trail.event(now, interface, user_id, f"report_{kind}", None)
        async with self.store.transaction() as conn:
            recorded = await policy_rows.report(conn, interface, user_id, utc_day(now), kind, now)
            if recorded:
                await event_rows.add(conn, item)
        if recorded:
            await self.trail.announce(item)
        return recorded

    async def reported(self, interface: str, days: int) -> list[tuple[str, str, str]]:
        """``(user_id, day, kind)`` recorded in the last ``days`` UTC days."""
        return await policy_rows.reported(self.store, interface, utc_day(self.clock() - (days - 1) * DAY))

    # ------------------------------------------------------------------ step-up

    async def spend(self, digest: str, interface: str, user_id: str) -> bool:
        """Spend a proof on one request of a max-age-0 step-up rule: True the first time only."""
        return await policy_rows.spend(self.store, digest, interface, user_id, self.clock())


def parse_until(text: str) -> float:
    """An exemption's end as written on the command line or the manage page: a date (``2027-01-31``:
    through the end of that day, UTC) or a time with its zone (``2027-01-31T18:00+01:00``).
    Raises InvalidInput."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            N_("%(text)s is not a date (2027-01-31) or a time with its zone."), text=repr(text)
        ) from None
    if at.tzinfo is None:
        raise InvalidInput(
            N_("%(text)s needs its time zone, e.g. %(example)s."), text=repr(text), example=f"{text}+00:00"
        )
    return at.timestamp()
