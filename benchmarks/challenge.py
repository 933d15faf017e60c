"""4: the challenge path through uvicorn: sends and verifies from 50 concurrent clients, on SQLite
and on PostgreSQL.

Each user of the shop is a browser logged in to it (its own admin account and session cookie,
its own client address: the shop is behind a proxy, ``trusted_proxies``, that sets
X-Forwarded-For) holding a CSRF token from the challenge page. The smallest shop runs wrapped
under a real uvicorn (``benchmarks/servers.py``: 1 worker on SQLite, the one-process database;
1 and then 2 on PostgreSQL) and the load generator (``benchmarks/load.py``) keeps 50 keep-alive
connections busy from another process: first every user POSTs ``send`` once, then, once each
code has been read from the sandbox outbox, every user POSTs ``verify`` with it once. A verify's figures are
those of 50 verifies in flight at every moment; every answer must be the redirect with a proof
cookie (verify) or to the challenge (send).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tfa_middleware.store import Store
from tfa_middleware.tables import outbox

from .common import (
    ROOT,
    SECRET,
    SESSION_COOKIE,
    SHOP_SECRET,
    Report,
    Table,
    postgres_url,
    session_cookie,
    sqlite_url,
)
from .end_to_end import _cpu_seconds, _tail, serving
from .scale import fill, user

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
CODE = re.compile(r"\b(\d{6})\b")
TIMEOUT = 120.0  # seconds for one phase; a server that stops answering ends the run


@dataclass(frozen=True)
class Plan:
    clients: int
    users: int
    postgres_workers: tuple[int, ...]


FULL = Plan(clients=50, users=3000, postgres_workers=(1, 2))
QUICK = Plan(clients=5, users=40, postgres_workers=(1,))


@dataclass
class Phase:
    rps: float
    p50_ms: float
    p99_ms: float
    answers: dict[str, int]
    cookies: int
    server_cpu_us: float


@dataclass(frozen=True)
class Browser:
    user_id: str
    cookie: str
    address: str
    token: str = ""


async def run(report: Report, *, quick: bool) -> None:
    plan = QUICK if quick else FULL
    table = Table(
        f"4. Challenge path at {plan.clients} concurrent clients through uvicorn "
        f"({plan.users:,} sends, then {plan.users:,} verifies, per database)",
        [
            "database",
            "workers",
            "verify req/s",
            "verify median ms",
            "verify p99 ms",
            "send req/s",
            "send median ms",
            "send p99 ms",
            "server CPU µs/verify",
            "failed",
        ],
    )
    databases: list[tuple[str, int, Any]] = [("SQLite (file, WAL)", 1, _sqlite_database)]
    url = postgres_url()
    if url:
        # One worker leaves a core to the database server on this two-core machine; two are how
        # PostgreSQL is meant to be used: both are shown.
        postgres = lambda _folder: _postgres_database(url)  # noqa: E731 (the same opener for each)
        databases += [("PostgreSQL", workers, postgres) for workers in plan.postgres_workers]
    else:
        table.notes.append("PostgreSQL skipped: set TFA_TEST_POSTGRES_URL to include it")
    for name, workers, database in databases:
        with tempfile.TemporaryDirectory() as folder:
            async with database(Path(folder)) as database_url:
                send, verify = await measure(database_url, workers, plan, Path(folder))
        failed = (
            _failed(send, 303, plan.users) + _failed(verify, 303, plan.users) + plan.users - verify.cookies
        )
        table.add(
            name,
            workers,
            verify.rps,
            verify.p50_ms,
            verify.p99_ms,
            send.rps,
            send.p50_ms,
            send.p99_ms,
            verify.server_cpu_us,
            failed,
        )
        _targets(
            report,
            f"{plan.clients} concurrent clients through uvicorn, {name}, {workers} worker"
            + ("s" if workers > 1 else ""),
            send,
            verify,
            failed,
        )
    if not url:
        _targets(report, f"{plan.clients} concurrent clients through uvicorn, PostgreSQL", None, None, 0)
    table.notes += [
        "each user sends once and verifies once; req/s: answers divided by the phase's wall time",
        "server CPU µs/verify: the CPU time of uvicorn's processes (from /proc) per verify; the "
        "database server's is not in it",
        "failed: answers other than the expected redirect, and verifies without a proof cookie",
    ]
    report.show(table)


def _targets(report: Report, where: str, send: Phase | None, verify: Phase | None, failed: int) -> None:
    if send is None or verify is None:
        for what in ("verifies/s", "verify p99", "send p99"):
            report.target(f"{what} at {where}", "", "skipped", None)
        return
    report.target(
        f"verifies/s at {where}", "≥ 500 /s", f"{verify.rps:.0f} /s", verify.rps >= 500 and not failed
    )
    report.target(
        f"verify p99 at {where}", "< 150 ms", f"{verify.p99_ms:.1f} ms", verify.p99_ms < 150 and not failed
    )
    report.target(
        f"send p99 at {where} (sandbox)",
        "< 200 ms",
        f"{send.p99_ms:.1f} ms",
        send.p99_ms < 200 and not failed,
    )


def _failed(phase: Phase, status: int, expected: int) -> int:
    return expected - phase.answers.get(str(status), 0)


async def measure(database_url: str, workers: int, plan: Plan, folder: Path) -> tuple[Phase, Phase]:
    store = Store(database_url, auto_migrate=True)
    try:
        await store.upgrade_schema()
        await fill(store, 0, plan.users)  # type: ignore[arg-type]
    finally:
        await store.close()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "TFA_BENCH_DATABASE_URL": database_url,
        "TFA_BENCH_TRUSTED_PROXIES": "127.0.0.1",
        "SHOP_SECRET": SHOP_SECRET,
        "TFA_SECRET_KEY": SECRET,
    }
    browsers = [
        Browser(
            user(n),
            f"{SESSION_COOKIE}={session_cookie(user(n))}",
            f"10.{n // 65536}.{n // 256 % 256}.{n % 256}",
        )
        for n in range(plan.users)
    ]
    async with serving(["benchmarks.servers:minimal_wrapped"], workers, env, folder, None) as [server]:
        try:
            browsers = await _tokens(server.port, browsers)
        except httpx.TransportError as exc:
            log = folder / f"uvicorn-{server.port}.log"
            raise SystemExit(f"the server dropped a request ({exc!r}); its log:\n{_tail(log)}") from exc
        send = await _phase(server, plan, folder / "send.jsonl", [_request(b, "send") for b in browsers], env)
        codes = await _codes(database_url)
        verifies = [_request(b, "verify", codes.get(b.user_id, "000000")) for b in browsers]
        verify = await _phase(server, plan, folder / "verify.jsonl", verifies, env, cookie="tfa_admin")
    return send, verify


async def _tokens(port: int, browsers: list[Browser]) -> list[Browser]:
    """Each browser's CSRF token, from its challenge page (20 at a time)."""
    limit = asyncio.Semaphore(20)

    async def one(client: httpx.AsyncClient, browser: Browser) -> Browser:
        async with limit:
            page = await client.get(
                "/admin/_2fa/challenge",
                headers={"cookie": browser.cookie, "accept": "text/html", "x-forwarded-for": browser.address},
            )
        found = TOKEN.search(page.text)
        if found is None:
            raise SystemExit(f"benchmark setup is wrong: challenge page answered {page.status_code}")
        return Browser(browser.user_id, browser.cookie, browser.address, found.group(1))

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as client:
        return list(await asyncio.gather(*(one(client, b) for b in browsers)))


def _request(browser: Browser, page: str, code: str | None = None) -> dict[str, Any]:
    form = {"csrf_token": browser.token, **({"code": code} if code is not None else {})}
    headers = [
        ["Cookie", browser.cookie],
        ["Accept", "text/html"],
        ["Sec-Fetch-Site", "same-origin"],
        ["X-Forwarded-For", browser.address],
    ]
    return {"method": "POST", "path": f"/admin/_2fa/{page}", "headers": headers, "form": form}


async def _phase(
    server: Any, plan: Plan, path: Path, requests: list[dict[str, Any]], env: dict[str, str], cookie: str = ""
) -> Phase:
    await asyncio.to_thread(path.write_text, "".join(json.dumps(r) + "\n" for r in requests))
    command = [
        sys.executable,
        "-m",
        "benchmarks.load",
        "--port",
        str(server.port),
        "--connections",
        str(plan.clients),
        "--seconds",
        str(TIMEOUT),
        "--requests-file",
        str(path),
        *(["--count-cookie", cookie] if cookie else []),
    ]
    cpu = _cpu_seconds(server.pid)
    process = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=TIMEOUT + 60)
    if process.returncode != 0:
        raise SystemExit(f"load generator failed: {err.decode(errors='replace')[-2000:]}")
    result: dict[str, Any] = json.loads(out)
    used = _cpu_seconds(server.pid) - cpu
    return Phase(
        result["rps"],
        result["p50_ms"],
        result["p99_ms"],
        result["statuses"],
        result["cookies"],
        used / max(1, result["requests"]) * 1e6,
    )


async def _codes(database_url: str) -> dict[str, str]:
    """The code each user was sent, from the sandbox outbox (read after the send phase)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(outbox.c.user_id, outbox.c.body).order_by(outbox.c.id))).all()
    finally:
        await engine.dispose()
    codes = {}
    for row in rows:
        found = CODE.search(row.body)
        if found:
            codes[row.user_id] = found.group(1)
    return codes


@asynccontextmanager
async def _sqlite_database(folder: Path) -> AsyncIterator[str]:
    yield sqlite_url(folder, "challenge.sqlite3")


@asynccontextmanager
async def _postgres_database(url: str) -> AsyncIterator[str]:
    """A database of its own (uvicorn's workers cannot be given a schema), dropped afterwards."""
    name = f"tfa_bench_{secrets.token_hex(6)}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(url).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()
