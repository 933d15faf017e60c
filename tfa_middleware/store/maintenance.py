"""``tfa-middleware db purge``: old rows out, what the limits still count kept."""

from __future__ import annotations

from sqlalchemy import delete

from ..tables import codes, events, outbox, remembered_browsers, revoked_sessions, sends
from .database import Store


async def purge(db: Store, before: float, now: float) -> dict[str, int]:
    """Delete audit events, outbox messages and spent codes older than ``before``; the send log
    only past a day, since the send limits count back that far; revoked logins and remembered
    browsers once expired."""
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
        }
    return {name: int(count) for name, count in counts.items()}
