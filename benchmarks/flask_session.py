"""6. ``from: flask_session``: what the resolver adds per request, against Flask's own session cost.

The same Flask-Login session cookie, read three ways, many thousands of times each: by the resolver
with a warm cache (a returning browser: the header's parse and the decoded cookie are remembered),
by the resolver decoding it every time (a browser seen for the first time), and by Flask itself,
``app.session_interface.open_session(app, request)`` on a new request (what every Flask request
pays: the Cookie header parsed, the signature checked, the payload loaded). Making the request
object alone is measured too, so the session's own part shows. Calls are timed in interleaved
repeats; each figure is the best repeat's mean (other work on a shared machine only adds time).
"""

from __future__ import annotations

import hashlib
import time
import timeit
from collections.abc import Callable
from typing import Any

from flask import Flask
from werkzeug.test import EnvironBuilder

from tfa_middleware.identity.flask import FlaskSessionResolver

from .common import SHOP_SECRET, Report, Table

# Flask-Login's _id is a SHA-512 hex digest; Flask-WTF's token is random hex: neither compresses.
LOGIN = {
    "_user_id": "1",
    "_id": hashlib.sha512(b"203.0.113.7|b'Mozilla/5.0'").hexdigest(),
    "_fresh": True,
    "csrf_token": hashlib.sha256(b"csrf").hexdigest(),
}


def _cases() -> tuple[list[tuple[str, Callable[[], object]]], str]:
    app = Flask("bench")
    app.config["SECRET_KEY"] = SHOP_SECRET
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    value = serializer.dumps(LOGIN)
    header = f"session={value}; theme=dark"
    environ = EnvironBuilder(path="/admin/", environ_overrides={"HTTP_COOKIE": header}).get_environ()
    scope: dict[str, Any] = {"type": "http", "headers": [(b"cookie", header.encode("latin-1"))]}
    warm = FlaskSessionResolver("session", [SHOP_SECRET], clock=time.time)
    cold = FlaskSessionResolver("session", [SHOP_SECRET], clock=time.time)
    assert warm(scope) is not None

    def decode() -> object:
        cold._cache.clear()
        return cold(scope)

    def flask_open() -> object:
        return app.session_interface.open_session(app, app.request_class(environ))

    assert flask_open()["_user_id"] == "1"  # type: ignore[index]
    return [
        ("tfa flask_session resolver, warm cache (a returning browser)", lambda: warm(scope)),
        ("tfa flask_session resolver, decoding every time (a new cookie)", decode),
        ("Flask: a request object alone", lambda: app.request_class(environ)),
        ("Flask: open_session on a new request (its own session cost)", flask_open),
    ], header


def run(report: Report, *, number: int, repeats: int = 5) -> None:
    cases, header = _cases()
    best = {name: float("inf") for name, _ in cases}
    for _ in range(repeats):  # interleaved: drift on a shared machine hits every case alike
        for name, call in cases:
            best[name] = min(best[name], timeit.timeit(call, number=number) / number * 1e6)
    title = f"6. flask_session: cost per request ({number:,} calls × {repeats} repeats, µs)"
    table = Table(title, ["case", "µs"])
    for name, _ in cases:
        table.add(name, best[name])
    resolver = best[cases[0][0]]
    flask_session = best[cases[3][0]] - best[cases[2][0]]
    table.notes += [
        f"the Cookie header: {len(header)} bytes; the session: Flask-Login's keys and a CSRF token",
        f"Flask's own session cost: open_session minus the request object = {flask_session:.2f} µs",
    ]
    report.show(table)
    report.target(
        "flask_session resolver, warm cache, against Flask's own session cost",
        "< ¼ of Flask's",
        f"{resolver:.2f} µs vs ¼ × {flask_session:.2f} = {flask_session / 4:.2f} µs",
        resolver < flask_session / 4,
    )
