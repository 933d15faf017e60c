"""Several worker processes on one PostgreSQL database: the limits and single use hold exactly,
proofs work on every worker, and a database outage fails closed and heals by itself.

These run a real uvicorn with 4 workers (and one with a TCP proxy in front of PostgreSQL that the
test cuts and restores). They need PostgreSQL: under CI (TFA_REQUIRE_POSTGRES=1) they must run.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.codes import latest_code
from tests.helpers import Cli
from tests.scrapes import samples, value
from tests.servers import free_port, uvicorn_server
from tfa_middleware import TwoFactor, load_settings
from tfa_middleware.store import events as event_rows
from tfa_middleware.store import outbox as outbox_rows

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parent.parent
USERS = {"wrong": "2015550131", "right": "2015550132", "sender": "2015550133", "normal": "2015550134"}


def write_settings(
    folder: Path,
    url: str,
    limits: str = "verify_delay_base_seconds: 0",
    *,
    admin: tuple[str, ...] = (),
    others: tuple[str, ...] = (),
    **extra: str,
) -> Path:
    path = folder / "workers.yaml"
    lines = [
        'secret_keys: ["workers-test-key-0123456789-abcdefghij"]',
        f'database_url: "{url}"',
        *(f"{key}: {value}" for key, value in extra.items()),
        # No growing delay: parallel guesses all reach the lock, which must land exactly at 5.
        f"limits: {{{limits}}}",
        "interfaces:",
        "  admin:",
        "    path_prefix: /admin",
        "    identity: {from: callable, path: tests.workers_app:header_identity}",
        *(f"    {line}" for line in admin),
        *(f"  {line}" for line in others),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def uvicorn(config: Path, workers: int) -> Iterator[str]:
    env = {**os.environ, "TFA_WORKERS_CONFIG": str(config)}
    with uvicorn_server("tests.workers_app:create_app", config.parent, env, workers=workers) as url:
        yield url


@asynccontextmanager
async def service(config: Path) -> AsyncIterator[TwoFactor]:
    tfa = TwoFactor.from_settings(load_settings(config))
    try:
        yield tfa
    finally:
        await tfa.close()


def as_user(user: str) -> dict[str, str]:
    return {"x-test-user": user, "accept": "text/html"}


async def token_for(url: str, user: str) -> str:
    async with httpx.AsyncClient(base_url=url) as client:
        page = await client.get("/admin/_2fa/challenge", headers=as_user(user))
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text[:300]
    return match.group(1)


async def one_client_each(
    url: str, count: int, method: str, path: str, user: str, **data: str
) -> list[httpx.Response]:
    """``count`` requests at once, each on its own connection, so they spread over the workers."""

    async def one() -> httpx.Response:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            return await client.request(method, path, headers=as_user(user), data=data or None)

    return await asyncio.gather(*(one() for _ in range(count)))


@pytest.fixture
async def four_workers(
    cli: Cli, postgres_database: str, tmp_path: Path
) -> AsyncIterator[tuple[str, TwoFactor]]:
    config = write_settings(tmp_path, postgres_database)
    # main runs its own event loop (asyncio.run): in a thread, beside this fixture's loop.
    upgraded = await asyncio.to_thread(cli, "db", "upgrade", "--config", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    async with service(config) as tfa:
        for user, number in USERS.items():
            await tfa.set_phone("admin", user, "1", number, confirmed=True)
        with uvicorn(config, workers=4) as url:
            yield url, tfa


async def test_four_workers_keep_every_limit_and_single_use_exact(
    four_workers: tuple[str, TwoFactor],
) -> None:
    url, tfa = four_workers

    # Wrong guesses for one account from 50 clients at once: exactly 5 are checked, then the lock.
    token = await token_for(url, "wrong")
    sent = await one_client_each(url, 1, "POST", "/admin/_2fa/send", "wrong", csrf_token=token)
    assert sent[0].status_code == 303
    code = await latest_code(tfa.store, "wrong")
    guess = f"{(int(code) + 1) % 1_000_000:06d}"
    answers = await one_client_each(
        url, 50, "POST", "/admin/_2fa/verify", "wrong", csrf_token=token, code=guess
    )
    assert {a.status_code for a in answers} == {400}
    events = await event_rows.latest(tfa.store, "admin", "wrong", limit=500)
    assert [e.kind for e in events].count("verify_failed") == 5
    assert [e.kind for e in events].count("locked") == 1
    assert (await tfa.status("admin", "wrong")).locked_until > 0

    # The right code from 20 clients at once: exactly one gets in.
    token = await token_for(url, "right")
    await one_client_each(url, 1, "POST", "/admin/_2fa/send", "right", csrf_token=token)
    code = await latest_code(tfa.store, "right")
    answers = await one_client_each(
        url, 20, "POST", "/admin/_2fa/verify", "right", csrf_token=token, code=code
    )
    admitted = [a for a in answers if a.status_code == 303 and "tfa_admin" in a.cookies]
    assert len(admitted) == 1
    assert sorted(a.status_code for a in answers) == [303] + [400] * 19

    # Sends for one account from 20 clients at once: the cooldown lets exactly one through.
    token = await token_for(url, "sender")
    answers = await one_client_each(url, 20, "POST", "/admin/_2fa/send", "sender", csrf_token=token)
    assert sorted(a.status_code for a in answers) == [303] + [429] * 19
    assert len([m for m in await outbox_rows.latest(tfa.store, 100) if m.user_id == "sender"]) == 1


POLICY = (
    "step_up: [{path: /admin/pay, methods: [POST], max_age_seconds: 0}]",
    "enroll_grace: {logins: 3}",
)
STAFF_IN_REPORT_MODE = (
    "staff:",
    "  path_prefix: /staff",
    "  mode: report",
    "  identity: {from: callable, path: tests.workers_app:header_identity}",
)


async def test_four_workers_keep_the_rollout_policy_exact(
    cli: Cli, postgres_database: str, tmp_path: Path
) -> None:
    """Issue 17 under 4 workers: a proof spent once on a max-age-0 rule, a grace of 3 logins
    taken exactly 3 times, report mode's day recorded once."""
    config = write_settings(tmp_path, postgres_database, admin=POLICY, others=STAFF_IN_REPORT_MODE)
    upgraded = await asyncio.to_thread(cli, "db", "upgrade", "--config", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    async with service(config) as tfa:
        await tfa.set_phone("admin", "payer", "1", USERS["normal"], confirmed=True)
        with uvicorn(config, workers=4) as url:
            token = await token_for(url, "payer")
            await one_client_each(url, 1, "POST", "/admin/_2fa/send", "payer", csrf_token=token)
            code = await latest_code(tfa.store, "payer")
            [done] = await one_client_each(
                url, 1, "POST", "/admin/_2fa/verify", "payer", csrf_token=token, code=code
            )
            headers = {**as_user("payer"), "cookie": f"tfa_admin={done.cookies['tfa_admin']}"}

            async def pay() -> httpx.Response:
                async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                    return await client.post("/admin/pay", headers=headers)

            answers = await asyncio.gather(*(pay() for _ in range(20)))
            assert sorted(a.status_code for a in answers) == [200] + [303] * 19

            async with httpx.AsyncClient(base_url=url) as client:
                page = await client.get("/admin/_2fa/enroll", headers=as_user("newbie"))
            match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert match, page.text[:300]
            skips = await one_client_each(
                url, 20, "POST", "/admin/_2fa/enroll", "newbie", csrf_token=match.group(1), action="skip"
            )
            assert sorted(a.status_code for a in skips) == [303] * 3 + [400] * 17
            events = await event_rows.latest(tfa.store, "admin", "newbie", limit=100)
            assert [e.kind for e in events].count("enrollment_skipped") == 3

            seen = await one_client_each(url, 40, "GET", "/staff/pid", "watched")
            assert {a.status_code for a in seen} == {200}
            events = await event_rows.latest(tfa.store, "staff", "watched", limit=100)
            assert [e.kind for e in events] == ["report_enroll"]


async def test_a_proof_works_on_every_worker(four_workers: tuple[str, TwoFactor]) -> None:
    url, tfa = four_workers
    token = await token_for(url, "normal")
    await one_client_each(url, 1, "POST", "/admin/_2fa/send", "normal", csrf_token=token)
    code = await latest_code(tfa.store, "normal")
    [done] = await one_client_each(
        url, 1, "POST", "/admin/_2fa/verify", "normal", csrf_token=token, code=code
    )
    proof = done.cookies["tfa_admin"]
    headers = {**as_user("normal"), "cookie": f"tfa_admin={proof}"}
    pids: set[str] = set()
    statuses: set[int] = set()
    for _ in range(20):  # bounded: 20 rounds of 50 fresh connections at most

        async def one() -> httpx.Response:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                return await client.get("/admin/pid", headers=headers)

        answers = await asyncio.gather(*(one() for _ in range(50)))
        statuses |= {a.status_code for a in answers}
        pids |= {a.text for a in answers if a.status_code == 200}
        if len(pids) == 4:
            break
    assert statuses == {200}
    assert len(pids) == 4, f"only {len(pids)} workers answered"


async def test_metrics_are_exact_across_four_workers(
    cli: Cli, postgres_database: str, tmp_path: Path
) -> None:
    """N codes sent and checked through 4 worker processes: the merged registry (prometheus_client's
    multiprocess mode) reads exactly N, whichever worker answers the scrape; the budget, read from
    its row, says N too."""
    count = 24
    config = write_settings(
        tmp_path,
        postgres_database,
        limits="verify_delay_base_seconds: 0, send_max_per_ip_per_hour: 1000",
        operations="{metrics: true, metrics_path: /_tfa/metrics, allow: [127.0.0.1]}",
    )
    upgraded = await asyncio.to_thread(cli, "db", "upgrade", "--config", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    folder = tmp_path / "prometheus"
    folder.mkdir()
    users = [f"metered{n}" for n in range(count)]
    env = {**os.environ, "TFA_WORKERS_CONFIG": str(config), "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    async with service(config) as tfa:
        for n, user in enumerate(users):
            await tfa.set_phone("admin", user, "1", f"20155502{n:02d}", confirmed=True)
        with uvicorn_server("tests.workers_app:create_app", tmp_path, env, workers=4) as url:

            async def sign_in(user: str) -> int:
                token = await token_for(url, user)
                [sent] = await one_client_each(url, 1, "POST", "/admin/_2fa/send", user, csrf_token=token)
                assert sent.status_code == 303, sent.text[:300]
                code = await latest_code(tfa.store, user)
                [done] = await one_client_each(
                    url, 1, "POST", "/admin/_2fa/verify", user, csrf_token=token, code=code
                )
                return done.status_code

            assert await asyncio.gather(*(sign_in(user) for user in users)) == [303] * count
            scrapes = [s.text for s in await one_client_each(url, 8, "GET", "/_tfa/metrics", "nobody")]
    # Several processes counted (one file of counters each), and every scrape merged them all.
    assert len(list(folder.glob("counter_*.db"))) >= 2
    for text in scrapes:
        found = samples(text)
        assert value(found, "tfa_sends_total", outcome="sent") == count
        assert value(found, "tfa_verifies_total", factor="sms", outcome="ok") == count
        assert value(found, "tfa_proofs_issued_total", factor="sms") == count
        assert value(found, "tfa_provider_seconds_count", operation="send") == count
        assert value(found, "tfa_send_budget_used", period="day") == count


class CuttableProxy:
    """A TCP proxy to PostgreSQL that the test can cut (every connection dropped, new ones
    refused) and restore: a database outage, seen from the application's side."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_a_database_outage_fails_closed_keeps_proofs_working_and_heals(
    cli: Cli, postgres_database: str, tmp_path: Path
) -> None:
    direct = write_settings(tmp_path, postgres_database)
    assert (await asyncio.to_thread(cli, "db", "upgrade", "--config", str(direct))).returncode == 0
    database = make_url(postgres_database)
    proxy = CuttableProxy(database.port or 5432)
    await proxy.start()
    proxied_url = database.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    folder = tmp_path / "proxied"
    folder.mkdir()
    # A long revocation interval keeps this test about the outage, not about the cache's age.
    config = write_settings(folder, proxied_url, revocation_check_seconds="300")
    async with service(direct) as tfa:
        await tfa.set_phone("admin", "normal", "1", USERS["normal"], confirmed=True)
        await tfa.set_phone("admin", "other", "1", "2015550135", confirmed=True)
        with uvicorn(config, workers=1) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as browser:
                token = await token_for(url, "normal")
                await browser.post("/admin/_2fa/send", data={"csrf_token": token}, headers=as_user("normal"))
                code = await latest_code(tfa.store, "normal")
                await browser.post(
                    "/admin/_2fa/verify", data={"csrf_token": token, "code": code}, headers=as_user("normal")
                )
                assert (await browser.get("/admin/pid", headers=as_user("normal"))).status_code == 200

                await proxy.cut()
                # A valid proof needs no query: it keeps working through the outage.
                assert (await browser.get("/admin/pid", headers=as_user("normal"))).status_code == 200
                async with httpx.AsyncClient(base_url=url, timeout=30) as stranger:
                    stopped = await stranger.get("/admin/pid", headers=as_user("other"))
                    assert stopped.status_code == 303  # no proof: the challenge, never the shop
                    page = await stranger.get("/admin/_2fa/challenge", headers=as_user("other"))
                    assert page.status_code == 503
                    assert "Temporarily unavailable" in page.text
                    assert "Traceback" not in page.text

                    await proxy.start()
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline:
                        page = await stranger.get("/admin/_2fa/challenge", headers=as_user("other"))
                        if page.status_code == 200:
                            break
                        await asyncio.sleep(0.2)
                    assert page.status_code == 200, "the service did not recover by itself"
    await proxy.cut()
