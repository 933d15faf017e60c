"""The Authy provider: what it sends, what it believes, and what it refuses, against the fake Authy.

Most tests talk to the fake in process; timeouts, dropped connections, pooling and connect errors
need a real socket and use the fake over loopback HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from tests.harness import SECRET, FakeClock, config
from tfa_middleware import ConfigError, TwoFactor, settings_from_mapping
from tfa_middleware.errors import (
    ProviderBlocked,
    ProviderError,
    ProviderMisconfigured,
    ProviderRateLimited,
    ProviderUnavailable,
    ProviderUserNotFound,
)
from tfa_middleware.providers import AuthyProvider, CheckResult, Target
from tfa_middleware.providers.base import Purpose
from tfa_middleware.settings import ProviderSettings, Secret
from tfa_middleware.store import Store
from tfa_middleware.store import enrollments as enrollment_rows
from tfa_middleware.testing import FAKE_AUTHY_API_KEY, FakeAuthy, serve

PHONE = "+12015550123"
OTHER_KEY = "another-authy-api-key-fedcba9876543210"


def settings(
    url: str = "https://api.authy.fake", key: str = FAKE_AUTHY_API_KEY, **more: Any
) -> ProviderSettings:
    return ProviderSettings(name="authy", production_mode=True, api_key=Secret(key), api_url=url, **more)


def target(provider_user_id: str | None = None, user: str = "alice", phone: str = PHONE) -> Target:
    return Target("admin", user, phone, Purpose.LOGIN, provider_user_id)


@pytest.fixture
def fake() -> FakeAuthy:
    return FakeAuthy(api_keys=(FAKE_AUTHY_API_KEY, OTHER_KEY))


@pytest.fixture
async def client(fake: FakeAuthy) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(fake)) as client:
        yield client


@pytest.fixture
async def authy(client: httpx.AsyncClient) -> AsyncIterator[AuthyProvider]:
    provider = AuthyProvider(settings(), Secret(SECRET), client=client)
    yield provider
    await provider.close()


async def registered(authy: AuthyProvider, user: str = "alice", phone: str = PHONE) -> Target:
    return target(await authy.register(target(user=user, phone=phone)), user, phone)


# --------------------------------------------------------------------------- requests as documented


async def test_register_posts_the_documented_form_with_the_key_in_a_header(
    authy: AuthyProvider, fake: FakeAuthy
) -> None:
    assert await authy.register(target()) == "1635"
    [request] = fake.requests
    assert (request.method, request.path, request.query) == ("POST", "/protected/json/users/new", {})
    assert request.headers["x-authy-api-key"] == FAKE_AUTHY_API_KEY
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert set(request.form) == {"user[email]", "user[cellphone]", "user[country_code]"}
    assert (request.form["user[cellphone]"], request.form["user[country_code]"]) == ("2015550123", "1")
    assert "api_key" not in request.query
    assert "api_key" not in request.form


@pytest.mark.parametrize(
    ("phone", "country_code", "cellphone"),
    [
        ("+12015550123", "1", "2015550123"),
        ("+447700900123", "44", "7700900123"),
        ("+393123456789", "39", "3123456789"),
        ("+35312345678", "353", "12345678"),
    ],
)
async def test_register_splits_the_e164_number(
    authy: AuthyProvider, fake: FakeAuthy, phone: str, country_code: str, cellphone: str
) -> None:
    await authy.register(target(phone=phone))
    form = fake.requests[-1].form
    assert (form["user[country_code]"], form["user[cellphone]"]) == (country_code, cellphone)


async def test_one_phone_number_is_one_authy_id(authy: AuthyProvider) -> None:
    first = await authy.register(target(user="alice"))
    again = await authy.register(target(user="alice"))
    other = await authy.register(target(user="bob", phone="+12015550124"))
    assert first == again != other


async def test_sms_call_and_verify_use_the_documented_paths_with_force(
    authy: AuthyProvider, fake: FakeAuthy
) -> None:
    alice = await registered(authy)
    await authy.send(alice, "sms")
    await authy.send(alice, "call")
    await authy.check(alice, fake.last_code(PHONE))
    sms, call, verify = fake.requests[-3:]
    assert (sms.method, sms.path, sms.query) == ("GET", "/protected/json/sms/1635", {"force": "true"})
    assert (call.method, call.path, call.query) == ("GET", "/protected/json/call/1635", {"force": "true"})
    code = fake.last_code(PHONE)
    assert (verify.method, verify.path, verify.query) == (
        "GET",
        f"/protected/json/verify/{code}/1635",
        {"force": "true"},
    )
    assert [sent.channel for sent in fake.outbox] == ["sms", "call"]
    assert all(r.headers["x-authy-api-key"] == FAKE_AUTHY_API_KEY for r in fake.requests)


# --------------------------------------------------------------------------- the email Authy gets


async def test_the_email_sent_to_authy_is_a_keyed_pseudonym(authy: AuthyProvider, fake: FakeAuthy) -> None:
    await authy.register(target(user="alice@shop.example"))
    email = fake.requests[-1].form["user[email]"]
    assert re.fullmatch(r"[0-9a-f]{32}@users\.invalid", email)
    assert "alice" not in email
    assert "shop" not in email
    assert authy.email_for(target(user="alice@shop.example")) == email  # stable: Authy sees one user
    assert authy.email_for(target(user="bob")) != email
    assert authy.email_for(Target("customer", "alice@shop.example", PHONE, Purpose.LOGIN)) != email
    rekeyed = AuthyProvider(settings(), Secret("x" * 40))
    assert rekeyed.email_for(target(user="alice@shop.example")) != email


async def test_the_email_domain_is_configurable_and_real_emails_are_opt_in(client: httpx.AsyncClient) -> None:
    own = AuthyProvider(settings(email_domain="2fa.shop.example"), Secret(SECRET), client=client)
    assert own.email_for(target(user="alice@shop.example")).endswith("@2fa.shop.example")
    opted = AuthyProvider(settings(email_from_user=True), Secret(SECRET), client=client)
    assert opted.email_for(target(user="alice@shop.example")) == "alice@shop.example"
    # A user id that is not an email address still goes out as a pseudonym.
    assert opted.email_for(target(user="42")).endswith("@users.invalid")
    assert opted.email_for(target(user="a@b")).endswith("@users.invalid")


# --------------------------------------------------------------------------- codes checked here first


@pytest.mark.parametrize(
    "code",
    [
        "../sms",
        "..%2Fsms",
        "%2e%2e",
        "%2e%2e%2fsms",
        "123456/../",
        "123456?x",
        "123456#x",
        "12345",
        "1" * 13,
        "１２３４５６",
    ],
)
async def test_path_tricks_and_non_codes_never_reach_authy(
    authy: AuthyProvider, fake: FakeAuthy, code: str
) -> None:
    alice = await registered(authy)
    await authy.send(alice, "sms")
    before = len(fake.requests)
    assert await authy.check(alice, code) is CheckResult.REJECTED
    assert len(fake.requests) == before


@pytest.mark.parametrize(
    "authy_id", ["../sms/1635", "1635/../../app/details", "1635?x=1", "%2e%2e", "", "12a"]
)
async def test_a_stored_id_that_is_not_an_authy_id_is_never_put_in_a_url(
    authy: AuthyProvider, fake: FakeAuthy, authy_id: str
) -> None:
    for call in (authy.send(target(authy_id), "sms"), authy.check(target(authy_id), "1234567")):
        with pytest.raises(ProviderUserNotFound):
            await call
    assert fake.requests == []


async def test_a_malformed_stored_id_is_healed_by_registering_again(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    tfa, store = service(tmp_path, AuthyProvider(settings(), Secret(SECRET), client=client))
    try:
        await tfa.set_phone("admin", "alice", "1", "2015550123", confirmed=True)
        await enrollment_rows.set_provider_ref(
            store, "admin", "alice", "+12015550123", confirmed=True, ref="../sms", now=0.0
        )
        await send_code(tfa)
        row = await enrollment_rows.get(store, "admin", "alice")
        assert row is not None
        assert row.provider_user_id == "1635"
    finally:
        await tfa.close()


# --------------------------------------------------------------------------- what counts as a grant

VALID = b'{"message":"Token is valid.","token":"is valid","success":"true","device":{}}'
JSON = "application/json"
HTML = "text/html"


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        pytest.param(200, VALID, JSON, CheckResult.APPROVED, id="valid-success-as-string"),
        pytest.param(
            200, b'{"token":"is valid","success":true}', JSON, CheckResult.APPROVED, id="valid-bool"
        ),
        pytest.param(200, b'{ "token" : "is valid" }', JSON, CheckResult.APPROVED, id="valid-spaced-json"),
        # The 2015 bypass: /verify/../sms/ID answered with the SMS body: 200, success, no token.
        pytest.param(
            200,
            b'{"success":true,"message":"SMS token was sent","cellphone":"+1-XXX-XXX-XX85"}',
            JSON,
            ProviderUnavailable,
            id="sms-body-on-verify",
        ),
        pytest.param(200, b'{"success":true}', JSON, ProviderUnavailable, id="success-only"),
        pytest.param(
            200, b'{"success":"true","token":"is invalid"}', JSON, ProviderUnavailable, id="200-invalid"
        ),
        pytest.param(200, b'{"token":"IS VALID"}', JSON, ProviderUnavailable, id="other-case"),
        pytest.param(200, b'{"token":["is valid"]}', JSON, ProviderUnavailable, id="token-list"),
        pytest.param(200, b'[{"token":"is valid"}]', JSON, ProviderUnavailable, id="json-array"),
        pytest.param(
            200, b'<html>"token":"is valid"</html>', HTML, ProviderUnavailable, id="html-with-substring"
        ),
        pytest.param(200, b"", JSON, ProviderUnavailable, id="empty-body"),
        pytest.param(200, VALID[:45], JSON, ProviderUnavailable, id="truncated-json"),
        pytest.param(200, b"\xff\xfe{}", JSON, ProviderUnavailable, id="not-utf8"),
        pytest.param(201, VALID, JSON, ProviderUnavailable, id="201-is-not-200"),
        pytest.param(204, b"", JSON, ProviderUnavailable, id="204"),
        pytest.param(302, VALID, JSON, ProviderUnavailable, id="redirect"),
        pytest.param(
            401,
            b'{"message":"Token is invalid","token":"is invalid","success":false,"error_code":"60020"}',
            JSON,
            CheckResult.REJECTED,
            id="wrong-token",
        ),
        pytest.param(
            401, b'{"success":false,"error_code":60020}', JSON, CheckResult.REJECTED, id="int-error-code"
        ),
        pytest.param(401, b'{"token":"is invalid"}', JSON, CheckResult.REJECTED, id="no-error-code"),
        pytest.param(401, b"<html>401</html>", HTML, ProviderUnavailable, id="401-html"),
        pytest.param(401, b"", JSON, ProviderUnavailable, id="401-empty"),
        pytest.param(
            401,
            b'{"error_code":"60001","message":"Invalid API key","success":false}',
            JSON,
            ProviderMisconfigured,
            id="bad-key",
        ),
        pytest.param(
            404,
            b'{"message":"User not found.","error_code":"60026"}',
            JSON,
            ProviderUserNotFound,
            id="no-user",
        ),
        pytest.param(404, b"<html>Not Found</html>", HTML, ProviderUnavailable, id="404-html"),
        pytest.param(429, b'{"error_code":"60003","success":false}', JSON, ProviderRateLimited, id="429"),
        pytest.param(429, b"", JSON, ProviderRateLimited, id="429-empty"),
        pytest.param(503, b"<html>Service Unavailable</html>", HTML, ProviderRateLimited, id="503-old-docs"),
        pytest.param(500, b'{"error_code":"60000"}', JSON, ProviderUnavailable, id="500"),
        pytest.param(502, b"<html>Bad Gateway</html>", HTML, ProviderUnavailable, id="502-html"),
        pytest.param(400, b'{"error_code":"60004","success":false}', JSON, ProviderUnavailable, id="60004"),
    ],
)
async def test_only_200_with_token_is_valid_grants(
    authy: AuthyProvider,
    fake: FakeAuthy,
    status: int,
    body: bytes,
    content_type: str,
    expected: CheckResult | type[ProviderError],
) -> None:
    alice = await registered(authy)
    fake.faults.answer = (status, body, content_type)
    fake.faults.path_contains = "/verify/"
    if isinstance(expected, CheckResult):
        assert await authy.check(alice, "1234567") is expected
    else:
        with pytest.raises(expected):
            await authy.check(alice, "1234567")
    assert fake.requests[-1].path == "/protected/json/verify/1234567/1635"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b'{"success":"true","message":"SMS token was sent","cellphone":"+1-XXX-XXX-XX23"}', None),
        (200, b'{"success":false,"message":"SMS token was sent"}', ProviderUnavailable),
        (200, b'{"message":"SMS token was sent"}', ProviderUnavailable),
        (200, b'{"success":true,"ignored":true,"message":"Ignored: SMS is not needed"}', ProviderUnavailable),
        (200, b"<html>ok</html>", ProviderUnavailable),
        (200, b"", ProviderUnavailable),
        (404, b'{"error_code":"60026"}', ProviderUserNotFound),
        (401, b'{"error_code":"60001"}', ProviderMisconfigured),
        (429, b'{"error_code":"60003"}', ProviderRateLimited),
        (503, b"", ProviderRateLimited),
        (500, b"oops", ProviderUnavailable),
    ],
)
async def test_a_send_succeeds_only_on_a_parsed_success(
    authy: AuthyProvider, fake: FakeAuthy, status: int, body: bytes, expected: type[ProviderError] | None
) -> None:
    alice = await registered(authy)
    fake.faults.answer = (status, body, JSON)
    if expected is None:
        assert (await authy.send(alice, "sms")).channel == "sms"
    else:
        with pytest.raises(expected):
            await authy.send(alice, "sms")


async def test_without_force_an_app_user_would_get_no_sms_so_force_is_always_sent(
    authy: AuthyProvider, fake: FakeAuthy
) -> None:
    alice = await registered(authy)
    fake.users[1635].has_app = True
    await authy.send(alice, "sms")
    assert fake.outbox[-1].channel == "sms"
    # The fake does ignore a request without force, as Authy does.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(fake)) as raw:
        answer = await raw.get(
            "https://api.authy.fake/protected/json/sms/1635", headers={"X-Authy-API-Key": FAKE_AUTHY_API_KEY}
        )
    assert answer.json()["ignored"] is True
    assert len(fake.outbox) == 1


# --------------------------------------------------------------------------- errors


async def test_register_refusals_say_whose_fault_it_is(client: httpx.AsyncClient, fake: FakeAuthy) -> None:
    authy = AuthyProvider(settings(), Secret(SECRET), client=client)
    with pytest.raises(ProviderBlocked, match="phone number"):
        await authy.register(target(phone="+1201"))  # too short for Authy
    # The settings file refuses such a domain; the provider still must not trust it (copied past validation).
    odd = settings().model_copy(update={"email_domain": "localhost"})
    odd_domain = AuthyProvider(odd, Secret(SECRET), client=client)
    with pytest.raises(ProviderMisconfigured, match="email_domain"):
        await odd_domain.register(target())
    assert fake.users == {}


async def test_a_wrong_api_key_is_a_misconfiguration_everywhere(client: httpx.AsyncClient) -> None:
    wrong = AuthyProvider(settings(key="not-the-key"), Secret(SECRET), client=client)
    for call in (
        wrong.register(target()),
        wrong.send(target("1635"), "sms"),
        wrong.check(target("1635"), "1234567"),
        wrong.check_credentials(),
    ):
        with pytest.raises(ProviderMisconfigured, match="API key"):
            await call


async def test_check_credentials_names_the_app(authy: AuthyProvider, fake: FakeAuthy) -> None:
    assert "Fake Authy app" in await authy.check_credentials()
    assert fake.requests[-1].path == "/protected/json/app/details"


async def test_rate_limiting_carries_the_retry_after_hint() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "30"}, json={"error_code": "60003"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        authy = AuthyProvider(settings(), Secret(SECRET), client=client)
        with pytest.raises(ProviderRateLimited) as caught:
            await authy.send(target("1635"), "sms")
    assert caught.value.retry_after_seconds == 30


@pytest.mark.parametrize("status", [429, 503])
async def test_the_fakes_rate_limit_hint_reaches_the_exception(
    authy: AuthyProvider, fake: FakeAuthy, status: int
) -> None:
    fake.rate_limit_status = status
    fake.retry_after_seconds = 45
    fake.faults.rate_limited = True
    with pytest.raises(ProviderRateLimited) as caught:
        await authy.send(target("1635"), "sms")
    assert caught.value.retry_after_seconds == 45


async def test_a_body_too_large_to_be_an_answer_is_refused(authy: AuthyProvider, fake: FakeAuthy) -> None:
    huge = b'{"token":"is valid","padding":"' + b"x" * 70_000 + b'"}'
    fake.faults.answer = (200, huge, JSON)
    with pytest.raises(ProviderUnavailable):
        await authy.check(target("1635"), "1234567")


# --------------------------------------------------------------------------- through the service


CLOCK = FakeClock()


def service(tmp_path: Path, provider: AuthyProvider) -> tuple[TwoFactor, Store]:
    settings = settings_from_mapping(config(tmp_path))
    store = Store(settings.database_url.reveal())
    return TwoFactor(settings, store, provider, clock=CLOCK), store


async def send_code(tfa: TwoFactor, user: str = "alice") -> None:
    CLOCK.advance(120)  # past any resend cooldown: these tests are not about the send limits
    outcome = await tfa.send_code("admin", user)
    assert outcome.status.value == "sent", outcome


async def test_a_user_authy_forgot_is_registered_again(
    tmp_path: Path, client: httpx.AsyncClient, fake: FakeAuthy
) -> None:
    tfa, store = service(tmp_path, AuthyProvider(settings(), Secret(SECRET), client=client))
    try:
        await tfa.set_phone("admin", "alice", "1", "2015550123", confirmed=True)
        await send_code(tfa)
        fake.forget(1635)
        await send_code(tfa)
        row = await enrollment_rows.get(store, "admin", "alice")
        assert row is not None
        assert row.provider_user_id == "1636"
        assert [r.path for r in fake.requests if "/sms/" in r.path] == [
            "/protected/json/sms/1635",
            "/protected/json/sms/1635",  # 404, 60026
            "/protected/json/sms/1636",
        ]
        assert len(fake.outbox) == 2
    finally:
        await tfa.close()


async def test_a_new_api_key_clears_every_stored_authy_id(
    tmp_path: Path, client: httpx.AsyncClient, fake: FakeAuthy
) -> None:
    tfa, _ = service(tmp_path, AuthyProvider(settings(), Secret(SECRET), client=client))
    await tfa.set_phone("admin", "alice", "1", "2015550123", confirmed=True)
    await send_code(tfa)
    await tfa.close()
    registrations = sum(r.path.endswith("/users/new") for r in fake.requests)
    assert registrations == 1

    tfa, store = service(tmp_path, AuthyProvider(settings(key=OTHER_KEY), Secret(SECRET), client=client))
    try:
        await send_code(tfa)
        assert sum(r.path.endswith("/users/new") for r in fake.requests) == 2
        assert fake.requests[-1].headers["x-authy-api-key"] == OTHER_KEY
        assert fake.outbox[-1].to == PHONE
        assert len(fake.outbox) == 2
        # The id is the phone's, whichever app registers it; it is now registered with the new app.
        assert fake.users[1635].apps == {FAKE_AUTHY_API_KEY, OTHER_KEY}
        row = await enrollment_rows.get(store, "admin", "alice")
        assert row is not None
        assert row.provider_user_id == "1635"
    finally:
        await tfa.close()


def test_the_fingerprint_follows_the_key_and_the_url_and_does_not_show_them() -> None:
    key = Secret(SECRET)
    one = AuthyProvider(settings(), key).fingerprint
    assert one is not None
    assert re.fullmatch(r"[0-9a-f]{16}", one)
    assert AuthyProvider(settings(), key).fingerprint == one
    assert AuthyProvider(settings(key=OTHER_KEY), key).fingerprint != one
    assert AuthyProvider(settings(url="https://api.authy.com"), key).fingerprint != one
    assert FAKE_AUTHY_API_KEY not in one


# --------------------------------------------------------------------------- the HTTP client


async def test_one_pooled_client_is_made_on_first_use_and_closed_by_close(fake: FakeAuthy) -> None:
    with serve(fake) as url:
        authy = AuthyProvider(settings(url), Secret(SECRET))
        alice = await registered(authy)
        await authy.send(alice, "sms")
        await authy.check(alice, fake.last_code(PHONE))
        peers = {r.client for r in fake.requests}
        # one kept-alive connection
        assert len(fake.requests) == 3
        assert len(peers) == 1
        await authy.close()
        await authy.send(alice, "sms")  # a closed provider opens a fresh client when used again
        assert fake.requests[-1].client not in peers
        await authy.close()


async def test_a_client_passed_in_belongs_to_the_caller(client: httpx.AsyncClient) -> None:
    authy = AuthyProvider(settings(), Secret(SECRET), client=client)
    await authy.register(target())
    await authy.close()
    assert not client.is_closed


async def test_the_timeout_comes_from_the_settings(fake: FakeAuthy) -> None:
    # The fake holds every request until the provider has given up: an answer cannot come first,
    # so the error can only be the client's own timeout, and it must name the settings' value.
    arrived: list[str] = []
    release = threading.Event()

    async def held(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            arrived.append(scope["path"])
            await asyncio.to_thread(release.wait)
        await fake(scope, receive, send)

    with serve(held) as url:
        authy = AuthyProvider(settings(url, timeout_seconds=0.1), Secret(SECRET))
        try:
            with pytest.raises(ProviderUnavailable, match=r"within 0\.1 s"):
                await authy.register(target())
            assert arrived == ["/protected/json/users/new"]  # it reached the server, unanswered
            assert fake.requests == []
        finally:
            release.set()
            await authy.close()


async def test_a_dropped_connection_fails_closed(fake: FakeAuthy) -> None:
    with serve(fake) as url:
        authy = AuthyProvider(settings(url), Secret(SECRET))
        alice = await registered(authy)
        fake.faults.drop = True
        with pytest.raises(ProviderUnavailable, match="connection"):
            await authy.check(alice, "1234567")
        await authy.close()


async def test_nothing_listening_is_unavailable() -> None:
    with serve(FakeAuthy()) as url:
        pass  # the port was just in use and is now closed
    authy = AuthyProvider(settings(url), Secret(SECRET))
    with pytest.raises(ProviderUnavailable, match="cannot connect"):
        await authy.send(target("1635"), "sms")
    await authy.close()


class FlakyConnect(httpx.AsyncBaseTransport):
    """The first ``failures`` requests cannot connect; the rest reach the fake."""

    def __init__(
        self, app: FakeAuthy, failures: int, error: type[httpx.TransportError] = httpx.ConnectError
    ) -> None:
        self.inner = httpx.ASGITransport(app)
        self.failures = failures
        self.error = error
        self.attempts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error("cannot connect", request=request)
        return await self.inner.handle_async_request(request)


async def test_a_get_is_tried_once_more_after_a_connect_error(fake: FakeAuthy) -> None:
    authy = AuthyProvider(
        settings(), Secret(SECRET), client=httpx.AsyncClient(transport=httpx.ASGITransport(fake))
    )
    alice = await registered(authy)
    flaky = FlakyConnect(fake, failures=1)
    async with httpx.AsyncClient(transport=flaky) as client:
        retrying = AuthyProvider(settings(), Secret(SECRET), client=client)
        await retrying.send(alice, "sms")
    assert flaky.attempts == 2
    assert len(fake.outbox) == 1


async def test_only_once_and_only_for_connect_errors_on_gets(fake: FakeAuthy) -> None:
    cases: list[tuple[FlakyConnect, Any]] = []
    twice = FlakyConnect(fake, failures=2)
    cases.append((twice, lambda p: p.send(target("1635"), "sms")))
    post = FlakyConnect(fake, failures=1)
    cases.append((post, lambda p: p.register(target())))
    timeout = FlakyConnect(fake, failures=1, error=httpx.ReadTimeout)
    cases.append((timeout, lambda p: p.check(target("1635"), "1234567")))
    for transport, call in cases:
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(ProviderUnavailable):
                await call(AuthyProvider(settings(), Secret(SECRET), client=client))
    assert (twice.attempts, post.attempts, timeout.attempts) == (2, 1, 1)
    assert fake.requests == []


# --------------------------------------------------------------------------- secrets stay secret


async def test_codes_and_the_api_key_never_show_in_logs_errors_or_repr(
    caplog: pytest.LogCaptureFixture, fake: FakeAuthy
) -> None:
    caplog.set_level(logging.DEBUG)
    raised: list[BaseException] = []
    with serve(fake) as url:
        authy = AuthyProvider(settings(url), Secret(SECRET))
        alice = await registered(authy)
        await authy.send(alice, "sms")
        code = fake.last_code(PHONE)
        assert await authy.check(alice, "7654321" if code != "7654321" else "1234567") is CheckResult.REJECTED
        assert await authy.check(alice, code) is CheckResult.APPROVED
        for fault in ("garbage", "drop", "rate_limited"):
            setattr(fake.faults, fault, True)
            try:
                await authy.check(alice, code)
            except ProviderError as exc:
                raised.append(exc)
            fake.faults.clear()
        wrong = AuthyProvider(settings(url, key="wrong-key-do-not-show-0000"), Secret(SECRET))
        try:
            await wrong.check(alice, code)
        except ProviderError as exc:
            raised.append(exc)
        await authy.close()
        await wrong.close()
    assert len(raised) == 4
    assert "HTTP Request" in caplog.text  # httpx did log each request, with the code masked
    texts = [caplog.text, repr(authy), repr(authy.http), repr(wrong)]
    for error in raised:
        chained: BaseException | None = error
        while chained is not None:
            texts += [str(chained), repr(chained)]
            chained = chained.__cause__ or chained.__context__
    for text in texts:
        for secret in (code, FAKE_AUTHY_API_KEY, "wrong-key-do-not-show-0000", SECRET):
            assert secret not in text


# --------------------------------------------------------------------------- settings


def authy_file(tmp_path: Path, **provider: Any) -> dict[str, Any]:
    return config(tmp_path, provider={"name": "authy", "production_mode": True, **provider})


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(data)
    return caught.value.problems


def test_production_authy_settings_need_a_key_and_get_the_documented_defaults(tmp_path: Path) -> None:
    assert problems(authy_file(tmp_path)) == [
        "provider.api_key: is required with name: authy and production_mode: true"
    ]
    assert problems(authy_file(tmp_path, api_key="")) == [
        "provider.api_key: is required with name: authy and production_mode: true"
    ]
    loaded = settings_from_mapping(authy_file(tmp_path, api_key=FAKE_AUTHY_API_KEY)).provider
    assert (loaded.api_url, loaded.timeout_seconds, loaded.email_domain, loaded.email_from_user) == (
        "https://api.authy.com",
        5.0,
        "users.invalid",
        False,
    )
    # Without production mode nothing is needed: the sandbox is used.
    assert settings_from_mapping(config(tmp_path, provider={"name": "authy"})).provider.api_key is None


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.authy.com", True),
        ("http://127.0.0.1:8089", True),
        ("http://localhost:8089", True),
        ("http://[::1]:8089", True),
        ("http://api.authy.com", False),
        ("http://127.0.0.1.attacker.example", False),
        ("http://127.0.0.1@attacker.example", False),
    ],
)
def test_the_key_travels_in_clear_text_only_to_this_machine(tmp_path: Path, url: str, allowed: bool) -> None:
    data = authy_file(tmp_path, api_key=FAKE_AUTHY_API_KEY, api_url=url)
    if allowed:
        assert settings_from_mapping(data).provider.api_url == url
    else:
        assert problems(data)[0].startswith("provider.api_url: must be an https:// URL in production mode")


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"email_domain": "not a domain"}, "provider.email_domain: must be a domain name"),
        ({"email_domain": "localhost"}, "provider.email_domain: must be a domain name"),
        ({"email_from_user": "yes"}, "provider.email_from_user: expected true or false, got a string"),
        ({"timeout_seconds": 0}, "provider.timeout_seconds: must be between 0.1 and 60, got 0"),
    ],
)
def test_bad_authy_settings_are_named_by_key_path(
    tmp_path: Path, patch: dict[str, Any], expected: str
) -> None:
    found = problems(authy_file(tmp_path, api_key=FAKE_AUTHY_API_KEY, **patch))
    assert any(p.startswith(expected) for p in found), found


def test_describe_masks_the_api_key(tmp_path: Path) -> None:
    loaded = settings_from_mapping(authy_file(tmp_path, api_key=FAKE_AUTHY_API_KEY))
    described = loaded.describe()["provider"]
    assert described["api_key"] == "**********"
    assert FAKE_AUTHY_API_KEY not in repr(loaded) + str(loaded.describe())
