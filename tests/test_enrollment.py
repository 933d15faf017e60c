"""Enrollment and re-enrollment, the audit trail, the service API's checks, and failing closed."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from tests.harness import ADMIN_PHONE, Harness, snapshot
from tfa_middleware import (
    InvalidInput,
    InvalidPhoneNumber,
    RequestInfo,
    StoreUnavailable,
    TwoFactor,
    UnknownInterface,
)
from tfa_middleware.errors import EnrollmentNotAllowed
from tfa_middleware.identity import MAX_USER_ID_LENGTH
from tfa_middleware.settings import LimitSettings
from tfa_middleware.store import AuditEvent
from tfa_middleware.store import events as event_rows
from tfa_middleware.store import outbox as outbox_rows

ERROR_PARAGRAPH = re.compile(r'class="error" role="alert">(.*?)</p>', re.S)
NEW_NUMBER = {"country_code": "+1", "phone": "201 555 0199"}
NEW_MASKED = "+1 ••• ••• 0199"
ALICE_MASKED = "+1 ••• ••• 0123"


def error_text(response: httpx.Response) -> str:
    match = ERROR_PARAGRAPH.search(response.text)
    assert match, f"no error paragraph: {response.status_code} {response.text[:300]}"
    return html.unescape(match.group(1))


async def enroll(
    h: Harness, user: str, form: dict[str, str], prefix: str = "/admin", next_: str = ""
) -> httpx.Response:
    headers = h.as_user(user)
    token = await h.csrf(headers, f"{prefix}/_2fa/challenge")
    url = f"{prefix}/_2fa/enroll" + (f"?next={next_}" if next_ else "")
    return await h.client.post(url, data={"csrf_token": token, **form}, headers=headers)


# ---------------------------------------------------------------------- first enrollment


async def test_a_user_without_a_phone_is_sent_to_enroll(harness: Harness) -> None:
    vendor = harness.as_user("vendor")
    stopped = await harness.client.get("/admin/orders", headers=vendor)
    assert stopped.status_code == 303
    challenge = await harness.client.get(stopped.headers["location"], headers=vendor)
    assert challenge.status_code == 303
    assert challenge.headers["location"] == "/admin/_2fa/enroll?next=%2Fadmin%2Forders"

    page = await harness.client.get(challenge.headers["location"], headers=vendor)
    assert page.status_code == 200
    assert 'name="country_code"' in page.text
    assert 'name="phone"' in page.text
    assert "Keep " not in page.text
    assert 'name="code"' not in page.text  # nothing to confirm yet

    send = await harness.send(vendor)  # "text me a code" without a phone goes to enrollment too
    assert send.status_code == 303
    assert urlpath(send.headers["location"]) == "/admin/_2fa/enroll"
    assert await outbox_rows.latest(harness.service.store) == []


def urlpath(location: str) -> str:
    return location.split("?", 1)[0]


@pytest.mark.parametrize(
    ("country_code", "phone", "message"),
    [
        ("1", "abc", "The phone number may contain only digits, spaces and dashes."),
        ("1", "20155", "That phone number is too short."),
        ("999", "2015550199", "+999 is not a country calling code we know."),
        ("44", "20 7946 0000", "Codes are sent by text message: please give a mobile number."),
        ("+44", "020 7946 0000", "Codes are sent by text message: please give a mobile number."),
        ("", "2015550199", "The country code is 1 to 3 digits, for example +1 or +44."),
        ("1", "", "Enter your mobile phone number."),
        ("1", "2" * 16, "That phone number is too long."),
        ("1", "<script>alert(1)</script>", "The phone number may contain only digits, spaces and dashes."),
    ],
)
async def test_an_invalid_number_gets_a_clear_400_and_nothing_is_stored(
    harness: Harness, country_code: str, phone: str, message: str
) -> None:
    before = await snapshot(harness)
    response = await enroll(harness, "vendor", {"country_code": country_code, "phone": phone})

    assert response.status_code == 400
    assert error_text(response) == message
    assert "<script>" not in response.text
    assert "Traceback" not in response.text
    assert await snapshot(harness) == before
    assert (await harness.service.status("admin", "vendor")).state == "none"


async def test_a_valid_number_is_pending_until_its_code_confirms_it(harness: Harness) -> None:
    vendor = harness.as_user("vendor")
    response = await enroll(harness, "vendor", NEW_NUMBER, next_="/admin/orders")
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/_2fa/enroll?sent=1&next=%2Fadmin%2Forders"

    status = await harness.service.status("admin", "vendor")
    assert (status.state, status.pending_masked_phone, status.masked_phone) == ("pending", NEW_MASKED, "")
    [message] = await outbox_rows.latest(harness.service.store)
    assert (message.user_id, message.to_masked) == ("vendor", NEW_MASKED)
    page = await harness.client.get(response.headers["location"], headers=vendor)
    assert f"Confirm {NEW_MASKED}" in page.text
    assert f"We sent a code to {NEW_MASKED}." in page.text
    assert (await harness.client.get("/admin/orders", headers=vendor)).status_code == 303  # pending ≠ active

    code = await harness.latest_code()
    wrong = await harness.verify(vendor, f"{(int(code) + 1) % 10**6:06d}")
    assert wrong.status_code == 400
    assert f"Confirm {NEW_MASKED}" in wrong.text  # the error is shown on the enroll page
    assert (await harness.service.status("admin", "vendor")).state == "pending"

    verified = await harness.verify(vendor, code, next_="/admin/orders")
    assert verified.status_code == 303
    assert verified.headers["location"] == "/admin/orders"
    assert "tfa_admin=" in verified.headers["set-cookie"]
    status = await harness.service.status("admin", "vendor")
    assert (status.state, status.masked_phone, status.pending_masked_phone) == ("active", NEW_MASKED, "")
    assert (await harness.client.get("/admin/orders", headers=vendor)).status_code == 200


async def test_a_new_pending_number_voids_the_code_sent_to_the_previous_one(harness: Harness) -> None:
    vendor = harness.as_user("vendor")
    await enroll(harness, "vendor", {"country_code": "1", "phone": "2015550188"})
    first = await harness.latest_code()
    await enroll(harness, "vendor", NEW_NUMBER)
    second = await harness.latest_code()

    if first != second:  # equal codes (1 in 10⁶) still differ in their hash, but prove nothing here
        assert (await harness.verify(vendor, first)).status_code == 400
    assert (await harness.verify(vendor, second)).status_code == 303
    assert (await harness.service.status("admin", "vendor")).masked_phone == NEW_MASKED


async def test_a_new_number_whose_code_the_cooldown_refused_says_so(
    make_harness: Callable[..., Awaitable[Harness]],
) -> None:
    # A second number right after the first: the resend cooldown refuses its code, and the page
    # must say that instead of "we sent a code".
    h = await make_harness(limits=LimitSettings())
    first = await enroll(h, "vendor", NEW_NUMBER)
    assert first.status_code == 303
    assert (await outbox_rows.latest(h.service.store, 1))[0].to_masked == NEW_MASKED
    second = await enroll(h, "vendor", {"country_code": "+1", "phone": "201 555 0188"})
    assert second.status_code == 429
    assert "We sent a code" not in second.text
    assert error_text(second) == (
        "No code was sent to +1 ••• ••• 0188 yet. You can ask for a new code in 30 seconds."
    )
    assert "Confirm +1 ••• ••• 0188" in second.text
    assert 'data-countdown="30"' in second.text
    assert len(await outbox_rows.latest(h.service.store, 10)) == 1


async def test_a_number_set_by_the_shop_unconfirmed_is_confirmed_at_login(harness: Harness) -> None:
    await harness.service.set_phone("admin", "vendor", *NEW_NUMBER.values())
    vendor = harness.as_user("vendor")
    assert (await harness.client.get("/admin/orders", headers=vendor)).status_code == 303
    page = await harness.client.get("/admin/_2fa/challenge", headers=vendor, follow_redirects=True)
    assert f"Confirm {NEW_MASKED}" in page.text

    assert (await harness.send(vendor)).status_code == 303
    assert (await outbox_rows.latest(harness.service.store, 1))[-1].to_masked == NEW_MASKED
    assert (await harness.verify(vendor, await harness.latest_code())).status_code == 303
    assert (await harness.service.status("admin", "vendor")).state == "active"


# ------------------------------------------------------------------ req 22: no phone swap without the factor


async def test_an_enrolled_user_cannot_change_the_phone_from_the_enroll_page(harness: Harness) -> None:
    alice = harness.as_user("alice")
    page = await harness.client.get("/admin/_2fa/enroll", headers=alice)
    assert page.status_code == 303
    assert urlpath(page.headers["location"]) == "/admin/_2fa/challenge"

    before = await snapshot(harness)
    for form in (NEW_NUMBER, {"action": "keep"}):
        response = await enroll(harness, "alice", form)
        assert response.status_code == 303
        assert urlpath(response.headers["location"]) == "/admin/_2fa/challenge"
    assert await snapshot(harness) == before

    # Logged in with the second factor changes nothing: the page still is not a way to swap phones.
    token = await harness.csrf(alice)  # read before logging in: with a proof the challenge page redirects
    await harness.pass_challenge("alice")
    before = await snapshot(harness)
    response = await harness.client.post(
        "/admin/_2fa/enroll", data={"csrf_token": token, **NEW_NUMBER}, headers=alice
    )
    assert response.status_code == 303
    assert await snapshot(harness) == before
    assert (await harness.service.status("admin", "alice")).masked_phone == ALICE_MASKED


async def test_begin_enrollment_refuses_an_enrolled_user(harness: Harness) -> None:
    with pytest.raises(EnrollmentNotAllowed):
        await harness.service.begin_enrollment("admin", "alice", *NEW_NUMBER.values())
    with pytest.raises(EnrollmentNotAllowed):
        await harness.service.keep_phone("admin", "alice")
    status = await harness.service.status("admin", "alice")
    assert (status.masked_phone, status.pending_masked_phone) == (ALICE_MASKED, "")


# ---------------------------------------------------------------------- require_enrollment


async def test_require_enrollment_offers_to_keep_the_number_and_keeping_it_needs_a_code(
    harness: Harness,
) -> None:
    alice = harness.as_user("alice")
    await harness.service.require_enrollment("admin", "alice")
    stopped = await harness.client.get("/admin/_2fa/challenge?next=/admin/orders", headers=alice)
    assert stopped.status_code == 303
    assert urlpath(stopped.headers["location"]) == "/admin/_2fa/enroll"

    page = await harness.client.get(stopped.headers["location"], headers=alice)
    assert page.status_code == 200
    assert f"Keep {ALICE_MASKED}" in page.text
    assert 'name="action" value="keep"' in page.text
    # a different number
    assert 'name="country_code"' in page.text
    assert 'name="phone"' in page.text

    kept = await enroll(harness, "alice", {"action": "keep"}, next_="/admin/orders")
    assert kept.status_code == 303
    [message] = await outbox_rows.latest(harness.service.store)
    assert (message.user_id, message.to_masked) == ("alice", ALICE_MASKED)
    assert (await harness.client.get("/admin/orders", headers=alice)).status_code == 303  # not yet

    verified = await harness.verify(alice, await harness.latest_code(), next_="/admin/orders")
    assert verified.status_code == 303
    assert verified.headers["location"] == "/admin/orders"
    assert (await harness.client.get("/admin/orders", headers=alice)).status_code == 200
    status = await harness.service.status("admin", "alice")
    assert (status.state, status.masked_phone, status.require_enrollment) == ("active", ALICE_MASKED, False)


async def test_require_enrollment_with_a_different_number_confirms_the_new_one(harness: Harness) -> None:
    alice = harness.as_user("alice")
    await harness.service.require_enrollment("admin", "alice")
    assert (await enroll(harness, "alice", NEW_NUMBER)).status_code == 303
    status = await harness.service.status("admin", "alice")
    assert (status.masked_phone, status.pending_masked_phone) == (ALICE_MASKED, NEW_MASKED)
    assert (await outbox_rows.latest(harness.service.store, 1))[-1].to_masked == NEW_MASKED

    assert (await harness.verify(alice, await harness.latest_code())).status_code == 303
    status = await harness.service.status("admin", "alice")
    assert (status.masked_phone, status.pending_masked_phone, status.require_enrollment) == (
        NEW_MASKED,
        "",
        False,
    )
    assert [e.kind for e in await event_rows.latest(harness.service.store, "admin", "alice")][
        -1
    ] == "phone_changed"


async def _require_enrollment(h: Harness) -> None:
    await h.service.require_enrollment("admin", "alice")


async def _reset(h: Harness) -> None:
    await h.service.reset("admin", "alice")


async def _new_phone(h: Harness) -> None:
    await h.service.set_phone("admin", "alice", *NEW_NUMBER.values(), confirmed=True)


@pytest.mark.parametrize(
    "revoke", [_require_enrollment, _reset, _new_phone], ids=["require", "reset", "new-phone"]
)
async def test_an_issued_proof_stops_working_within_the_revocation_interval(
    harness: Harness, revoke: Callable[[Harness], Awaitable[None]]
) -> None:
    alice = harness.as_user("alice")
    await harness.pass_challenge("alice")
    assert (await harness.client.get("/admin/orders", headers=alice)).status_code == 200

    await revoke(harness)
    harness.clock.advance(11)

    assert (await harness.client.get("/admin/orders", headers=alice)).status_code == 303
    api = await harness.client.get("/admin/api/orders", headers={**alice, "accept": "application/json"})
    assert api.status_code == 401


async def test_an_issued_proof_survives_a_confirmed_set_phone_to_the_same_number(harness: Harness) -> None:
    alice = harness.as_user("alice")
    await harness.pass_challenge("alice")
    await harness.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    harness.clock.advance(11)
    assert (await harness.client.get("/admin/orders", headers=alice)).status_code == 200


# ---------------------------------------------------------------------- req 21: audit events


async def test_each_action_writes_exactly_one_audit_event(harness: Harness) -> None:
    store = harness.service.store
    vendor, alice = harness.as_user("vendor"), harness.as_user("alice")
    admin_desk = RequestInfo(ip="203.0.113.7", user_agent="admin-tool")
    seen = len(await event_rows.latest(store, limit=1000))

    async def new_events() -> list[AuditEvent]:
        nonlocal seen
        everything = await event_rows.latest(store, limit=1000)
        fresh, seen = everything[seen:], len(everything)
        return fresh

    async def expect(user: str, kinds: list[str], ip: str = "127.0.0.1") -> list[AuditEvent]:
        fresh = await new_events()
        assert [e.kind for e in fresh] == kinds
        for e in fresh:
            assert (e.interface, e.user_id, e.ip, e.at) == ("admin", user, ip, harness.clock.now)
            assert "2015550" not in json.dumps(dict(e.detail or {}), ensure_ascii=False)  # masked only
        return fresh

    await enroll(harness, "vendor", NEW_NUMBER)
    _, sent = await expect("vendor", ["phone_pending", "code_sent"])
    expected = {"channel": "sms", "to": NEW_MASKED, "purpose": "enroll", "country": "US"}
    assert dict(sent.detail or {}) == expected
    assert sent.user_agent is not None
    assert sent.user_agent.startswith("python-httpx")

    harness.clock.advance(1)
    code = await harness.latest_code()
    await harness.verify(vendor, f"{(int(code) + 1) % 10**6:06d}")
    await expect("vendor", ["verify_failed"])

    harness.clock.advance(1)
    await harness.verify(vendor, "abc")  # malformed: refused before any check, so not a verify
    await expect("vendor", [])

    await harness.verify(vendor, code)
    await expect("vendor", ["enrolled"])

    harness.clock.advance(1)
    await harness.send(alice)
    [sent] = await expect("alice", ["code_sent"])
    assert dict(sent.detail or {})["purpose"] == "login"
    await harness.verify(alice, await harness.latest_code())
    await expect("alice", ["verify_ok"])

    harness.clock.advance(1)
    await harness.service.reset("admin", "vendor", request=admin_desk)
    await expect("vendor", ["reset"], ip="203.0.113.7")
    await harness.service.require_enrollment("admin", "alice", request=admin_desk)
    await expect("alice", ["enrollment_required"], ip="203.0.113.7")
    await harness.service.set_phone("admin", "carol", *NEW_NUMBER.values(), request=admin_desk)
    await expect("carol", ["phone_pending"], ip="203.0.113.7")


async def test_audit_events_do_not_cost_the_shop_pages_anything(harness: Harness) -> None:
    """GET pages and shop pages write no events (nothing happened)."""
    before = await event_rows.latest(harness.service.store, limit=1000)
    for user, url in [
        ("alice", "/admin/_2fa/challenge"),
        ("vendor", "/admin/_2fa/enroll"),
        ("alice", "/admin/orders"),
    ]:
        await harness.client.get(url, headers=harness.as_user(user))
    assert await event_rows.latest(harness.service.store, limit=1000) == before


Hook = Callable[[AuditEvent], Awaitable[None] | None]


@pytest.fixture
def hooked(make_harness: Callable[..., Awaitable[Harness]]) -> Callable[[Hook], Awaitable[Harness]]:
    """A harness whose TwoFactor was built with ``on_event``."""

    async def build(hook: Hook) -> Harness:
        return await make_harness(on_event=hook)

    return build


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_the_on_event_hook_receives_every_event(
    hooked: Callable[[Hook], Awaitable[Harness]], kind: str
) -> None:
    received: list[AuditEvent] = []

    def sync_hook(event: AuditEvent) -> None:
        received.append(event)

    async def async_hook(event: AuditEvent) -> None:
        await asyncio.sleep(0)
        received.append(event)

    h = await hooked(sync_hook if kind == "sync" else async_hook)
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await h.pass_challenge("alice")
    await h.service.reset("admin", "alice")

    assert [e.kind for e in received] == ["phone_set", "code_sent", "verify_ok", "reset"]
    assert received == await event_rows.latest(h.service.store)
    assert received[1].ip == "127.0.0.1"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_failing_hook_does_not_stop_the_login(
    hooked: Callable[[Hook], Awaitable[Harness]], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    def sync_hook(_event: AuditEvent) -> None:
        raise RuntimeError("the shop's hook is broken")

    async def async_hook(_event: AuditEvent) -> None:
        raise RuntimeError("the shop's hook is broken")

    h = await hooked(sync_hook if kind == "sync" else async_hook)
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await h.pass_challenge("alice")

    assert (await h.client.get("/admin/orders", headers=h.as_user("alice"))).status_code == 200
    assert [e.kind for e in await event_rows.latest(h.service.store)] == [
        "phone_set",
        "code_sent",
        "verify_ok",
    ]
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR and "on_event" in r.getMessage()]
    assert len(failures) == 3


# ---------------------------------------------------------------------- the service API validates


CALLS: dict[str, Callable[[TwoFactor, str, Any], Awaitable[Any]]] = {
    "set_phone": lambda s, i, u: s.set_phone(i, u, *NEW_NUMBER.values()),
    "set_phone-confirmed": lambda s, i, u: s.set_phone(i, u, *NEW_NUMBER.values(), confirmed=True),
    "require_enrollment": lambda s, i, u: s.require_enrollment(i, u),
    "reset": lambda s, i, u: s.reset(i, u),
    "status": lambda s, i, u: s.status(i, u),
    "send_code": lambda s, i, u: s.send_code(i, u),
    "verify_code": lambda s, i, u: s.verify_code(i, u, "123456"),
    "begin_enrollment": lambda s, i, u: s.begin_enrollment(i, u, *NEW_NUMBER.values()),
    "keep_phone": lambda s, i, u: s.keep_phone(i, u),
}
BAD_ARGS = {
    "unknown-interface": ("shop", "alice", UnknownInterface),
    "interface-case": ("Admin", "alice", UnknownInterface),
    "empty-user": ("admin", "", InvalidInput),
    "long-user": ("admin", "u" * (MAX_USER_ID_LENGTH + 1), InvalidInput),
    "int-user": ("admin", 42, InvalidInput),
    "none-user": ("admin", None, InvalidInput),
}


@pytest.mark.parametrize("bad", list(BAD_ARGS))
@pytest.mark.parametrize("call", list(CALLS))
async def test_the_service_refuses_bad_interfaces_and_user_ids(harness: Harness, call: str, bad: str) -> None:
    interface, user, error = BAD_ARGS[bad]
    before = await snapshot(harness)
    with pytest.raises(InvalidInput) as raised:
        await CALLS[call](harness.service, interface, user)
    assert raised.type is error
    assert await snapshot(harness) == before


@pytest.mark.parametrize(
    ("country_code", "number"),
    [("1", "abc"), ("999", "2015550199"), ("44", "2079460000"), ("1", "20155"), ("abc", "2015550199")],
)
@pytest.mark.parametrize("confirmed", [False, True])
async def test_set_phone_refuses_invalid_numbers(
    harness: Harness, country_code: str, number: str, confirmed: bool
) -> None:
    before = await snapshot(harness)
    with pytest.raises(InvalidPhoneNumber):
        await harness.service.set_phone("admin", "alice", country_code, number, confirmed=confirmed)
    assert await snapshot(harness) == before


async def test_the_service_api_round_trip(harness: Harness) -> None:
    service = harness.service
    assert (await service.status("admin", "nobody")).state == "none"
    status = await service.set_phone("admin", "carol", 1, "(201) 555-0199", confirmed=True)
    assert (status.state, status.masked_phone) == ("active", NEW_MASKED)
    first = status.generation
    status = await service.require_enrollment("admin", "carol")
    assert status.require_enrollment
    assert status.needs_enrollment
    status = await service.reset("admin", "carol")
    assert (status.state, status.masked_phone, status.require_enrollment) == ("none", "", False)
    assert status.generation == first + 2  # every revocation bumped it


# ---------------------------------------------------------------------- fail closed


async def _cannot_open() -> Any:
    raise sqlite3.OperationalError("unable to open database file")


async def break_database(h: Harness) -> None:
    """Every connection attempt now fails as aiosqlite's does for ``/nonexistent-dir/x.sqlite3``.

    The error is raised here rather than by a real aiosqlite connect: a failed aiosqlite connect
    leaves its worker thread to report to the event loop later, which can be closed by then and
    surfaces as an unhandled-thread-exception warning in whichever test runs next.
    """
    await h.service.store.engine.dispose()
    h.service.store.engine = create_async_engine("sqlite+aiosqlite://", async_creator=_cannot_open)


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert "Temporarily unavailable" in response.text
    assert "Traceback" not in response.text
    assert "set-cookie" not in response.headers
    assert response.headers["cache-control"] == "no-store"


async def test_pages_fail_closed_when_the_database_is_gone(harness: Harness) -> None:
    alice, vendor = harness.as_user("alice"), harness.as_user("vendor")
    alice_token, vendor_token = await harness.csrf(alice), await harness.csrf(vendor)
    await harness.send(alice)
    code = await harness.latest_code()
    await break_database(harness)

    attempts: list[Callable[[], Awaitable[httpx.Response]]] = [
        lambda: harness.client.get("/admin/_2fa/challenge", headers=alice),
        lambda: harness.client.get("/admin/_2fa/enroll", headers=vendor),
        lambda: harness.client.post("/admin/_2fa/send", data={"csrf_token": alice_token}, headers=alice),
        lambda: harness.client.post(
            "/admin/_2fa/verify", data={"csrf_token": alice_token, "code": code}, headers=alice
        ),
        lambda: harness.client.post(
            "/admin/_2fa/enroll", data={"csrf_token": vendor_token, **NEW_NUMBER}, headers=vendor
        ),
    ]
    for attempt in attempts:
        assert_unavailable(await attempt())
    for user in (alice, vendor):
        shop = await harness.client.get("/admin/orders", headers=user, follow_redirects=True)
        assert shop.status_code == 503
        assert "shop page" not in shop.text
    with pytest.raises(StoreUnavailable):
        await harness.service.verify_code("admin", "alice", code)


async def test_a_proof_that_cannot_be_checked_is_refused(harness: Harness, make_harness: Any) -> None:
    """A second worker that has never seen this user cannot check the generation: it refuses."""
    proof = await harness.pass_challenge("alice")
    fresh: Harness = await make_harness()  # same database file, a cold revocation cache
    fresh.client.cookies.set("tfa_admin", proof)
    assert (await fresh.client.get("/admin/orders", headers=fresh.as_user("alice"))).status_code == 200
    cold: Harness = await make_harness()
    cold.client.cookies.set("tfa_admin", proof)
    await break_database(cold)

    response = await cold.client.get("/admin/orders", headers=cold.as_user("alice"))
    assert_unavailable(response)
    assert response.headers["x-frame-options"] == "DENY"
