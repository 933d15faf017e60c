"""4: the challenge path: verify (and send) at 50 concurrent clients, on SQLite and PostgreSQL.

Each client is a browser logged in to the shop (its own admin account and session cookie) holding
a CSRF token from the challenge page. In every round all clients POST ``send`` at once, then all
POST ``verify`` with the code they were sent, at once: the verify figures are those of 50 verify
requests in flight together. Requests go straight into the ASGI app in one process and one event
loop, as one uvicorn worker runs them: the middleware, the pages, the service and the database,
without the HTTP parsing. Every user is used once, so no send limit or lockout can skew a round.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import event

from tfa_middleware import TwoFactorMiddleware

from .common import (
    SESSION_COOKIE,
    RecordingStore,
    Report,
    Table,
    bench_settings,
    median,
    p99,
    phone_number,
    postgres_store,
    postgres_url,
    service_on,
    session_cookie,
    shop,
    sqlite_store,
    sqlite_url,
)

TOKEN = re.compile(rb'name="csrf_token" value="([^"]+)"')


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def cookie(self, name: str) -> str | None:
        prefix = f"{name}=".encode()
        for key, value in self.headers:
            if key.lower() == b"set-cookie" and value.startswith(prefix):
                return value[len(prefix) :].split(b";")[0].decode()
        return None


async def call(
    app: Any,
    method: str,
    path: str,
    cookie: str,
    form: dict[str, str] | None = None,
    client: str = "127.0.0.1",
) -> Response:
    """One request straight into the ASGI app, as uvicorn would hand it over."""
    body = urlencode(form).encode() if form is not None else b""
    path, _, query = path.partition("?")
    headers = [
        (b"host", b"shop.bench"),
        (b"accept", b"text/html"),
        (b"user-agent", b"bench"),
        (b"cookie", cookie.encode()),
    ]
    if form is not None:
        headers += [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(body)).encode()),
            (b"sec-fetch-site", b"same-origin"),
        ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": headers,
        "client": (client, 5000),
        "server": ("shop.bench", 80),
    }
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    answer = Response(0, [], b"")
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await finished.wait()  # as a server does: the client goes once the answer is complete
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")
            if not message.get("more_body", False):
                finished.set()

    await app(scope, receive, send)
    return answer


@dataclass
class Client:
    user_id: str
    cookie: str
    token: str
    address: str  # each browser has its own (scope only: nothing is sent anywhere)


@dataclass
class Outcome:
    send_ms: list[float]
    verify_ms: list[float]
    verify_seconds: float  # wall time of the verify phases, added up
    verifies: int
    failures: int
    queries_per_verify: float


async def measure(store: RecordingStore, clients: int, rounds: int) -> Outcome:
    settings = bench_settings(sqlite_url("/unused"))  # the store is given: this URL is never opened
    service = service_on(store, settings)
    app = TwoFactorMiddleware(shop(), service=service)
    users = [f"user-{n:05d}" for n in range(clients * rounds)]
    for n, user in enumerate(users):
        await service.set_phone("admin", user, "1", phone_number(n), confirmed=True)
    everyone: list[Client] = []
    for n, user in enumerate(users):
        cookie = f"{SESSION_COOKIE}={session_cookie(user)}"
        address = f"127.1.{n // 250}.{n % 250 + 1}"
        page = await call(app, "GET", "/admin/_2fa/challenge", cookie, client=address)
        found = TOKEN.search(page.body)
        if found is None:
            raise SystemExit(f"benchmark setup is wrong: challenge page answered {page.status}")
        everyone.append(Client(user, cookie, found.group(1).decode(), address))

    queries = [0]

    def count(*_: Any) -> None:
        queries[0] += 1

    event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    outcome = Outcome([], [], 0.0, 0, 0, 0.0)
    verify_queries = 0

    async def send(client: Client) -> None:
        start = time.perf_counter()
        answer = await call(
            app, "POST", "/admin/_2fa/send", client.cookie, {"csrf_token": client.token}, client.address
        )
        outcome.send_ms.append((time.perf_counter() - start) * 1000)
        if answer.status != 303:
            outcome.failures += 1

    async def verify(client: Client) -> None:
        code = store.codes.get(("admin", client.user_id), "")
        start = time.perf_counter()
        answer = await call(
            app,
            "POST",
            "/admin/_2fa/verify",
            client.cookie,
            {"csrf_token": client.token, "code": code},
            client.address,
        )
        outcome.verify_ms.append((time.perf_counter() - start) * 1000)
        if answer.status != 303 or not answer.cookie("tfa_admin"):
            outcome.failures += 1

    for round_ in range(rounds):
        batch = everyone[round_ * clients : (round_ + 1) * clients]
        await asyncio.gather(*(send(c) for c in batch))
        before = queries[0]
        start = time.perf_counter()
        await asyncio.gather(*(verify(c) for c in batch))
        outcome.verify_seconds += time.perf_counter() - start
        verify_queries += queries[0] - before
        outcome.verifies += len(batch)
    outcome.queries_per_verify = verify_queries / max(1, outcome.verifies)
    return outcome


async def run(report: Report, *, quick: bool) -> None:
    clients, rounds = (5, 2) if quick else (50, 10)
    table = Table(
        f"4. Challenge path at {clients} concurrent clients ({clients * rounds} verifies per database)",
        [
            "database",
            "verify req/s",
            "verify median ms",
            "verify p99 ms",
            "send median ms",
            "send p99 ms",
            "queries/verify",
            "failed",
        ],
    )
    databases: list[tuple[str, Any]] = [("SQLite (file, WAL)", sqlite_store)]
    url = postgres_url()
    if url:
        databases.append(("PostgreSQL", lambda: postgres_store(url)))
    else:
        table.notes.append("PostgreSQL skipped: set TFA_TEST_POSTGRES_URL to include it")
    for name, opener in databases:
        async with opener() as store:
            outcome = await measure(store, clients, rounds)
        table.add(
            name,
            outcome.verifies / outcome.verify_seconds,
            median(outcome.verify_ms),
            p99(outcome.verify_ms),
            median(outcome.send_ms),
            p99(outcome.send_ms),
            f"{outcome.queries_per_verify:.1f}",
            outcome.failures,
        )
        report.target(
            f"verify p99 at {clients} concurrent clients, {name}",
            "< 50 ms",
            f"{p99(outcome.verify_ms):.1f} ms",
            p99(outcome.verify_ms) < 50 and outcome.failures == 0,
        )
    if not url:
        report.target(f"verify p99 at {clients} concurrent clients, PostgreSQL", "< 50 ms", "skipped", None)
    table.notes.append("verify req/s: verifies completed divided by the wall time of the verify phases")
    report.show(table)
