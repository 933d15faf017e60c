"""The authenticator app (issue 15): set up from the account page or on the way in, its codes at
sign-in, replay refused, one step of drift, the lockout shared with texted codes, and its secret
never stored, logged or shown again in clear."""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.factors import add_app, app_code, make_service, secret_on, verify_with
from tests.harness import SECRET, FakeClock, Harness
from tfa_middleware.service import VerifyStatus
from tfa_middleware.settings import LimitSettings
from tfa_middleware.store import Store
from tfa_middleware.store import events as event_rows
from tfa_middleware.tables import factors, metadata


async def test_an_app_set_up_on_the_account_page_signs_the_user_in(harness: Harness) -> None:
    h = harness
    await h.pass_challenge("alice")
    secret = await add_app(h, "alice")
    account = await h.client.get("/admin/_2fa/account?done=app", headers=h.as_user("alice"))
    assert "Your authenticator app is set up" in account.text
    assert secret not in account.text
    assert secret[:4] + " " not in account.text
    h.client.cookies.clear()
    # The app comes first now; the phone is another way.
    page = await h.client.get("/admin/_2fa/challenge", headers=h.as_user("alice"))
    assert "your authenticator app shows now" in page.text
    assert "Text a code to +1 ••• ••• 0123" in page.text
    h.clock.advance(30)
    done = await verify_with(h, "alice", "totp", app_code(secret, h.clock.now), next_="/admin/orders")
    assert done.status_code == 303
    assert done.headers["location"] == "/admin/orders"
    orders = await h.client.get("/admin/orders", headers=h.as_user("alice"))
    assert orders.text == "shop page /admin/orders"
    kinds = [e.kind for e in await event_rows.latest(h.service.store, "admin", "alice", limit=50)]
    assert "app_added" in kinds
    assert kinds.count("verify_ok") == 2


async def test_a_code_works_once_and_one_step_of_drift_is_allowed(harness: Harness) -> None:
    h = harness
    await h.pass_challenge("alice")
    secret = await add_app(h, "alice")  # its code at T0 is taken by the confirmation
    tfa = h.service
    replay = await tfa.verify_code("admin", "alice", app_code(secret, h.clock.now), factor="totp")
    assert replay.status is VerifyStatus.REJECTED
    h.clock.advance(30)
    late = await tfa.verify_code("admin", "alice", app_code(secret, h.clock.now, -1), factor="totp")
    assert late.status is VerifyStatus.REJECTED  # the step of T0 is taken: a later one only
    ok = await tfa.verify_code("admin", "alice", app_code(secret, h.clock.now, 1), factor="totp")
    assert ok.status is VerifyStatus.APPROVED
    assert ok.method == "totp"
    # The step just used (one ahead) and every earlier one are gone, even the current one.
    now_code = await tfa.verify_code("admin", "alice", app_code(secret, h.clock.now), factor="totp")
    assert now_code.status is VerifyStatus.REJECTED
    h.clock.advance(90)
    too_old = await tfa.verify_code("admin", "alice", app_code(secret, h.clock.now, -2), factor="totp")
    assert too_old.status is VerifyStatus.REJECTED
    assert (await tfa.verify_code("admin", "alice", app_code(secret, h.clock.now), factor="totp")).status is (
        VerifyStatus.APPROVED
    )


async def test_a_wrong_first_code_leaves_the_app_unconfirmed(harness: Harness) -> None:
    h = harness
    await h.pass_challenge("alice")
    headers = h.as_user("alice")
    token = await h.csrf(headers, "/admin/_2fa/account")
    await h.client.post(
        "/admin/_2fa/account", data={"csrf_token": token, "action": "add_app"}, headers=headers
    )
    page = await h.client.get("/admin/_2fa/app", headers=headers)
    assert (
        '<div role="img" aria-label="QR code for your authenticator app"><svg aria-hidden="true"' in page.text
    )
    secret = secret_on(page.text)
    wrong = f"{(int(app_code(secret, h.clock.now)) + 1) % 10**6:06d}"
    refused = await h.client.post(
        "/admin/_2fa/app", data={"csrf_token": token, "action": "confirm", "code": wrong}, headers=headers
    )
    assert refused.status_code == 400
    assert "That code didn't work" in html.unescape(refused.text)
    assert secret_on(refused.text) == secret  # the same app, still being set up
    status = await h.service.status("admin", "alice")
    assert status.usable == ("sms",)
    # Not usable to sign in before it is confirmed.
    early = await h.service.verify_code("admin", "alice", app_code(secret, h.clock.now), factor="totp")
    assert early.status is VerifyStatus.NEEDS_ENROLLMENT


async def test_a_user_without_a_factor_sets_up_an_app_on_the_way_in(make_harness: Callable[..., Any]) -> None:
    h: Harness = await make_harness()
    headers = h.as_user("carol")
    enroll = await h.client.get(
        "/admin/_2fa/challenge?next=/admin/orders", headers=headers, follow_redirects=True
    )
    assert "Set up an authenticator app" in enroll.text
    token = await h.csrf(headers, "/admin/_2fa/enroll")
    begun = await h.client.post(
        "/admin/_2fa/app?next=/admin/orders", data={"csrf_token": token, "action": "begin"}, headers=headers
    )
    page = await h.client.get(begun.headers["location"], headers=headers)
    secret = secret_on(page.text)
    done = await h.client.post(
        "/admin/_2fa/app?next=/admin/orders",
        data={"csrf_token": token, "action": "confirm", "code": app_code(secret, h.clock.now)},
        headers=headers,
    )
    assert done.status_code == 303
    assert "tfa_admin" in done.cookies  # the first code of the first factor is the sign-in
    orders = await h.client.get("/admin/orders", headers=headers)
    assert orders.text == "shop page /admin/orders"


async def test_an_enrolled_user_cannot_add_an_app_without_a_fresh_factor(harness: Harness) -> None:
    h = harness
    headers = h.as_user("alice")
    token = await h.csrf(headers, "/admin/_2fa/logout")
    for page, action in (("app", "begin"), ("account", "add_app")):
        refused = await h.client.post(
            f"/admin/_2fa/{page}", data={"csrf_token": token, "action": action}, headers=headers
        )
        assert refused.status_code == 303
        assert "/admin/_2fa/challenge?reauth=1" in refused.headers["location"]
    assert [f for f in await h.service.factors.of_user("admin", "alice") if f.kind == "totp"] == []
    await h.pass_challenge("alice")
    h.clock.advance(601)  # phone_change_fresh_seconds
    stale = await h.client.get("/admin/_2fa/account", headers=headers)
    assert stale.status_code == 303
    assert "reauth=1" in stale.headers["location"]


async def test_an_interface_without_sms_refuses_texts_and_offers_the_app(
    make_harness: Callable[..., Any], tmp_path: Path
) -> None:
    from tests.harness import config

    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["factors"] = ["totp", "recovery"]
    h: Harness = await make_harness(interfaces=interfaces)
    await h.service.set_phone("admin", "alice", "1", "2015550123", confirmed=True)
    page = await h.client.get("/admin/_2fa/challenge", headers=h.as_user("alice"), follow_redirects=True)
    assert "Set up two-step verification" in page.text
    assert "Mobile number" not in page.text
    assert "Set up an authenticator app" in page.text
    sent = await h.service.send_code("admin", "alice")
    assert sent.status.value == "needs_enrollment"
    verified = await h.service.verify_code("admin", "alice", "123456")
    assert verified.status is VerifyStatus.NEEDS_ENROLLMENT


async def _app_for(tfa: Any, user: str, now: float) -> str:
    app = await tfa.factors.begin_app("admin", user)
    confirmed = await tfa.factors.confirm_app("admin", user, app_code(app.secret, now))
    assert confirmed.status is VerifyStatus.APPROVED
    return str(app.secret)


async def test_parallel_uses_of_one_code_admit_exactly_one(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    tfa = make_service(
        store,
        tmp_path,
        clock,
        limits=LimitSettings().model_copy(
            update={"verify_max_failures": 20, "verify_delay_base_seconds": 0.0}
        ),
    )
    await tfa.set_phone("admin", "alice", "1", "2015550123", confirmed=True)
    secret = await _app_for(tfa, "alice", clock.now)
    clock.advance(30)
    code = app_code(secret, clock.now)
    outcomes = await asyncio.gather(
        *(tfa.verify_code("admin", "alice", code, factor="totp") for _ in range(10))
    )
    statuses = [o.status for o in outcomes]
    assert statuses.count(VerifyStatus.APPROVED) == 1, statuses


async def test_wrong_codes_of_every_factor_share_one_lock(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    tfa = make_service(
        store, tmp_path, clock, limits=LimitSettings().model_copy(update={"verify_delay_base_seconds": 0.0})
    )
    await tfa.set_phone("admin", "alice", "1", "2015550123", confirmed=True)
    secret = await _app_for(tfa, "alice", clock.now)
    codes = await tfa.factors.issue_recovery_codes("admin", "alice")
    clock.advance(30)
    wrong_app = f"{(int(app_code(secret, clock.now)) + 1) % 10**6:06d}"
    results = [
        await tfa.verify_code("admin", "alice", wrong_app, factor="totp"),
        await tfa.verify_code("admin", "alice", "AAAA-BBBB-CCCC-DDDD", factor="recovery"),
        await tfa.verify_code("admin", "alice", "000000"),  # no code was texted: wrong
        await tfa.verify_code("admin", "alice", wrong_app, factor="totp"),
        await tfa.verify_code("admin", "alice", "AAAA-BBBB-CCCC-EEEE", factor="recovery"),
    ]
    assert [r.status for r in results] == [VerifyStatus.REJECTED] * 4 + [VerifyStatus.LOCKED]
    # Locked for every factor, even with the right codes.
    assert (await tfa.verify_code("admin", "alice", app_code(secret, clock.now), factor="totp")).status is (
        VerifyStatus.LOCKED
    )
    assert (
        await tfa.verify_code("admin", "alice", codes[0], factor="recovery")
    ).status is VerifyStatus.LOCKED
    clock.advance(15 * 60)
    assert (await tfa.verify_code("admin", "alice", app_code(secret, clock.now), factor="totp")).status is (
        VerifyStatus.APPROVED
    )
    # A right code wiped the count for all of them.
    assert (await tfa.verify_code("admin", "alice", wrong_app, factor="totp")).status is VerifyStatus.REJECTED


async def test_the_secret_is_nowhere_in_clear(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    h = harness
    caplog.set_level(logging.DEBUG)
    await h.pass_challenge("alice")
    secret = await add_app(h, "alice")
    h.clock.advance(30)
    assert (await verify_with(h, "alice", "totp", app_code(secret, h.clock.now))).status_code == 303
    async with h.service.store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in (await conn.execute(select(table))).all():
                text = " ".join(str(v) for v in row)
                assert secret not in text, table.name
                assert secret.lower() not in text, table.name
    assert secret not in caplog.text
    for page in ("account", "challenge?reauth=1", "app"):
        shown = await h.client.get(f"/admin/_2fa/{page}", headers=h.as_user("alice"))
        assert secret not in shown.text


async def test_a_rotated_key_still_opens_the_secret_and_seals_it_anew(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    old = make_service(store, tmp_path, clock)
    await old.set_phone("admin", "alice", "1", "2015550123", confirmed=True)
    secret = await _app_for(old, "alice", clock.now)
    sealed_before = await _sealed(store)
    rotated = make_service(
        store, tmp_path, clock, secret_keys=[SECRET, "a-newer-secret-key-0123456789-abcdefghijk"]
    )
    clock.advance(30)
    ok = await rotated.verify_code("admin", "alice", app_code(secret, clock.now), factor="totp")
    assert ok.status is VerifyStatus.APPROVED
    assert await _sealed(store) != sealed_before  # sealed under the newest key now
    only_new = make_service(store, tmp_path, clock, secret_keys=["a-newer-secret-key-0123456789-abcdefghijk"])
    clock.advance(30)
    assert (
        await only_new.verify_code("admin", "alice", app_code(secret, clock.now), factor="totp")
    ).status is (VerifyStatus.APPROVED)
    # A key no longer listed opens nothing: the app fails, closed.
    gone = make_service(store, tmp_path, clock, secret_keys=["yet-another-secret-key-0123456789-abcdefgh"])
    clock.advance(30)
    assert (await gone.verify_code("admin", "alice", app_code(secret, clock.now), factor="totp")).status is (
        VerifyStatus.REJECTED
    )


async def _sealed(store: Store) -> str:
    async with store.transaction() as conn:
        return str((await conn.execute(select(factors.c.value).where(factors.c.kind == "totp"))).scalar_one())


async def test_neither_a_new_app_nor_a_factor_shows_its_secret_in_repr(harness: Harness) -> None:
    app = await harness.service.factors.begin_app("admin", "alice")
    assert app.secret not in repr(app)
    factors = await harness.service.factors.of_user("admin", "alice")
    assert all(f.value not in repr(f) for f in factors)
    assert "+12015550123" not in repr(factors)
