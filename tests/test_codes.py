"""One-time codes: format first, one message for every failure, single use, bound, hashed, unlogged."""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.codes import other_code
from tests.harness import ADMIN_PHONE, SECRET, Harness
from tfa_middleware.logging import JsonFormatter
from tfa_middleware.pages.kit import WRONG_CODE
from tfa_middleware.service import VerifyStatus
from tfa_middleware.store import events as event_rows
from tfa_middleware.store import outbox as outbox_rows
from tfa_middleware.tables import codes

FORMAT_MESSAGE = "Enter the {n}-digit code from the text message, digits only."
ERROR_PARAGRAPH = re.compile(r'<p id="(?:code|form)-error" class="error" role="alert">(.*?)</p>', re.S)
CSRF_VALUE = re.compile(r'name="csrf_token" value="[^"]+"')


def error_text(response: httpx.Response) -> str:
    match = ERROR_PARAGRAPH.search(response.text)
    assert match, f"no error paragraph: {response.status_code} {response.text[:300]}"
    return html.unescape(match.group(1))


async def code_rows(h: Harness) -> list[dict[str, Any]]:
    async with h.service.store.engine.connect() as conn:
        rows = (await conn.execute(select(codes).order_by(codes.c.id))).all()
    return [dict(row._mapping) for row in rows]


async def send_new_code(
    h: Harness, headers: dict[str, str], different_from: str, prefix: str = "/admin"
) -> str:
    """Send until the outbox holds a code other than ``different_from`` (1 in 10⁶ repeats)."""
    while True:
        assert (await h.send(headers, prefix)).status_code == 303
        code = await h.latest_code()
        if code != different_from:
            return code


# ---------------------------------------------------------------------- req 19: one message, no oracle


async def _wrong(h: Harness, alice: dict[str, str], code: str) -> httpx.Response:
    return await h.verify(alice, other_code(code))


async def _expired(h: Harness, alice: dict[str, str], code: str) -> httpx.Response:
    h.clock.advance(601)
    return await h.verify(alice, code)


async def _reused(h: Harness, alice: dict[str, str], code: str) -> httpx.Response:
    token = await h.csrf(alice)  # read before verifying: with a proof the challenge page redirects away
    assert (await h.verify(alice, code)).status_code == 303
    logout = await h.client.post("/admin/_2fa/logout", data={"csrf_token": token}, headers=alice)
    assert logout.status_code == 303
    assert "tfa_admin" not in h.client.cookies
    return await h.verify(alice, code)


async def _locked(h: Harness, alice: dict[str, str], code: str) -> httpx.Response:
    for _ in range(5):
        assert (await h.verify(alice, other_code(code))).status_code == 400
    return await h.verify(alice, code)


async def _superseded(h: Harness, alice: dict[str, str], code: str) -> httpx.Response:
    await send_new_code(h, alice, different_from=code)
    return await h.verify(alice, code)


Scenario = Callable[[Harness, dict[str, str], str], Awaitable[httpx.Response]]


@pytest.mark.parametrize(
    "scenario",
    [_wrong, _expired, _reused, _locked, _superseded],
    ids=["wrong", "expired", "reused", "locked", "superseded"],
)
async def test_every_failed_code_gets_the_same_status_and_page(harness: Harness, scenario: Scenario) -> None:
    alice = harness.as_user("alice")
    baseline = await harness.verify(alice, "000000")  # no code sent yet: nothing can match
    assert baseline.status_code == 400
    assert error_text(baseline) == WRONG_CODE

    assert (await harness.send(alice)).status_code == 303
    response = await scenario(harness, alice, await harness.latest_code())

    assert response.status_code == baseline.status_code
    assert error_text(response) == error_text(baseline)
    # Not just the paragraph: the whole page is the same once the per-request CSRF token is removed.
    assert CSRF_VALUE.sub("", response.text) == CSRF_VALUE.sub("", baseline.text)
    assert (await harness.client.get("/admin/orders", headers=alice)).status_code == 303


@pytest.mark.parametrize(("elapsed", "status"), [(0, 303), (599, 303), (600, 400), (601, 400), (3600, 400)])
async def test_a_code_lives_ten_minutes_at_most(harness: Harness, elapsed: int, status: int) -> None:
    alice = harness.as_user("alice")
    await harness.send(alice)
    code = await harness.latest_code()
    harness.clock.advance(elapsed)
    assert (await harness.verify(alice, code)).status_code == status


# ---------------------------------------------------------------------- req 2: format before anything


@pytest.mark.parametrize(
    "submitted",
    [
        "abcdef",
        "12345a",
        "12345",
        "1234567",
        "1234567890",
        "",
        "-12345",
        "+123456",
        "12.345",
        "１２３４５６",  # fullwidth digits: str.isdigit() says yes, the format check must say no
        "١٢٣٤٥٦",  # Arabic-Indic digits
        "12345\x00",
    ],
)
async def test_a_malformed_code_gets_the_format_message_and_spends_nothing(
    harness: Harness, submitted: str
) -> None:
    alice = harness.as_user("alice")
    await harness.send(alice)
    code = await harness.latest_code()
    before = await code_rows(harness)
    events_before = await event_rows.latest(harness.service.store)

    response = await harness.verify(alice, submitted)

    assert response.status_code == 400
    assert error_text(response) == FORMAT_MESSAGE.format(n=6)
    assert await code_rows(harness) == before  # attempts_left untouched: the provider was not asked
    assert [e.kind for e in await event_rows.latest(harness.service.store)] == [e.kind for e in events_before]
    assert (await harness.verify(alice, code)).status_code == 303


async def test_a_malformed_code_is_refused_by_the_service_without_touching_the_code(harness: Harness) -> None:
    await harness.service.send_code("admin", "alice")
    before = await code_rows(harness)
    outcome = await harness.service.verify_code("admin", "alice", "1234567890")
    assert outcome.status is VerifyStatus.MALFORMED
    assert await code_rows(harness) == before


@pytest.mark.parametrize(
    ("code", "well_formed"),
    [
        ("012345", True),
        ("000000", True),
        ("999999", True),
        ("12345", False),
        ("0123456", False),
        ("12345e", False),
        ("1e5000", False),
        (" 12345", False),
        ("²³⁴⁵⁶⁷", False),
        ("１２３４５６", False),
    ],
)
def test_code_is_well_formed(harness: Harness, code: str, well_formed: bool) -> None:
    assert harness.service.code_is_well_formed(code) is well_formed


@pytest.mark.parametrize("length", [6, 8, 10])
async def test_sandbox_codes_are_strings_of_the_configured_length(make_harness: Any, length: int) -> None:
    h: Harness = await make_harness(provider={"code_length": length})
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    alice = h.as_user("alice")
    for _ in range(5):
        await h.service.send_code("admin", "alice")
        body = (await outbox_rows.latest(h.service.store, 1))[-1].body
        assert re.search(rf"(?<!\d)\d{{{length}}}(?!\d)", body), body
    short = await h.verify(alice, "1" * (length - 1))
    assert short.status_code == 400
    assert error_text(short) == FORMAT_MESSAGE.format(n=length)
    assert (await h.verify(alice, await h.latest_code())).status_code == 303


async def test_leading_zeros_survive_from_secrets_to_the_outbox_and_back(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox draws its digits from ``secrets``: make it draw 0, 1, 2... and follow the code."""
    real_choice = secrets.choice
    digits = iter("012345")

    def choice(seq: Any) -> Any:
        return next(digits) if seq == "0123456789" else real_choice(seq)

    alice = harness.as_user("alice")
    token = await harness.csrf(alice)
    monkeypatch.setattr(secrets, "choice", choice)
    assert (
        await harness.client.post("/admin/_2fa/send", data={"csrf_token": token}, headers=alice)
    ).status_code == 303
    monkeypatch.undo()

    assert "code is 012345." in (await outbox_rows.latest(harness.service.store, 1))[-1].body
    dropped = await harness.verify(alice, "12345")  # what int("012345") would give
    assert dropped.status_code == 400
    assert error_text(dropped) == FORMAT_MESSAGE.format(n=6)
    assert (await harness.verify(alice, "012345", next_="/admin/orders")).headers[
        "location"
    ] == "/admin/orders"


# ---------------------------------------------------------------------- req 3: stored only as a hash


async def test_codes_are_stored_only_as_a_keyed_hash(harness: Harness) -> None:
    await harness.send(harness.as_user("alice"))
    code = await harness.latest_code()
    assert code in (await outbox_rows.latest(harness.service.store, 1))[-1].body

    rows = await code_rows(harness)
    assert len(rows) == 1
    assert all(code not in str(value) for value in rows[0].values())
    assert re.fullmatch(r"[0-9a-f]{64}", rows[0]["code_hash"])
    assert rows[0]["code_hash"] != hashlib.sha256(code.encode()).hexdigest()  # not searchable unkeyed
    assert rows[0]["expires_at"] - rows[0]["created_at"] == 600


# ---------------------------------------------------------------------- req 4: bound to user and interface


async def test_a_code_works_only_for_the_user_it_was_sent_to(harness: Harness) -> None:
    alice, bob = harness.as_user("alice"), harness.as_user("bob")
    await harness.send(alice)
    alices = await harness.latest_code()
    bobs = await send_new_code(harness, bob, different_from=alices)

    refused = await harness.verify(bob, alices)
    assert refused.status_code == 400
    assert error_text(refused) == WRONG_CODE
    assert (await harness.client.get("/admin/orders", headers=bob)).status_code == 303
    assert (await harness.verify(alice, alices)).status_code == 303
    assert (await harness.verify(bob, bobs)).status_code == 303


async def test_an_admin_code_does_not_work_on_the_customer_interface(harness: Harness) -> None:
    alice = harness.as_user("alice")
    await harness.send(alice)
    admin_code = await harness.latest_code()
    customer_code = await send_new_code(harness, alice, different_from=admin_code, prefix="/account")

    refused = await harness.verify(alice, admin_code, prefix="/account")
    assert refused.status_code == 400
    assert error_text(refused) == WRONG_CODE
    assert (await harness.client.get("/account/orders", headers=alice)).status_code == 303
    assert (await harness.verify(alice, customer_code, prefix="/account")).status_code == 303
    assert (await harness.verify(alice, admin_code)).status_code == 303


async def test_a_customer_code_does_not_work_on_the_admin_interface(harness: Harness) -> None:
    alice = harness.as_user("alice")
    await harness.send(alice, "/account")
    customer_code = await harness.latest_code()
    refused = await harness.verify(alice, customer_code)  # admin has no live code at all
    assert refused.status_code == 400
    assert (await harness.verify(alice, customer_code, prefix="/account")).status_code == 303


# ---------------------------------------------------------------------- attempts and replacement


@pytest.mark.parametrize(("wrong_tries", "status"), [(0, 303), (1, 303), (4, 303), (5, 400), (6, 400)])
async def test_five_wrong_tries_void_the_code(harness: Harness, wrong_tries: int, status: int) -> None:
    alice = harness.as_user("alice")
    await harness.send(alice)
    code = await harness.latest_code()
    for i in range(wrong_tries):
        assert (await harness.verify(alice, other_code(code))).status_code == 400
        assert (await code_rows(harness))[-1]["attempts_left"] == max(0, 5 - (i + 1))
    assert (await harness.verify(alice, code)).status_code == status


async def test_sending_a_new_code_voids_the_previous_one(harness: Harness) -> None:
    alice = harness.as_user("alice")
    await harness.send(alice)
    first = await harness.latest_code()
    second = await send_new_code(harness, alice, different_from=first)

    assert (await harness.verify(alice, first)).status_code == 400
    assert (await harness.verify(alice, second)).status_code == 303


# ---------------------------------------------------------------------- req 5: single use under concurrency


async def test_parallel_service_verifies_of_the_right_code_approve_exactly_once(harness: Harness) -> None:
    await harness.service.send_code("admin", "alice")
    code = await harness.latest_code()
    outcomes = await asyncio.gather(*(harness.service.verify_code("admin", "alice", code) for _ in range(20)))
    statuses = [o.status for o in outcomes]
    assert statuses.count(VerifyStatus.APPROVED) == 1
    assert statuses.count(VerifyStatus.REJECTED) == 19


async def test_parallel_posts_of_the_right_code_let_in_exactly_once(harness: Harness) -> None:
    alice = harness.as_user("alice")
    await harness.send(alice)
    code = await harness.latest_code()
    token = await harness.csrf(alice)
    url = "/admin/_2fa/verify?next=/admin/orders"
    responses = await asyncio.gather(
        *(
            harness.client.post(url, data={"csrf_token": token, "code": code}, headers=alice)
            for _ in range(20)
        )
    )
    winners = [r for r in responses if r.status_code == 303]
    assert len(winners) == 1
    assert winners[0].headers["location"] == "/admin/orders"
    assert "tfa_admin=" in winners[0].headers["set-cookie"]
    losers = [r for r in responses if r is not winners[0]]
    assert {r.status_code for r in losers} == {400}
    assert {error_text(r) for r in losers} == {WRONG_CODE}
    assert all("set-cookie" not in r.headers for r in losers)


# ---------------------------------------------------------------------- req 10: never in logs or repr


def _secrets_in(records: list[logging.LogRecord], codes_sent: list[str]) -> list[str]:
    forbidden = [*codes_sent, "+12015550123", "2015550123", "+12015550199", "2015550199", SECRET]
    found = []
    for record in records:
        # The JSON rendering holds the message and the audit fields passed in extra (record.tfa_event).
        text = record.getMessage() + (record.exc_text or "") + JsonFormatter().format(record)
        found += [f"{record.name}: {word!r}" for word in forbidden if word in text]
    return found


async def _whole_flow(harness: Harness) -> list[str]:
    """Enroll vendor by the pages, then log alice in with one wrong and one malformed try first."""
    vendor = harness.as_user("vendor")
    token = await harness.csrf(vendor)
    enroll = {"csrf_token": token, "country_code": "+1", "phone": "201 555 0199"}
    assert (await harness.client.post("/admin/_2fa/enroll", data=enroll, headers=vendor)).status_code == 303
    vendors = await harness.latest_code()
    assert (await harness.verify(vendor, vendors)).status_code == 303

    alice = harness.as_user("alice")
    await harness.client.get("/admin/orders", headers=alice)
    await harness.send(alice)
    code = await harness.latest_code()
    await harness.verify(alice, other_code(code))
    await harness.verify(alice, "abc")
    assert (await harness.verify(alice, code)).status_code == 303
    assert (await harness.client.get("/admin/orders", headers=alice)).status_code == 200
    return [vendors, code]


async def test_codes_phone_numbers_and_keys_never_reach_any_log(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sent = await _whole_flow(harness)
    assert any(r.name.startswith("tfa_middleware") for r in caplog.records)  # the capture works
    assert _secrets_in(caplog.records, sent) == []


async def test_codes_phone_numbers_and_keys_never_reach_our_own_logs(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sent = await _whole_flow(harness)
    ours = [r for r in caplog.records if r.name.startswith("tfa_middleware")]
    # The masked number is what is logged, among the audit event's fields.
    assert any(getattr(r, "tfa_event", {}).get("to") == "+1 ••• ••• 0199" for r in ours)
    assert _secrets_in(ours, sent) == []


async def test_secrets_do_not_show_in_repr(harness: Harness) -> None:
    for thing in (harness.settings, harness.settings.secret_keys, harness.service.provider, harness.service):
        assert SECRET not in repr(thing)
        assert SECRET not in str(thing)
