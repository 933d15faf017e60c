"""``tfa-middleware db purge``: old rows out, what the limits still count kept."""

from __future__ import annotations

from sqlalchemy import delete

from ..tables import (
    codes,
    events,
    outbox,
    policy_reports,
    remembered_browsers,
    revoked_sessions,
    sends,
    step_up_spent,
)
from .database import Store


async def purge(db: Store, before: float, now: float) -> dict[str, int]:
    """Delete audit events, outbox messages and spent codes older than ``before``; the send log
    only past a day, since the send limits count back that far; revoked logins and remembered
    browsers once expired; report mode's records with the audit events; a proof spent on a
    step-up once it is too old to be fresh anyway (a day on)."""
    async with db.transaction() as conn:
        counts = {
            "events": (await conn.execute(delete(events).where(events.c.at < before))).rowcount,
            "outbox": (await conn.execute(delete(outbox).where(outbox.c.created_at < before))).rowcount,
            "codes": (
                await conn.execute(
                    delete(codes).where(
                        codes.c.created_at < before,
                        (codes.c.used_at.is_not(None))
                        | (codes.c.expires_at < now)
                        | (codes.c.attempts_left <= 0),
                    )
                )
            ).rowcount,
            "sends": (
                await conn.execute(delete(sends).where(sends.c.at < min(before, now - 24 * 3600)))
            ).rowcount,
            # Whatever the age asked for: a revoked login is kept while a proof of it could live.
            "revoked_sessions": (
                await conn.execute(delete(revoked_sessions).where(revoked_sessions.c.expires_at <= now))
            ).rowcount,
            "remembered_browsers": (
                await conn.execute(delete(remembered_browsers).where(remembered_browsers.c.expires_at <= now))
            ).rowcount,
            "reports": (
                await conn.execute(delete(policy_reports).where(policy_reports.c.at < before))
            ).rowcount,
            # A spent proof matters while it could be fresh (policy.ONCE_SECONDS): a day is ample.
            "step_up_spent": (
                await conn.execute(delete(step_up_spent).where(step_up_spent.c.spent_at < now - 24 * 3600))
            ).rowcount,
        }
    return {name: int(count) for name, count in counts.items()}
