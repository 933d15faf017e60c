"""The fake provider servers: documented bodies byte for byte, the outbox, the fault knobs, the
real-server helper, and the command line that runs them (with ``check-config --online``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Cli
from tfa_middleware.testing import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FAKE_AUTHY_API_KEY,
    FAKE_SERVICE_SID,
    DroppedConnection,
    FakeAuthy,
    FakeTwilioVerify,
    SentCode,
    serve,
)

ROOT = Path(__file__).resolve().parent.parent
KEY = {"X-Authy-API-Key": FAKE_AUTHY_API_KEY}
AUTH = (FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN)
SERVICE = f"/v2/Services/{FAKE_SERVICE_SID}"


@pytest.fixture
def authy() -> FakeAuthy:
    return FakeAuthy()


@pytest.fixture
def authy_client(authy: FakeAuthy) -> Iterator[httpx.Client]:
    with serve(authy) as url, httpx.Client(base_url=url + "/protected/json") as client:
        yield client


@pytest.fixture
def verify() -> FakeTwilioVerify:
    return FakeTwilioVerify()


@pytest.fixture
def verify_client(verify: FakeTwilioVerify) -> Iterator[httpx.Client]:
    with serve(verify) as url, httpx.Client(base_url=url, auth=AUTH) as client:
        yield client


def register(client: httpx.Client, cellphone: str = "2015550185") -> httpx.Response:
    form = {"user[email]": "a@example.com", "user[cellphone]": cellphone, "user[country_code]": "1"}
    return client.post("/users/new", data=form, headers=KEY)


# --------------------------------------------------------------------------- Authy, byte for byte


def test_authy_answers_with_the_documented_bodies(authy: FakeAuthy, authy_client: httpx.Client) -> None:
    created = register(authy_client)
    assert (created.status_code, created.headers["content-type"]) == (200, "application/json")
    assert created.content == b'{"message":"User created successfully.","user":{"id":1635},"success":true}'

    sms = authy_client.get("/sms/1635", params={"force": "true"}, headers=KEY)
    assert sms.content == b'{"success":true,"message":"SMS token was sent","cellphone":"+1-XXX-XXX-XX85"}'
    call = authy_client.get("/call/1635", params={"force": "true"}, headers=KEY)
    assert call.content == b'{"cellphone":"+1-XXX-XXX-XX85","message":"Call started...","success":true}'

    wrong = authy_client.get("/verify/0000000/1635", params={"force": "true"}, headers=KEY)
    assert (wrong.status_code, wrong.content) == (
        401,
        b'{"message":"Token is invalid","token":"is invalid","success":false,'
        b'"errors":{"message":"Token is invalid"},"error_code":"60020"}',
    )
    code = authy.last_code("+12015550185")
    ok = authy_client.get(f"/verify/{code}/1635", params={"force": "true"}, headers=KEY)
    assert ok.status_code == 200
    assert ok.content.startswith(
        b'{"message":"Token is valid.","token":"is valid","success":"true","device":{'
    )
    again = authy_client.get(f"/verify/{code}/1635", params={"force": "true"}, headers=KEY)
    assert again.status_code == 401
    assert b"Token was used recently" in again.content

    missing = authy_client.get("/sms/9999", headers=KEY)
    assert (missing.status_code, missing.content) == (
        404,
        b'{"message":"User not found.","success":false,"errors":{"message":"User not found."},'
        b'"error_code":"60026"}',
    )
    removed = authy_client.post("/users/1635/remove", headers=KEY)
    assert removed.content == b'{"message":"User was added to remove.","success":true}'
    assert authy_client.get("/sms/1635", headers=KEY).status_code == 404


def test_authy_refuses_an_invalid_user_and_a_bad_key_verbatim(authy_client: httpx.Client) -> None:
    bad = authy_client.post(
        "/users/new",
        data={"user[email]": "nope", "user[cellphone]": "2015550185", "user[country_code]": "1"},
        headers=KEY,
    )
    assert (bad.status_code, bad.content) == (
        400,
        b'{"message":"User was not valid","success":false,"errors":{"email":"is invalid",'
        b'"message":"User was not valid"},"email":"is invalid","error_code":"60027"}',
    )
    for headers in ({}, {"X-Authy-API-Key": "wrong"}):
        refused = authy_client.get("/app/details", headers=headers)
        assert (refused.status_code, refused.content) == (
            401,
            b'{"error_code":"60001","message":"Invalid API key","errors":{"message":"Invalid API key"},'
            b'"success":false}',
        )


def test_authy_takes_the_key_as_a_header_a_query_or_a_form_parameter(authy_client: httpx.Client) -> None:
    assert authy_client.get("/app/details", headers=KEY).status_code == 200
    assert authy_client.get("/app/details", params={"api_key": FAKE_AUTHY_API_KEY}).status_code == 200
    form = {"api_key": FAKE_AUTHY_API_KEY, "user[email]": "a@example.com"}
    created = authy_client.post(
        "/users/new", data={**form, "user[cellphone]": "2015550185", "user[country_code]": "1"}
    )
    assert created.status_code == 200


def test_authy_without_force_ignores_app_users_as_documented(
    authy: FakeAuthy, authy_client: httpx.Client
) -> None:
    register(authy_client, "9123456767")
    authy.users[1635].has_app = True
    ignored = authy_client.get("/sms/1635", headers=KEY)
    assert ignored.content == (
        b'{"cellphone":"+1-XXX-XXX-XX67","device":"iphone","ignored":true,"message":"Ignored: SMS is not '
        b'needed for smartphones. Pass force=true if you want to actually send it anyway.","success":true}'
    )
    assert authy.outbox == []


def test_authy_accepts_authy_pythons_json_registration(authy: FakeAuthy, authy_client: httpx.Client) -> None:
    body = {"user": {"email": "a@example.com", "cellphone": "2015550185", "country_code": 1}}
    assert authy_client.post("/users/new", json=body, headers=KEY).json()["user"] == {"id": 1635}
    assert authy.users[1635].e164 == "+12015550185"


def test_authy_path_tricks_hit_no_route(authy: FakeAuthy, authy_client: httpx.Client) -> None:
    register(authy_client)
    trick = authy_client.get("/verify/..%2Fsms/1635", headers=KEY)
    assert trick.status_code == 404
    assert authy.outbox == []
    assert authy.requests[-1].path == "/protected/json/verify/..%2Fsms/1635"  # recorded as sent


# --------------------------------------------------------------------------- Twilio Verify, byte for byte


def test_verify_answers_201_with_the_verification_object(
    verify: FakeTwilioVerify, verify_client: httpx.Client
) -> None:
    started = verify_client.post(f"{SERVICE}/Verifications", data={"To": "+15017122661", "Channel": "sms"})
    assert (started.status_code, started.headers["content-type"]) == (201, "application/json")
    body = started.json()
    assert list(body) == [
        "sid",
        "service_sid",
        "account_sid",
        "to",
        "channel",
        "status",
        "valid",
        "date_created",
        "date_updated",
        "lookup",
        "amount",
        "payee",
        "send_code_attempts",
        "url",
    ]
    assert re.fullmatch(r"VE[0-9a-f]{32}", body["sid"])
    assert (body["service_sid"], body["account_sid"], body["to"], body["status"], body["valid"]) == (
        FAKE_SERVICE_SID,
        FAKE_ACCOUNT_SID,
        "+15017122661",
        "pending",
        False,
    )
    # compact
    assert started.content.startswith(b'{"sid":"VE')
    assert b", " not in started.content
    check = verify_client.post(
        f"{SERVICE}/VerificationCheck", data={"To": "+15017122661", "Code": verify.last_code("+15017122661")}
    )
    assert (check.status_code, check.json()["status"], check.json()["valid"]) == (200, "approved", True)


@pytest.mark.parametrize(
    ("path", "form", "expected"),
    [
        (
            "/Verifications",
            {"To": "5017122661", "Channel": "sms"},
            b'{"code":60200,"message":"Invalid parameter: To",'
            b'"more_info":"https://www.twilio.com/docs/errors/60200","status":400}',
        ),
        (
            "/Verifications",
            {"To": "+15017122661", "Channel": "pigeon"},
            b'{"code":60200,"message":"Invalid parameter: Channel",'
            b'"more_info":"https://www.twilio.com/docs/errors/60200","status":400}',
        ),
        (
            "/VerificationCheck",
            {"To": "+15017122661", "Code": "123456"},
            b'{"code":20404,"message":"The requested resource /Services/' + FAKE_SERVICE_SID.encode() + b"/"
            b'VerificationCheck was not found","more_info":"https://www.twilio.com/docs/errors/20404","status":404}',
        ),
    ],
)
def test_verify_errors_use_twilios_envelope(
    verify_client: httpx.Client, path: str, form: dict[str, str], expected: bytes
) -> None:
    answer = verify_client.post(SERVICE + path, data=form)
    assert answer.content == expected
    assert answer.status_code == answer.json()["status"]


def test_verify_refuses_bad_basic_auth_with_20003(verify_client: httpx.Client) -> None:
    for auth in ((FAKE_ACCOUNT_SID, "wrong"), ("AC" + "1" * 32, FAKE_AUTH_TOKEN)):
        answer = verify_client.get(SERVICE, auth=auth)
        assert (answer.status_code, answer.json()["code"]) == (401, 20003)
    assert httpx.get(str(verify_client.base_url) + SERVICE).status_code == 401  # no auth at all


# --------------------------------------------------------------------------- outbox and request log


def test_the_outbox_and_the_request_log_are_inspectable() -> None:
    delivered: list[SentCode] = []
    fake = FakeAuthy(on_send=delivered.append)
    with pytest.raises(LookupError):
        fake.last_code()
    with serve(fake) as url, httpx.Client(base_url=url + "/protected/json") as client:
        register(client)
        client.get("/sms/1635", params={"force": "true"}, headers=KEY)
    [sent] = fake.outbox
    assert delivered == [sent]
    assert (sent.to, sent.channel) == ("+12015550185", "sms")
    assert re.fullmatch(r"\d{7}", sent.code)
    assert fake.last_code() == fake.last_code("+12015550185") == sent.code
    with pytest.raises(LookupError):
        fake.last_code("+449999999999")
    assert [(r.method, r.path, r.query) for r in fake.requests] == [
        ("POST", "/protected/json/users/new", {}),
        ("GET", "/protected/json/sms/1635", {"force": "true"}),
    ]


# --------------------------------------------------------------------------- fault knobs


def test_status_rate_limit_garbage_and_canned_answers(authy: FakeAuthy, authy_client: httpx.Client) -> None:
    authy.faults.status = 502
    page = authy_client.get("/app/details", headers=KEY)
    assert (page.status_code, page.headers["content-type"]) == (502, "text/html; charset=utf-8")
    assert b"502 Bad Gateway" in page.content
    authy.faults.clear()
    authy.faults.rate_limited = True
    limited = authy_client.get("/app/details", headers=KEY)
    assert (limited.status_code, limited.json()["error_code"]) == (429, "60003")
    assert limited.headers["retry-after"] == str(authy.retry_after_seconds)
    authy.rate_limit_status = 503
    older = authy_client.get("/app/details", headers=KEY)
    assert (older.status_code, older.headers["retry-after"]) == (503, str(authy.retry_after_seconds))
    authy.faults.clear()
    authy.faults.garbage = True
    garbage = authy_client.get("/app/details", headers=KEY)
    assert garbage.status_code == 200
    with pytest.raises(UnicodeDecodeError):  # gzip's magic bytes: not even UTF-8, let alone JSON
        garbage.json()
    authy.faults.clear()
    authy.faults.answer = (418, b"teapot", "text/plain")
    authy.faults.path_contains = "/sms/"
    assert authy_client.get("/sms/1", headers=KEY).content == b"teapot"
    assert authy_client.get("/app/details", headers=KEY).status_code == 200  # other paths untouched
    authy.faults.clear()
    assert authy_client.get("/sms/1", headers=KEY).status_code == 404
    authy.faults.status = 500
    assert authy_client.get("/app/details").status_code == 500  # a broken server answers anyone alike
    assert len(authy.requests) == 8


def test_verify_rate_limit_knob_answers_20429_with_retry_after(
    verify: FakeTwilioVerify, verify_client: httpx.Client
) -> None:
    verify.faults.rate_limited = True
    answer = verify_client.get(SERVICE)
    assert (answer.status_code, answer.json()["code"]) == (429, 20429)
    assert answer.headers["retry-after"] == str(verify.retry_after_seconds) == "30"
    verify.retry_after_seconds = 7
    assert verify_client.get(SERVICE).headers["retry-after"] == "7"


def test_verify_max_sends_and_checks_answer_429_with_retry_after(verify_client: httpx.Client) -> None:
    start = {"To": "+12015550185", "Channel": "sms"}
    for _ in range(5):
        assert verify_client.post(f"{SERVICE}/Verifications", data=start).status_code == 201
    sends = verify_client.post(f"{SERVICE}/Verifications", data=start)
    assert (sends.status_code, sends.json()["code"]) == (429, 60203)
    assert 0 < int(sends.headers["retry-after"]) <= 600  # until the verification expires
    check = {"To": "+12015550185", "Code": "0000000"}
    for _ in range(5):
        assert verify_client.post(f"{SERVICE}/VerificationCheck", data=check).status_code == 200
    checks = verify_client.post(f"{SERVICE}/VerificationCheck", data=check)
    assert (checks.status_code, checks.json()["code"]) == (429, 60202)
    assert 0 < int(checks.headers["retry-after"]) <= 600


def test_verify_answers_a_check_200_like_the_live_api(verify_client: httpx.Client) -> None:
    verify_client.post(f"{SERVICE}/Verifications", data={"To": "+12015550185", "Channel": "sms"})
    check = verify_client.post(f"{SERVICE}/VerificationCheck", data={"To": "+12015550185", "Code": "0000000"})
    assert (check.status_code, check.json()["status"]) == (200, "pending")


def test_latency_and_a_dropped_connection_over_real_http(authy: FakeAuthy) -> None:
    with serve(authy) as url:
        authy.faults.latency_seconds = 0.5
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(url + "/protected/json/app/details", headers=KEY, timeout=0.05)
        authy.faults.clear()
        authy.faults.drop = True
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(url + "/protected/json/app/details", headers=KEY)
        authy.faults.clear()
        assert httpx.get(url + "/protected/json/app/details", headers=KEY).status_code == 200


def test_serve_picks_a_free_port_and_closes_it_on_exit() -> None:
    with serve(FakeAuthy()) as first, serve(FakeAuthy()) as second:
        assert first != second
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", first)
        assert httpx.get(first + "/protected/json/app/details").status_code == 401
    with pytest.raises(httpx.ConnectError):
        httpx.get(first + "/protected/json/app/details")


def test_serve_says_so_when_the_port_is_taken() -> None:
    with serve(FakeAuthy()) as url:
        port = int(url.rsplit(":", 1)[1])
        with pytest.raises(RuntimeError, match="could not start"), serve(FakeAuthy(), port=port):
            pass


# --------------------------------------------------------------------------- the command line


def settings_file(tmp_path: Path, provider: str) -> Path:
    path = tmp_path / "tfa.yaml"
    path.write_text(
        f"""
secret_keys: ["cli-signing-key-0123456789-abcdefghijklmnopq"]
database_url: "sqlite+aiosqlite:///{tmp_path / "tfa.sqlite3"}"
provider:
{provider}
interfaces:
  admin:
    path_prefix: /admin
    identity: {{from: session, key: admin_id}}
""",
        encoding="utf-8",
    )
    return path


def test_check_config_online_asks_authy_about_the_key(cli: Cli, tmp_path: Path) -> None:
    with serve(FakeAuthy()) as url:
        good = settings_file(
            tmp_path,
            f"  name: authy\n  production_mode: true\n  api_key: {FAKE_AUTHY_API_KEY}\n  api_url: {url}",
        )
        result = cli("check-config", str(good), "--online")
        assert result.returncode == 0, result.stderr
        assert "# online: authy: the API key works (app 'Fake Authy app'" in result.stdout
        bad = settings_file(
            tmp_path, f"  name: authy\n  production_mode: true\n  api_key: wrong-key\n  api_url: {url}"
        )
        result = cli("check-config", str(bad), "--online")
    assert result.returncode == 1
    assert "Authy refused the API key (401, error 60001); check provider.api_key" in result.stderr
    assert "wrong-key" not in result.stdout + result.stderr


def test_check_config_online_fetches_the_verify_service(cli: Cli, tmp_path: Path) -> None:
    with serve(FakeTwilioVerify()) as url:
        lines = [
            "  name: twilio_verify",
            "  production_mode: true",
            f"  account_sid: {FAKE_ACCOUNT_SID}",
            f"  auth_token: {FAKE_AUTH_TOKEN}",
            f"  service_sid: {FAKE_SERVICE_SID}",
            f"  api_url: {url}",
        ]
        result = cli("check-config", str(settings_file(tmp_path, "\n".join(lines))), "--online")
        assert result.returncode == 0, result.stderr
        assert f"the credentials work (service 'Fake shop', {FAKE_SERVICE_SID})" in result.stdout
        lines[4] = "  service_sid: VA" + "ab" * 16
        result = cli("check-config", str(settings_file(tmp_path, "\n".join(lines))), "--online")
    assert result.returncode == 1
    assert "check provider.service_sid" in result.stderr
    assert FAKE_AUTH_TOKEN not in result.stdout + result.stderr


def test_check_config_online_without_production_mode_has_nothing_to_ask(cli: Cli, tmp_path: Path) -> None:
    result = cli("check-config", str(settings_file(tmp_path, "  name: authy")), "--online")
    assert result.returncode == 0
    assert "the sandbox is used and nothing is sent: nothing to check" in result.stdout


def test_check_config_online_when_the_provider_is_down(cli: Cli, tmp_path: Path) -> None:
    with serve(FakeAuthy()) as url:
        pass
    path = settings_file(tmp_path, f"  name: authy\n  production_mode: true\n  api_key: k\n  api_url: {url}")
    result = cli("check-config", str(path), "--online")
    assert result.returncode == 1
    assert "cannot connect to authy" in result.stderr


@pytest.mark.parametrize("provider", ["authy", "twilio_verify"])
def test_fake_provider_command_serves_and_prints_the_codes(provider: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tfa_middleware.cli", "fake-provider", provider, "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    watchdog = threading.Timer(60, process.kill)  # a hung server must not hang the suite
    watchdog.start()
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
        assert match, first + (process.stderr.read() if process.stderr else "")
        url = match.group(1)
        hint = [process.stdout.readline() for _ in range(5 if provider == "authy" else 7)]
        assert hint[0] == "provider:\n"
        assert hint[1] == f"  name: {provider}\n"
        assert hint[-2:] == ["  production_mode: true\n", f"  api_url: {url}\n"]
        if provider == "authy":
            with httpx.Client(base_url=url + "/protected/json") as client:
                register(client)
                client.get("/sms/1635", params={"force": "true"}, headers=KEY)
        else:
            with httpx.Client(base_url=url, auth=AUTH) as client:
                client.post(f"{SERVICE}/Verifications", data={"To": "+12015550185", "Channel": "sms"})
        printed = process.stdout.readline()
        assert re.fullmatch(rf"{provider}: sms to \+12015550185: code \d{{6,7}}\n", printed), printed
    finally:
        watchdog.cancel()
        process.terminate()
        process.wait(30)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


async def test_in_process_a_dropped_connection_surfaces_as_the_fakes_own_error(authy: FakeAuthy) -> None:
    authy.faults.drop = True
    async with httpx.AsyncClient(transport=httpx.ASGITransport(authy)) as client:
        with pytest.raises(DroppedConnection):
            await client.get("http://fake/protected/json/app/details", headers=KEY)
