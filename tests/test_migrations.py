"""Migrations: an empty database is brought to this release, the models and the migrations agree,
and a PostgreSQL deployment on an old schema fails closed with the command to run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import insert

from tests.database import live_code
from tests.harness import T0, Harness, config
from tests.helpers import Cli, CliResult
from tfa_middleware import ConfigError, SchemaOutdated, settings_from_mapping
from tfa_middleware import schema as schema_module
from tfa_middleware.store import AuditEvent, Store
from tfa_middleware.tables import codes, sends


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
    await store.generation("admin", "nobody")
    async with store.transaction() as conn:
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
    assert page.status_code == 503 and "Temporarily unavailable" in page.text
    assert "Traceback" not in page.text
    assert any("tfa-middleware db upgrade" in r.getMessage() for r in caplog.records)
    assert (await h.client.get("/admin/orders", headers=h.as_user("alice"))).status_code == 303


async def test_auto_migrate_can_be_switched_either_way(tmp_path: Path) -> None:
    sqlite_off = Store(f"sqlite+aiosqlite:///{tmp_path / 'a.sqlite3'}", auto_migrate=False)
    try:
        with pytest.raises(SchemaOutdated):
            await sqlite_off.generation("admin", "x")
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
    await store.add_event(AuditEvent(T0, "admin", "u1", "verify_ok"))
    await store.add_event(AuditEvent(now - day, "admin", "u1", "verify_ok"))
    await store.add_outbox(T0, "admin", "u1", "+1 ••• ••• 0123", "sms", "old")
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
    await store.revoke_session("admin", "u1", "old-login", T0, T0 + 12 * 3600)
    await store.revoke_session("admin", "u1", "recent-login", now - 3600, now + 11 * 3600)
    counts = await store.purge(now - 90 * day, now)
    assert counts == {"events": 1, "outbox": 1, "codes": 1, "sends": 1, "revoked_sessions": 1}
    await store.update_enrollment("admin", "u1", now)
    assert (await store.revocations("admin", "u1", now))[1] == {"recent-login": now - 3600}
    assert [e.at for e in await store.events()] == [now - day]
    assert await live_code(store, "admin", "u1", "login", now) is not None
    # Even "older than one minute" keeps the day of sends that the limits count.
    assert (await store.purge(now - 60, now))["sends"] == 0
