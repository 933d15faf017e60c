"""The store, on real SQLite and real PostgreSQL: the same suite, parametrised.

PostgreSQL runs when TFA_TEST_POSTGRES_URL is set (CI sets it and TFA_REQUIRE_POSTGRES=1, which
turns a missing or unreachable server into a failure instead of a skip). Each test gets its own
schema, so runs never see each other's rows.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.database import live_code
from tests.harness import SECRET, T0, FakeClock, config
from tfa_middleware import StoreUnavailable, TwoFactor, settings_from_mapping
from tfa_middleware.providers.base import CheckResult, Purpose, Target
from tfa_middleware.providers.sandbox import SandboxProvider
from tfa_middleware.service import VerifyStatus
from tfa_middleware.settings import ProviderSettings, Secret
from tfa_middleware.store import AuditEvent, Store
from tfa_middleware.store import codes as code_rows
from tfa_middleware.store import enrollments as enrollment_rows
from tfa_middleware.store import events as event_rows
from tfa_middleware.store import outbox as outbox_rows
from tfa_middleware.store import revocations as revocation_rows
from tfa_middleware.store.enrollments import NewPhone


async def test_enrollment_row_is_created_once_and_updated_in_place(store: Store) -> None:
    assert await enrollment_rows.get(store, "admin", "u1") is None
    assert await revocation_rows.generation(store, "admin", "u1") == 0
    first = await enrollment_rows.change(store, "admin", "u1", T0, active=NewPhone("+12015550123"))
    assert (first.phone, first.require_enrollment) == ("+12015550123", False)
    bumped = await enrollment_rows.change(store, "admin", "u1", T0 + 1, bump_generation=True, active=None)
    assert (bumped.phone, bumped.generation) == (None, first.generation + 1)
    assert await revocation_rows.generation(store, "admin", "u1") == first.generation + 1
    # Interfaces are separate namespaces.
    assert await revocation_rows.generation(store, "customer", "u1") == 0


async def test_parallel_first_writes_make_one_row_and_parallel_bumps_all_count(store: Store) -> None:
    rows = await asyncio.gather(*(enrollment_rows.change(store, "admin", "racer", T0) for _ in range(10)))
    assert len({row.generation for row in rows}) == 1  # one row, created once
    start = rows[0].generation
    await asyncio.gather(
        *(enrollment_rows.change(store, "admin", "racer", T0, bump_generation=True) for _ in range(10))
    )
    # Ten bumps, none lost to a read-modify-write race.
    assert await revocation_rows.generation(store, "admin", "racer") == start + 10
    assert len(await enrollment_rows.listing(store, "admin", "racer", 10)) == 1


async def test_a_deleted_user_created_again_never_gets_an_old_generation_back(store: Store) -> None:
    seen = set()
    for round_ in range(5):
        row = await enrollment_rows.change(
            store, "admin", "phoenix", T0 + round_, active=NewPhone("+12015550123")
        )
        bumped = await enrollment_rows.change(store, "admin", "phoenix", T0 + round_, bump_generation=True)
        seen.update({row.generation, bumped.generation})
        assert await enrollment_rows.delete_user(store, "admin", "phoenix")
        assert not await enrollment_rows.delete_user(store, "admin", "phoenix")
    assert len(seen) == 10  # five lives, two generations each, no repeats


async def test_the_user_list_is_searched_by_prefix_with_wildcards_taken_literally(store: Store) -> None:
    for user in ("ann", "anna", "bob", "a%b", "a_b"):
        await enrollment_rows.change(store, "admin", user, T0)
    await enrollment_rows.change(store, "customer", "anne", T0)
    assert sorted(r.user_id for r in await enrollment_rows.listing(store, "admin", "an", 10)) == [
        "ann",
        "anna",
    ]
    assert [r.user_id for r in await enrollment_rows.listing(store, "admin", "a%", 10)] == ["a%b"]
    assert [r.user_id for r in await enrollment_rows.listing(store, "admin", "a_", 10)] == ["a_b"]
    assert len(await enrollment_rows.listing(store, None, "", 10)) == 6


async def test_code_is_used_exactly_once_under_concurrency(store: Store) -> None:
    await code_rows.replace(store, "admin", "u1", "login", "h" * 64, T0, 600, 5)
    assert not await code_rows.use(store, "admin", "u1", "login", "x" * 64, T0 + 1)  # another hash: no
    results = await asyncio.gather(
        *(code_rows.use(store, "admin", "u1", "login", "h" * 64, T0 + 1) for _ in range(20))
    )
    assert results.count(True) == 1
    assert await live_code(store, "admin", "u1", "login", T0 + 2) is None


async def test_codes_expire_run_out_of_attempts_and_replace_each_other(store: Store) -> None:
    await code_rows.replace(store, "admin", "u1", "login", "a" * 64, T0, 600, 2)
    assert await live_code(store, "admin", "u1", "login", T0 + 599) is not None
    assert await live_code(store, "admin", "u1", "login", T0 + 600) is None  # expired at 10 min
    assert not await code_rows.use(store, "admin", "u1", "login", "a" * 64, T0 + 600)
    await asyncio.gather(*(code_rows.spend_attempt(store, "admin", "u1", "login", T0) for _ in range(5)))
    assert await live_code(store, "admin", "u1", "login", T0) is None  # two attempts, then void
    assert not await code_rows.use(store, "admin", "u1", "login", "a" * 64, T0)
    await code_rows.replace(store, "admin", "u1", "login", "b" * 64, T0, 600, 5)
    await code_rows.replace(store, "admin", "u1", "login", "c" * 64, T0, 600, 5)
    newest = await live_code(store, "admin", "u1", "login", T0)
    assert newest is not None
    assert newest[1] == "c" * 64
    assert not await code_rows.use(store, "admin", "u1", "login", "b" * 64, T0)  # replaced: void
    assert await live_code(store, "admin", "u1", "enroll", T0) is None  # purposes don't mix
    assert not await code_rows.use(store, "admin", "u1", "enroll", "c" * 64, T0)
    assert await code_rows.use(store, "admin", "u1", "login", "c" * 64, T0)


async def test_outbox_and_events_round_trip(store: Store) -> None:
    await outbox_rows.add(store, T0, "admin", "u1", "+1 ••• ••• 0123", "sms", "code 123456")
    await outbox_rows.add(store, T0 + 1, "admin", "u2", "+1 ••• ••• 0124", "sms", "code 654321")
    latest = await outbox_rows.latest(store, 1)
    assert [m.body for m in latest] == ["code 654321"]
    assert [m.user_id for m in await outbox_rows.latest(store, 10)] == ["u1", "u2"]
    await event_rows.add(
        store, AuditEvent(T0, "admin", "u1", "verify_ok", "10.0.0.1", "ua" * 200, {"to": "x"})
    )
    [item] = await event_rows.latest(store, "admin", "u1")
    assert (item.kind, item.ip, item.detail) == ("verify_ok", "10.0.0.1", {"to": "x"})
    assert item.user_agent is not None
    assert len(item.user_agent) == 255


async def test_sandbox_right_code_from_twenty_clients_wins_once(store: Store) -> None:
    clock = FakeClock()
    provider = SandboxProvider(store, ProviderSettings(), Secret(SECRET), clock=clock)
    target = Target("admin", "u1", "+12015550123", Purpose.LOGIN)
    await provider.send(target, "sms")
    body = (await outbox_rows.latest(store, 1))[0].body
    code = next(word for word in body.replace(".", " ").split() if word.isdigit())
    results = await asyncio.gather(*(provider.check(target, code) for _ in range(20)))
    assert results.count(CheckResult.APPROVED) == 1


async def test_service_verify_is_single_use_on_this_database(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    settings = settings_from_mapping(config(tmp_path))
    provider = SandboxProvider(store, settings.provider, settings.secret_keys[-1], clock=clock)
    service = TwoFactor(settings, store, provider, clock=clock)
    await service.set_phone("admin", "alice", "1", "2015550123", confirmed=True)
    await service.send_code("admin", "alice")
    body = (await outbox_rows.latest(store, 1))[0].body
    code = next(word for word in body.replace(".", " ").split() if word.isdigit())
    outcomes = await asyncio.gather(*(service.verify_code("admin", "alice", code) for _ in range(20)))
    assert [o.status for o in outcomes].count(VerifyStatus.APPROVED) == 1


async def test_unreachable_database_is_store_unavailable() -> None:
    store = Store("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(StoreUnavailable):
            await revocation_rows.generation(store, "admin", "u1")
    finally:
        await store.close()


async def _backend_of_the_idle_connection(store: Store) -> int:
    from sqlalchemy import func, select

    assert store.pooled() == 1  # the one connection these calls took, back in the pool
    async with store.reading() as conn:
        return int((await conn.execute(select(func.pg_backend_pid()))).scalar_one())


async def _terminate(pid: int) -> None:
    """End one server process: this test's connection only (the test database is shared)."""
    from sqlalchemy import func, select
    from sqlalchemy.ext.asyncio import create_async_engine

    from tests.database import postgres_url

    url = postgres_url()
    assert url is not None
    admin = create_async_engine(url)
    try:
        async with admin.connect() as conn:
            assert (await conn.execute(select(func.pg_terminate_backend(pid)))).scalar() is True
    finally:
        await admin.dispose()


@pytest.mark.parametrize("store", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
async def test_a_connection_that_died_fails_closed_once_and_the_next_call_gets_a_new_one(
    store: Store,
) -> None:
    await enrollment_rows.change(store, "admin", "u1", T0, active=NewPhone("+12015550123"))
    await _terminate(await _backend_of_the_idle_connection(store))
    with pytest.raises(StoreUnavailable, match="database unreachable"):
        await enrollment_rows.get(store, "admin", "u1")  # never a guess: the caller fails closed
    assert store.pooled() == 0  # the dead one, and every idle one with it, dropped
    row = await enrollment_rows.get(store, "admin", "u1")
    assert row is not None
    assert row.phone == "+12015550123"


@pytest.mark.parametrize("store", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
async def test_an_idle_connection_is_pinged_and_replaced_before_use(store: Store) -> None:
    store.idle_ping_seconds = 0.0  # every connection counts as idle long enough: always pinged
    await enrollment_rows.change(store, "admin", "u1", T0, active=NewPhone("+12015550123"))
    await _terminate(await _backend_of_the_idle_connection(store))
    row = await enrollment_rows.get(store, "admin", "u1")  # the ping found it dead: a new one
    assert row is not None
    assert row.phone == "+12015550123"
    assert store.pooled() == 1


async def test_closing_the_store_closes_its_connections(store: Store) -> None:
    await enrollment_rows.change(store, "admin", "u1", T0)
    assert store.pooled() == 1
    await store.close()
    assert store.pooled() == 0


async def _eight_at_once(store: Store) -> None:
    """Eight connections in use together (the pool keeps 5 and may open 15)."""
    entered = asyncio.Event()
    holding: list[int] = []

    async def hold() -> None:
        async with store.reading() as conn:
            await conn.execute(select_one())
            holding.append(1)
            if len(holding) == 8:
                entered.set()
            await entered.wait()

    await asyncio.wait_for(asyncio.gather(*(hold() for _ in range(8))), timeout=30)


def select_one() -> Any:
    from sqlalchemy import literal, select

    return select(literal(1))


async def test_a_busy_server_keeps_its_connections_and_closes_the_extra_ones_once_idle(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tfa_middleware.store import pool as pool_module

    await _eight_at_once(store)
    assert store.pooled() == 8  # idle only a moment: kept for the next burst
    monkeypatch.setattr(pool_module, "EXTRA_IDLE_SECONDS", 0.0)
    await _eight_at_once(store)
    assert store.pooled() == 5  # database_pool.size stay open


async def test_closing_the_store_closes_the_connections_other_event_loops_opened(store: Store) -> None:
    """A WSGI server's loop thread, still running; and (SQLite, whose connections any loop can
    close) one whose loop has ended. asyncpg's connections belong to their loop: one that has
    ended takes them with it."""
    await enrollment_rows.change(store, "admin", "u1", T0)
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever)
    thread.start()
    try:
        there = asyncio.run_coroutine_threadsafe(enrollment_rows.get(store, "admin", "u1"), running)
        assert (await asyncio.wrap_future(there)) is not None
        if store.engine.dialect.name == "sqlite":
            await asyncio.to_thread(asyncio.run, enrollment_rows.get(store, "admin", "u1"))
        assert len(store._pools) == (3 if store.engine.dialect.name == "sqlite" else 2)
        await store.close()
        assert store._pools == {}
        assert store.pooled() == 0
        left = asyncio.run_coroutine_threadsafe(_pooled_there(store), running)
        assert await asyncio.wrap_future(left) == 0
    finally:
        running.call_soon_threadsafe(running.stop)
        await asyncio.to_thread(thread.join)
        running.close()


async def _pooled_there(store: Store) -> int:
    return store.pooled()
