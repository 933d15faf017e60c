"""What voids a user's proofs: the user row's generation and the logins signed out one by one."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from sqlalchemy import Float, and_, bindparam, select

from ..tables import enrollments, revoked_sessions
from .database import Store, connection, reading, upsert
from .driver import Connection
from .enrollments import THE_USER

# Most users never had a login signed out: they all share this one empty mapping.
_NO_SESSIONS: Mapping[str, float] = MappingProxyType({})


_GENERATION = select(enrollments.c.generation).where(*THE_USER)
_OF_USER = (
    select(enrollments.c.generation, revoked_sessions.c.session_digest, revoked_sessions.c.revoked_at)
    .select_from(
        enrollments.outerjoin(
            revoked_sessions,
            and_(
                revoked_sessions.c.interface == enrollments.c.interface,
                revoked_sessions.c.user_id == enrollments.c.user_id,
                revoked_sessions.c.expires_at > bindparam("now", type_=Float),
            ),
        )
    )
    .where(*THE_USER)
)
_SIGNED_OUT_AT = select(revoked_sessions.c.revoked_at).where(
    revoked_sessions.c.interface == bindparam("iface"),
    revoked_sessions.c.user_id == bindparam("user"),
    revoked_sessions.c.session_digest == bindparam("digest"),
    revoked_sessions.c.expires_at > bindparam("now", type_=Float),
)


async def generation(db: Store | Connection, interface: str, user_id: str) -> int:
    """The current generation (0 for a user with no row)."""
    async with reading(db) as conn:
        value = (await conn.execute(_GENERATION, {"iface": interface, "user": user_id})).scalar()
    return int(value) if value is not None else 0


async def of_user(
    db: Store | Connection, interface: str, user_id: str, now: float
) -> tuple[int, Mapping[str, float]]:
    """The generation and the live revoked logins (session digest: revoked at) of one user, in
    one statement: the middleware asks this every revocation_check_seconds per user it sees."""
    async with reading(db) as conn:
        rows = (await conn.execute(_OF_USER, {"iface": interface, "user": user_id, "now": now})).all()
    if not rows:
        # No user row: no proof of this user can exist (rows start at a random generation,
        # never 0), so the revoked logins do not matter.
        return 0, _NO_SESSIONS
    sessions = {row.session_digest: float(row.revoked_at) for row in rows if row.session_digest}
    return int(rows[0].generation), sessions or _NO_SESSIONS


async def signed_out_at(
    db: Store | Connection, interface: str, user_id: str, digest: str, now: float
) -> float:
    """When the login ``digest`` was last signed out (0.0 for never, or a row past its use): what
    a proof issued now has seen (``Proof.seen``)."""
    parameters = {"iface": interface, "user": user_id, "digest": digest, "now": now}
    async with reading(db) as conn:
        value = (await conn.execute(_SIGNED_OUT_AT, parameters)).scalar()
    return float(value) if value is not None else 0.0


async def revoke_session(
    db: Store | Connection, interface: str, user_id: str, digest: str, now: float, expires_at: float
) -> None:
    """Record a login signed out (one upsert: signing out twice keeps the later time)."""
    async with connection(db) as conn:
        statement = upsert(conn, revoked_sessions).values(
            interface=interface, user_id=user_id, session_digest=digest, revoked_at=now, expires_at=expires_at
        )
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["interface", "user_id", "session_digest"],
                set_={
                    "revoked_at": statement.excluded.revoked_at,
                    "expires_at": statement.excluded.expires_at,
                },
            )
        )
