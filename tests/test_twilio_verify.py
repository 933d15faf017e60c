"""The Twilio Verify provider against the fake Verify API: requests, grants and every mapped error."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.codes import other_code
from tests.harness import FakeClock, config
from tfa_middleware import ConfigError, settings_from_mapping
from tfa_middleware.errors import (
    ProviderBlocked,
    ProviderError,
    ProviderMisconfigured,
    ProviderRateLimited,
    ProviderUnavailable,
)
from tfa_middleware.providers import CheckResult, Target, TwilioVerifyProvider, twilio_verify
from tfa_middleware.providers.base import Purpose
from tfa_middleware.settings import ProviderSettings, Secret
from tfa_middleware.testing import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FAKE_SERVICE_SID,
    FakeTwilioVerify,
    serve,
)
from tfa_middleware.testing.fake_twilio_verify import CODE_TTL_SECONDS

PHONE = "+12015550123"
API_KEY_SID = "SK" + "12" * 16
API_KEY_SECRET = "api-key-secret-abcdef0123456789"


def settings(**more: Any) -> ProviderSettings:
    values: dict[str, Any] = {
        "name": "twilio_verify",
        "production_mode": True,
        "account_sid": FAKE_ACCOUNT_SID,
        "auth_token": Secret(FAKE_AUTH_TOKEN),
        "service_sid": FAKE_SERVICE_SID,
        "api_url": "https://verify.fake",
        **more,
    }
    return ProviderSettings(**values)


TARGET = Target("admin", "alice", PHONE, Purpose.LOGIN)


@pytest.fixture
def fake() -> FakeTwilioVerify:
    return FakeTwilioVerify(api_keys={API_KEY_SID: API_KEY_SECRET})


@pytest.fixture
async def client(fake: FakeTwilioVerify) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(fake)) as client:
        yield client


@pytest.fixture
async def verify(client: httpx.AsyncClient) -> AsyncIterator[TwilioVerifyProvider]:
    provider = TwilioVerifyProvider(settings(), client=client)
    yield provider
    await provider.close()


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# --------------------------------------------------------------------------- requests as documented


async def test_a_send_posts_to_verifications_as_a_form_with_basic_auth(
    verify: TwilioVerifyProvider, fake: FakeTwilioVerify
) -> None:
    assert await verify.register(TARGET) is None  # Verify needs no registration
    await verify.send(TARGET, "sms")
    await verify.send(TARGET, "call")
    sms, call = fake.requests
    assert (sms.method, sms.path) == ("POST", f"/v2/Services/{FAKE_SERVICE_SID}/Verifications")
    assert sms.headers["content-type"] == "application/x-www-form-urlencoded"
    assert sms.headers["authorization"] == basic(FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN)
    assert sms.form == {"To": PHONE, "Channel": "sms"}
    assert call.form == {"To": PHONE, "Channel": "call"}
    assert [(s.to, s.channel) for s in fake.outbox] == [(PHONE, "sms"), (PHONE, "call")]
    assert fake.outbox[0].code == fake.outbox[1].code  # a resend within 10 minutes: the same code


async def test_a_check_posts_code_and_to_and_grants_only_approved(
    verify: TwilioVerifyProvider, fake: FakeTwilioVerify
) -> None:
    await verify.send(TARGET, "sms")
    code = fake.last_code(PHONE)
    wrong = other_code(code)
    assert await verify.check(TARGET, wrong) is CheckResult.REJECTED
    assert await verify.check(TARGET, code) is CheckResult.APPROVED
    assert await verify.check(TARGET, code) is CheckResult.REJECTED  # 20404: the verification is gone
    check = fake.requests[2]
    assert (check.method, check.path) == ("POST", f"/v2/Services/{FAKE_SERVICE_SID}/VerificationCheck")
    assert check.form == {"To": PHONE, "Code": code}


async def test_an_api_key_may_stand_in_for_the_auth_token(
    client: httpx.AsyncClient, fake: FakeTwilioVerify
) -> None:
    provider = TwilioVerifyProvider(
        settings(api_key_sid=API_KEY_SID, auth_token=Secret(API_KEY_SECRET)), client=client
    )
    await provider.send(TARGET, "sms")
    assert fake.requests[-1].headers["authorization"] == basic(API_KEY_SID, API_KEY_SECRET)
    assert await provider.check(TARGET, fake.last_code(PHONE)) is CheckResult.APPROVED


@pytest.mark.parametrize(
    "code", ["123", "12345678901", "12a456", "../VerificationCheck", "１２３４５６", "123 456"]
)
async def test_a_malformed_code_is_never_sent(
    verify: TwilioVerifyProvider, fake: FakeTwilioVerify, code: str
) -> None:
    assert await verify.check(TARGET, code) is CheckResult.REJECTED
    assert fake.requests == []


# --------------------------------------------------------------------------- Twilio's errors, mapped


async def test_too_many_wrong_checks_is_60202_rate_limited(
    verify: TwilioVerifyProvider, fake: FakeTwilioVerify
) -> None:
    await verify.send(TARGET, "sms")
    code = fake.last_code(PHONE)
    wrong = other_code(code)
    for _ in range(5):
        assert await verify.check(TARGET, wrong) is CheckResult.REJECTED
    with pytest.raises(ProviderRateLimited, match="60202"):
        await verify.check(TARGET, code)


async def test_too_many_sends_is_60203_rate_limited(
    verify: TwilioVerifyProvider, fake: FakeTwilioVerify
) -> None:
    for _ in range(5):
        await verify.send(TARGET, "sms")
    with pytest.raises(ProviderRateLimited, match="60203"):
        await verify.send(TARGET, "sms")
    assert len(fake.outbox) == 5


async def test_geo_permissions_and_fraud_guard_block_the_number(
    verify: TwilioVerifyProvider, fake: FakeTwilioVerify
) -> None:
    fake.blocked_prefixes.add("+1201")
    with pytest.raises(ProviderBlocked, match="60605"):
        await verify.send(TARGET, "sms")
    fake.blocked_prefixes.clear()
    fake.fraud_prefixes.add("+120155")
    with pytest.raises(ProviderBlocked, match="60410"):
        await verify.send(TARGET, "sms")
    fake.fraud_prefixes.clear()
    fake.landline_prefixes.add(PHONE)
    with pytest.raises(ProviderBlocked, match="60205"):
        await verify.send(TARGET, "sms")  # a landline: "we can't text this number", not "try later"
    assert fake.outbox == []


def test_every_mapped_error_code_is_in_the_module_table() -> None:
    table = twilio_verify.__doc__ or ""
    for code in sorted(twilio_verify._BLOCKS | twilio_verify._RATE_LIMITS | {"20404", "60200", "20003"}):
        assert re.search(rf"^{code} ", table, re.MULTILINE), f"{code} is missing from the docstring's table"


@pytest.mark.parametrize("check_status", [200, 201])
async def test_a_check_is_granted_on_either_documented_success_status(check_status: int) -> None:
    """The OpenAPI description lists 201 and 200 for VerificationCheck; the live API answers 200."""
    fake = FakeTwilioVerify(check_status=check_status)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(fake)) as client:
        provider = TwilioVerifyProvider(settings(), client=client)
        await provider.send(TARGET, "sms")
        code = fake.last_code(PHONE)
        wrong = other_code(code)
        raw = await client.post(
            f"https://verify.fake/v2/Services/{FAKE_SERVICE_SID}/VerificationCheck",
            data={"To": PHONE, "Code": wrong},
            auth=(FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN),
        )
        assert (raw.status_code, raw.json()["status"]) == (check_status, "pending")
        assert await provider.check(TARGET, wrong) is CheckResult.REJECTED
        assert await provider.check(TARGET, code) is CheckResult.APPROVED


async def test_the_fakes_429_carries_retry_after_into_the_exception() -> None:
    clock = FakeClock()
    fake = FakeTwilioVerify(clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(fake)) as client:
        provider = TwilioVerifyProvider(settings(), client=client)
        for _ in range(5):
            await provider.send(TARGET, "sms")
        clock.advance(100)
        with pytest.raises(ProviderRateLimited, match="60203") as sends:
            await provider.send(TARGET, "sms")
        # Verify refuses more sends until the verification expires: the rest of its 10 minutes.
        assert sends.value.retry_after_seconds == CODE_TTL_SECONDS - 100
        fake.faults.rate_limited = True
        with pytest.raises(ProviderRateLimited, match="20429") as limited:
            await provider.check(TARGET, "123456")
        assert limited.value.retry_after_seconds == fake.retry_after_seconds


async def test_wrong_credentials_or_service_are_misconfigurations(client: httpx.AsyncClient) -> None:
    wrong_token = TwilioVerifyProvider(settings(auth_token=Secret("not-the-token")), client=client)
    for call in (
        wrong_token.send(TARGET, "sms"),
        wrong_token.check(TARGET, "123456"),
        wrong_token.check_credentials(),
    ):
        with pytest.raises(ProviderMisconfigured, match="20003"):
            await call
    wrong_service = TwilioVerifyProvider(settings(service_sid="VA" + "ab" * 16), client=client)
    for call in (wrong_service.send(TARGET, "sms"), wrong_service.check_credentials()):
        with pytest.raises(ProviderMisconfigured, match="service_sid"):
            await call


async def test_check_credentials_names_the_service(
    verify: TwilioVerifyProvider, fake: FakeTwilioVerify
) -> None:
    assert "Fake shop" in await verify.check_credentials()
    assert fake.requests[-1].path == f"/v2/Services/{FAKE_SERVICE_SID}"


def error(code: int, status: int) -> bytes:
    return (
        f'{{"code":{code},"message":"x","more_info":"https://www.twilio.com/docs/errors/{code}","status":{status}}}'
    ).encode()


PENDING = b'{"sid":"VE1","status":"pending","valid":false}'
JSON = "application/json"


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        pytest.param(
            200, b'{"sid":"VE1","status":"approved","valid":true}', JSON, CheckResult.APPROVED, id="ok"
        ),
        pytest.param(200, PENDING, JSON, CheckResult.REJECTED, id="wrong-code"),
        pytest.param(200, b'{"status":"canceled"}', JSON, CheckResult.REJECTED, id="canceled"),
        pytest.param(
            200, b'{"status":"max_attempts_reached"}', JSON, CheckResult.REJECTED, id="max-attempts"
        ),
        # "valid" is legacy: it is never a grant on its own.
        pytest.param(200, b'{"status":"pending","valid":true}', JSON, CheckResult.REJECTED, id="valid-alone"),
        pytest.param(200, b'{"valid":true}', JSON, ProviderUnavailable, id="no-status"),
        pytest.param(200, b'{"status":"APPROVED"}', JSON, ProviderUnavailable, id="other-case"),
        pytest.param(200, b'{"status":"unheard-of"}', JSON, ProviderUnavailable, id="unknown-status"),
        # The OpenAPI description documents 201 and 200 for a check; the grant is the status alone.
        pytest.param(201, b'{"status":"approved"}', JSON, CheckResult.APPROVED, id="201"),
        pytest.param(201, PENDING, JSON, CheckResult.REJECTED, id="201-wrong-code"),
        pytest.param(201, b'{"valid":true}', JSON, ProviderUnavailable, id="201-no-status"),
        pytest.param(202, b'{"status":"approved"}', JSON, ProviderUnavailable, id="202"),
        pytest.param(200, b'<html>"status":"approved"</html>', "text/html", ProviderUnavailable, id="html"),
        pytest.param(200, b"", JSON, ProviderUnavailable, id="empty"),
        pytest.param(200, b'{"sid":"VE1","status":"appro', JSON, ProviderUnavailable, id="truncated"),
        pytest.param(404, error(20404, 404), JSON, CheckResult.REJECTED, id="20404"),
        pytest.param(404, b"<html>Not Found</html>", "text/html", ProviderUnavailable, id="404-html"),
        pytest.param(400, error(60200, 400), JSON, CheckResult.REJECTED, id="60200"),
        pytest.param(429, error(60202, 429), JSON, ProviderRateLimited, id="60202"),
        pytest.param(429, error(60212, 429), JSON, ProviderRateLimited, id="60212"),
        pytest.param(429, b"", JSON, ProviderRateLimited, id="429-empty"),
        pytest.param(403, error(60605, 403), JSON, ProviderBlocked, id="60605"),
        pytest.param(403, error(60410, 403), JSON, ProviderBlocked, id="60410"),
        pytest.param(403, error(60205, 403), JSON, ProviderBlocked, id="60205-landline"),
        pytest.param(429, error(60410, 429), JSON, ProviderBlocked, id="60410-as-429"),
        pytest.param(403, error(20403, 403), JSON, ProviderUnavailable, id="403-other"),
        pytest.param(401, error(20003, 401), JSON, ProviderMisconfigured, id="20003"),
        pytest.param(401, b"", JSON, ProviderMisconfigured, id="401-empty"),
        pytest.param(500, error(20500, 500), JSON, ProviderUnavailable, id="500"),
        pytest.param(503, b"<html>down</html>", "text/html", ProviderUnavailable, id="503-html"),
        pytest.param(400, b'{"code":"60200","status":400}', JSON, CheckResult.REJECTED, id="string-code"),
    ],
)
async def test_a_check_grants_only_on_status_approved(
    verify: TwilioVerifyProvider,
    fake: FakeTwilioVerify,
    status: int,
    body: bytes,
    content_type: str,
    expected: CheckResult | type[ProviderError],
) -> None:
    fake.faults.answer = (status, body, content_type)
    if isinstance(expected, CheckResult):
        assert await verify.check(TARGET, "123456") is expected
    else:
        with pytest.raises(expected):
            await verify.check(TARGET, "123456")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (201, PENDING, None),
        (200, PENDING, None),
        (201, b'{"status":"approved"}', ProviderUnavailable),
        (201, b"", ProviderUnavailable),
        (400, error(60200, 400), ProviderBlocked),
        (404, error(20404, 404), ProviderMisconfigured),
        (429, error(60203, 429), ProviderRateLimited),
        (429, error(60212, 429), ProviderRateLimited),
        (403, error(60605, 403), ProviderBlocked),
        (403, error(60410, 403), ProviderBlocked),
        (403, error(60205, 403), ProviderBlocked),
        (400, error(60205, 400), ProviderBlocked),
        (429, error(60410, 429), ProviderBlocked),
        (401, error(20003, 401), ProviderMisconfigured),
        (502, b"<html>Bad Gateway</html>", ProviderUnavailable),
    ],
)
async def test_a_send_succeeds_only_on_a_pending_verification(
    verify: TwilioVerifyProvider,
    fake: FakeTwilioVerify,
    status: int,
    body: bytes,
    expected: type[ProviderError] | None,
) -> None:
    fake.faults.answer = (status, body, JSON)
    if expected is None:
        assert (await verify.send(TARGET, "sms")).channel == "sms"
    else:
        with pytest.raises(expected):
            await verify.send(TARGET, "sms")


async def test_faults_over_real_http_fail_closed(fake: FakeTwilioVerify) -> None:
    with serve(fake) as url:
        provider = TwilioVerifyProvider(settings(api_url=url, timeout_seconds=0.1))
        await provider.send(TARGET, "sms")
        code = fake.last_code(PHONE)
        for knob, value in (("latency_seconds", 0.5), ("drop", True), ("garbage", True), ("status", 500)):
            setattr(fake.faults, knob, value)
            with pytest.raises(ProviderUnavailable):
                await provider.check(TARGET, code)
            fake.faults.clear()
        fake.faults.rate_limited = True
        with pytest.raises(ProviderRateLimited):
            await provider.check(TARGET, code)
        fake.faults.clear()
        assert await provider.check(TARGET, code) is CheckResult.APPROVED  # the code survived the faults
        await provider.close()


async def test_the_auth_token_and_codes_never_show(
    caplog: pytest.LogCaptureFixture,
    verify: TwilioVerifyProvider,
    fake: FakeTwilioVerify,
    client: httpx.AsyncClient,
) -> None:
    caplog.set_level(logging.DEBUG)
    await verify.send(TARGET, "sms")
    code = fake.last_code(PHONE)
    await verify.check(TARGET, code)
    wrong = TwilioVerifyProvider(settings(auth_token=Secret("secret-token-never-shown")), client=client)
    with pytest.raises(ProviderMisconfigured) as caught:
        await wrong.check(TARGET, code)
    shown = [caplog.text, repr(verify), repr(wrong), repr(verify.http), str(caught.value), repr(caught.value)]
    for text in shown:
        for secret in (FAKE_AUTH_TOKEN, "secret-token-never-shown", code):
            assert secret not in text


# --------------------------------------------------------------------------- settings


def verify_file(tmp_path: Path, **provider: Any) -> dict[str, Any]:
    return config(tmp_path, provider={"name": "twilio_verify", "production_mode": True, **provider})


def test_production_verify_settings_need_all_three_credentials(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(verify_file(tmp_path))
    assert caught.value.problems == [
        f"provider.{key}: is required with name: twilio_verify and production_mode: true"
        for key in ("account_sid", "auth_token", "service_sid")
    ]
    loaded = settings_from_mapping(
        verify_file(
            tmp_path, account_sid=FAKE_ACCOUNT_SID, auth_token=FAKE_AUTH_TOKEN, service_sid=FAKE_SERVICE_SID
        )
    )
    assert loaded.provider.api_url == "https://verify.twilio.com"
    described = loaded.describe()["provider"]
    assert described["auth_token"] == "**********"
    assert (described["account_sid"], described["service_sid"]) == (FAKE_ACCOUNT_SID, FAKE_SERVICE_SID)
    assert FAKE_AUTH_TOKEN not in repr(loaded) + str(loaded.describe())


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("account_sid", "AC123", "provider.account_sid: must be AC followed by 32 hexadecimal digits"),
        (
            "service_sid",
            FAKE_ACCOUNT_SID,
            "provider.service_sid: must be VA followed by 32 hexadecimal digits",
        ),
        ("api_key_sid", "SKnot", "provider.api_key_sid: must be SK followed by 32 hexadecimal digits"),
        ("auth_token", 42, "provider.auth_token: expected a string, got a number"),
    ],
)
def test_bad_sids_are_named_by_key_path_once(tmp_path: Path, key: str, value: Any, expected: str) -> None:
    values = {"account_sid": FAKE_ACCOUNT_SID, "auth_token": FAKE_AUTH_TOKEN, "service_sid": FAKE_SERVICE_SID}
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(verify_file(tmp_path, **{**values, key: value}))
    assert caught.value.problems == [expected]
