"""Account management: a user changing their phone, the administrators' page, the shop's hooks.

Security requirement 22: changing a phone needs the current factor (fresh) or an administrator,
and the new number is confirmed by a code before it is active.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.harness import ADMIN_PHONE, Harness, config
from tfa_middleware import Identity, TwoFactor, settings_from_mapping
from tfa_middleware.store import AuditEvent
from tfa_middleware.store import events as event_rows
from tfa_middleware.store import outbox as outbox_rows

PHONE_PAGE = "/admin/_2fa/phone"
MANAGE = "/admin/_2fa/manage"
RECEIVED: list[AuditEvent] = []


def record_event(event: AuditEvent) -> None:
    """An on_event hook named by dotted path in a settings file."""
    RECEIVED.append(event)


def roles_resolver(scope: Any) -> Identity | None:
    headers = dict(scope["headers"])
    user = headers.get(b"x-test-user")
    if not user:
        return None
    roles = frozenset(headers.get(b"x-test-roles", b"").decode().split(",")) - {""}
    return Identity(user.decode(), None, roles)


async def form_token(h: Harness, headers: dict[str, str], page: str) -> str:
    response = await h.client.get(page, headers=headers)
    match = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
    assert match, f"{page}: {response.status_code}"
    return match.group(1)


async def post(h: Harness, page: str, headers: dict[str, str], **data: str) -> Any:
    token = await form_token(h, headers, page)
    return await h.client.post(page, data={"csrf_token": token, **data}, headers=headers)


# ---------------------------------------------------------------------------- changing one's phone


async def test_the_phone_page_needs_a_proof_and_a_fresh_one(harness: Harness) -> None:
    alice = harness.as_user("alice")
    no_proof = await harness.client.get(PHONE_PAGE, headers=alice)
    assert no_proof.status_code == 303
    assert "/admin/_2fa/challenge" in no_proof.headers["location"]
    await harness.pass_challenge("alice")
    assert (await harness.client.get(PHONE_PAGE, headers=alice)).status_code == 200
    harness.clock.advance(601)  # older than phone_change_fresh_seconds (600)
    stale = await harness.client.get(PHONE_PAGE, headers=alice)
    assert stale.status_code == 303
    assert stale.headers["location"] == "/admin/_2fa/challenge?reauth=1&next=/admin/_2fa/phone"
    # The challenge is shown although the proof is still valid, and the old number gets the code.
    challenge = await harness.client.get(stale.headers["location"], headers=alice)
    assert challenge.status_code == 200
    assert "+1 ••• ••• 0123" in challenge.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', challenge.text)
    assert token
    await harness.client.post("/admin/_2fa/send", data={"csrf_token": token.group(1)}, headers=alice)
    verified = await harness.client.post(
        "/admin/_2fa/verify?next=/admin/_2fa/phone",
        data={"csrf_token": token.group(1), "code": await harness.latest_code()},
        headers=alice,
    )
    assert verified.headers["location"] == PHONE_PAGE
    assert (await harness.client.get(PHONE_PAGE, headers=alice)).status_code == 200


async def test_a_new_number_is_active_only_after_its_code_and_revokes_older_proofs(harness: Harness) -> None:
    alice = harness.as_user("alice")
    old_proof = await harness.pass_challenge("alice")
    started = await post(harness, PHONE_PAGE, alice, action="start", country_code="1", phone="201 555 0199")
    assert started.status_code == 200
    assert "We sent a code to +1 ••• ••• 0199" in started.text
    status = await harness.service.status("admin", "alice")
    assert (status.masked_phone, status.pending_masked_phone) == ("+1 ••• ••• 0123", "+1 ••• ••• 0199")
    # Until confirmed, sign-in codes still go to the old number.
    assert (await outbox_rows.latest(harness.service.store, 1))[0].to_masked == "+1 ••• ••• 0199"

    wrong = await post(harness, PHONE_PAGE, alice, action="verify", code="000000")
    assert wrong.status_code == 400
    pending = await harness.client.get(PHONE_PAGE, headers=alice)
    assert 'pattern="[0-9 ]*"' in pending.text  # "123 456" as people copy it is fine
    done = await post(harness, PHONE_PAGE, alice, action="verify", code=await harness.latest_code())
    assert done.status_code == 303
    confirmed = await harness.client.get(done.headers["location"], headers=alice)
    assert "Done: codes now go to +1 ••• ••• 0199." in confirmed.text
    status = await harness.service.status("admin", "alice")
    assert (status.masked_phone, status.pending_masked_phone) == ("+1 ••• ••• 0199", "")
    # This browser got a new proof and goes on at once; a copy of the old one is dead.
    assert (await harness.client.get("/admin/orders", headers=alice)).status_code == 200
    harness.client.cookies.clear()
    copied = {**alice, "cookie": f"tfa_admin={old_proof}"}
    harness.clock.advance(11)
    assert (await harness.client.get("/admin/orders", headers=copied)).status_code == 303
    kinds = [e.kind for e in await event_rows.latest(harness.service.store, "admin", "alice")]
    assert "phone_changed" in kinds


async def test_a_bad_new_number_changes_nothing_and_a_change_can_be_cancelled(harness: Harness) -> None:
    alice = harness.as_user("alice")
    await harness.pass_challenge("alice")
    bad = await post(harness, PHONE_PAGE, alice, action="start", country_code="1", phone="123")
    assert bad.status_code == 400
    assert "That phone number is too short." in bad.text
    assert (await harness.service.status("admin", "alice")).pending_masked_phone == ""
    await post(harness, PHONE_PAGE, alice, action="start", country_code="1", phone="2015550199")
    cancelled = await post(harness, PHONE_PAGE, alice, action="cancel")
    assert cancelled.status_code == 303
    status = await harness.service.status("admin", "alice")
    assert (status.masked_phone, status.pending_masked_phone) == ("+1 ••• ••• 0123", "")


async def test_the_enroll_page_cannot_be_used_to_change_an_active_phone(harness: Harness) -> None:
    alice = harness.as_user("alice")
    await harness.pass_challenge("alice")
    token = await form_token(harness, alice, PHONE_PAGE)
    response = await harness.client.post(
        "/admin/_2fa/enroll",
        data={"csrf_token": token, "country_code": "1", "phone": "2015550199"},
        headers=alice,
    )
    assert response.status_code == 303
    assert (await harness.service.status("admin", "alice")).pending_masked_phone == ""


# ---------------------------------------------------------------------------- the management page


@pytest.fixture
async def managed(make_harness: Callable[..., Awaitable[Harness]], tmp_path: Any) -> Harness:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["manage"] = {"allow_user_ids": ["alice"], "allow_roles": ["2fa-admin"]}
    interfaces["admin"]["identity"] = {"from": "callable", "path": "tests.test_account:roles_resolver"}
    h = await make_harness(interfaces=interfaces)
    for user, number in (("alice", ADMIN_PHONE[1]), ("bob", "2015550124"), ("carol", "2015550126")):
        await h.service.set_phone("admin", user, "1", number, confirmed=True)
    await h.service.set_phone("customer", "dave", "1", "2015550127", confirmed=True)
    return h


async def test_only_listed_users_or_roles_with_a_proof_may_manage(managed: Harness) -> None:
    h = managed
    assert (await h.client.get(MANAGE, headers=h.as_user("alice"))).status_code == 303  # no proof yet
    await h.pass_challenge("alice")
    page = await h.client.get(MANAGE, headers=h.as_user("alice"))
    assert page.status_code == 200
    for user in ("alice", "bob", "carol"):
        assert f"{user} <span" in page.text
    assert "dave <span" not in page.text  # a customer: manage.interfaces is the admin interface alone
    assert "2015550124" not in page.text
    assert "+1 ••• ••• 0124" in page.text

    h.client.cookies.clear()
    await h.pass_challenge("bob")
    assert (await h.client.get(MANAGE, headers=h.as_user("bob"))).status_code == 403
    with_role = {**h.as_user("bob"), "x-test-roles": "2fa-admin"}
    assert (await h.client.get(MANAGE, headers=with_role)).status_code == 200
    h.client.cookies.clear()
    await h.pass_challenge("dave", prefix="/account")
    customer = await h.client.get("/account/_2fa/manage", headers=h.as_user("dave"))
    assert customer.status_code == 403  # the customer interface lists nobody


async def test_every_management_action_works_and_is_audited_with_its_actor(managed: Harness) -> None:
    h = managed
    await h.pass_challenge("alice")
    alice = h.as_user("alice")
    carol = {"interface": "admin", "user_id": "carol"}
    set_phone = await post(
        h, MANAGE, alice, action="set_phone", country_code="1", phone="2015550177", **carol
    )
    assert set_phone.status_code == 200
    assert "The phone of carol is set" in set_phone.text
    # Not active until carol confirms it with a code (test_attacks.py walks that through).
    assert (await h.service.status("admin", "carol")).pending_masked_phone == "+1 ••• ••• 0177"
    bad = await post(h, MANAGE, alice, action="set_phone", country_code="1", phone="12", **carol)
    assert bad.status_code == 400
    assert "too short" in bad.text
    await post(h, MANAGE, alice, action="require_enrollment", **carol)
    assert (await h.service.status("admin", "carol")).require_enrollment
    await post(h, MANAGE, alice, action="reset", **carol)
    assert (await h.service.status("admin", "carol")).state == "none"
    unknown = await post(h, MANAGE, alice, action="reset", interface="nowhere", user_id="carol")
    assert unknown.status_code == 403  # not one of manage.interfaces, like any other
    events = [
        e for e in await event_rows.latest(h.service.store, "admin", "carol") if e.detail and "by" in e.detail
    ]
    assert [(e.kind, e.detail["by"]) for e in events if e.detail] == [
        ("phone_set", "admin/alice"),
        ("enrollment_required", "admin/alice"),
        ("reset", "admin/alice"),
    ]


async def test_an_admin_unlocks_a_locked_user_from_the_page(managed: Harness) -> None:
    h = managed
    await h.service.send_code("admin", "bob")
    for _ in range(20):  # the relaxed test limits lock at 20
        await h.service.verify_code("admin", "bob", "000000")
    assert (await h.service.status("admin", "bob")).locked_until
    await h.pass_challenge("alice")
    page = await h.client.get(MANAGE, headers=h.as_user("alice"))
    assert "Locked until" in page.text
    done = await post(h, MANAGE, h.as_user("alice"), action="unlock", interface="admin", user_id="bob")
    assert "bob is unlocked." in done.text
    assert not (await h.service.status("admin", "bob")).locked_until


async def test_the_search_takes_a_prefix(managed: Harness) -> None:
    await managed.pass_challenge("alice")
    page = await managed.client.get(MANAGE + "?q=ca", headers=managed.as_user("alice"))
    assert "carol <span" in page.text
    assert "bob <span" not in page.text


# ---------------------------------------------------------------------------- the shop's hooks and API


async def test_an_on_event_hook_named_in_the_settings_receives_every_event(tmp_path: Any) -> None:
    RECEIVED.clear()
    settings = settings_from_mapping(config(tmp_path, on_event="tests.test_account:record_event"))
    tfa = TwoFactor.from_settings(settings)
    try:
        await tfa.set_phone("admin", "erin", "1", "2015550188", confirmed=True)
        await tfa.require_enrollment("admin", "erin")
        assert [e.kind for e in RECEIVED] == ["phone_set", "enrollment_required"]
    finally:
        await tfa.close()


async def test_delete_forgets_the_user_and_their_proofs(harness: Harness) -> None:
    proof = await harness.pass_challenge("alice")
    assert await harness.service.delete("admin", "alice")
    assert not await harness.service.delete("admin", "alice")
    assert (await harness.service.status("admin", "alice")).state == "none"
    await harness.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)  # a new account
    harness.client.cookies.clear()
    harness.clock.advance(11)
    old = {**harness.as_user("alice"), "cookie": f"tfa_admin={proof}"}
    assert (await harness.client.get("/admin/orders", headers=old)).status_code == 303
    assert "deleted" in [e.kind for e in await event_rows.latest(harness.service.store, "admin", "alice")]


async def test_on_missing_phone_skip_lets_unenrolled_users_in_and_still_protects_enrolled_ones(
    make_harness: Callable[..., Awaitable[Harness]], tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["on_missing_phone"] = "skip"
    h = await make_harness(interfaces=interfaces)
    assert any("on_missing_phone is 'skip'" in r.getMessage() for r in caplog.records)
    assert (await h.client.get("/admin/orders", headers=h.as_user("newbie"))).status_code == 200
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    assert (await h.client.get("/admin/orders", headers=h.as_user("alice"))).status_code == 303
