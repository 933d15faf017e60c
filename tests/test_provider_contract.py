"""One contract, every provider: the sandbox, Authy (its fake, over real loopback HTTP) and Twilio
Verify (its fake, in process) are held to the same behaviour by the same tests.

Each provider is built from a settings file by ``build_provider``, as the service builds it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import SECRET, FakeClock, config
from tfa_middleware import TwoFactor, settings_from_mapping
from tfa_middleware.providers import (
    AuthyProvider,
    CheckResult,
    Provider,
    SandboxProvider,
    Target,
    TwilioVerifyProvider,
    build_provider,
)
from tfa_middleware.providers.base import Purpose
from tfa_middleware.service import VerifyStatus
from tfa_middleware.settings import PROVIDER_NAMES, Settings
from tfa_middleware.store import Store
from tfa_middleware.store import enrollments as enrollment_rows
from tfa_middleware.store import outbox as outbox_rows
from tfa_middleware.testing import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FAKE_AUTHY_API_KEY,
    FAKE_SERVICE_SID,
    FakeAuthy,
    FakeTwilioVerify,
    serve,
)

ALICE = "+12015550123"
BOB = "+12015550124"
# Not a code for any provider: letters, a length outside 4-12, the 2015 path tricks, digits that
# are not ASCII, separators. None of them may reach a server.
MALFORMED = [
    "",
    "abcdef",
    "123",
    "1234567890123",
    "../sms",
    "..%2Fsms",
    "%2e%2e",
    "123456/../",
    "123456?x",
    "123456#",
    "1234567/1635",
    "１２３４５６７",  # full-width digits
    "١٢٣٤٥٦٧",  # Arabic-Indic digits
    "123 4567",
    "1234567\n",
    "+1234567",
    "-1234567",
    "0x12345",
]


@dataclass
class Subject:
    """A provider under test and what it takes to read the codes it delivers."""

    provider: Provider
    store: Store
    clock: FakeClock
    code_for: Callable[[Target], Awaitable[str]]
    server_requests: Callable[[], int]  # requests that reached a server (the sandbox has none)

    async def target(self, user: str = "alice", phone: str = ALICE) -> Target:
        target = Target("admin", user, phone, Purpose.LOGIN)
        provider_user_id = await self.provider.register(target)
        assert (provider_user_id is not None) == self.provider.needs_registration
        return Target("admin", user, phone, Purpose.LOGIN, provider_user_id)

    async def sent(self, target: Target, channel: str = "sms") -> str:
        result = await self.provider.send(target, channel)
        assert result.channel == channel
        return await self.code_for(target)


def _settings(tmp_path: Path, **provider: Any) -> Settings:
    return settings_from_mapping(config(tmp_path, provider=provider))


@pytest.fixture(params=["sandbox", "authy", "twilio_verify"])
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Subject]:
    clock = FakeClock()
    with ExitStack() as stack:
        client: httpx.AsyncClient | None = None
        if request.param == "sandbox":
            # production_mode false: the sandbox, whatever the name says
            settings = _settings(tmp_path, name="authy", api_key=FAKE_AUTHY_API_KEY)
            store = Store(settings.database_url.reveal())

            async def code_for(target: Target) -> str:
                messages = [m for m in await outbox_rows.latest(store, 50) if m.user_id == target.user_id]
                match = re.search(r"\b(\d{6,10})\b", messages[-1].body)
                assert match
                return match.group(1)

            server_requests: Callable[[], int] = lambda: 0  # noqa: E731 - no server: nothing can reach one
        else:
            fake: FakeAuthy | FakeTwilioVerify
            if request.param == "authy":
                fake = FakeAuthy(clock=clock)
                url = stack.enter_context(serve(fake))  # real loopback HTTP
                settings = _settings(
                    tmp_path, name="authy", production_mode=True, api_key=FAKE_AUTHY_API_KEY, api_url=url
                )
            else:
                fake = FakeTwilioVerify(clock=clock)
                client = httpx.AsyncClient(transport=httpx.ASGITransport(fake))
                settings = _settings(
                    tmp_path,
                    name="twilio_verify",
                    production_mode=True,
                    account_sid=FAKE_ACCOUNT_SID,
                    auth_token=FAKE_AUTH_TOKEN,
                    service_sid=FAKE_SERVICE_SID,
                    api_url="https://verify.fake",
                )
            store = Store(settings.database_url.reveal())
            remote = fake

            async def code_for(target: Target) -> str:
                return remote.last_code(target.phone)

            server_requests = lambda: len(remote.requests)  # noqa: E731
        provider = build_provider(settings, store, clock, client=client)
        try:
            yield Subject(provider, store, clock, code_for, server_requests)
        finally:
            await provider.close()
            await store.close()
            if client is not None:
                await client.aclose()


# --------------------------------------------------------------------------- the contract


async def test_the_right_code_is_approved_once(subject: Subject) -> None:
    target = await subject.target()
    code = await subject.sent(target)
    assert await subject.provider.check(target, code) is CheckResult.APPROVED
    assert await subject.provider.check(target, code) is CheckResult.REJECTED


async def test_a_wrong_code_is_rejected_and_the_right_one_still_works(subject: Subject) -> None:
    target = await subject.target()
    code = await subject.sent(target)
    wrong = str((int(code) + 1) % 10 ** len(code)).zfill(len(code))
    assert await subject.provider.check(target, wrong) is CheckResult.REJECTED
    assert await subject.provider.check(target, code) is CheckResult.APPROVED


async def test_a_code_before_any_send_is_rejected(subject: Subject) -> None:
    target = await subject.target()
    assert await subject.provider.check(target, "1234567"[: subject.provider.code_lengths[1]]) is (
        CheckResult.REJECTED
    )


async def test_a_malformed_code_is_rejected_without_reaching_the_server(subject: Subject) -> None:
    target = await subject.target()
    await subject.sent(target)
    before = subject.server_requests()
    for code in MALFORMED:
        assert await subject.provider.check(target, code) is CheckResult.REJECTED, code
    assert subject.server_requests() == before


async def test_a_code_works_only_for_the_user_it_was_sent_to(subject: Subject) -> None:
    alice = await subject.target("alice", ALICE)
    bob = await subject.target("bob", BOB)
    alice_code = await subject.sent(alice)
    bob_code = await subject.sent(bob)
    if alice_code != bob_code:  # one in a million: two random codes agree
        assert await subject.provider.check(bob, alice_code) is CheckResult.REJECTED
    assert await subject.provider.check(alice, alice_code) is CheckResult.APPROVED
    assert await subject.provider.check(bob, bob_code) is CheckResult.APPROVED


async def test_a_code_dies_after_ten_minutes(subject: Subject) -> None:
    target = await subject.target()
    code = await subject.sent(target)
    subject.clock.advance(601)
    assert await subject.provider.check(target, code) is CheckResult.REJECTED


async def test_after_a_resend_the_latest_code_works(subject: Subject) -> None:
    target = await subject.target()
    await subject.sent(target)
    subject.clock.advance(40)
    latest = await subject.sent(target)
    assert await subject.provider.check(target, latest) is CheckResult.APPROVED


async def test_parallel_checks_of_the_right_code_approve_exactly_once(subject: Subject) -> None:
    target = await subject.target()
    code = await subject.sent(target)
    results = await asyncio.gather(*(subject.provider.check(target, code) for _ in range(10)))
    assert results.count(CheckResult.APPROVED) == 1
    assert results.count(CheckResult.REJECTED) == 9


async def test_a_voice_call_delivers_a_working_code_where_calls_are_supported(subject: Subject) -> None:
    expected = {SandboxProvider: False, AuthyProvider: True, TwilioVerifyProvider: True}
    assert subject.provider.supports_call is expected[type(subject.provider)]
    if subject.provider.supports_call:
        target = await subject.target()
        code = await subject.sent(target, "call")
        assert await subject.provider.check(target, code) is CheckResult.APPROVED


async def test_the_provider_describes_itself_consistently(subject: Subject) -> None:
    provider = subject.provider
    assert provider.name in PROVIDER_NAMES
    low, high = provider.code_lengths
    assert 4 <= low <= 6 <= high <= 12
    assert provider.fingerprint is None or re.fullmatch(r"[0-9a-f]{16}", provider.fingerprint)
    for secret in (SECRET, FAKE_AUTHY_API_KEY, FAKE_AUTH_TOKEN):
        assert secret not in repr(provider)
        assert secret not in (provider.fingerprint or "")


async def test_close_twice_is_harmless(subject: Subject) -> None:
    target = await subject.target()
    await subject.sent(target)
    await subject.provider.close()
    await subject.provider.close()


async def test_through_the_service_a_code_lets_in_once_and_malformed_input_stays_local(
    subject: Subject, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    tfa = TwoFactor(settings, subject.store, subject.provider, clock=subject.clock)
    await tfa.set_phone("admin", "alice", "1", "2015550123", confirmed=True)
    await tfa.send_code("admin", "alice")
    row = await enrollment_rows.get(subject.store, "admin", "alice")
    assert row is not None
    code = await subject.code_for(Target("admin", "alice", ALICE, Purpose.LOGIN, row.provider_user_id))
    before = subject.server_requests()
    for malformed in ("../sms", "123456/../", "abcdefg"):
        assert (await tfa.verify_code("admin", "alice", malformed)).status is VerifyStatus.MALFORMED
    assert subject.server_requests() == before
    assert (await tfa.verify_code("admin", "alice", code)).status is VerifyStatus.APPROVED
    subject.clock.advance(120)  # past any delay the verify limits may impose
    assert (await tfa.verify_code("admin", "alice", code)).status is VerifyStatus.REJECTED


# --------------------------------------------------------------------------- building providers


@pytest.mark.parametrize("name", PROVIDER_NAMES)
async def test_without_production_mode_the_sandbox_is_used_whatever_the_name(
    tmp_path: Path, name: str
) -> None:
    settings = _settings(tmp_path, name=name, api_key="some-key")
    store = Store(settings.database_url.reveal())
    try:
        assert isinstance(build_provider(settings, store, FakeClock()), SandboxProvider)
    finally:
        await store.close()


async def test_production_mode_builds_the_named_remote_provider(tmp_path: Path) -> None:
    authy = _settings(tmp_path, name="authy", production_mode=True, api_key=FAKE_AUTHY_API_KEY)
    verify = _settings(
        tmp_path,
        name="twilio_verify",
        production_mode=True,
        account_sid=FAKE_ACCOUNT_SID,
        auth_token=FAKE_AUTH_TOKEN,
        service_sid=FAKE_SERVICE_SID,
    )
    store = Store(authy.database_url.reveal())
    try:
        built = build_provider(authy, store, FakeClock())
        assert isinstance(built, AuthyProvider)
        assert built.api_url == "https://api.authy.com"
        other = build_provider(verify, store, FakeClock())
        assert isinstance(other, TwilioVerifyProvider)
        assert other.api_url == "https://verify.twilio.com"
        await built.close()
        await other.close()
    finally:
        await store.close()
