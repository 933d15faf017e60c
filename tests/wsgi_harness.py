"""The WSGI twin of ``harness.py``: the WSGI middleware around the tiny WSGI shop
(``wsgi_shop.py``), driven in-process by a synchronous ``httpx.Client`` over
``httpx.WSGITransport``, walking the flow like a browser. The ``make_wsgi`` and ``wsgi``
fixtures (conftest.py) build it; the service's coroutines run on the middleware's own loop
(``WSGIHarness.run``), where the pages use the same database."""

from __future__ import annotations

import re
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from tests.codes import latest_code
from tests.harness import FakeClock
from tfa_middleware import TwoFactor
from tfa_middleware.settings import Settings
from tfa_middleware.wsgi import TwoFactorWSGIMiddleware

T = TypeVar("T")


@dataclass
class WSGIHarness:
    settings: Settings
    service: TwoFactor
    app: TwoFactorWSGIMiddleware
    client: httpx.Client
    clock: FakeClock

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        result: T = self.app.run(coroutine)
        return result

    def browser(self, app: Any = None, **transport: Any) -> httpx.Client:
        """Another browser on the same app (or on ``app``, a WSGI app around it)."""
        wsgi = httpx.WSGITransport(app=app or self.app, **transport)
        return httpx.Client(transport=wsgi, base_url="http://shop.test")

    def as_user(self, user: str, session: str | None = None) -> dict[str, str]:
        headers = {"x-test-user": user, "accept": "text/html"}
        if session:
            headers["x-test-session"] = session
        return headers

    def csrf(self, headers: dict[str, str], page: str = "/admin/_2fa/challenge", client: Any = None) -> str:
        response = (client or self.client).get(page, headers=headers, follow_redirects=True)
        match = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
        assert match, f"no CSRF token on {page}: {response.status_code} {response.text[:300]}"
        return match.group(1)

    def latest_code(self) -> str:
        return self.run(latest_code(self.service.store))

    def send(self, headers: dict[str, str], prefix: str = "/admin", client: Any = None) -> httpx.Response:
        token = self.csrf(headers, f"{prefix}/_2fa/challenge", client)
        return (client or self.client).post(
            f"{prefix}/_2fa/send", data={"csrf_token": token}, headers=headers
        )

    def verify(
        self,
        headers: dict[str, str],
        code: str,
        prefix: str = "/admin",
        next_: str | None = None,
        client: Any = None,
    ) -> httpx.Response:
        token = self.csrf(headers, f"{prefix}/_2fa/challenge", client)
        url = f"{prefix}/_2fa/verify" + (f"?next={next_}" if next_ else "")
        return (client or self.client).post(url, data={"csrf_token": token, "code": code}, headers=headers)

    def pass_challenge(self, headers: dict[str, str], client: Any = None) -> httpx.Response:
        """Send and verify a code; the verify answer (its cookie is the proof)."""
        sent = self.send(headers, client=client)
        assert sent.status_code == 303, sent.text
        verified = self.verify(headers, self.latest_code(), client=client)
        assert verified.status_code == 303, verified.text
        return verified
