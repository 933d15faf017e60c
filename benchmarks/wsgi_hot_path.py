"""1w. What one request costs in-process through the WSGI middleware (``tfa_middleware.wsgi``).

Many thousands of calls go straight into the WSGI app (no server, no client), each with a fresh
copy of an environ shaped like gunicorn's (its CGI keys and a browser's usual headers): the bare
WSGI app; the same wrapped by the WSGI middleware on an unprotected path; on a protected path with
a valid proof, with the demo's identity (the shop's Starlette session cookie) and with a plain
callable resolver. When Flask is installed, the same against a bare Flask app, and Flask's own
signed-cookie session as the peer: what Flask pays to open a session cookie on every request
(the Flask app with its session cookie minus the same app without one). Rounds are interleaved,
as in ``hot_path.py``; a case's figure is its best round's median.
"""

from __future__ import annotations

import importlib.util
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

import httpx

from tfa_middleware import Identity, TwoFactor
from tfa_middleware.store import outbox as outbox_rows
from tfa_middleware.wsgi import TwoFactorWSGIMiddleware

from .common import (
    PROTECTED,
    SESSION_COOKIE,
    SHOP_SECRET,
    UNPROTECTED,
    Report,
    Table,
    bench_settings,
    median,
    p99,
    session_cookie,
    sqlite_url,
)

SID = "bench-login-0123456789abcdefghij"
USER = "1"
WSGIApp = Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]


def fixed_identity(_scope: Any) -> Identity:
    """A plain resolver that does no identity work at all: the middleware's own floor."""
    return Identity(USER, SID)


def bare_app(_environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The smallest WSGI shop: every path answers a short text."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def environ_for(path: str, cookie: str) -> WSGIEnvironment:
    """An environ as gunicorn builds it for a browser's GET."""
    environ: WSGIEnvironment = {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": None,
        "wsgi.errors": None,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "SERVER_SOFTWARE": "gunicorn/23.0.0",
        "REQUEST_METHOD": "GET",
        "QUERY_STRING": "",
        "RAW_URI": path,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "bench",
        "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "HTTP_ACCEPT_LANGUAGE": "en-GB,en;q=0.5",
        "HTTP_ACCEPT_ENCODING": "gzip, deflate, br, zstd",
        "HTTP_CONNECTION": "keep-alive",
        "HTTP_UPGRADE_INSECURE_REQUESTS": "1",
        "HTTP_SEC_FETCH_DEST": "document",
        "HTTP_SEC_FETCH_MODE": "navigate",
        "HTTP_SEC_FETCH_SITE": "same-origin",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
    }
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    return environ


@dataclass
class Case:
    name: str
    app: WSGIApp
    path: str
    cookie: str
    baseline: int | None  # index of the case it is compared with; None for the bare cases


def timed(app: WSGIApp, path: str, cookie: str, n: int) -> list[float]:
    """``n`` GET requests straight into ``app``; the µs each one took (the body consumed)."""
    base = environ_for(path, cookie)
    statuses: set[str] = set()

    def start_response(status: str, _headers: Any, _exc_info: Any = None) -> Any:
        statuses.add(status)

    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        environ = dict(base)  # a server builds a new environ for every request
        start = clock()
        result = app(environ, start_response)
        for _chunk in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()
        samples.append((clock() - start) / 1000)
    if {s[:3] for s in statuses} != {"200"}:
        raise SystemExit(f"benchmark setup is wrong: {path} answered {sorted(statuses)}")
    return samples


def pass_challenge(app: TwoFactorWSGIMiddleware, session: str) -> str:
    """Walk the challenge like a browser through the WSGI middleware; return the proof cookie."""
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://bench") as client:
        client.cookies.set(SESSION_COOKIE, session)
        page = client.get("/admin/_2fa/challenge", headers={"accept": "text/html"})
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, page.text
        client.post("/admin/_2fa/send", data={"csrf_token": token.group(1)})
        body = app.run(outbox_rows.latest(app.service.store, 1))[0].body
        code = re.search(r"\b(\d{6})\b", body)
        assert code, body
        done = client.post("/admin/_2fa/verify", data={"csrf_token": token.group(1), "code": code.group(1)})
        return done.cookies["tfa_admin"]


def flask_apps() -> tuple[WSGIApp, str] | None:
    """A Flask app that answers PROTECTED and UNPROTECTED (and reads its session, as a Flask-Login
    view would), and the cookie of a logged-in Flask session; None without Flask."""
    if importlib.util.find_spec("flask") is None:
        return None
    from flask import Flask, session

    app = Flask("bench")
    app.secret_key = SHOP_SECRET  # the benchmarks' published shop secret (public_keys.py)

    def page() -> str:
        session.get("_user_id")  # the view reads its session, as Flask-Login's current_user does
        return "ok"

    app.add_url_rule(PROTECTED, "protected", page)
    app.add_url_rule(UNPROTECTED, "unprotected", page)
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    assert serializer is not None
    cookie = serializer.dumps({"_user_id": USER, "_id": SID})
    return app.wsgi_app, f"session={cookie}"


def run(report: Report, *, requests: int, rounds: int = 6) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = bench_settings(sqlite_url(folder, "wsgi.sqlite3"))
        service = TwoFactor.from_settings(settings)
        demo = TwoFactorWSGIMiddleware(bare_app, service=service)
        closing: list[TwoFactorWSGIMiddleware] = []
        try:
            demo.run(service.set_phone("admin", USER, "1", "2015550123", confirmed=True))
            plain = TwoFactorWSGIMiddleware(bare_app, service=service, resolvers={"admin": fixed_identity})
            session = session_cookie(USER, SID)
            proof = pass_challenge(demo, session)
            both = f"{SESSION_COOKIE}={session}; tfa_admin={proof}"
            cases = [
                Case("bare WSGI app, protected path", bare_app, PROTECTED, both, None),
                Case("bare WSGI app, unprotected path", bare_app, UNPROTECTED, both, None),
                Case("tfa WSGI: unprotected path", demo, UNPROTECTED, both, 1),
                Case("tfa WSGI: valid proof, session cookie resolver (demo)", demo, PROTECTED, both, 0),
                Case("tfa WSGI: valid proof, plain callable resolver", plain, PROTECTED, both, 0),
            ]
            flask = flask_apps()
            if flask is not None:
                flask_app, flask_cookie = flask
                # As a Flask shop is wrapped: YAML alone, the identity read from Flask's own cookie.
                flask_identity = {"from": "flask_session", "cookie": "session", "secret_key": SHOP_SECRET}
                flask_settings = bench_settings(sqlite_url(folder, "wsgi.sqlite3"), flask_identity)
                wrapped = TwoFactorWSGIMiddleware(flask_app, flask_settings)
                closing.append(wrapped)
                with_proof = f"{flask_cookie}; tfa_admin={proof}"
                cases += [
                    Case(
                        "bare Flask app, no session cookie", flask_app, PROTECTED, f"tfa_admin={proof}", None
                    ),
                    Case(
                        "Flask's session: a signed session cookie opened (peer)",
                        flask_app,
                        PROTECTED,
                        with_proof,
                        5,
                    ),
                    Case(
                        "tfa WSGI around Flask: valid proof, from: flask_session",
                        wrapped,
                        PROTECTED,
                        with_proof,
                        6,
                    ),
                ]
            results, best = _rounds(cases, requests, rounds)
        finally:
            for other in closing:
                other.close()
            demo.run(service.close())
            demo.close()
    _report(report, cases, results, best, requests // rounds * rounds, rounds)


def _rounds(cases: list[Case], requests: int, rounds: int) -> tuple[list[list[float]], list[float]]:
    for case in cases:  # warm caches (the revocation cache too) and the interpreter
        timed(case.app, case.path, case.cookie, max(100, requests // 10))
    results: list[list[float]] = [[] for _ in cases]
    round_medians: list[list[float]] = [[] for _ in cases]
    per_round = max(1, requests // rounds)
    order = list(range(len(cases)))
    for round_ in range(rounds):
        shift = round_ % len(cases)
        for index in order[shift:] + order[:shift]:
            case = cases[index]
            samples = timed(case.app, case.path, case.cookie, per_round)
            results[index].extend(samples)
            round_medians[index].append(median(samples))
    return results, [min(m) for m in round_medians]


def _report(
    report: Report, cases: list[Case], results: list[list[float]], best: list[float], total: int, rounds: int
) -> None:
    table = Table(
        f"1w. WSGI: in-process cost per request ({total:,} requests per case, µs)",
        ["case", "best round", "median", "p99", "added"],
    )
    added: dict[str, float] = {}
    for index, (case, samples) in enumerate(zip(cases, results, strict=True)):
        extra = "" if case.baseline is None else f"{best[index] - best[case.baseline]:.2f}"
        if extra:
            added[case.name] = float(extra)
        table.add(case.name, best[index], median(samples), p99(samples), extra)
    table.notes += [
        f"best round: the lowest of the {rounds} interleaved rounds' medians; median and p99: all samples",
        "added: the case's best-round median minus its baseline's (the bare app on the same path; "
        "for the peer, the same Flask app without its session cookie)",
        "around Flask the same middleware adds more than around the bare app: Flask's own work between "
        "two calls evicts the middleware's code and data from the CPU's caches (in isolation, the plain "
        "case measures ~3 µs right after another call of itself and ~7 µs right after a Flask call)",
    ]
    report.show(table)
    demo = added["tfa WSGI: valid proof, session cookie resolver (demo)"]
    plain = added["tfa WSGI: valid proof, plain callable resolver"]
    unprotected = added["tfa WSGI: unprotected path"]
    report.target("WSGI protected hot path, demo identity", "adds ≤ 5 µs", f"adds {demo:.2f} µs", demo <= 5)
    report.target(
        "WSGI protected hot path, plain resolver", "adds ≤ 5 µs", f"adds {plain:.2f} µs", plain <= 5
    )
    report.target("WSGI unprotected path", "adds < 1 µs", f"adds {unprotected:.2f} µs", unprotected < 1)
    peer = added.get("Flask's session: a signed session cookie opened (peer)")
    around = added.get("tfa WSGI around Flask: valid proof, from: flask_session")
    if peer is None or around is None:
        report.target(
            "WSGI hot path against Flask's session",
            "< ¼ of Flask's session cost",
            "Flask not installed",
            None,
        )
        return
    report.target(
        "WSGI hot path against Flask's session",
        "< ¼ of Flask's session cost",
        f"{around:.2f} µs vs ¼ × {peer:.2f} = {peer / 4:.2f} µs",
        around < peer / 4,
    )
