"""The fixtures; what they build lives in helper modules that tests import directly:

- ``harness.py``: the tiny shop, the fake clock, ``Harness`` (the middleware around the shop and
  a client walking the flow), ``config``, ``snapshot``;
- ``codes.py``: the code in a text, the newest code, a certainly wrong code;
- ``database.py``: PostgreSQL per test, and a look into the codes table;
- ``asgi_helpers.py``: raw ASGI requests and websockets, for paths httpx would normalise;
- ``servers.py``: ``uvicorn_server``, an app factory under a real uvicorn;
- ``demo.py``: the demo shop under uvicorn, and its codes;
- ``helpers.py``: the command line, in this process or as a real one;
- ``sessions.py``: Starlette session cookies as a real shop sets them;
- ``django_shop.py``: the in-process Django project, its users and sessions, Django's own reading.
- ``wsgi_shop.py``, ``wsgi_harness.py``: the tiny WSGI shop, and the WSGI middleware around it.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, event

from tests.database import fresh_postgres_database, postgres_store
from tests.harness import ADMIN_PHONE, RELAXED_LIMITS, FakeClock, Harness, QueryCounter, config, shop_app
from tests.helpers import Cli
from tests.wsgi_harness import WSGIHarness
from tests.wsgi_shop import shop as wsgi_shop
from tfa_middleware import TwoFactor, TwoFactorMiddleware, schema, settings_from_mapping
from tfa_middleware.settings import LimitSettings
from tfa_middleware.store import Store
from tfa_middleware.wsgi import TwoFactorWSGIMiddleware


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``tfa-middleware ARGS`` in this process (tests/helpers.py): returncode, stdout, stderr."""
    return Cli(capsys, monkeypatch)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file migrated to head once, by the real migrations; each harness starts from a
    copy instead of migrating its own empty file (tens of milliseconds, a thousand times)."""
    path = tmp_path_factory.mktemp("template") / "tfa.sqlite3"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        schema.upgrade(conn)
    engine.dispose()
    return path


def start_from(template: Path, tmp_path: Path, overrides: dict[str, Any]) -> None:
    """The harness's database (config()'s default file) begins as a copy of the migrated one."""
    target = tmp_path / "tfa.sqlite3"
    if "database_url" not in overrides and not target.exists():
        shutil.copyfile(template, target)


@pytest.fixture
async def make_harness(
    tmp_path: Path, clock: FakeClock, migrated_sqlite: Path
) -> AsyncIterator[Callable[..., Any]]:
    made: list[Harness] = []

    async def make(
        app: Any = None,
        *,
        on_event: Any = None,
        limits: LimitSettings = RELAXED_LIMITS,
        metrics_registry: Any = None,
        **overrides: Any,
    ) -> Harness:
        start_from(migrated_sqlite, tmp_path, overrides)
        settings = settings_from_mapping(config(tmp_path, **overrides)).model_copy(update={"limits": limits})
        service = TwoFactor.from_settings(
            settings, clock=clock, on_event=on_event, metrics_registry=metrics_registry
        )
        queries = QueryCounter()
        event.listen(service.store.engine.sync_engine, "before_cursor_execute", queries)
        middleware = TwoFactorMiddleware(app or shop_app(), service=service, clock=clock)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url="http://shop.test")
        harness = Harness(settings, service, middleware, client, clock, queries)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.client.aclose()
        await harness.service.close()


@pytest.fixture
async def harness(make_harness: Callable[..., Any]) -> Harness:
    h: Harness = await make_harness()
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await h.service.set_phone("admin", "bob", "1", "2015550124", confirmed=True)
    await h.service.set_phone("customer", "alice", "1", "2015550125", confirmed=True)
    return h


@pytest.fixture
def make_wsgi(
    tmp_path: Path, clock: FakeClock, migrated_sqlite: Path
) -> Iterator[Callable[..., WSGIHarness]]:
    """The WSGI middleware around ``app`` (the tiny WSGI shop by default), with the harness's
    settings and ``overrides``; each closed (its service and its loop) after the test."""
    made: list[WSGIHarness] = []

    def make(app: Any = None, *, limits: LimitSettings = RELAXED_LIMITS, **overrides: Any) -> WSGIHarness:
        start_from(migrated_sqlite, tmp_path, overrides)
        settings = settings_from_mapping(config(tmp_path, **overrides)).model_copy(update={"limits": limits})
        service = TwoFactor.from_settings(settings, clock=clock)
        middleware = TwoFactorWSGIMiddleware(app or wsgi_shop, service=service, clock=clock)
        client = httpx.Client(transport=httpx.WSGITransport(app=middleware), base_url="http://shop.test")
        harness = WSGIHarness(settings, service, middleware, client, clock)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.client.close()
        harness.run(harness.service.close())
        harness.app.close()


@pytest.fixture
def wsgi(make_wsgi: Callable[..., WSGIHarness]) -> WSGIHarness:
    """The WSGI harness with the same enrolled users as ``harness``."""
    h = make_wsgi()
    h.run(h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True))
    h.run(h.service.set_phone("admin", "bob", "1", "2015550124", confirmed=True))
    h.run(h.service.set_phone("customer", "alice", "1", "2015550125", confirmed=True))
    return h


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The store on SQLite, and on PostgreSQL in a schema of its own (tests/database.py)."""
    if request.param == "sqlite":
        sqlite = Store(f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite3'}")
        yield sqlite
        await sqlite.close()
    else:
        async for pg in postgres_store():
            yield pg


@pytest.fixture
async def postgres_database() -> AsyncIterator[str]:
    """The URL of a PostgreSQL database made for this test and dropped after it (for code that
    takes a URL, like the CLI or a server in another process, where a schema cannot be set)."""
    async for url in fresh_postgres_database():
        yield url
