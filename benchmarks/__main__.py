"""``make bench``: what the middleware costs per request, in-process, next to the bare app.

Many thousands of calls go straight into the ASGI app (no network, no client): a bare Starlette
app; the same wrapped by our middleware on an unprotected path; on a protected path with a valid
proof cookie; and Starlette's own SessionMiddleware with a cookie, the peer reference. It prints
the median and p99 per request, the cost added to the bare app, and the database queries made on
the hot path (it must be 0 while the revocation cache is warm).

    python -m benchmarks [--requests N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event
from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tfa_middleware import TwoFactor, TwoFactorMiddleware, settings_from_mapping

SECRET = "bench-secret-key-0123456789-abcdefghijklmnop"
SHOP_SECRET = "bench-shop-secret"
ASGI = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def shop() -> Starlette:
    async def page(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/", page), Route("/admin/orders", page)])


async def session_cookie_for(user_id: str) -> str:
    """A real cookie from the shop's SessionMiddleware, as a logged-in browser would hold it."""

    async def login(request: Request) -> PlainTextResponse:
        request.session["admin_id"] = user_id
        return PlainTextResponse("in")

    app = SessionMiddleware(Starlette(routes=[Route("/login", login)]), secret_key=SHOP_SECRET)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as c:
        return (await c.get("/login")).cookies["session"]


async def timed(app: ASGI, path: str, cookie: str, n: int) -> list[float]:
    headers = [(b"host", b"bench"), (b"accept", b"text/html")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    sent: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.append(message["status"])

    samples = []
    for _ in range(n):
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 5000),
            "server": ("bench", 80),
        }
        start = time.perf_counter_ns()
        await app(scope, receive, send)
        samples.append((time.perf_counter_ns() - start) / 1000)
    if set(sent) != {200}:
        raise SystemExit(f"benchmark setup is wrong: {path} answered {sorted(set(sent))}")
    return samples


async def run(n: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = settings_from_mapping(
            {
                "secret_keys": [SECRET],
                "database_url": f"sqlite+aiosqlite:///{Path(folder) / 'bench.sqlite3'}",
                "interfaces": {
                    "admin": {
                        "path_prefix": "/admin",
                        "identity": {
                            "from": "starlette_session_cookie",
                            "secret_key": SHOP_SECRET,
                            "key": "admin_id",
                        },
                    }
                },
            }
        )
        service = TwoFactor.from_settings(settings)
        wrapped = TwoFactorMiddleware(shop(), settings, service=service)
        await service.set_phone("admin", "1", "1", "2015550123", confirmed=True)
        session = await session_cookie_for("1")
        proof = await pass_challenge(wrapped, service, session)
        queries = [0]
        event.listen(
            service.store.engine.sync_engine,
            "before_cursor_execute",
            lambda *a: queries.__setitem__(0, queries[0] + 1),
        )

        bare = shop()
        peer = SessionMiddleware(shop(), secret_key=SHOP_SECRET)
        cases = [
            ("bare Starlette app", bare, "/admin/orders", ""),
            ("SessionMiddleware with a cookie (peer)", peer, "/admin/orders", f"session={session}"),
            ("tfa: unprotected path", wrapped, "/", ""),
            (
                "tfa: protected path, valid proof",
                wrapped,
                "/admin/orders",
                f"session={session}; tfa_admin={proof}",
            ),
        ]
        for _, app, path, cookie in cases:  # warm caches and the interpreter
            await timed(app, path, cookie, max(200, n // 20))
        before = queries[0]
        results = []
        for _ in range(3):  # interleave rounds so drift hits every case alike
            for index, (_, app, path, cookie) in enumerate(cases):
                if len(results) <= index:
                    results.append([])
                results[index].extend(await timed(app, path, cookie, n // 3))
        hot_path_queries = queries[0] - before
        await service.close()

    base = statistics.median(results[0])
    print(f"In-process, {n} requests per case (µs per request; 'added' is median minus the bare app's)")
    print(f"{'case':42} {'median':>8} {'p99':>8} {'added':>8}")
    for (name, *_), samples in zip(cases, results, strict=True):
        median = statistics.median(samples)
        p99 = statistics.quantiles(samples, n=100)[98]
        added = "" if samples is results[0] else f"{median - base:8.2f}"
        print(f"{name:42} {median:8.2f} {p99:8.2f} {added:>8}")
    print(f"database queries on the hot path while the revocation cache is warm: {hot_path_queries}")


async def pass_challenge(app: TwoFactorMiddleware, service: TwoFactor, session: str) -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        client.cookies.set("session", session)
        page = await client.get("/admin/_2fa/challenge", headers={"accept": "text/html"})
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, page.text
        await client.post("/admin/_2fa/send", data={"csrf_token": token.group(1)})
        body = (await service.store.latest_outbox(1))[0].body
        code = re.search(r"\b(\d{6})\b", body)
        assert code
        done = await client.post(
            "/admin/_2fa/verify", data={"csrf_token": token.group(1), "code": code.group(1)}
        )
        return done.cookies["tfa_admin"]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--quick", action="store_true", help="a second's smoke run")
    args = parser.parse_args()
    asyncio.run(run(600 if args.quick else args.requests))


if __name__ == "__main__":
    main()
