"""Migrations: an empty database is brought to this release, the models and the migrations agree,
and a PostgreSQL deployment on an old schema fails closed with the command to run."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import column, insert, inspect, select, table
from sqlalchemy.ext.asyncio import create_async_engine

from tests.database import live_code
from tests.harness import T0, Harness, config
from tests.helpers import ROOT, Cli, CliResult
from tfa_middleware import ConfigError, SchemaOutdated, settings_from_mapping
from tfa_middleware import schema as schema_module
from tfa_middleware.store import AuditEvent, Store, maintenance
from tfa_middleware.store import enrollments as enrollment_rows
from tfa_middleware.store import events as event_rows
from tfa_middleware.store import outbox as outbox_rows
from tfa_middleware.store import revocations as revocation_rows
from tfa_middleware.tables import codes, enrollments, factors, send_budget, sends


def settings_file(tmp_path: Path, url: str, **extra: str) -> Path:
    path = tmp_path / "tfa.yaml"
    lines = [
        'secret_keys: ["migration-test-key-0123456789-abcdefgh"]',
        f'database_url: "{url}"',
        *(f"{key}: {value}" for key, value in extra.items()),
        "interfaces:",
        "  admin: {path_prefix: /admin, identity: {from: session, key: admin_id}}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def walk_the_db_commands(cli: Cli, tmp_path: Path, url: str) -> None:
    def cli_db(config_path: Path, *args: str) -> CliResult:
        return cli("db", *args, "--config", str(config_path))

    path = settings_file(tmp_path, url)
    behind = cli_db(path, "check")
    assert behind.returncode == 1
    assert f"run `tfa-middleware db upgrade --config {path}`" in behind.stderr
    assert "Traceback" not in behind.stderr
    current = cli_db(path, "current")
    assert current.stdout == f"database: empty (no tables yet)\nthis release: {schema_module.head()}\n"
    upgraded = cli_db(path, "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout == f"database schema: empty -> {schema_module.head()}\n"
    assert cli_db(path, "upgrade").stdout == f"already at {schema_module.head()}\n"
    assert cli_db(path, "check").returncode == 0


def test_the_db_commands_bring_an_empty_sqlite_database_to_this_release(cli: Cli, tmp_path: Path) -> None:
    walk_the_db_commands(cli, tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'fresh.sqlite3'}")


@pytest.mark.postgres
async def test_the_db_commands_bring_an_empty_postgresql_database_to_this_release(
    cli: Cli, tmp_path: Path, postgres_database: str
) -> None:
    # main runs its own event loop (asyncio.run): in a thread, beside this test's loop.
    await asyncio.to_thread(walk_the_db_commands, cli, tmp_path, postgres_database)


async def test_the_models_and_the_migrations_agree(store: Store) -> None:
    # The store fixture migrated an empty SQLite file or PostgreSQL schema to head on first use.
    await revocation_rows.generation(store, "admin", "nobody")
    async with store.engine.begin() as conn:  # Alembic's: SQLAlchemy's own connection
        assert await conn.run_sync(schema_module.current) == schema_module.head()
        assert await conn.run_sync(schema_module.differences) == []


async def test_postgresql_on_an_old_schema_fails_closed_and_names_the_command(
    postgres_database: str,
    make_harness: Callable[..., Awaitable[Harness]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = await make_harness(database_url=postgres_database)
    assert h.service.store.auto_migrate is False  # PostgreSQL's default
    with pytest.raises(SchemaOutdated, match=r"run `tfa-middleware db upgrade --config FILE`"):
        await h.service.status("admin", "alice")
    caplog.set_level(logging.ERROR)
    page = await h.client.get("/admin/_2fa/challenge", headers=h.as_user("alice"))
    assert page.status_code == 503
    assert "Temporarily unavailable" in page.text
    assert "Traceback" not in page.text
    assert any("tfa-middleware db upgrade" in r.getMessage() for r in caplog.records)
    assert (await h.client.get("/admin/orders", headers=h.as_user("alice"))).status_code == 303


async def test_auto_migrate_can_be_switched_either_way(tmp_path: Path) -> None:
    sqlite_off = Store(f"sqlite+aiosqlite:///{tmp_path / 'a.sqlite3'}", auto_migrate=False)
    try:
        with pytest.raises(SchemaOutdated):
            await revocation_rows.generation(sqlite_off, "admin", "x")
    finally:
        await sqlite_off.close()
    settings = settings_from_mapping(config(tmp_path, auto_migrate=False, database_pool={"size": 3}))
    assert (settings.auto_migrate, settings.database_pool.size) == (False, 3)
    with pytest.raises(ConfigError) as exc:
        settings_from_mapping(config(tmp_path, database_pool={"size": 0, "pools": 2}))
    assert exc.value.problems == [
        "database_pool.size: must be between 1 and 100, got 0",
        "database_pool.pools: unknown key (expected one of: connect_timeout_seconds, max_overflow, "
        "recycle_seconds, size, timeout_seconds)",
    ]


async def test_purge_removes_old_rows_and_keeps_what_the_limits_still_count(store: Store) -> None:
    day = 24 * 3600.0
    now = T0 + 100 * day
    await event_rows.add(store, AuditEvent(T0, "admin", "u1", "verify_ok"))
    await event_rows.add(store, AuditEvent(now - day, "admin", "u1", "verify_ok"))
    await outbox_rows.add(store, T0, "admin", "u1", "+1 ••• ••• 0123", "sms", "old")
    async with store.transaction() as conn:
        old_code = {"interface": "admin", "user_id": "u1", "purpose": "login", "code_hash": "h" * 64}
        await conn.execute(
            insert(codes).values(**old_code, created_at=T0, expires_at=T0 + 600, attempts_left=5)
        )
        await conn.execute(
            insert(codes).values(**old_code, created_at=now, expires_at=now + 600, attempts_left=5)
        )
        for at in (T0, now - 3600):
            await conn.execute(insert(sends).values(at=at, interface="admin", user_id="u1", phone_key="k"))
    # A login signed out long ago, and one whose proofs could still be alive.
    await revocation_rows.revoke_session(store, "admin", "u1", "old-login", T0, T0 + 12 * 3600)
    await revocation_rows.revoke_session(store, "admin", "u1", "recent-login", now - 3600, now + 11 * 3600)
    # A remembered browser past its days, and one still remembered.
    from tfa_middleware.store import browsers as browser_rows

    await browser_rows.add(store, "admin", "u1", "1" * 64, 7, T0, T0 + 30 * day, "Firefox", "-")
    await browser_rows.add(store, "admin", "u1", "2" * 64, 7, now - day, now + 29 * day, "Firefox", "-")
    # Report mode's records go with the audit events; a spent proof a day after its spend.
    from tfa_middleware.store import policy as policy_rows

    async with store.transaction() as conn:
        await policy_rows.report(conn, "admin", "u1", "2027-01-15", "enroll", T0)
        await policy_rows.report(conn, "admin", "u1", "2027-04-24", "enroll", now - day)
    await policy_rows.spend(store, "a" * 64, "admin", "u1", now - day - 1)
    await policy_rows.spend(store, "b" * 64, "admin", "u1", now - 60)
    counts = await maintenance.purge(store, now - 90 * day, now)
    assert counts == {
        "events": 1,
        "outbox": 1,
        "codes": 1,
        "sends": 1,
        "revoked_sessions": 1,
        "remembered_browsers": 1,
        "reports": 1,
        "step_up_spent": 1,
    }
    assert not await policy_rows.spend(store, "b" * 64, "admin", "u1", now)
    await enrollment_rows.change(store, "admin", "u1", now)
    assert (await revocation_rows.of_user(store, "admin", "u1", now))[1] == {"recent-login": now - 3600}
    assert [e.at for e in await event_rows.latest(store)] == [now - day]
    assert await live_code(store, "admin", "u1", "login", now) is not None
    # Even "older than one minute" keeps the day of sends that the limits count.
    assert (await maintenance.purge(store, now - 60, now))["sends"] == 0


# ---------------------------------------------------------------------------- 0004: factors as rows

# Today's users at revision 0003, one of each kind: active phone with its Authy id and a throttle
# state; a phone change in progress; a number a manager assigned; a reset user with no phone.
OLD_USERS: list[dict[str, Any]] = [
    {
        "user_id": "alice", "phone": "+12015550123", "provider_user_id": "1635",
        "pending_phone": None, "pending_provider_user_id": None, "pending_assigned": False,
        "require_enrollment": False, "generation": 4_000_000_000_001, "last_verified_at": T0 - 100,
        "failures": 2, "next_attempt_at": T0 + 4, "locked_until": 0.0, "hour_started_at": T0 - 60,
        "hour_failures": 2,
    },
    {
        "user_id": "bob", "phone": "+12015550124", "provider_user_id": "1700",
        "pending_phone": "+12015550177", "pending_provider_user_id": "1777", "pending_assigned": False,
        "require_enrollment": True, "generation": 17, "last_verified_at": None,
        "failures": 5, "next_attempt_at": T0 + 16, "locked_until": T0 + 900, "hour_started_at": T0,
        "hour_failures": 5,
    },
    {
        "user_id": "carol", "phone": None, "provider_user_id": None,
        "pending_phone": "+12015550188", "pending_provider_user_id": None, "pending_assigned": True,
        "require_enrollment": False, "generation": 2**62 - 1, "last_verified_at": T0 - 5,
        "failures": 0, "next_attempt_at": 0.0, "locked_until": 0.0, "hour_started_at": 0.0,
        "hour_failures": 0,
    },
    {
        "user_id": "dave", "phone": None, "provider_user_id": None,
        "pending_phone": None, "pending_provider_user_id": None, "pending_assigned": False,
        "require_enrollment": False, "generation": 99, "last_verified_at": None,
        "failures": 0, "next_attempt_at": 0.0, "locked_until": 0.0, "hour_started_at": 0.0,
        "hour_failures": 0,
    },
]  # fmt: skip
READ_MODEL = (
    "phone",
    "provider_user_id",
    "pending_phone",
    "pending_provider_user_id",
    "pending_assigned",
    "require_enrollment",
    "generation",
    "last_verified_at",
    "locked_until",
)
THROTTLE = ("failures", "next_attempt_at", "locked_until", "hour_started_at", "hour_failures")
OLD_ENROLLMENT = table(
    "tfa_enrollment", *(column(name) for name in ["interface", "created_at", "updated_at", *OLD_USERS[0]])
)
REVOKED = table(
    "tfa_revoked_session",
    *(column(n) for n in ("interface", "user_id", "session_digest", "revoked_at", "expires_at")),
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database: a SQLite file, or a PostgreSQL database of this test's own."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}"
    return str(request.getfixturevalue("postgres_database"))


async def test_0004_moves_the_phones_of_a_filled_0003_database_into_factors(empty_database: str) -> None:
    engine = create_async_engine(empty_database)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(schema_module.upgrade, "0003")
            for n, user in enumerate(OLD_USERS):
                await conn.execute(
                    insert(OLD_ENROLLMENT).values(
                        interface="admin", created_at=T0 - 1000 + n, updated_at=T0 - 10 + n, **user
                    )
                )
            await conn.execute(
                insert(REVOKED).values(
                    interface="admin",
                    user_id="alice",
                    session_digest="d" * 64,
                    revoked_at=T0,
                    expires_at=T0 + 3600,
                )
            )
    finally:
        await engine.dispose()

    store = Store(empty_database, auto_migrate=False)
    try:
        assert await store.upgrade_schema() == ("0003", schema_module.head())
        for user in OLD_USERS:
            row = await enrollment_rows.get(store, "admin", str(user["user_id"]))
            assert row is not None
            landed = {name: getattr(row, name) for name in READ_MODEL}
            assert landed == {name: user[name] for name in landed}
        async with store.engine.begin() as conn:
            users = {r.user_id: r for r in (await conn.execute(select(enrollments))).all()}
            phones = (
                await conn.execute(select(factors).order_by(factors.c.user_id, factors.c.confirmed))
            ).all()
            assert await conn.run_sync(schema_module.differences) == []
        for n, user in enumerate(OLD_USERS):
            moved = users[str(user["user_id"])]
            assert {name: getattr(moved, name) for name in THROTTLE} == {
                name: user[name] for name in THROTTLE
            }
            assert (moved.created_at, moved.updated_at) == (T0 - 1000 + n, T0 - 10 + n)
        fields = (
            "user_id",
            "kind",
            "value",
            "provider_ref",
            "confirmed",
            "assigned_by_manager",
            "created_at",
        )
        assert [(*(getattr(f, name) for name in fields), f.last_used_at) for f in phones] == [
            ("alice", "sms", "+12015550123", "1635", True, False, T0 - 1000, T0 - 100),
            ("bob", "sms", "+12015550177", "1777", False, False, T0 - 9, None),
            ("bob", "sms", "+12015550124", "1700", True, False, T0 - 999, None),
            ("carol", "sms", "+12015550188", None, False, True, T0 - 8, None),
        ]
        assert await revocation_rows.of_user(store, "admin", "alice", T0) == (
            OLD_USERS[0]["generation"],
            {"d" * 64: T0},
        )

        # And back: the columns get their values again from the factors.
        async with store.engine.begin() as conn:
            await conn.run_sync(schema_module.downgrade, "0003")
            back = (await conn.execute(select(OLD_ENROLLMENT).order_by(OLD_ENROLLMENT.c.user_id))).all()
        assert [{name: getattr(r, name) for name in OLD_USERS[0]} for r in back] == OLD_USERS
    finally:
        await store.close()


# ---------------------------------------------------------------------------- 0005: the send budget


async def test_0005_starts_the_budget_from_the_sends_already_made_and_goes_back(empty_database: str) -> None:
    now = time.time()
    hour, day = now - now % 3600, now - now % 86400
    # Yesterday's send, one earlier today (when today has an earlier hour), two this hour.
    moments = [day - 10, *([day + 1] if day < hour else []), hour + 1, hour + 2]
    engine = create_async_engine(empty_database)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(schema_module.upgrade, "0004")
            for at in moments:
                send = {"at": at, "interface": "admin", "user_id": "u1", "phone_key": "k"}
                await conn.execute(insert(sends).values(**send))
    finally:
        await engine.dispose()

    store = Store(empty_database, auto_migrate=False)
    try:
        assert await store.upgrade_schema() == ("0004", schema_module.head())
        async with store.engine.begin() as conn:
            row = (await conn.execute(select(send_budget))).one()
            assert await conn.run_sync(schema_module.differences) == []
        # The migration read its own clock: count against the hour and day it stored.
        assert row.scope == "all"
        assert row.hour_start % 3600 == 0
        assert row.day_start % 86400 == 0
        assert row.hour_start <= time.time() < row.hour_start + 3600
        assert row.hour_count == len([at for at in moments if at >= row.hour_start])
        assert row.day_count == len([at for at in moments if at >= row.day_start])

        async with store.engine.begin() as conn:
            await conn.run_sync(schema_module.downgrade, "0004")
            assert await conn.run_sync(schema_module.current) == "0004"
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert "tfa_send_budget" not in tables
        assert "tfa_send" in tables  # the log keeps every send
        assert await store.upgrade_schema() == ("0004", schema_module.head())
    finally:
        await store.close()


# A worker starting: its store is checked, so migrated on a new SQLite file.
STARTING_WORKER = """
import asyncio, sys
from tfa_middleware.store import Store

async def start() -> None:
    store = Store(sys.argv[1])
    try:
        await store.ping()
    finally:
        await store.close()

asyncio.run(start())
"""


async def test_workers_starting_together_on_a_new_sqlite_file_all_start(tmp_path: Path) -> None:
    """Processes migrating one new file at once: those that trip over another's tables wait
    for it to finish, instead of failing their start."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'new.sqlite3'}"
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", STARTING_WORKER, url, cwd=ROOT, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(4)
    ]
    failures = [(await asyncio.wait_for(w.communicate(), 60))[1].decode() for w in workers]
    assert [w.returncode for w in workers] == [0] * 4, "\n".join(failures)
    store = Store(url)
    try:
        assert await store.schema_revision() == schema_module.head()
    finally:
        await store.close()


# ---------------------------------------------------------------------------- 0006: more factors


async def test_0006_keeps_the_phones_and_its_downgrade_drops_only_the_new_kinds(empty_database: str) -> None:
    """An 0004 database with a phone goes to 0006 untouched; apps, recovery codes and remembered
    browsers made at 0006 go on a downgrade, the phone stays."""
    from tfa_middleware.store import browsers as browser_rows
    from tfa_middleware.store import factors as factor_rows

    engine = create_async_engine(empty_database)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(schema_module.upgrade, "0004")
    finally:
        await engine.dispose()
    store = Store(empty_database, auto_migrate=False)
    try:
        await store.upgrade_schema()
        await enrollment_rows.change(
            store, "admin", "alice", T0, active=enrollment_rows.NewPhone("+12015550123")
        )
        await factor_rows.add(store, "admin", "alice", "totp", "v1.x.y", T0, label="work")
        await factor_rows.replace_recovery(store, "admin", "alice", ["h" * 64], T0)
        await browser_rows.add(store, "admin", "alice", "t" * 64, 1, T0, T0 + 3600, "Firefox", "-")
        async with store.engine.begin() as conn:
            assert await conn.run_sync(schema_module.differences) == []
            await conn.run_sync(schema_module.downgrade, "0004")
            kinds = (await conn.execute(select(factors.c.kind, factors.c.value))).all()
            assert [tuple(k) for k in kinds] == [("sms", "+12015550123")]
            await conn.run_sync(schema_module.upgrade)
        row = await enrollment_rows.get(store, "admin", "alice")
        assert row is not None
        assert row.phone == "+12015550123"
    finally:
        await store.close()
