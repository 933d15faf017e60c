"""9 (opt-in, ``--only instructions``): instructions per request, counted by valgrind's callgrind.

On a shared two-core machine the timings of tables 1 and 1w move by a third from run to run; an
instruction count does not (the same code, inputs and environment give the same count whatever
else runs). So the ratios the targets ask for are also checked here in instructions: what the
middleware adds around Flask against what Flask's own session costs (table 1w's peer), what it
adds on the demo's hot path against Starlette's ``SessionMiddleware`` (table 1's peer), and on an
unprotected path.

Each case runs in a child process (``python -m benchmarks.instructions CASE N``: the set-up, 300
warm-up requests, then N requests) under ``valgrind --tool=callgrind``, once with N = ``FEW`` and
once with N = ``MANY``; the difference of the two totals over ``MANY - FEW`` is the count per
request, free of the start-up and set-up. Python's hash seed is fixed. Two children run at once.
A run takes 10 to 20 minutes; it needs valgrind (Debian's package), otherwise it says so.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .common import (
    PROTECTED,
    SESSION_COOKIE,
    SHOP_SECRET,
    UNPROTECTED,
    ASGIApp,
    Report,
    Table,
    bench_settings,
    sqlite_url,
)

FEW, MANY = 1_000, 11_000
WARM = 300
# A browser's usual request headers: the middleware's header scans pay for each of them.
BROWSER = [
    (b"host", b"shop.example"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    (b"accept", b"text/html,application/xhtml+xml"),
    (b"accept-language", b"en-GB,en;q=0.5"),
    (b"accept-encoding", b"gzip, deflate, br, zstd"),
    (b"connection", b"keep-alive"),
    (b"sec-fetch-dest", b"document"),
    (b"sec-fetch-mode", b"navigate"),
    (b"sec-fetch-site", b"same-origin"),
]
STEPPED = "tfa, demo, step-up rules elsewhere"  # issue 17: rules on the interface, none on the path
ASGI_CASES = (
    "bare, unprotected",
    "tfa, unprotected",
    "bare, protected",
    "tfa, demo",
    STEPPED,
    "SessionMiddleware",
)
WSGI_CASES = ("Flask, no session", "Flask, session", "tfa around Flask")
CASES = ASGI_CASES + WSGI_CASES


def run(report: Report) -> None:
    if shutil.which("valgrind") is None:
        report.target("instructions per request", "counted by callgrind", "valgrind not installed", None)
        return
    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = dict(zip(CASES, pool.map(per_request, CASES), strict=True))
    table = Table(
        f"9. Instructions per request (callgrind; ({MANY:,} − {FEW:,} requests) per case)",
        ["case", "instructions", "added"],
    )
    base = {
        "tfa, unprotected": "bare, unprotected",
        "tfa, demo": "bare, protected",
        STEPPED: "bare, protected",
        "SessionMiddleware": "bare, protected",
        "Flask, session": "Flask, no session",
        "tfa around Flask": "Flask, session",
    }
    added = {case: counts[case] - counts[base[case]] for case in base}
    for case in CASES:
        table.add(case, f"{counts[case]:,.0f}", f"{added[case]:,.0f}" if case in added else "")
    table.notes += [
        "added: the case's count minus its baseline's (the bare app on the same path; for the peers and "
        "for tfa around Flask, what they wrap)",
        "tfa, demo: the demo's identity (the shop's Starlette session cookie); tfa around Flask: from: "
        "flask_session; every tfa case with a valid proof and the revocation cache warm",
    ]
    report.show(table)
    stepped, plain = added[STEPPED], added["tfa, demo"]
    report.target(
        "ASGI demo hot path with step-up rules that do not hold the path (instructions)",
        "within 2% of the same without rules",
        f"{stepped:,.0f} vs {plain:,.0f} ({stepped / plain - 1:+.1%})",
        abs(stepped / plain - 1) <= 0.02,
    )
    for what, ours, peer, name in (
        (
            "WSGI around Flask, against Flask's session (instructions)",
            "tfa around Flask",
            "Flask, session",
            "Flask's session",
        ),
        (
            "ASGI demo hot path, against SessionMiddleware (instructions)",
            "tfa, demo",
            "SessionMiddleware",
            "SessionMiddleware's",
        ),
    ):
        mine, theirs = added[ours], added[peer]
        report.target(
            what,
            f"< ¼ of {name} cost",
            f"{mine:,.0f} vs ¼ × {theirs:,.0f} = {theirs / 4:,.0f} ({mine / theirs:.0%})",
            mine < theirs / 4,
        )


def per_request(case: str) -> float:
    return (_collected(case, MANY) - _collected(case, FEW)) / (MANY - FEW)


def _collected(case: str, n: int) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, "-m", "benchmarks.instructions", case, str(n)]
    done = subprocess.run(  # noqa: S603 - our own command line
        command, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONHASHSEED": "0"}
    )
    found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind failed for {case!r}: {done.stderr[-2000:]}")
    return int(found.group(1))


# --------------------------------------------------------------------------- the child


def child(case: str, n: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        if case in WSGI_CASES:
            _wsgi_child(case, n, folder)
        else:
            asyncio.run(_asgi_child(case, n, folder))


async def _asgi_child(case: str, n: int, folder: str) -> None:
    from starlette.middleware.sessions import SessionMiddleware

    from tfa_middleware import TwoFactor, TwoFactorMiddleware

    from .common import session_cookie, shop
    from .hot_path import SID, USER, pass_challenge, with_step_up

    # A revocation check interval longer than the run: the cache stays warm, no query is counted.
    settings = bench_settings(sqlite_url(folder)).model_copy(update={"revocation_check_seconds": 10**6})
    service = TwoFactor.from_settings(settings)
    try:
        await service.set_phone("admin", USER, "1", "2015550123", confirmed=True)
        demo = TwoFactorMiddleware(shop(), service=service)
        stepped = TwoFactorMiddleware(
            shop(), service=TwoFactor(with_step_up(settings), service.store, service.provider)
        )
        session = session_cookie(USER, SID)
        proof = await pass_challenge(demo, service, session)
        headers = [*BROWSER, (b"cookie", f"{SESSION_COOKIE}={session}; tfa_admin={proof}".encode())]
        apps: dict[str, tuple[ASGIApp, str]] = {
            "bare, unprotected": (shop(), UNPROTECTED),
            "tfa, unprotected": (demo, UNPROTECTED),
            "bare, protected": (shop(), PROTECTED),
            "tfa, demo": (demo, PROTECTED),
            STEPPED: (stepped, PROTECTED),
            "SessionMiddleware": (SessionMiddleware(shop(), secret_key=SHOP_SECRET), PROTECTED),
        }
        app, path = apps[case]

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(_message: dict[str, Any]) -> None:
            return None

        for _ in range(WARM + n):
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
            await app(scope, receive, send)
    finally:
        await service.close()


def _wsgi_child(case: str, n: int, folder: str) -> None:
    from tfa_middleware import TwoFactor
    from tfa_middleware.wsgi import TwoFactorWSGIMiddleware

    from .common import session_cookie
    from .wsgi_hot_path import SID, USER, WSGIApp, bare_app, flask_apps, pass_challenge, timed

    settings = bench_settings(sqlite_url(folder)).model_copy(update={"revocation_check_seconds": 10**6})
    service = TwoFactor.from_settings(settings)
    demo = TwoFactorWSGIMiddleware(bare_app, service=service)
    closing: list[Callable[[], None]] = [demo.close]
    try:
        demo.run(service.set_phone("admin", USER, "1", "2015550123", confirmed=True))
        proof = pass_challenge(demo, session_cookie(USER, SID))
        found = flask_apps()
        if found is None:
            raise SystemExit("Flask is not installed")
        flask_app, flask_cookie = found
        identity = {"from": "flask_session", "cookie": "session", "secret_key": SHOP_SECRET}
        wrapped_settings = bench_settings(sqlite_url(folder), identity).model_copy(
            update={"revocation_check_seconds": 10**6}
        )
        wrapped = TwoFactorWSGIMiddleware(flask_app, wrapped_settings)
        closing.append(wrapped.close)
        apps: dict[str, tuple[WSGIApp, str]] = {
            "Flask, no session": (flask_app, f"tfa_admin={proof}"),
            "Flask, session": (flask_app, f"{flask_cookie}; tfa_admin={proof}"),
            "tfa around Flask": (wrapped, f"{flask_cookie}; tfa_admin={proof}"),
        }
        app, cookie = apps[case]
        timed(app, PROTECTED, cookie, WARM)
        timed(app, PROTECTED, cookie, n)
    finally:
        demo.run(service.close())
        for close in reversed(closing):
            close()


if __name__ == "__main__":
    child(sys.argv[1], int(sys.argv[2]))
