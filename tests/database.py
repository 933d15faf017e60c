"""The databases the tests run on: PostgreSQL when ``TFA_TEST_POSTGRES_URL`` is set, each test in a
schema or a database of its own, and a look straight into the codes table.

CI sets ``TFA_REQUIRE_POSTGRES=1``, which turns a missing or unreachable server into a failure
instead of a skip. The fixtures themselves (``store``, ``postgres_database``) are in conftest.py."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from typing import NoReturn

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tfa_middleware.store import Store


def postgres_url() -> str | None:
    return os.environ.get("TFA_TEST_POSTGRES_URL") or None


def require_postgres() -> bool:
    return os.environ.get("TFA_REQUIRE_POSTGRES") == "1"


def _url_or_skip() -> str:
    """The PostgreSQL URL; without one, a skip (a failure under CI, which requires PostgreSQL)."""
    url = postgres_url()
    if url is None:
        if require_postgres():
            pytest.fail("TFA_REQUIRE_POSTGRES=1 but TFA_TEST_POSTGRES_URL is not set")
        pytest.skip(
            "PostgreSQL tests need TFA_TEST_POSTGRES_URL (e.g. postgresql+asyncpg://postgres@127.0.0.1/test)"
        )
    return url


def _unusable(url: str, exc: Exception) -> NoReturn:
    if require_postgres():
        pytest.fail(f"TFA_REQUIRE_POSTGRES=1 but PostgreSQL at {url} is unusable: {exc}")
    pytest.skip(f"PostgreSQL at {url} is unusable: {exc}")


async def postgres_store() -> AsyncIterator[Store]:
    """A Store on a schema made for this test and dropped after it: runs never see each other's rows."""
    url = _url_or_skip()
    schema = f"tfa_test_{secrets.token_hex(6)}"
    admin = create_async_engine(url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        await admin.dispose()
        _unusable(url, exc)
    engine = create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
    store = Store(url, engine=engine, auto_migrate=True)
    try:
        yield store
    finally:
        await store.close()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def fresh_postgres_database() -> AsyncIterator[str]:
    """The URL of a PostgreSQL database made for this test and dropped after it (the
    ``postgres_database`` fixture: for code that takes a URL, like the CLI or a server in another
    process, where a schema cannot be set)."""
    url = _url_or_skip()
    name = f"tfa_test_{secrets.token_hex(6)}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        await admin.dispose()
        _unusable(url, exc)
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def live_code(
    store: Store, interface: str, user_id: str, purpose: str, now: float
) -> tuple[int, str] | None:
    """(id, hash) of the code that can still be used, read straight from the table."""
    from sqlalchemy import select

    from tfa_middleware.store.codes import live as _live
    from tfa_middleware.tables import codes

    async with store.transaction() as conn:
        row = (
            await conn.execute(
                select(codes.c.id, codes.c.code_hash)
                .where(*_live(interface, user_id, purpose, now))
                .order_by(codes.c.id.desc())
                .limit(1)
            )
        ).first()
    return None if row is None else (int(row.id), str(row.code_hash))
