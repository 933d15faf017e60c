"""6: what ``from: django_session`` costs per request, beside django-otp (the peer).

Django is configured in this process (a SQLite file in a temporary folder; django-otp installed)
and a staff user logged in the way Django's login leaves a session (db engine). Then, interleaved
in rounds like the hot path (``hot_path.timed``; the best round's median of each case):

- the layer alone: the smallest Starlette shop, bare and behind the middleware with
  ``django_session`` and a valid proof; the resolver's cache is warm, so the difference is the
  whole layer's cost (path match, the session key from the Cookie header, two dictionary look-ups,
  the proof's check), with no query and no thread hop;
- a staff page under /admin/ through Django's own ASGI handler (sessions and auth middleware; the
  page reads ``request.user`` as every admin view does): bare; with django-otp's
  ``OTPMiddleware`` and a verified device in the session (its one query per request for the
  device); behind our middleware (warm cache); and behind it with ``cache_seconds: 0``, Django's
  session read again in a worker thread on every request (what a hand-written ``callable`` does).

Queries are counted on Django's database (every SELECT on every connection Django opens) and on
the middleware's own (SQLAlchemy): the layer must add none.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event
from starlette.concurrency import run_in_threadpool

from tfa_middleware import TwoFactor, TwoFactorMiddleware
from tfa_middleware.store import outbox as outbox_rows

from .common import PROTECTED, ASGIApp, Report, Table, bench_settings, median, p99, shop, sqlite_url

PAGE = "/admin/page/"
PASSWORD = "bench password 0123"


async def timed(app: ASGIApp, path: str, cookie: str, n: int) -> list[float]:
    """``n`` GET requests straight into ``app``; the µs each took. As ``hot_path.timed``, but the
    body is received once and then the connection stays open, as a server's does: Django's handler
    listens for the disconnect while it answers, and refuses a second request message."""
    headers = [(b"host", b"bench"), (b"accept", b"text/html"), (b"user-agent", b"bench")]
    headers.append((b"cookie", cookie.encode()))
    statuses: set[int] = set()
    open_forever = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    samples = []
    for _ in range(n):

        async def receive(given: list[bool] = [False]) -> dict[str, Any]:  # noqa: B006 - one per request
            if not given[0]:
                given[0] = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await open_forever.wait()
            return {"type": "http.disconnect"}

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
    if statuses != {200}:
        raise SystemExit(f"benchmark setup is wrong: {path} answered {sorted(statuses)}")
    return samples


def setup_django(folder: Path) -> tuple[Any, str, str]:
    """Django configured and migrated; a staff user with a django-otp device; the session key of
    their login, and of the same login verified by django-otp."""
    import django
    from django.conf import settings

    from . import django_site

    settings.configure(**django_site.settings(folder))
    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_static.models import StaticDevice

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("staff", password=PASSWORD, is_staff=True)
    device = StaticDevice.objects.create(user=user, name="bench", confirmed=True)
    keys = []
    for extra in ({}, {DEVICE_ID_SESSION_KEY: device.persistent_id}):
        store = SessionStore()
        store.update(
            {
                "_auth_user_id": str(user.pk),
                "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
                "_auth_user_hash": user.get_session_auth_hash(),
                **extra,
            }
        )
        store.save()
        keys.append(store.session_key)
    return user, keys[0], keys[1]


def django_handlers() -> tuple[ASGIApp, ASGIApp]:
    """Django's ASGI handler as the shop has it, and the same with django-otp's middleware."""
    from django.core.handlers.asgi import ASGIHandler
    from django.test import override_settings

    from .django_site import OTP_MIDDLEWARE

    bare = ASGIHandler()
    with override_settings(MIDDLEWARE=OTP_MIDDLEWARE):
        otp = ASGIHandler()  # reads MIDDLEWARE when it is built
    return bare, otp


def count_django_selects(counter: list[int]) -> None:
    from django.db.backends.signals import connection_created

    def trace(statement: str) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            counter[0] += 1

    def created(connection: Any, **_: Any) -> None:
        connection.connection.set_trace_callback(trace)

    connection_created.connect(created, weak=False)


async def proof_for(app: ASGIApp, service: TwoFactor, session_key: str) -> str:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        client.cookies.set("sessionid", session_key)
        page = await client.get("/admin/_2fa/challenge", headers={"accept": "text/html"})
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, page.text
        await client.post("/admin/_2fa/send", data={"csrf_token": token.group(1)})
        code = re.search(r"\b(\d{6})\b", (await outbox_rows.latest(service.store, 1))[0].body)
        assert code
        done = await client.post(
            "/admin/_2fa/verify", data={"csrf_token": token.group(1), "code": code.group(1)}
        )
        return done.cookies["tfa_admin"]


async def run(report: Report, *, requests: int, rounds: int = 6) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        # Django's ORM may not run on the event loop (SynchronousOnlyOperation): a thread, as the shop's.
        user, key, verified_key = await run_in_threadpool(setup_django, folder)
        # Warm: neither the resolver's cache nor the revocation cache expires during the rounds. With
        # the default cache_seconds (5), a returning browser costs one read (the last row's cost)
        # every 5 seconds; the revocation check, one query every revocation_check_seconds.
        identity = {"from": "django_session", "require": ["is_staff"], "cache_seconds": 300}
        warm = {"revocation_check_seconds": 300}
        settings = bench_settings(sqlite_url(name), identity).model_copy(update=warm)
        cold = bench_settings(sqlite_url(name), {**identity, "cache_seconds": 0}).model_copy(update=warm)
        service = TwoFactor.from_settings(settings)
        try:
            await service.set_phone("admin", str(user.pk), "1", "2015550123", confirmed=True)
            layer = TwoFactorMiddleware(shop(), service=service)
            proof = await proof_for(layer, service, key)
            django_bare, django_otp = django_handlers()
            wrapped = TwoFactorMiddleware(django_bare, service=service)
            uncached = TwoFactorMiddleware(
                django_bare, service=TwoFactor(cold, service.store, service.provider)
            )
            ours = f"sessionid={key}; tfa_admin={proof}"
            cases: list[tuple[str, ASGIApp, str, str, int | None]] = [
                ("bare Starlette app, protected path", shop(), PROTECTED, ours, None),
                ("tfa: valid proof, django_session, warm cache", layer, PROTECTED, ours, 0),
                ("bare Django: a staff page under /admin/", django_bare, PAGE, ours, None),
                (
                    "Django + django-otp OTPMiddleware (peer)",
                    django_otp,
                    PAGE,
                    f"sessionid={verified_key}",
                    2,
                ),
                ("Django + tfa, django_session, warm cache", wrapped, PAGE, ours, 2),
                ("Django + tfa, django_session, cache_seconds: 0", uncached, PAGE, ours, 2),
            ]
            django_selects, tfa_queries = [0], [0]
            count_django_selects(django_selects)

            def count(*_: Any) -> None:
                tfa_queries[0] += 1

            event.listen(service.store.engine.sync_engine, "before_cursor_execute", count)
            for _, app, path, cookie, _ in cases:  # warm the caches and the interpreter
                await timed(app, path, cookie, max(50, requests // 20))
            medians: list[list[float]] = [[] for _ in cases]
            samples: list[list[float]] = [[] for _ in cases]
            selects = [0] * len(cases)
            per_round = max(1, requests // rounds)
            for round_ in range(rounds):
                for index in [*range(len(cases))][round_ % len(cases) :] + [*range(len(cases))][
                    : round_ % len(cases)
                ]:
                    _, app, path, cookie, _ = cases[index]
                    before = django_selects[0], tfa_queries[0]
                    taken = await timed(app, path, cookie, per_round)
                    samples[index].extend(taken)
                    medians[index].append(median(taken))
                    selects[index] += django_selects[0] - before[0] + tfa_queries[0] - before[1]
            # The WSGI middleware reads Django's session in the server's thread: a thread here too
            # (Django's ORM refuses a thread whose event loop runs), and a service of its own.
            under_wsgi = await run_in_threadpool(wsgi_layer, settings, ours, requests, rounds)
        finally:
            await service.close()
    per_case = per_round * rounds
    table = Table(
        f"6. Django: the layer and the peer per request ({per_case:,} requests per case, µs)",
        ["case", "best round", "median", "p99", "added", "queries/request"],
    )
    best = [min(m) for m in medians]
    added: dict[str, float] = {}
    for index, (what, _, _, _, baseline) in enumerate(cases):
        extra = "" if baseline is None else f"{best[index] - best[baseline]:.2f}"
        if extra:
            added[what] = float(extra)
        table.add(
            what,
            best[index],
            median(samples[index]),
            p99(samples[index]),
            extra,
            f"{selects[index] / per_case:.2f}",
        )
    table.notes += [
        "added: the case's best-round median minus its bare row's; queries: Django's SELECTs and the "
        "middleware's own, per request",
        "the Django rows go through Django's ASGI handler (a thread hop per request), so their spread "
        "is wider than the layer's own cost: the first two rows measure the layer alone",
    ]
    wsgi_bare, wsgi_layer_best, wsgi_queries = under_wsgi
    wsgi_added = wsgi_layer_best - wsgi_bare
    table.add("bare WSGI app, protected path", wsgi_bare, "", "", "", "0.00")
    table.add(
        "tfa WSGI: valid proof, django_session, warm cache",
        wsgi_layer_best,
        "",
        "",
        f"{wsgi_added:.2f}",
        f"{wsgi_queries:.2f}",
    )
    report.show(table)
    report.target(
        "django_session under WSGI, warm cache: the whole layer",
        "adds ≤ 20 µs and no query",
        f"adds {wsgi_added:.2f} µs, {wsgi_queries:.2f} queries added",
        wsgi_added <= 20 and wsgi_queries <= 0,
    )
    layer_added = added["tfa: valid proof, django_session, warm cache"]
    peer = added["Django + django-otp OTPMiddleware (peer)"]
    layer_queries = (selects[1] + selects[4] - selects[2]) / per_case
    report.target(
        "django_session, warm cache: the whole layer",
        "adds ≤ 20 µs and no query",
        f"adds {layer_added:.2f} µs, {max(layer_queries, 0):.2f} queries added",
        layer_added <= 20 and layer_queries <= 0,
    )
    report.target(
        "django_session, warm cache, against django-otp",
        "an order of magnitude under django-otp's",
        f"{layer_added:.2f} µs vs {peer:.2f} µs",
        layer_added * 10 <= peer,
    )


def wsgi_layer(settings: Any, cookie: str, requests: int, rounds: int) -> tuple[float, float, float]:
    """The layer under WSGI: the bare WSGI app and the same behind ``TwoFactorWSGIMiddleware``
    with ``django_session`` and a valid proof, interleaved; the best round's median of each (µs)
    and the middleware's queries per request."""
    from tfa_middleware.wsgi import TwoFactorWSGIMiddleware

    from .wsgi_hot_path import bare_app
    from .wsgi_hot_path import timed as wsgi_timed

    layer = TwoFactorWSGIMiddleware(bare_app, settings)
    queries = [0]

    def count(*_: Any) -> None:
        queries[0] += 1

    event.listen(layer.service.store.engine.sync_engine, "before_cursor_execute", count)
    apps = (bare_app, layer)
    try:
        for app in apps:  # warm: the resolver's cache, the revocation cache, the interpreter
            wsgi_timed(app, PROTECTED, cookie, max(50, requests // 20))
        before = queries[0]
        best = [float("inf"), float("inf")]
        per_round = max(1, requests // rounds)
        for round_ in range(rounds):
            for index in (0, 1) if round_ % 2 == 0 else (1, 0):
                best[index] = min(best[index], median(wsgi_timed(apps[index], PROTECTED, cookie, per_round)))
        return best[0], best[1], (queries[0] - before) / (per_round * rounds)
    finally:
        layer.close()
