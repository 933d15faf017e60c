"""The database: enrollments, pending sandbox codes, the sandbox outbox and audit events.

SQLAlchemy 2 Core over an async engine: SQLite (aiosqlite) for one process, PostgreSQL (asyncpg)
for several. Everything that must be exact under concurrency is one statement (an ``UPDATE … WHERE``
whose row count says who won), never a read-modify-write in Python. Database failures become
:class:`StoreUnavailable` here, once, so callers fail closed on one exception type.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sqlalchemy import and_, delete, event, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from . import schema
from .errors import SchemaOutdated, StoreUnavailable
from .settings import PoolSettings, Settings

# The tables live in tables.py (a leaf); they are re-exported here, where they were defined first.
from .tables import codes as codes
from .tables import enrollments as enrollments
from .tables import events as events
from .tables import meta as meta
from .tables import metadata as metadata
from .tables import outbox as outbox
from .tables import revoked_sessions as revoked_sessions
from .tables import send_locks as send_locks
from .tables import sends as sends


@dataclass(frozen=True, slots=True)
class Enrollment:
    interface: str
    user_id: str
    phone: str | None
    pending_phone: str | None
    provider_user_id: str | None
    pending_provider_user_id: str | None
    require_enrollment: bool
    generation: int
    last_verified_at: float | None
    locked_until: float = 0.0
    pending_assigned: bool = False


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    created_at: float
    interface: str
    user_id: str
    to_masked: str
    channel: str
    body: str


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit event, as stored and as the ``on_event`` hook receives it: ``at`` (Unix time),
    ``interface``, ``user_id``, ``kind`` (``code_sent``, ``verify_ok``, ``verify_failed``, ``locked``,
    ``phone_set``, ``reset``, …), the client's ``ip`` and ``user_agent``, and ``detail`` (masked
    number ``to``, ``by`` for an administrator's change, …). Never a code or a full number::

        async def on_event(event: AuditEvent) -> None:
            if event.kind == "enrollment_required":
                await shop.force_password_change(event.user_id)
    """

    at: float
    interface: str
    user_id: str
    kind: str
    ip: str | None = None
    user_agent: str | None = None
    detail: Mapping[str, Any] | None = None


# Most users never had a login signed out: they all share this one empty mapping.
_NO_SESSIONS: Mapping[str, float] = MappingProxyType({})


class Store:
    """One database, one engine. On first use the schema is checked against this release's
    migrations: brought up to date when ``auto_migrate`` (SQLite's default), otherwise an old
    schema fails closed with a message naming the command that upgrades it."""

    def __init__(
        self,
        url: str,
        *,
        engine: AsyncEngine | None = None,
        auto_migrate: bool | None = None,
        pool: PoolSettings | None = None,
    ) -> None:
        self.engine = engine or create_async_engine(url, **_engine_options(url, pool or PoolSettings()))
        self.auto_migrate = self.engine.dialect.name == "sqlite" if auto_migrate is None else auto_migrate
        self._ready = False
        self._ready_lock = asyncio.Lock()
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """The database of ``settings``, with its pool and ``auto_migrate``; nothing else is built."""
        return cls(
            settings.database_url.reveal(), auto_migrate=settings.auto_migrate, pool=settings.database_pool
        )

    async def close(self) -> None:
        await self.engine.dispose()

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A transaction for the limits' multi-statement checks; failures become StoreUnavailable."""
        return self._begin()

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction; any database failure leaves as StoreUnavailable (never a traceback page)."""
        try:
            if not self._ready:
                self._check_sqlite_folder()
                await self._prepare_schema()
            async with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"database error: {type(exc).__name__}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"database unreachable: {exc.strerror or exc}") from exc

    def _check_sqlite_folder(self) -> None:
        # SQLite cannot create a file in a folder that does not exist; asking aiosqlite to try
        # leaves its worker thread reporting to an event loop that may be gone by then.
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            folder = Path(url.database).expanduser().resolve().parent
            if not folder.is_dir():
                raise StoreUnavailable(f"database unreachable: the folder {folder} does not exist")

    async def _prepare_schema(self) -> None:
        async with self._ready_lock:
            if self._ready:
                return
            if self.auto_migrate:
                try:
                    async with self.engine.begin() as conn:
                        await conn.run_sync(schema.upgrade)
                except SQLAlchemyError:
                    # Another process may have migrated at the same moment; if so, all is well.
                    if await self._revision() != schema.head():
                        raise
            found = await self._revision()
            if found != schema.head():
                raise SchemaOutdated(
                    f"the database schema is at {found or 'nothing (no tables)'} but this release "
                    f"needs {schema.head()}: run `tfa-middleware db upgrade --config FILE`"
                )
            self._ready = True

    async def _revision(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(schema.current)

    async def upgrade_schema(self) -> tuple[str | None, str]:
        """Bring the schema up to this release; (revision before, revision now)."""
        try:
            before = await self._revision()
            async with self.engine.begin() as conn:
                await conn.run_sync(schema.upgrade)
            return before, schema.head()
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"database error: {type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"database unreachable: {exc.strerror or exc}") from exc

    async def schema_revision(self) -> str | None:
        try:
            return await self._revision()
        except (SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"database unreachable: {type(exc).__name__}") from exc

    async def purge(self, before: float, now: float) -> dict[str, int]:
        """Delete audit events, outbox messages and spent codes older than ``before``; the send log
        only past a day, since the send limits count back that far; revoked logins once expired."""
        async with self._begin() as conn:
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
            }
        return {name: int(count) for name, count in counts.items()}

    async def ping(self) -> None:
        async with self._begin() as conn:
            await conn.execute(select(1))

    # ------------------------------------------------------------------ enrollments

    async def enrollment(self, interface: str, user_id: str) -> Enrollment | None:
        async with self._begin() as conn:
            row = (
                await conn.execute(
                    select(enrollments).where(
                        enrollments.c.interface == interface, enrollments.c.user_id == user_id
                    )
                )
            ).first()
        return None if row is None else _enrollment(row._mapping)

    async def generation(self, interface: str, user_id: str) -> int:
        """The current generation (0 for a user with no enrollment row)."""
        async with self._begin() as conn:
            value = (
                await conn.execute(
                    select(enrollments.c.generation).where(
                        enrollments.c.interface == interface, enrollments.c.user_id == user_id
                    )
                )
            ).scalar()
        return int(value) if value is not None else 0

    async def revocations(self, interface: str, user_id: str, now: float) -> tuple[int, Mapping[str, float]]:
        """The generation and the live revoked logins (session digest: revoked at) of one user, in
        one statement: the middleware asks this every revocation_check_seconds per user it sees."""
        joined = enrollments.outerjoin(
            revoked_sessions,
            and_(
                revoked_sessions.c.interface == enrollments.c.interface,
                revoked_sessions.c.user_id == enrollments.c.user_id,
                revoked_sessions.c.expires_at > now,
            ),
        )
        query = (
            select(enrollments.c.generation, revoked_sessions.c.session_digest, revoked_sessions.c.revoked_at)
            .select_from(joined)
            .where(enrollments.c.interface == interface, enrollments.c.user_id == user_id)
        )
        async with self._begin() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            # No enrollment row: no proof of this user can exist (rows start at a random
            # generation, never 0), so the revoked logins do not matter.
            return 0, _NO_SESSIONS
        sessions = {row.session_digest: float(row.revoked_at) for row in rows if row.session_digest}
        return int(rows[0].generation), sessions or _NO_SESSIONS

    async def revoke_session(
        self,
        interface: str,
        user_id: str,
        digest: str,
        now: float,
        expires_at: float,
        *,
        event: AuditEvent | None = None,
    ) -> None:
        """Record a login signed out (one upsert: signing out twice keeps the later time), with
        its event in the same transaction."""
        dialect_insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        statement = dialect_insert(revoked_sessions).values(
            interface=interface, user_id=user_id, session_digest=digest, revoked_at=now, expires_at=expires_at
        )
        async with self._begin() as conn:
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["interface", "user_id", "session_digest"],
                    set_={
                        "revoked_at": statement.excluded.revoked_at,
                        "expires_at": statement.excluded.expires_at,
                    },
                )
            )
            if event is not None:
                await conn.execute(insert(events).values(**_event_row(event)))

    async def update_enrollment(
        self,
        interface: str,
        user_id: str,
        now: float,
        *,
        bump_generation: bool = False,
        create: bool = True,
        event: AuditEvent | None = None,
        **values: Any,
    ) -> Enrollment:
        """Create the row if needed (unless ``create`` is false: the caller knows it exists), then
        apply ``values`` (and a generation bump) in one UPDATE, and record ``event`` in the same
        transaction."""
        async with self._begin() as conn:
            if create:
                await self.ensure_row(conn, interface, user_id, now)
            changes: dict[str, Any] = {"updated_at": now, **values}
            if "pending_phone" in values:
                # A new pending number (or none) is the user's own unless the caller says otherwise.
                changes.setdefault("pending_assigned", False)
            if bump_generation:
                changes["generation"] = enrollments.c.generation + 1
            row = (
                await conn.execute(
                    update(enrollments)
                    .where(enrollments.c.interface == interface, enrollments.c.user_id == user_id)
                    .values(**changes)
                    .returning(*enrollments.c)
                )
            ).one()
            if event is not None:
                await conn.execute(insert(events).values(**_event_row(event)))
        return _enrollment(row._mapping)

    async def ensure_row(self, conn: AsyncConnection, interface: str, user_id: str, now: float) -> None:
        dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        await conn.execute(
            dialect_insert(enrollments)
            .values(
                interface=interface,
                user_id=user_id,
                require_enrollment=False,
                generation=secrets.randbits(62),
                created_at=now,
                updated_at=now,
                failures=0,
                next_attempt_at=0.0,
                locked_until=0.0,
                hour_started_at=0.0,
                hour_failures=0,
            )
            .on_conflict_do_nothing(index_elements=["interface", "user_id"])
        )

    async def delete_enrollment(self, interface: str, user_id: str, now: float) -> bool:
        """Remove the user's enrollment and codes. Audit events and the send log stay: the one is
        the record of what happened, the other keeps the send limits honest."""
        async with self._begin() as conn:
            await conn.execute(
                delete(codes).where(codes.c.interface == interface, codes.c.user_id == user_id)
            )
            result = await conn.execute(
                delete(enrollments).where(
                    enrollments.c.interface == interface, enrollments.c.user_id == user_id
                )
            )
        return bool(result.rowcount)

    async def enrollments_list(
        self, interface: str | Sequence[str] | None, search: str, limit: int
    ) -> list[Enrollment]:
        query = select(enrollments).order_by(enrollments.c.updated_at.desc()).limit(limit)
        if isinstance(interface, str):
            query = query.where(enrollments.c.interface == interface)
        elif interface is not None:
            query = query.where(enrollments.c.interface.in_(list(interface)))
        if search:
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(enrollments.c.user_id.like(f"{escaped}%", escape="\\"))
        async with self._begin() as conn:
            rows = (await conn.execute(query)).all()
        return [_enrollment(row._mapping) for row in rows]

    async def clear_provider_user_ids(self, now: float) -> int:
        """Forget every stored provider user id (they belonged to another provider account)."""
        async with self._begin() as conn:
            result = await conn.execute(
                update(enrollments)
                .where(
                    (enrollments.c.provider_user_id.is_not(None))
                    | (enrollments.c.pending_provider_user_id.is_not(None))
                )
                .values(provider_user_id=None, pending_provider_user_id=None, updated_at=now)
            )
        return int(result.rowcount)

    async def get_meta(self, key: str) -> str | None:
        async with self._begin() as conn:
            value = (await conn.execute(select(meta.c.value).where(meta.c.key == key))).scalar()
        return None if value is None else str(value)

    async def set_meta(self, key: str, value: str) -> None:
        dialect_insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        async with self._begin() as conn:
            statement = dialect_insert(meta).values(key=key, value=value)
            await conn.execute(statement.on_conflict_do_update(index_elements=["key"], set_={"value": value}))

    # ------------------------------------------------------------------ sandbox codes

    async def replace_code(
        self,
        interface: str,
        user_id: str,
        purpose: str,
        code_hash: str,
        now: float,
        ttl_seconds: int,
        attempts: int,
    ) -> None:
        """Void the user's earlier codes for ``purpose`` and store a new one (only its hash)."""
        async with self._begin() as conn:
            await conn.execute(
                update(codes)
                .where(
                    codes.c.interface == interface,
                    codes.c.user_id == user_id,
                    codes.c.purpose == purpose,
                    codes.c.used_at.is_(None),
                )
                .values(attempts_left=0)
            )
            await conn.execute(
                insert(codes).values(
                    interface=interface,
                    user_id=user_id,
                    purpose=purpose,
                    code_hash=code_hash,
                    created_at=now,
                    expires_at=now + ttl_seconds,
                    attempts_left=attempts,
                )
            )

    async def use_code(self, interface: str, user_id: str, purpose: str, code_hash: str, now: float) -> bool:
        """Mark the live code with this hash used, in one statement: True for exactly one caller,
        however many race with the right code."""
        async with self._begin() as conn:
            result = await conn.execute(
                update(codes)
                .where(*_live(interface, user_id, purpose, now), codes.c.code_hash == code_hash)
                .values(used_at=now)
            )
        return bool(result.rowcount == 1)

    async def spend_attempt(self, interface: str, user_id: str, purpose: str, now: float) -> None:
        """A wrong code: the live code has one try fewer (and is void at zero)."""
        async with self._begin() as conn:
            await conn.execute(
                update(codes)
                .where(*_live(interface, user_id, purpose, now))
                .values(attempts_left=codes.c.attempts_left - 1)
            )

    # ------------------------------------------------------------------ outbox and events

    async def add_outbox(
        self, now: float, interface: str, user_id: str, to_masked: str, channel: str, body: str
    ) -> None:
        async with self._begin() as conn:
            await conn.execute(
                insert(outbox).values(
                    created_at=now,
                    interface=interface,
                    user_id=user_id,
                    to_masked=to_masked,
                    channel=channel,
                    body=body,
                )
            )

    async def latest_outbox(self, limit: int = 10) -> list[OutboxMessage]:
        async with self._begin() as conn:
            rows = (await conn.execute(select(outbox).order_by(outbox.c.id.desc()).limit(limit))).all()
        return [OutboxMessage(**row._mapping) for row in reversed(rows)]

    async def add_event(self, item: AuditEvent) -> None:
        async with self._begin() as conn:
            await conn.execute(insert(events).values(**_event_row(item)))

    async def events(
        self,
        interface: str | None = None,
        user_id: str | None = None,
        limit: int = 100,
        since: float | None = None,
    ) -> list[AuditEvent]:
        """The newest ``limit`` events, oldest first; of one interface or user, or after ``since``."""
        query = select(events).order_by(events.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(events.c.at >= since)
        if interface is not None:
            query = query.where(events.c.interface == interface)
        if user_id is not None:
            query = query.where(events.c.user_id == user_id)
        async with self._begin() as conn:
            rows = (await conn.execute(query)).all()
        return [
            AuditEvent(
                at=r.at,
                interface=r.interface,
                user_id=r.user_id,
                kind=r.kind,
                ip=r.ip,
                user_agent=r.user_agent,
                detail=json.loads(r.detail),
            )
            for r in reversed(rows)
        ]


def _event_row(item: AuditEvent) -> dict[str, Any]:
    return {
        "at": item.at,
        "interface": item.interface,
        "user_id": item.user_id,
        "kind": item.kind,
        "ip": item.ip,
        "user_agent": (item.user_agent or "")[:255] or None,
        "detail": json.dumps(dict(item.detail or {}), sort_keys=True),
    }


def _live(interface: str, user_id: str, purpose: str, now: float) -> tuple[Any, ...]:
    """The conditions of a code that can still be used (replace_code leaves at most one)."""
    return (
        codes.c.interface == interface,
        codes.c.user_id == user_id,
        codes.c.purpose == purpose,
        codes.c.used_at.is_(None),
        codes.c.attempts_left > 0,
        codes.c.expires_at > now,
    )


def _enrollment(row: Mapping[str, Any] | Any) -> Enrollment:
    return Enrollment(
        interface=row["interface"],
        user_id=row["user_id"],
        phone=row["phone"],
        pending_phone=row["pending_phone"],
        provider_user_id=row["provider_user_id"],
        pending_provider_user_id=row["pending_provider_user_id"],
        require_enrollment=bool(row["require_enrollment"]),
        generation=int(row["generation"]),
        last_verified_at=row["last_verified_at"],
        locked_until=float(row["locked_until"]),
        pending_assigned=bool(row["pending_assigned"]),
    )


def _engine_options(url: str, pool: PoolSettings) -> dict[str, Any]:
    # Statement parameters hold phone numbers and (in the sandbox outbox) codes: never in logs.
    if url.startswith("sqlite"):
        # The timeout lets a second process (a CLI next to the server) wait for a writer's lock.
        return {"connect_args": {"timeout": 15}, "hide_parameters": True}
    return {
        # A connection that died with the server (an outage, a failover) is noticed and replaced.
        "pool_pre_ping": True,
        "pool_size": pool.size,
        "max_overflow": pool.max_overflow,
        "pool_timeout": pool.timeout_seconds,
        "pool_recycle": pool.recycle_seconds,
        "connect_args": {"timeout": pool.connect_timeout_seconds},
        "hide_parameters": True,
    }


class _HideDriverArguments(logging.Filter):
    """aiosqlite logs every call with its arguments at DEBUG; keep the line, drop the arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = str(record.msg).split("%")[0].strip() + " (arguments hidden by tfa-middleware)"
            record.args = ()
        return True


logging.getLogger("aiosqlite").addFilter(_HideDriverArguments())


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL's usual companion: commits are durable across a crash of the process, and the file is
    # never corrupted; a power cut may lose the last moments of counters, not the database.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()
