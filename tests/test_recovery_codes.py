"""Recovery codes (issue 15): ten codes shown once, stored as keyed hashes, each usable once
(even in parallel), a new set replacing the old, the count left said after each use."""

from __future__ import annotations

import asyncio
import html
import logging
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.factors import make_service, recovery_codes_on, verify_with
from tests.harness import SECRET, FakeClock, Harness
from tfa_middleware.factors.recovery import normalise
from tfa_middleware.service import VerifyStatus
from tfa_middleware.store import Store
from tfa_middleware.store import events as event_rows
from tfa_middleware.tables import metadata


async def _new_codes(h: Harness, user: str = "alice") -> list[str]:
    headers = h.as_user(user)
    token = await h.csrf(headers, "/admin/_2fa/account")
    page = await h.client.post(
        "/admin/_2fa/account", data={"csrf_token": token, "action": "recovery_codes"}, headers=headers
    )
    assert page.status_code == 200, page.text
    return recovery_codes_on(page.text)


async def test_ten_codes_of_eighty_bits_are_shown_once(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    caplog.set_level(logging.DEBUG)
    await h.pass_challenge("alice")
    headers = h.as_user("alice")
    token = await h.csrf(headers, "/admin/_2fa/account")
    page = await h.client.post(
        "/admin/_2fa/account", data={"csrf_token": token, "action": "recovery_codes"}, headers=headers
    )
    codes = recovery_codes_on(page.text)
    assert len(codes) == len(set(codes)) == 10
    assert all(re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}", c) for c in codes)  # 16 × 5 bits
    assert page.headers["cache-control"] == "no-store"
    # The download and the print view are parts of the same answer: no later request shows them.
    assert 'download="recovery-codes.txt"' in page.text
    assert "data-print" in page.text
    assert all(c in html.unescape(page.text) for c in codes)
    account = await h.client.get("/admin/_2fa/account", headers=headers)
    assert "You have <strong>10</strong> unused recovery codes" in account.text
    for later in (
        account.text,
        (await h.client.get("/admin/_2fa/challenge?factor=recovery", headers=headers)).text,
    ):
        assert not any(c in later or c.replace("-", "") in later for c in codes)
    async with h.service.store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = " ".join(
                " ".join(str(v) for v in row) for row in (await conn.execute(select(table))).all()
            )
            assert not any(c in rows or c.replace("-", "") in rows for c in codes), table.name
    assert not any(c in caplog.text or c.replace("-", "") in caplog.text for c in codes)
    events = await event_rows.latest(h.service.store, "admin", "alice", limit=10)
    assert events[-1].kind == "recovery_codes_issued" or events[0].kind == "recovery_codes_issued"


async def test_a_code_signs_in_once_and_says_how_many_are_left(harness: Harness) -> None:
    h = harness
    await h.pass_challenge("alice")
    codes = await _new_codes(h)
    h.client.cookies.clear()
    challenge = await h.client.get("/admin/_2fa/challenge", headers=h.as_user("alice"))
    assert "Use a recovery code" in challenge.text
    used = await verify_with(h, "alice", "recovery", codes[3].lower().replace("-", " "))
    assert used.status_code == 200
    assert "You have <strong>9</strong> recovery codes left" in used.text
    assert "tfa_admin" in used.cookies
    h.client.cookies.clear()
    again = await verify_with(h, "alice", "recovery", codes[3])
    assert again.status_code == 400
    assert "That code didn't work" in html.unescape(again.text)
    events = await event_rows.latest(h.service.store, "admin", "alice", limit=50)
    used_events = [
        e for e in events if e.kind == "verify_ok" and (e.detail or {}).get("factor") == "recovery"
    ]
    assert [dict(e.detail or {})["codes_left"] for e in used_events] == ["9"]


async def test_two_or_fewer_left_suggests_a_new_set(harness: Harness) -> None:
    h = harness
    await h.pass_challenge("alice")
    codes = await _new_codes(h)
    for code in codes[:7]:
        assert (await h.service.verify_code("admin", "alice", code, factor="recovery")).status is (
            VerifyStatus.APPROVED
        )
    h.client.cookies.clear()
    used = await verify_with(h, "alice", "recovery", codes[7])
    assert "You have <strong>2</strong>" in used.text
    assert "running out of recovery codes" in used.text
    account = await h.client.get("/admin/_2fa/account", headers=h.as_user("alice"))
    assert "running out of recovery codes" in account.text


async def test_a_new_set_replaces_the_old(harness: Harness) -> None:
    h = harness
    await h.pass_challenge("alice")
    old = await _new_codes(h)
    new = await _new_codes(h)
    assert not set(old) & set(new)
    tfa = h.service
    assert (
        await tfa.verify_code("admin", "alice", old[0], factor="recovery")
    ).status is VerifyStatus.REJECTED
    assert (
        await tfa.verify_code("admin", "alice", new[0], factor="recovery")
    ).status is VerifyStatus.APPROVED
    assert await tfa.factors.recovery_left("admin", "alice") == 9


def test_codes_are_read_as_people_type_them() -> None:
    assert normalise("abcd-efgh ijkl-mnop") == "ABCDEFGHIJKLMNOP"
    assert normalise("ABCD-EFGH-IJKL-MN0P") == "ABCDEFGHIJKLMNOP"  # a zero for an O
    assert normalise("ABCD-EFGH-IJKL-MNO") is None
    assert normalise("ABCD-EFGH-IJKL-MNO9") is None


async def test_parallel_uses_of_one_code_admit_exactly_one(store: Store, tmp_path: Path) -> None:
    from tfa_middleware.settings import LimitSettings

    clock = FakeClock()
    relaxed = LimitSettings().model_copy(update={"verify_max_failures": 20, "verify_delay_base_seconds": 0.0})
    tfa = make_service(store, tmp_path, clock, limits=relaxed)
    await tfa.set_phone("admin", "alice", "1", "2015550123", confirmed=True)
    codes = await tfa.factors.issue_recovery_codes("admin", "alice")
    outcomes = await asyncio.gather(
        *(tfa.verify_code("admin", "alice", codes[0], factor="recovery") for _ in range(10))
    )
    statuses = [o.status for o in outcomes]
    assert statuses.count(VerifyStatus.APPROVED) == 1, statuses
    assert await tfa.factors.recovery_left("admin", "alice") == 9


async def test_codes_made_before_a_key_rotation_still_work(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    old = make_service(store, tmp_path, clock)
    await old.set_phone("admin", "alice", "1", "2015550123", confirmed=True)
    codes = await old.factors.issue_recovery_codes("admin", "alice")
    rotated = make_service(
        store, tmp_path, clock, secret_keys=[SECRET, "a-newer-secret-key-0123456789-abcdefghijk"]
    )
    assert (await rotated.verify_code("admin", "alice", codes[0], factor="recovery")).status is (
        VerifyStatus.APPROVED
    )
    gone = make_service(store, tmp_path, clock, secret_keys=["a-newer-secret-key-0123456789-abcdefghijk"])
    assert (await gone.verify_code("admin", "alice", codes[1], factor="recovery")).status is (
        VerifyStatus.REJECTED
    )
