"""Key-value facts about the database itself (the provider credentials' fingerprint)."""

from __future__ import annotations

from sqlalchemy import select

from ..tables import meta
from .database import Store, connection, reading, upsert
from .driver import Connection


async def get(db: Store | Connection, key: str) -> str | None:
    async with reading(db) as conn:
        value = (await conn.execute(select(meta.c.value).where(meta.c.key == key))).scalar()
    return None if value is None else str(value)


async def put(db: Store | Connection, key: str, value: str) -> None:
    async with connection(db) as conn:
        statement = upsert(conn, meta).values(key=key, value=value)
        await conn.execute(statement.on_conflict_do_update(index_elements=["key"], set_={"value": value}))
