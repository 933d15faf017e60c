"""Shared test fixtures: a tiny shop, a fake clock, the middleware around it, and a client."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from tests.helpers import Cli
from tfa_middleware import Identity, TwoFactor, TwoFactorMiddleware, settings_from_mapping
from tfa_middleware.settings import LimitSettings, Settings
from tfa_middleware.store import Store

SECRET = "test-secret-key-0123456789-abcdefghijklmnop"
OLD_SECRET = "older-secret-key-0123456789-abcdefghijklmno"
ADMIN_PHONE = ("1", "2015550123")
T0 = 1_800_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def header_resolver(scope: Any) -> Identity | None:
    """The tests' shop says who is logged in with two plain headers."""
    headers = dict(scope["headers"])
    user = headers.get(b"x-test-user")
    if not user:
        return None
    session = headers.get(b"x-test-session")
    return Identity(user.decode(), session.decode() if session else None)


async def _page(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"shop page {request.url.path}")


async def _api(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "tfa": request.scope.get("tfa_middleware") is not None})


async def _ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("shop socket")
    await websocket.close()


def shop_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/", _page),
            Route("/admin", _page),
            Route("/admin/orders", _page, methods=["GET", "POST"]),
            Route("/admin/login", _page),
            Route("/admin/static/app.css", _page),
            Route("/admin/api/orders", _api),
            Route("/account", _page),
            Route("/account/orders", _page),
            WebSocketRoute("/admin/ws", _ws),
        ]
    )


def config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "secret_keys": [SECRET],
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'tfa.sqlite3'}",
        "interfaces": {
            "admin": {
                "path_prefix": "/admin",
                "exempt": ["/admin/login", "/admin/static/"],
                "identity": {"from": "callable", "path": "tests.conftest:header_resolver"},
            },
            "customer": {
                "path_prefix": "/account",
                "proof_max_age_seconds": 3600,
                "identity": {"from": "callable", "path": "tests.conftest:header_resolver"},
            },
        },
    }
    for key, value in overrides.items():
        data[key] = value
    return data


# Tests of other behaviours should not trip over the send and verify limits; the limits' own
# tests pass ``limits=LimitSettings()`` (the defaults) to make_harness. Several values are outside
# what a settings file may say, so they are copied onto the defaults past validation.
RELAXED_LIMITS = LimitSettings().model_copy(
    update={
        "verify_max_failures": 20,
        "verify_delay_base_seconds": 0.0,
        "send_cooldown_seconds": 0,
        "send_max_per_10_minutes": 10_000,
        "send_max_per_hour": 10_000,
        "send_max_per_phone_per_hour": 10_000,
        "send_max_per_ip_per_hour": 10_000,
        "send_budget_per_hour": 10_000,
        "send_budget_per_day": 10_000,
    }
)


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *args: Any) -> None:
        self.count += 1


@dataclass
class Harness:
    """The middleware around the tiny shop, with helpers that walk the flow like a browser."""

    settings: Settings
    service: TwoFactor
    app: TwoFactorMiddleware
    client: httpx.AsyncClient
    clock: FakeClock
    queries: QueryCounter
    cookies: dict[str, str] = field(default_factory=dict)

    def as_user(self, user: str, session: str | None = None) -> dict[str, str]:
        headers = {"x-test-user": user, "accept": "text/html"}
        if session:
            headers["x-test-session"] = session
        return headers

    async def csrf(self, headers: dict[str, str], page: str = "/admin/_2fa/challenge") -> str:
        response = await self.client.get(page, headers=headers, follow_redirects=True)
        match = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
        assert match, f"no CSRF token on {page}: {response.status_code} {response.text[:300]}"
        return match.group(1)

    async def latest_code(self) -> str:
        messages = await self.service.store.latest_outbox(1)
        match = re.search(r"\b(\d{6,10})\b", messages[-1].body)
        assert match
        return match.group(1)

    async def send(self, headers: dict[str, str], prefix: str = "/admin") -> httpx.Response:
        token = await self.csrf(headers, f"{prefix}/_2fa/challenge")
        return await self.client.post(f"{prefix}/_2fa/send", data={"csrf_token": token}, headers=headers)

    async def verify(
        self, headers: dict[str, str], code: str, prefix: str = "/admin", next_: str | None = None
    ) -> httpx.Response:
        token = await self.csrf(headers, f"{prefix}/_2fa/challenge")
        url = f"{prefix}/_2fa/verify" + (f"?next={next_}" if next_ else "")
        return await self.client.post(url, data={"csrf_token": token, "code": code}, headers=headers)

    async def pass_challenge(self, user: str, prefix: str = "/admin", session: str | None = None) -> str:
        """Send and verify a code; return the proof cookie value the browser now holds."""
        headers = self.as_user(user, session)
        sent = await self.send(headers, prefix)
        assert sent.status_code == 303, sent.text
        verified = await self.verify(headers, await self.latest_code(), prefix)
        assert verified.status_code == 303, verified.text
        name = "tfa_admin" if prefix == "/admin" else "tfa_customer"
        return verified.cookies[name]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``tfa-middleware ARGS`` in this process (tests/helpers.py): returncode, stdout, stderr."""
    return Cli(capsys, monkeypatch)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_harness(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Callable[..., Any]]:
    made: list[Harness] = []

    async def make(
        app: Any = None, *, on_event: Any = None, limits: LimitSettings = RELAXED_LIMITS, **overrides: Any
    ) -> Harness:
        settings = settings_from_mapping(config(tmp_path, **overrides)).model_copy(update={"limits": limits})
        service = TwoFactor.from_settings(settings, clock=clock, on_event=on_event)
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


def postgres_url() -> str | None:
    return os.environ.get("TFA_TEST_POSTGRES_URL") or None


# ---------------------------------------------------------------------------- a real database each
# PostgreSQL runs when TFA_TEST_POSTGRES_URL is set (CI sets it and TFA_REQUIRE_POSTGRES=1, which
# turns a missing or unreachable server into a failure instead of a skip). Each test gets its own
# schema, so runs never see each other's rows.


def _require_postgres() -> bool:
    return os.environ.get("TFA_REQUIRE_POSTGRES") == "1"


async def _postgres_store() -> AsyncIterator[Store]:
    url = postgres_url()
    if url is None:
        if _require_postgres():
            pytest.fail("TFA_REQUIRE_POSTGRES=1 but TFA_TEST_POSTGRES_URL is not set")
        pytest.skip(
            "PostgreSQL tests need TFA_TEST_POSTGRES_URL (e.g. postgresql+asyncpg://postgres@127.0.0.1/test)"
        )
    schema = f"tfa_test_{secrets.token_hex(6)}"
    admin = create_async_engine(url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        await admin.dispose()
        if _require_postgres():
            pytest.fail(f"TFA_REQUIRE_POSTGRES=1 but PostgreSQL at {url} is unusable: {exc}")
        pytest.skip(f"PostgreSQL at {url} is unusable: {exc}")
    engine = create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
    store = Store(url, engine=engine, auto_migrate=True)
    try:
        yield store
    finally:
        await store.close()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        sqlite = Store(f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite3'}")
        yield sqlite
        await sqlite.close()
    else:
        async for pg in _postgres_store():
            yield pg


# ---------------------------------------------------------------------- raw ASGI (appended)
# httpx normalises some URLs before sending (`..`, `\`, `//`); these helpers hand the middleware
# the exact scope a server would build, so smuggled paths arrive unchanged.


class Recorder:
    """Wraps the shop and notes every scope that reached it (i.e. got past the middleware)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        await self.app(scope, receive, send)

    @property
    def paths(self) -> list[str]:
        return [scope["path"] for scope in self.scopes]


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name.lower()), None)


def _scope(
    kind: str, path: str, raw_path: bytes | None, headers: dict[str, str], scheme: str, query: bytes
) -> dict[str, Any]:
    return {
        "type": kind,
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": scheme,
        "server": ("shop.test", 443 if scheme in ("https", "wss") else 80),
        "client": ("203.0.113.9", 50123),
        "root_path": "",
        "path": path,
        "raw_path": path.encode("utf-8") if raw_path is None else raw_path,
        "query_string": query,
        "headers": [(b"host", b"shop.test")]
        + [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
    }


async def asgi_request(
    app: Any,
    path: str,
    *,
    raw_path: bytes | None = None,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    scheme: str = "http",
    query: bytes = b"",
) -> RawResponse:
    """One HTTP request straight into ``app``; ``path`` is used verbatim as ``scope["path"]``."""
    scope = _scope("http", path, raw_path, headers or {}, scheme, query)
    scope["method"] = method
    done = asyncio.Event()
    request_sent = False
    status = 0
    response_headers: list[tuple[str, str]] = []
    body = bytearray()

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers.extend(
                (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in message["headers"]
            )
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    return RawResponse(status, response_headers, bytes(body))


async def asgi_websocket(
    app: Any, path: str, *, headers: dict[str, str] | None = None, scheme: str = "ws"
) -> list[dict[str, Any]]:
    """Open a websocket to ``app``; return every message the app (or middleware) sent."""
    scope = _scope("websocket", path, None, headers or {}, scheme, b"")
    scope["subprotocols"] = []
    inbox: list[dict[str, Any]] = [{"type": "websocket.connect"}]
    closed = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop(0)
        await closed.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "websocket.close":
            closed.set()

    await app(scope, receive, send)
    return sent


@pytest.fixture
async def postgres_database() -> AsyncIterator[str]:
    """The URL of a PostgreSQL database made for this test and dropped after it (for code that
    takes a URL, like the CLI or a server in another process, where a schema cannot be set)."""
    url = postgres_url()
    if url is None:
        if _require_postgres():
            pytest.fail("TFA_REQUIRE_POSTGRES=1 but TFA_TEST_POSTGRES_URL is not set")
        pytest.skip("needs TFA_TEST_POSTGRES_URL (e.g. postgresql+asyncpg://postgres@127.0.0.1/test)")
    name = f"tfa_test_{secrets.token_hex(6)}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        await admin.dispose()
        if _require_postgres():
            pytest.fail(f"TFA_REQUIRE_POSTGRES=1 but PostgreSQL at {url} is unusable: {exc}")
        pytest.skip(f"PostgreSQL at {url} is unusable: {exc}")
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

    from tfa_middleware.store import _live
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def uvicorn_server(
    factory: str, folder: Path, env: dict[str, str], *, workers: int = 1, args: tuple[str, ...] = ()
) -> Iterator[str]:
    """``uvicorn --factory FACTORY [ARGS]`` on a free loopback port, started, waited for (up to
    30 s), and stopped afterwards; yields its base URL. Its output goes to FOLDER/uvicorn.log."""
    port = free_port()
    log_path = folder / "uvicorn.log"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if workers > 1:
        command += ["--workers", str(workers), "--log-level", "warning"]
    command += list(args)
    root = Path(__file__).resolve().parent.parent
    with log_path.open("w") as log:
        server = subprocess.Popen(
            command, cwd=root, env={**env, "PYTHONPATH": str(root)}, stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if server.poll() is not None:
                    pytest.fail(f"uvicorn exited: {log_path.read_text()}")
                try:
                    httpx.get(url + "/", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"uvicorn did not start in time: {log_path.read_text()}")
                    time.sleep(0.1)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=20)


async def snapshot(h: Harness) -> tuple[Any, ...]:
    """Everything a request could change: codes, enrollments, outbox and audit events."""
    from sqlalchemy import select

    from tfa_middleware.tables import codes, enrollments

    async with h.service.store.engine.connect() as conn:
        code_rows = (await conn.execute(select(codes).order_by(codes.c.id))).all()
        enrollment_rows = (await conn.execute(select(enrollments).order_by(enrollments.c.id))).all()
    return (
        [tuple(r) for r in code_rows],
        [tuple(r) for r in enrollment_rows],
        await h.service.store.latest_outbox(1000),
        await h.service.store.events(limit=1000),
    )
