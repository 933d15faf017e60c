"""What every benchmark shares: tables that print as they complete, percentiles, the tiny shop, the
settings, real shop session cookies, a store that remembers the codes it "sent", and PostgreSQL
schemas that are dropped afterwards.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import os
import re
import secrets
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers
from itsdangerous import TimestampSigner
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tfa_middleware import TwoFactor, settings_from_mapping
from tfa_middleware.providers import base as provider_base
from tfa_middleware.providers.sandbox import SandboxProvider
from tfa_middleware.settings import Settings
from tfa_middleware.store import Store

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-key-0123456789-abcdefghijklmnop"
SHOP_SECRET = "bench-shop-secret-0123456789"
SESSION_COOKIE = "session"
PROTECTED = "/admin/orders"
UNPROTECTED = "/catalog"
ASGIApp = Any  # the three-argument callables of the ASGI spec; Starlette's own alias is no stricter


# --------------------------------------------------------------------------- reporting


NUMBER = re.compile(r"[-+]?[\d,]*\.?\d+\s*[%×]?|nan")


@dataclass
class Table:
    """One result table: printed when complete, and written to RESULTS.md as Markdown."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([_cell(c) for c in cells])

    def _numeric(self) -> list[bool]:
        """Columns of figures are right-aligned, columns of words left-aligned."""
        return [
            index > 0 and all(NUMBER.fullmatch(row[index]) for row in self.rows if row[index])
            for index in range(len(self.columns))
        ]

    def text(self) -> str:
        widths = [max(len(row[i]) for row in [self.columns, *self.rows]) for i in range(len(self.columns))]
        numeric = self._numeric()

        def line(cells: Sequence[str]) -> str:
            return "  ".join(
                c.rjust(w) if right else c.ljust(w)
                for c, w, right in zip(cells, widths, numeric, strict=True)
            ).rstrip()

        out = [self.title, line(self.columns), "  ".join("-" * w for w in widths)]
        out += [line(row) for row in self.rows]
        out += [f"  {note}" for note in self.notes]
        return "\n".join(out)

    def markdown(self) -> str:
        out = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |"]
        out.append("| " + " | ".join("---:" if right else "---" for right in self._numeric()) + " |")
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        if self.notes:
            out += ["", *[f"- {note}" for note in self.notes]]
        return "\n".join(out)


@dataclass(frozen=True)
class Target:
    what: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run
    inconclusive: bool = False  # measured, but the spread of the rounds is wider than the effect


@dataclass
class Report:
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)  # extra machine facts found on the way

    def show(self, table: Table) -> None:
        self.tables.append(table)
        print(table.text(), end="\n\n", flush=True)

    def target(
        self, what: str, goal: str, measured: str, met: bool | None, *, inconclusive: bool = False
    ) -> None:
        self.targets.append(Target(what, goal, measured, met, inconclusive))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(target: Target) -> str:
    if target.inconclusive:
        return "inconclusive (too noisy)"
    return {True: "met", False: "MISSED", None: "not measured"}[target.met]


# --------------------------------------------------------------------------- statistics


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least ``pct`` % of them at or below it."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1))]


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 50)


def p99(samples: Sequence[float]) -> float:
    return percentile(samples, 99)


# --------------------------------------------------------------------------- the shop and its settings


def shop() -> Starlette:
    """The smallest shop: one protected page and one page outside every interface."""

    async def page(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route(UNPROTECTED, page), Route(PROTECTED, page)])


def identity_config(session_id_key: str | None = "sid") -> dict[str, Any]:
    """The shop's Starlette session cookie read from outside, with its per-login id, as the demo does."""
    config: dict[str, Any] = {
        "from": "starlette_session_cookie",
        "cookie": SESSION_COOKIE,
        "secret_key": SHOP_SECRET,
        "key": "admin_id",
    }
    if session_id_key:
        config["session_id_key"] = session_id_key
    return config


def bench_settings(
    database_url: str, identity: dict[str, Any] | None = None, trusted_proxies: Sequence[str] = ()
) -> Settings:
    """Default settings but for the shop-wide send budget: the benchmarks send more codes in a few
    seconds than the default budget allows in a day. Every limit is still checked on every send.
    ``trusted_proxies``: the load comes through a proxy that names each client (X-Forwarded-For)."""
    return settings_from_mapping(
        {
            "secret_keys": [SECRET],
            "database_url": database_url,
            "trusted_proxies": list(trusted_proxies),
            "limits": {"send_budget_per_hour": 1_000_000, "send_budget_per_day": 1_000_000},
            "interfaces": {"admin": {"path_prefix": "/admin", "identity": identity or identity_config()}},
        },
        environ={},
    )


@functools.cache
def _fictional_numbers() -> tuple[str, ...]:
    # +1 NXX 555-0100..0199 is set aside for fiction; every area code the phone rules accept gives
    # 100 of them, so users get numbers of their own and no per-phone send limit is shared.
    # Only US and Canadian area codes: the default allow-list is by region, and +1 876 is Jamaica.
    areas = [
        a
        for a in range(200, 1000)
        if phonenumbers.is_valid_number(parsed := phonenumbers.parse(f"+1{a}5550123"))
        and phonenumbers.region_code_for_number(parsed) in ("US", "CA")
    ]
    return tuple(f"{area}55501{n:02d}" for area in areas for n in range(100))


def phone_number(n: int) -> str:
    """User ``n``'s national number (calling code 1)."""
    numbers = _fictional_numbers()
    return numbers[n % len(numbers)]


def session_cookie(user_id: str, sid: str | None = None, secret: str = SHOP_SECRET) -> str:
    """The cookie Starlette's SessionMiddleware gives a logged-in admin (same signer, same encoding)."""
    data = {"admin_id": user_id, "sid": sid or secrets.token_urlsafe(24)}
    return TimestampSigner(secret).sign(base64.b64encode(json.dumps(data).encode())).decode()


def sqlite_url(folder: str | Path, name: str = "bench.sqlite3") -> str:
    return f"sqlite+aiosqlite:///{Path(folder) / name}"


# --------------------------------------------------------------------------- codes and databases


CODE = re.compile(r"\b(\d{4,10})\b")


class RecordingStore(Store):
    """The real store, which also remembers the last code the sandbox "sent" to each user
    (``RecordingSandbox`` writes them here).

    The benchmark clients read their codes here instead of querying the outbox, so no extra
    query is added to the load being measured.
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.codes: dict[tuple[str, str], str] = {}


class RecordingSandbox(SandboxProvider):
    """The sandbox provider, which also notes each code it "sent" in a RecordingStore."""

    async def deliver(
        self, now: float, target: provider_base.Target, to: str, channel: str, body: str
    ) -> None:
        found = CODE.search(body)
        if found and isinstance(self.store, RecordingStore):
            self.store.codes[(target.interface, target.user_id)] = found.group(1)
        await super().deliver(now, target, to, channel, body)


def service_on(store: Store, settings: Settings) -> TwoFactor:
    """The service wired as ``TwoFactor.from_settings`` wires it, on a store we chose."""
    provider = RecordingSandbox(store, settings.provider, settings.secret_keys[-1], clock=_now)
    return TwoFactor(settings, store, provider)


def _now() -> float:
    import time

    return time.time()


def postgres_url() -> str | None:
    return os.environ.get("TFA_TEST_POSTGRES_URL") or None


@asynccontextmanager
async def postgres_store(url: str) -> AsyncIterator[RecordingStore]:
    """A store with the package's own engine options, in a schema of its own that is dropped afterwards."""
    schema = f"tfa_bench_{secrets.token_hex(6)}"
    admin = create_async_engine(url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        store = RecordingStore(url, auto_migrate=True)  # a fresh schema: create the tables
        event.listen(store.engine.sync_engine, "connect", _search_path(schema))
        try:
            yield store
        finally:
            await store.close()
            async with admin.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        await admin.dispose()


def _search_path(schema: str) -> Any:
    # The pattern SQLAlchemy documents for a per-connection search_path: outside any transaction.
    def connect(dbapi_connection: Any, _record: Any) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        cursor = dbapi_connection.cursor()
        cursor.execute(f'SET SESSION search_path TO "{schema}"')
        cursor.close()
        dbapi_connection.autocommit = autocommit

    return connect


async def postgres_version(url: str) -> str:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return str((await conn.execute(text("SHOW server_version"))).scalar())
    finally:
        await engine.dispose()


@asynccontextmanager
async def sqlite_store() -> AsyncIterator[RecordingStore]:
    with tempfile.TemporaryDirectory() as folder:
        store = RecordingStore(sqlite_url(folder))
        try:
            yield store
        finally:
            await store.close()
