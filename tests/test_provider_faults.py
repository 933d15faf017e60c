"""A provider that is down, slow, failing, rate limiting or talking nonsense while users send and
check codes through the middleware's pages: nobody gets in, the page is a clear 503, and the
middleware goes on serving everyone else. The fakes run as real servers on the loopback interface.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import ADMIN_PHONE, RELAXED_LIMITS, FakeClock, Harness, QueryCounter, config, shop_app
from tfa_middleware import TwoFactor, TwoFactorMiddleware, settings_from_mapping
from tfa_middleware.providers import build_provider
from tfa_middleware.store import Store
from tfa_middleware.store import events as event_rows
from tfa_middleware.testing import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FAKE_AUTHY_API_KEY,
    FAKE_SERVICE_SID,
    FakeAuthy,
    FakeTwilioVerify,
    serve,
)

PHONE = "+" + "".join(ADMIN_PHONE)
TIMEOUT = 1.0  # generous: a loaded 2-core machine must not turn a normal answer into a timeout


@dataclass
class Shop:
    harness: Harness
    fake: FakeAuthy | FakeTwilioVerify
    stop_server: Callable[[], None]

    async def send(self, user: str = "alice") -> httpx.Response:
        self.harness.clock.advance(61)  # past the resend cooldown: these tests are about the provider
        return await self.harness.send(self.harness.as_user(user))

    async def verify(self, code: str, user: str = "alice") -> httpx.Response:
        return await self.harness.verify(self.harness.as_user(user), code)

    async def reaches_orders(self, user: str = "alice") -> bool:
        response = await self.harness.client.get("/admin/orders", headers=self.harness.as_user(user))
        return response.status_code == 200


def provider_section(name: str, url: str) -> dict[str, Any]:
    common = {"name": name, "production_mode": True, "api_url": url, "timeout_seconds": TIMEOUT}
    if name == "authy":
        return {**common, "api_key": FAKE_AUTHY_API_KEY}
    return {
        **common,
        "account_sid": FAKE_ACCOUNT_SID,
        "auth_token": FAKE_AUTH_TOKEN,
        "service_sid": FAKE_SERVICE_SID,
    }


@pytest.fixture(params=["authy", "twilio_verify"])
async def shop(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Shop]:
    fake: FakeAuthy | FakeTwilioVerify = (
        FakeAuthy(clock=clock) if request.param == "authy" else FakeTwilioVerify(clock=clock)
    )
    with ExitStack() as servers:
        url = servers.enter_context(serve(fake))
        settings = settings_from_mapping(
            config(tmp_path, provider=provider_section(request.param, url))
        ).model_copy(update={"limits": RELAXED_LIMITS})
        store = Store(settings.database_url.reveal())
        service = TwoFactor(settings, store, build_provider(settings, store, clock), clock=clock)
        middleware = TwoFactorMiddleware(shop_app(), service=service, clock=clock)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url="http://shop.test")
        harness = Harness(settings, service, middleware, client, clock, QueryCounter())
        await service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
        await service.set_phone("admin", "bob", "1", "2015550124", confirmed=True)
        try:
            yield Shop(harness, fake, servers.close)
        finally:
            await client.aclose()
            await service.close()


FAULTS: dict[str, Callable[[Shop], None]] = {
    "down": lambda shop: shop.stop_server(),
    "timing-out": lambda shop: setattr(shop.fake.faults, "latency_seconds", TIMEOUT + 0.5),
    "5xx": lambda shop: setattr(shop.fake.faults, "status", 500),
    "502-html": lambda shop: setattr(shop.fake.faults, "status", 502),
    "429": lambda shop: setattr(shop.fake.faults, "rate_limited", True),
    "garbage": lambda shop: setattr(shop.fake.faults, "garbage", True),
    "dropped": lambda shop: setattr(shop.fake.faults, "drop", True),
    "truncated": lambda shop: setattr(
        shop.fake.faults,
        "answer",
        (200, b'{"message":"Token is valid.","token":"is valid","succ', "application/json"),
    ),
}


# The audit event names the kind of failure; a 429 is rate limiting, the rest are "unavailable"
# (Authy's older documentation makes a 503 a rate limit too, which the fault table does not use).
EXPECTED_ERRORS = {fault: {"ProviderUnavailable"} for fault in FAULTS} | {"429": {"ProviderRateLimited"}}


def unavailable(response: httpx.Response) -> bool:
    return response.status_code == 503 and "Temporarily unavailable" in response.text


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_failing_send_is_a_clear_503_and_sends_nothing(shop: Shop, fault: str) -> None:
    FAULTS[fault](shop)
    response = await shop.send()
    assert unavailable(response), response.text
    assert "tfa_admin" not in response.cookies
    assert shop.fake.outbox == []
    assert not await shop.reaches_orders()
    events = await event_rows.latest(shop.harness.service.store)
    assert "code_sent" not in [e.kind for e in events]  # no claim in the audit log that a code went out
    [failed] = [e for e in events if e.kind == "send_failed"]
    assert failed.user_id == "alice"
    assert failed.detail is not None
    assert failed.detail["error"] in EXPECTED_ERRORS[fault]


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_failing_check_lets_nobody_in_even_with_the_right_code(shop: Shop, fault: str) -> None:
    sent = await shop.send()
    assert sent.status_code == 303, sent.text
    code = shop.fake.last_code(PHONE)
    FAULTS[fault](shop)
    response = await shop.verify(code)
    assert unavailable(response), response.text
    assert "tfa_admin" not in response.cookies
    assert "tfa_admin" not in shop.harness.client.cookies
    assert not await shop.reaches_orders()
    events = await event_rows.latest(shop.harness.service.store)
    assert "verify_ok" not in [e.kind for e in events]
    [failed] = [e for e in events if e.kind == "verify_error"]
    assert failed.user_id == "alice"
    assert failed.detail is not None
    assert failed.detail["error"] in EXPECTED_ERRORS[fault]


async def test_once_the_provider_is_back_the_same_user_gets_in(shop: Shop) -> None:
    await shop.send()
    code = shop.fake.last_code(PHONE)
    shop.fake.faults.status = 503
    assert unavailable(await shop.verify(code))
    shop.fake.faults.clear()
    response = await shop.verify(code)
    assert response.status_code == 303
    assert "tfa_admin" in response.cookies
    assert await shop.reaches_orders()


async def test_a_slow_provider_holds_up_only_the_request_that_waits_for_it(shop: Shop) -> None:
    await shop.send("bob")
    bob_code = shop.fake.last_code("+12015550124")
    assert (await shop.verify(bob_code, "bob")).status_code == 303  # bob is in before the trouble starts
    shop.fake.faults.latency_seconds = TIMEOUT + 0.5
    finished: list[str] = []

    async def slow_send() -> httpx.Response:
        response = await shop.send("alice")
        finished.append("alice's send")
        return response

    async def others() -> list[int]:
        client = shop.harness.client
        statuses = [
            (await client.get("/", headers=shop.harness.as_user("carol"))).status_code,
            (await client.get("/admin/login")).status_code,
            (await client.get("/admin/orders", headers=shop.harness.as_user("bob"))).status_code,
        ]
        finished.append("the others")
        return statuses

    alice, statuses = await asyncio.gather(slow_send(), others())
    assert statuses == [200, 200, 200]
    assert finished == ["the others", "alice's send"]
    assert unavailable(alice)


async def test_bad_credentials_tell_the_admin_in_the_log_and_the_user_nothing_more(
    shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    if isinstance(shop.fake, FakeAuthy):
        shop.fake.api_keys = ("a-rotated-key",)
        advice = "check provider.api_key"
    else:
        shop.fake.auth_token = "a-rotated-token"
        advice = "check provider.account_sid, api_key_sid and auth_token"
    with caplog.at_level(logging.ERROR, logger="tfa_middleware"):
        response = await shop.send()
    assert unavailable(response)
    assert advice not in response.text
    assert advice in caplog.text
    for secret in (FAKE_AUTHY_API_KEY, FAKE_AUTH_TOKEN):
        assert secret not in caplog.text
        assert secret not in response.text


async def test_the_challenge_page_offers_a_call_and_the_call_delivers_a_working_code(shop: Shop) -> None:
    # The control for the faults above: the same pages, the same provider, nothing broken.
    headers = shop.harness.as_user("alice")
    page = await shop.harness.client.get("/admin/_2fa/challenge", headers=headers)
    assert 'name="channel" value="call"' in page.text
    token = await shop.harness.csrf(headers)
    shop.harness.clock.advance(61)
    called = await shop.harness.client.post(
        "/admin/_2fa/send", data={"csrf_token": token, "channel": "call"}, headers=headers
    )
    assert called.status_code == 303, called.text
    assert [sent.channel for sent in shop.fake.outbox] == ["call"]
    response = await shop.verify(shop.fake.last_code(PHONE))
    assert response.status_code == 303
    assert "tfa_admin" in response.cookies
    assert await shop.reaches_orders()
