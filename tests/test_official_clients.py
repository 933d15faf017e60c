"""Clients nobody here wrote, against our fakes: the official ``authy`` 2.2.6 and ``twilio`` packages.

If the fakes answered something the real services never would, these clients would notice; and
where a client decides "valid", our providers must decide the same (or refuse more, never less).
Both packages are synchronous (``requests``), so these are plain functions over real loopback HTTP.
Neither emits a warning on Python 3.11 today, so no warning filter is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from authy import AuthyFormatException
from authy.api import AuthyApiClient
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from tests.codes import other_code
from tests.harness import SECRET, FakeClock
from tfa_middleware.errors import ProviderError
from tfa_middleware.providers import AuthyProvider, CheckResult, Target, TwilioVerifyProvider
from tfa_middleware.providers.base import Purpose
from tfa_middleware.settings import ProviderSettings, Secret
from tfa_middleware.testing import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FAKE_AUTHY_API_KEY,
    FAKE_SERVICE_SID,
    FakeAuthy,
    FakeTwilioVerify,
    serve,
)

PHONE = "+12015550123"


@pytest.fixture
def fake_authy() -> FakeAuthy:
    return FakeAuthy()


@pytest.fixture
def authy_url(fake_authy: FakeAuthy) -> Iterator[str]:
    with serve(fake_authy) as url:
        yield url


@pytest.fixture
def official_authy(authy_url: str) -> AuthyApiClient:
    return AuthyApiClient(FAKE_AUTHY_API_KEY, api_uri=authy_url)


def our_check(url: str, authy_id: str, code: str) -> CheckResult | str:
    """Our provider's verdict on the same question, or the name of the error it raised."""

    async def ask() -> CheckResult | str:
        settings = ProviderSettings(
            name="authy", production_mode=True, api_key=Secret(FAKE_AUTHY_API_KEY), api_url=url
        )
        provider = AuthyProvider(settings, Secret(SECRET))
        try:
            return await provider.check(Target("admin", "alice", PHONE, Purpose.LOGIN, authy_id), code)
        except ProviderError as exc:
            return type(exc).__name__
        finally:
            await provider.close()

    return asyncio.run(ask())


# --------------------------------------------------------------------------- authy 2.2.6


def test_authy_python_registers_texts_and_verifies_against_the_fake(
    official_authy: AuthyApiClient, fake_authy: FakeAuthy, authy_url: str
) -> None:
    user = official_authy.users.create("alice@example.com", "2015550123", 1)
    assert user.ok()
    assert user.id == 1635
    assert user.errors() == {}
    sms = official_authy.users.request_sms(user.id, {"force": True})
    assert sms.ok()
    assert not sms.ignored()
    assert sms["cellphone"] == "+1-XXX-XXX-XX23"
    code = fake_authy.last_code(PHONE)
    wrong = "0000000" if code != "0000000" else "1111111"

    token = official_authy.tokens.verify(user.id, wrong)
    assert not token.ok()
    assert token.errors() == {"message": "Token is invalid"}
    assert our_check(authy_url, "1635", wrong) is CheckResult.REJECTED

    assert official_authy.tokens.verify(user.id, code).ok()
    reused = official_authy.tokens.verify(user.id, code)
    assert not reused.ok()
    assert reused.errors() == {"message": "Token is invalid. Token was used recently"}
    assert our_check(authy_url, "1635", code) is CheckResult.REJECTED


def prepare(fake: FakeAuthy, clock: FakeClock, url: str, scenario: str) -> tuple[str, str]:
    """Bring a fresh fake into ``scenario``; return the (Authy id, token) to verify."""
    client = AuthyApiClient(FAKE_AUTHY_API_KEY, api_uri=url)
    alice = str(client.users.create("alice@example.com", "2015550123", 1).id)
    client.users.request_sms(alice, {"force": True})
    code = fake.last_code(PHONE)
    if scenario == "wrong":
        return alice, "0000000" if code != "0000000" else "1111111"
    if scenario == "reused":
        assert client.tokens.verify(alice, code).ok()
    elif scenario == "other-user":
        return str(client.users.create("bob@example.com", "2015550124", 1).id), code
    elif scenario == "unknown-user":
        return "9999", code
    elif scenario == "expired":
        clock.advance(601)
    return alice, code


@pytest.mark.parametrize("scenario", ["right", "wrong", "reused", "other-user", "unknown-user", "expired"])
def test_token_ok_and_our_provider_agree_on_every_answer_of_the_fake(scenario: str) -> None:
    # A check spends the token, so each client gets its own fake, brought into the same state.
    theirs_clock, ours_clock = FakeClock(), FakeClock()
    theirs_fake, ours_fake = FakeAuthy(clock=theirs_clock), FakeAuthy(clock=ours_clock)
    with serve(theirs_fake) as theirs_url, serve(ours_fake) as ours_url:
        authy_id, token = prepare(theirs_fake, theirs_clock, theirs_url, scenario)
        theirs = AuthyApiClient(FAKE_AUTHY_API_KEY, api_uri=theirs_url).tokens.verify(authy_id, token).ok()
        ours = our_check(ours_url, *prepare(ours_fake, ours_clock, ours_url, scenario))
    assert theirs is (scenario == "right")
    assert (ours is CheckResult.APPROVED) is theirs
    if scenario == "unknown-user":
        assert ours == "ProviderUserNotFound"  # the service then registers the number again


def test_both_refuse_a_malformed_token_before_any_request(
    official_authy: AuthyApiClient, fake_authy: FakeAuthy, authy_url: str
) -> None:
    official_authy.users.create("alice@example.com", "2015550123", 1)
    theirs_refuse = ["../sms", "12345", "1" * 13, "123456/../", "123456?x", "%2e%2e", "abcdef", ""]
    for code in theirs_refuse:
        with pytest.raises(AuthyFormatException):
            official_authy.tokens.verify(1635, code)
    # str.isdigit() lets authy-python send these; ours refuses them too (ASCII digits only).
    only_ours = ["١٢٣٤٥٦٧", "１２３４５６７", "²³⁴⁵⁶⁷"]
    before = len(fake_authy.requests)
    for code in theirs_refuse + only_ours:
        assert our_check(authy_url, "1635", code) is CheckResult.REJECTED, code
    assert len(fake_authy.requests) == before


def test_where_authy_python_would_be_fooled_ours_is_not(fake_authy: FakeAuthy, authy_url: str) -> None:
    official = AuthyApiClient(FAKE_AUTHY_API_KEY, api_uri=authy_url)
    official.users.create("alice@example.com", "2015550123", 1)
    # A proxy's HTML page that quotes a valid answer: authy-python's substring test accepts it.
    fake_authy.faults.answer = (200, b'<pre>{"token":"is valid"}</pre>', "text/html")
    assert official.tokens.verify(1635, "1234567").ok() is True
    assert our_check(authy_url, "1635", "1234567") == "ProviderUnavailable"
    # The valid answer, cut off mid-way by a dropped connection: the substring is there, the JSON is not.
    fake_authy.faults.answer = (200, b'{"token":"is valid","success":"tr', "application/json")
    assert official.tokens.verify(1635, "1234567").ok() is True
    assert our_check(authy_url, "1635", "1234567") == "ProviderUnavailable"


def test_authy_python_sees_the_fakes_errors_as_authy_documents_them(
    fake_authy: FakeAuthy, authy_url: str
) -> None:
    wrong_key = AuthyApiClient("not-the-key", api_uri=authy_url)
    refused = wrong_key.users.create("alice@example.com", "2015550123", 1)
    assert not refused.ok()
    assert refused.errors() == {"message": "Invalid API key"}
    good = AuthyApiClient(FAKE_AUTHY_API_KEY, api_uri=authy_url)
    invalid = good.users.create("not-an-email", "2015550123", 1)
    assert not invalid.ok()
    assert invalid.errors() == {"email": "is invalid", "message": "User was not valid"}
    missing = good.users.request_sms(4242, {"force": True})
    assert missing.response.status_code == 404
    assert missing.errors() == {"message": "User not found."}
    app = good.apps.fetch()
    assert app.ok()
    assert app["app"]["name"] == "Fake Authy app"
    assert all(
        r.headers["x-authy-api-key"] in ("not-the-key", FAKE_AUTHY_API_KEY) for r in fake_authy.requests
    )


# --------------------------------------------------------------------------- twilio


@pytest.fixture
def fake_verify() -> FakeTwilioVerify:
    return FakeTwilioVerify()


@pytest.fixture
def verify_url(fake_verify: FakeTwilioVerify) -> Iterator[str]:
    with serve(fake_verify) as url:
        yield url


def official_twilio(url: str, token: str = FAKE_AUTH_TOKEN) -> Client:
    client = Client(FAKE_ACCOUNT_SID, token)
    # The Verify domain's base URL is a public attribute: every Verify request is built from it.
    client.verify.base_url = url
    return client


def test_twilio_python_creates_and_checks_a_verification(
    fake_verify: FakeTwilioVerify, verify_url: str
) -> None:
    service = official_twilio(verify_url).verify.v2.services(FAKE_SERVICE_SID)
    started = service.verifications.create(to=PHONE, channel="sms")
    assert (started.status, started.to, started.channel, started.valid) == ("pending", PHONE, "sms", False)
    assert started.sid.startswith("VE")
    assert started.service_sid == FAKE_SERVICE_SID
    assert started.send_code_attempts == [
        {"time": started.send_code_attempts[0]["time"], "channel": "SMS", "channel_id": None}
    ]
    code = fake_verify.last_code(PHONE)
    wrong = other_code(code)
    pending = service.verification_checks.create(to=PHONE, code=wrong)
    assert (pending.status, pending.valid) == ("pending", False)
    approved = service.verification_checks.create(to=PHONE, code=code)
    assert (approved.status, approved.valid, approved.sid) == ("approved", True, started.sid)
    with pytest.raises(TwilioRestException) as gone:
        service.verification_checks.create(to=PHONE, code=code)
    assert (gone.value.status, gone.value.code) == (404, 20404)
    assert service.fetch().friendly_name == "Fake shop"


def test_twilio_python_and_our_provider_agree(fake_verify: FakeTwilioVerify, verify_url: str) -> None:
    service = official_twilio(verify_url).verify.v2.services(FAKE_SERVICE_SID)
    settings = ProviderSettings(
        name="twilio_verify",
        production_mode=True,
        account_sid=FAKE_ACCOUNT_SID,
        auth_token=Secret(FAKE_AUTH_TOKEN),
        service_sid=FAKE_SERVICE_SID,
        api_url=verify_url,
    )
    target = Target("admin", "alice", PHONE, Purpose.LOGIN)

    async def ours(code: str) -> CheckResult:
        provider = TwilioVerifyProvider(settings)
        try:
            return await provider.check(target, code)
        finally:
            await provider.close()

    service.verifications.create(to=PHONE, channel="sms")  # started by theirs, checked by ours
    code = fake_verify.last_code(PHONE)
    wrong = other_code(code)
    assert asyncio.run(ours(wrong)) is CheckResult.REJECTED
    assert asyncio.run(ours(code)) is CheckResult.APPROVED
    with pytest.raises(TwilioRestException):
        service.verification_checks.create(to=PHONE, code=code)  # theirs: gone, as ours said approved


def test_twilio_python_sees_twilios_errors(fake_verify: FakeTwilioVerify, verify_url: str) -> None:
    with pytest.raises(TwilioRestException) as unauthorised:
        official_twilio(verify_url, token="wrong").verify.v2.services(FAKE_SERVICE_SID).fetch()
    assert (unauthorised.value.status, unauthorised.value.code) == (401, 20003)
    service = official_twilio(verify_url).verify.v2.services(FAKE_SERVICE_SID)
    with pytest.raises(TwilioRestException) as invalid:
        service.verifications.create(to="2015550123", channel="sms")
    assert (invalid.value.status, invalid.value.code) == (400, 60200)
    fake_verify.blocked_prefixes.add("+1")
    with pytest.raises(TwilioRestException) as blocked:
        service.verifications.create(to=PHONE, channel="sms")
    assert (blocked.value.status, blocked.value.code) == (403, 60605)
    assert all(r.headers["authorization"].startswith("Basic ") for r in fake_verify.requests)
    assert httpx.URL(verify_url).host == "127.0.0.1"  # everything above went to the fake
