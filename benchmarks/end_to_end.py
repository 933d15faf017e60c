"""3: end to end under a real uvicorn, loaded from a separate process on loopback for a fixed time.

Two shops, each served bare and wrapped by the middleware, with 1 worker and then 2: the demo shop
(its admin orders page: a Jinja template behind the shop's own session) and the smallest shop (a
plain-text page, the worst case for a middleware's share). The browser is logged in to the shop and
has passed the second factor, exactly as a real one would have, over HTTP. Bare and wrapped run in
alternating rounds and the medians over the rounds are compared. With 1 worker the server has one
core and the load generator (``benchmarks/load.py``) the other; with 2 workers the three share both.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tfa_middleware import TwoFactor

from .common import (
    PROTECTED,
    ROOT,
    SECRET,
    SESSION_COOKIE,
    SHOP_SECRET,
    Report,
    Table,
    bench_settings,
    median,
    session_cookie,
    sqlite_url,
)

START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Shop:
    name: str
    bare: str  # uvicorn factories
    wrapped: str
    path: str  # the protected page that is loaded
    demo: bool


DEMO = Shop("demo shop", "demo_app.shop:build_shop", "demo_app.app:create_app", "/admin", True)
SMALLEST = Shop(
    "smallest shop", "benchmarks.servers:minimal_bare", "benchmarks.servers:minimal_wrapped", PROTECTED, False
)


@dataclass(frozen=True)
class Plan:
    seconds: float
    rounds: int
    connections: int
    warmup: float
    shops: tuple[Shop, ...]
    workers: tuple[int, ...]


FULL = Plan(seconds=2.0, rounds=8, connections=32, warmup=1.5, shops=(DEMO, SMALLEST), workers=(1, 2))
QUICK = Plan(seconds=0.25, rounds=1, connections=4, warmup=0.0, shops=(SMALLEST,), workers=(1,))


@dataclass
class Load:
    rps: float
    p99_ms: float
    generator_cpu: float
    requests: int
    server_cpu_us: float = math.nan  # the server's CPU time (every process) per request


async def run(report: Report, *, quick: bool) -> None:
    plan = QUICK if quick else FULL
    pin = not quick and shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) >= 2
    table = Table(
        "3. End to end under uvicorn, loaded from another process on loopback",
        [
            "shop",
            "workers",
            "bare req/s",
            "wrapped req/s",
            "wrapped/bare",
            "ratio range",
            "bare p99 ms",
            "wrapped p99 ms",
            "bare CPU µs/req",
            "wrapped CPU µs/req",
        ],
    )
    generator_cpu: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        for shop in plan.shops:
            for workers in plan.workers:
                where = Path(folder) / f"{shop.name.split()[0]}-{workers}"
                where.mkdir()
                bare, wrapped = await pair(shop, workers, plan, where, pin and workers == 1, generator_cpu)
                # Each round's pair ran back to back, so its ratio is free of the slower drift of a
                # shared machine; the median of the ratios is the figure.
                ratios = [w.rps / b.rps for b, w in zip(bare, wrapped, strict=True)]
                ratio = median(ratios)
                table.add(
                    shop.name,
                    workers,
                    median([b.rps for b in bare]),
                    median([w.rps for w in wrapped]),
                    f"{ratio:.1%}",
                    f"{min(ratios):.0%}–{max(ratios):.0%}",
                    median([b.p99_ms for b in bare]),
                    median([w.p99_ms for w in wrapped]),
                    median([b.server_cpu_us for b in bare]),
                    median([w.server_cpu_us for w in wrapped]),
                )
                report.target(
                    f"end to end, {shop.name}, {workers} worker{'s' if workers > 1 else ''}",
                    "wrapped keeps ≥ 97% of bare req/s",
                    f"{ratio:.1%} (rounds {min(ratios):.0%}–{max(ratios):.0%})",
                    ratio >= 0.97,
                    # Rounds that disagree by more than a quarter cannot tell 97% from 90%.
                    inconclusive=max(ratios) - min(ratios) > 0.25,
                )
    table.notes += [
        f"{plan.connections} keep-alive connections; {plan.rounds} round(s) of {plan.seconds:g} s per "
        "server, bare and wrapped back to back in alternating order; figures are medians over the rounds, "
        "wrapped/bare the median of the rounds' ratios",
        "uvicorn runs through benchmarks/uvicorn_tcp.py: its own command line, with the 2-worker "
        "listening socket marked TCP (uvicorn#3149: without it every keep-alive request waits ~40 ms)",
        "1 worker: server pinned to CPU 0, load generator to CPU 1"
        if pin
        else "no CPU pinning (a quick run, or no taskset, or one CPU)",
        "2 workers: both workers and the load generator share the 2 cores" if 2 in plan.workers else "",
        "CPU µs/req: the server's CPU time (all its processes, from /proc) per request answered; "
        "steadier than req/s when other work shares the machine",
        f"load generator CPU use: at most {max(generator_cpu):.0%} of one core" if generator_cpu else "",
    ]
    table.notes = [n for n in table.notes if n]
    report.show(table)
    report.facts["uvicorn HTTP implementation"] = _http_implementation()


async def pair(
    shop: Shop, workers: int, plan: Plan, where: Path, pin: bool, generator_cpu: list[float]
) -> tuple[list[Load], list[Load]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "SHOP_SECRET": SHOP_SECRET,
        "TFA_SECRET_KEY": SECRET,
        "TFA_DEMO_DB": str(where / "demo.sqlite3"),
        "TFA_BENCH_DATABASE_URL": sqlite_url(where, "tfa.sqlite3"),
    }
    database = where / ("demo.sqlite3" if shop.demo else "tfa.sqlite3")
    if not shop.demo:  # the demo seeds its own admin's phone at start
        service = TwoFactor.from_settings(bench_settings(env["TFA_BENCH_DATABASE_URL"]))
        await service.set_phone("admin", "1", "1", "2015550123", confirmed=True)
        await service.close()
    cpus = "0" if pin else None
    async with serving([shop.bare, shop.wrapped], workers, env, where, cpus) as (bare_server, wrapped_server):
        bare_port, wrapped_port = bare_server.port, wrapped_server.port
        bare_cookie = await log_in(shop, bare_port, None)
        wrapped_cookie = await log_in(shop, wrapped_port, database)
        async with httpx.AsyncClient() as client:  # the setup is what we think it is
            for port, cookie, expected in (
                (bare_port, bare_cookie, 200),
                (wrapped_port, wrapped_cookie, 200),
                (wrapped_port, wrapped_cookie.split("; tfa_admin=")[0], 303),
            ):
                got = await client.get(
                    f"http://127.0.0.1:{port}{shop.path}", headers={"cookie": cookie, "accept": "text/html"}
                )
                if got.status_code != expected:
                    raise SystemExit(f"benchmark setup is wrong: {shop.path} answered {got.status_code}")
        load_cpus = "1" if pin else None
        if plan.warmup:
            for port, cookie in ((bare_port, bare_cookie), (wrapped_port, wrapped_cookie)):
                await load(port, shop.path, cookie, plan.connections, plan.warmup, load_cpus, env)
        bare: list[Load] = []
        wrapped: list[Load] = []
        for round_ in range(plan.rounds):
            runs = [(bare_server, bare_cookie, bare), (wrapped_server, wrapped_cookie, wrapped)]
            for served, cookie, results in runs if round_ % 2 == 0 else runs[::-1]:
                cpu = _cpu_seconds(served.pid)
                result = await load(
                    served.port, shop.path, cookie, plan.connections, plan.seconds, load_cpus, env
                )
                result.server_cpu_us = (_cpu_seconds(served.pid) - cpu) / max(1, result.requests) * 1e6
                results.append(result)
                generator_cpu.append(result.generator_cpu)
    return bare, wrapped


@asynccontextmanager
async def serving(
    factories: list[str], workers: int, env: dict[str, str], logs: Path, cpus: str | None
) -> AsyncIterator[list[Served]]:
    """uvicorns serving ``factories`` on free loopback ports (started together), stopped afterwards."""
    ports = [_free_port() for _ in factories]
    processes: list[tuple[str, asyncio.subprocess.Process, Path]] = []
    try:
        for factory, port in zip(factories, ports, strict=True):
            command = [
                *(["taskset", "-c", cpus] if cpus else []),
                sys.executable,
                "-m",
                "benchmarks.uvicorn_tcp",
                "--factory",
                factory,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--no-access-log",
                "--log-level",
                "info",
            ]
            log = logs / f"uvicorn-{port}.log"
            with log.open("wb") as output:
                process = await asyncio.create_subprocess_exec(
                    *command, cwd=ROOT, env=env, stdout=output, stderr=asyncio.subprocess.STDOUT
                )
            processes.append((factory, process, log))
        deadline = time.monotonic() + START_TIMEOUT
        for factory, process, log in processes:
            while _started(log) < workers:
                if process.returncode is not None or time.monotonic() > deadline:
                    raise SystemExit(f"uvicorn {factory} did not start:\n{_tail(log)}")
                await asyncio.sleep(0.05)
        yield [Served(port, process.pid) for port, (_, process, _) in zip(ports, processes, strict=True)]
    finally:
        for _, process, _ in processes:
            if process.returncode is None:
                process.terminate()
        for _, process, _ in processes:
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                process.kill()
                await asyncio.wait_for(process.wait(), timeout=15)


@dataclass(frozen=True)
class Served:
    port: int
    pid: int  # uvicorn's own process; with --workers, its workers are its children


def _cpu_seconds(pid: int) -> float:
    """CPU time used so far by ``pid`` and every process below it (uvicorn's workers)."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += _cpu_seconds(int(child))
    except (OSError, ValueError, IndexError):
        return total  # a process that just ended, or no /proc: what was counted
    return total


def _started(log: Path) -> int:
    return log.read_text(errors="replace").count("Application startup complete")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def log_in(shop: Shop, port: int, database: Path | None) -> str:
    """The Cookie header of a browser logged in to the shop and, given the database, past the challenge."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        if shop.demo:
            done = await client.post("/admin/login", data={"email": "admin@example.com", "password": "admin"})
            if done.status_code != 303:
                raise SystemExit(f"demo log-in failed: {done.status_code}")
            session = client.cookies[SESSION_COOKIE]
        else:
            session = session_cookie("1")
            client.cookies.set(SESSION_COOKIE, session)
        if database is None:
            return f"{SESSION_COOKIE}={session}"
        page = await client.get("/admin/_2fa/challenge", headers={"accept": "text/html"})
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        if token is None:
            raise SystemExit(f"no challenge page: {page.status_code} {page.text[:300]}")
        await client.post("/admin/_2fa/send", data={"csrf_token": token.group(1)})
        code = _latest_code(database)
        done = await client.post("/admin/_2fa/verify", data={"csrf_token": token.group(1), "code": code})
        proof = done.cookies.get("tfa_admin")
        if not proof:
            raise SystemExit(f"verify failed: {done.status_code} {done.text[:300]}")
        return f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}; tfa_admin={proof}"


def _latest_code(database: Path) -> str:
    with sqlite3.connect(database) as db:
        (body,) = db.execute("SELECT body FROM tfa_outbox ORDER BY id DESC LIMIT 1").fetchone()
    found = re.search(r"\b(\d{6})\b", body)
    assert found, body
    return found.group(1)


async def load(
    port: int, path: str, cookie: str, connections: int, seconds: float, cpus: str | None, env: dict[str, str]
) -> Load:
    command = [
        *(["taskset", "-c", cpus] if cpus else []),
        sys.executable,
        "-m",
        "benchmarks.load",
        "--port",
        str(port),
        "--path",
        path,
        "--cookie",
        cookie,
        "--connections",
        str(connections),
        "--seconds",
        str(seconds),
    ]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=seconds + 60)
    if process.returncode != 0:
        raise SystemExit(f"load generator failed: {err.decode(errors='replace')[-2000:]}")
    result: dict[str, Any] = json.loads(out)
    if set(result["statuses"]) != {"200"}:
        raise SystemExit(f"unexpected answers under load: {result['statuses']}")
    return Load(result["rps"], result["p99_ms"], result["generator_cpu"], result["requests"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _http_implementation() -> str:
    for module, name in (("httptools", "httptools"), ("h11", "h11")):
        try:
            __import__(module)
        except ImportError:
            continue
        return name + (" (uvicorn's auto choice)" if name == "httptools" else " (httptools not installed)")
    return "unknown"
