"""Closing what the service opens (issue 13): ``TwoFactor.from_yaml`` with ``async with`` and
``tfa.lifespan``; the middleware's one-of ``settings``/``service``, and the ASGI lifespan it
watches to close a service it built itself. The lifespan is driven message by message, as a
server does (httpx's ASGI transport does not run it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.pool import QueuePool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.harness import ADMIN_PHONE, config, shop_app
from tfa_middleware import ConfigError, TwoFactor, TwoFactorMiddleware, settings_from_mapping


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "tfa.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path)), encoding="utf-8")
    return path


def pooled(tfa: TwoFactor) -> int:
    """Connections the engine keeps open between queries: 0 once it is disposed."""
    pool = tfa.store.engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedin()


class Lifespan:
    """A server's side of the ASGI lifespan, one message at a time."""

    def __init__(self, app: ASGIApp) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self.task = asyncio.ensure_future(app(scope, self.inbox.get, self.outbox.put))

    async def ask(self, kind: str) -> str:
        await self.inbox.put({"type": f"lifespan.{kind}"})
        answer = asyncio.ensure_future(self.outbox.get())
        await asyncio.wait([answer, self.task], timeout=5, return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            answer.cancel()
            self.task.result()  # the app ended without an answer: its exception, if any
            raise AssertionError(f"no answer to lifespan.{kind}")
        return str(answer.result()["type"])


# ---------------------------------------------------------------------------- the service closes


async def test_from_yaml_and_async_with_close_the_engine(tmp_path: Path) -> None:
    async with TwoFactor.from_yaml(write_config(tmp_path)) as tfa:
        await tfa.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
        assert (await tfa.status("admin", "alice")).state == "active"
        assert pooled(tfa) == 1
        assert not tfa.closed
    assert tfa.closed
    assert pooled(tfa) == 0
    await tfa.close()  # a second close (lifespan and async with both) is harmless


class StuckProvider:
    """The sandbox, but its close never finishes: a provider or database that stopped answering."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def close(self) -> None:
        await asyncio.Event().wait()


async def test_close_gives_up_on_a_peer_that_does_not_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A server's shutdown waits for the lifespan, and so for this close: it must end.
    built = TwoFactor.from_yaml(write_config(tmp_path))
    tfa = TwoFactor(built.settings, built.store, StuckProvider(built.provider))
    tfa.close_timeout_seconds = 0.05
    await tfa.close()
    assert tfa.closed
    assert any("does not answer" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_from_yaml_names_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("secret_keys: [short]\ninterfaces: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        TwoFactor.from_yaml(path)
    assert str(path) in str(caught.value)
    assert caught.value.problems


async def page(_request: Request) -> PlainTextResponse:
    return PlainTextResponse("shop page")


async def test_tfa_lifespan_closes_the_service_when_the_app_stops(tmp_path: Path) -> None:
    tfa = TwoFactor.from_yaml(write_config(tmp_path))

    async def enroll(_request: Request) -> JSONResponse:
        status = await tfa.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
        return JSONResponse({"state": status.state})

    shop = Starlette(routes=[Route("/enroll", enroll)], lifespan=tfa.lifespan)
    server = Lifespan(shop)
    assert await server.ask("startup") == "lifespan.startup.complete"
    transport = httpx.ASGITransport(app=shop)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
        assert (await client.get("/enroll")).json() == {"state": "active"}
    assert not tfa.closed
    assert await server.ask("shutdown") == "lifespan.shutdown.complete"
    await server.task
    assert tfa.closed
    assert pooled(tfa) == 0


async def test_a_shop_lifespan_of_its_own_closes_it_with_async_with(tmp_path: Path) -> None:
    tfa = TwoFactor.from_yaml(write_config(tmp_path))
    seen: list[str] = []

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with tfa:
            await tfa.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)  # seeding, say
            yield
            seen.append(f"shop shutdown, closed={tfa.closed}")

    server = Lifespan(TwoFactorMiddleware(Starlette(lifespan=lifespan), service=tfa))
    assert await server.ask("startup") == "lifespan.startup.complete"
    assert await server.ask("shutdown") == "lifespan.shutdown.complete"
    await server.task
    assert seen == ["shop shutdown, closed=False"]
    assert tfa.closed


# ---------------------------------------------------------------------------- settings xor service


def test_the_middleware_takes_exactly_one_of_settings_or_service(tmp_path: Path) -> None:
    settings = settings_from_mapping(config(tmp_path))
    shop = Starlette(routes=[Route("/admin/orders", page)])
    tfa = TwoFactor.from_settings(settings)
    with pytest.raises(TypeError, match="exactly one of settings= or service= \\(got both\\)"):
        TwoFactorMiddleware(shop, settings, service=tfa)
    with pytest.raises(TypeError, match="exactly one of settings= or service= \\(got neither\\)"):
        TwoFactorMiddleware(shop)
    shared = TwoFactorMiddleware(shop, service=tfa)
    assert shared.settings is tfa.settings
    assert shared.service is tfa
    assert not shared.owns_service
    assert shared.clock is tfa.clock
    own = TwoFactorMiddleware(shop, settings)
    assert own.owns_service
    assert own.service is not tfa
    assert TwoFactorMiddleware.from_yaml(shop, write_config(tmp_path)).owns_service


# ---------------------------------------------------------------------------- the lifespan it watches


def starlette_shop(events: list[str], middleware: list[TwoFactorMiddleware]) -> Starlette:
    """A shop whose own lifespan notes when it runs, and whether the service was closed by then."""

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        events.append("shop startup")
        yield
        # The shop's own shutdown may still use the service (a last audit write, say).
        events.append(f"shop shutdown, closed={middleware[0].service.closed}")

    return Starlette(routes=[Route("/admin/orders", page)], lifespan=lifespan)


async def test_an_own_service_is_closed_after_the_apps_shutdown(tmp_path: Path) -> None:
    events: list[str] = []
    middleware: list[TwoFactorMiddleware] = []
    app = TwoFactorMiddleware.from_yaml(starlette_shop(events, middleware), write_config(tmp_path))
    middleware.append(app)
    server = Lifespan(app)
    assert await server.ask("startup") == "lifespan.startup.complete"
    assert events == ["shop startup"]
    assert not app.service.closed
    await app.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    assert await server.ask("shutdown") == "lifespan.shutdown.complete"
    await server.task
    assert events == ["shop startup", "shop shutdown, closed=False"]
    assert app.service.closed
    assert pooled(app.service) == 0


async def test_an_own_service_serves_requests_until_shutdown(tmp_path: Path) -> None:
    app = TwoFactorMiddleware(shop_app(), settings_from_mapping(config(tmp_path)))
    server = Lifespan(app)
    assert await server.ask("startup") == "lifespan.startup.complete"
    await app.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
        headers = {"x-test-user": "alice", "accept": "text/html"}
        assert (await client.get("/admin/_2fa/challenge", headers=headers)).status_code == 200
    assert not app.service.closed
    assert await server.ask("shutdown") == "lifespan.shutdown.complete"
    await server.task
    assert app.service.closed
    assert pooled(app.service) == 0


async def refuses_lifespan(scope: Scope, _receive: Receive, _send: Send) -> None:
    assert scope["type"] == "http", "only http here"  # many plain ASGI apps do just this


async def ignores_lifespan(scope: Scope, _receive: Receive, _send: Send) -> None:
    if scope["type"] != "http":
        return


async def reads_then_fails(_scope: Scope, receive: Receive, _send: Send) -> None:
    await receive()
    raise RuntimeError("no lifespan support")


@pytest.mark.parametrize("shop", [refuses_lifespan, ignores_lifespan, reads_then_fails])
async def test_an_app_without_lifespan_still_gets_the_service_closed(tmp_path: Path, shop: ASGIApp) -> None:
    app = TwoFactorMiddleware(shop, settings_from_mapping(config(tmp_path)))
    server = Lifespan(app)
    assert await server.ask("startup") == "lifespan.startup.complete"
    assert not app.service.closed
    assert await server.ask("shutdown") == "lifespan.shutdown.complete"
    await server.task
    assert app.service.closed


async def test_a_failed_startup_closes_the_own_service_and_is_not_hidden(tmp_path: Path) -> None:
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("the shop cannot start")
        yield  # pragma: no cover

    app = TwoFactorMiddleware(Starlette(lifespan=lifespan), settings_from_mapping(config(tmp_path)))
    server = Lifespan(app)
    assert await server.ask("startup") == "lifespan.startup.failed"
    with pytest.raises(RuntimeError, match="the shop cannot start"):
        await server.task
    assert app.service.closed


async def test_a_service_passed_in_is_left_to_the_shop(tmp_path: Path) -> None:
    events: list[str] = []
    tfa = TwoFactor.from_settings(settings_from_mapping(config(tmp_path)))
    middleware: list[TwoFactorMiddleware] = []
    app = TwoFactorMiddleware(starlette_shop(events, middleware), service=tfa)
    middleware.append(app)
    server = Lifespan(app)
    assert await server.ask("startup") == "lifespan.startup.complete"
    assert await server.ask("shutdown") == "lifespan.shutdown.complete"
    await server.task
    assert events == ["shop startup", "shop shutdown, closed=False"]
    assert not tfa.closed  # the shop's to close
    await tfa.status("admin", "alice")  # and still usable until it does
    await tfa.close()
