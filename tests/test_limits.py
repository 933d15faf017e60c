"""Abuse resistance: the verify lockout and the send limits (security requirements 6, 7, 8, 20, 21).

The service-level tests run on SQLite and PostgreSQL (the ``store`` fixture); the page tests drive
the middleware with the default limits, the ones a shop gets without configuring anything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.codes import latest_code
from tests.codes import other_code as wrong
from tests.harness import RELAXED_LIMITS, T0, FakeClock, Harness, config
from tfa_middleware import InvalidPhoneNumber, ProviderUnavailable, TwoFactor, settings_from_mapping
from tfa_middleware.limits import Refusal
from tfa_middleware.logging import JsonFormatter
from tfa_middleware.providers.base import CheckResult, SendResult, Target
from tfa_middleware.providers.sandbox import SandboxProvider
from tfa_middleware.service import RequestInfo, SendStatus, VerifyStatus
from tfa_middleware.settings import LimitSettings
from tfa_middleware.store import Store
from tfa_middleware.store import enrollments as enrollment_rows
from tfa_middleware.store import events as event_rows
from tfa_middleware.store import outbox as outbox_rows

DEFAULTS = LimitSettings()
T0_DAY = T0 - T0 % 86400  # midnight UTC of the fake clock's day
PHONE = ("1", "2015550123")


def make_service(
    store: Store, tmp_path: Path, clock: FakeClock, limits: LimitSettings = DEFAULTS
) -> TwoFactor:
    settings = settings_from_mapping(config(tmp_path)).model_copy(update={"limits": limits})
    provider = SandboxProvider(store, settings.provider, settings.secret_keys[-1], clock=clock)
    return TwoFactor(settings, store, provider, clock=clock)


async def _column(store: Store, user: str, name: str) -> Any:
    from sqlalchemy import select

    from tfa_middleware.tables import enrollments

    async with store.transaction() as conn:
        return (
            await conn.execute(
                select(enrollments.c[name]).where(
                    enrollments.c.interface == "admin", enrollments.c.user_id == user
                )
            )
        ).scalar()


# ---------------------------------------------------------------------------- verify lockout


async def test_five_failures_lock_the_account_for_fifteen_minutes(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    tfa = make_service(store, tmp_path, clock)
    await tfa.set_phone("admin", "alice", *PHONE, confirmed=True)
    await tfa.send_code("admin", "alice")
    code = await latest_code(store)
    statuses = []
    for delay in (0, 1, 2, 4, 8):  # the growing delay: 1, 2, 4, 8 s after each failure
        clock.advance(delay)
        statuses.append((await tfa.verify_code("admin", "alice", wrong(code))).status)
    assert statuses == [VerifyStatus.REJECTED] * 4 + [VerifyStatus.LOCKED]
    locked_at = clock.now

    clock.advance(60)
    # Even the right code is not checked while locked; the answer does not depend on it.
    right = await tfa.verify_code("admin", "alice", code)
    assert right.status is VerifyStatus.LOCKED
    assert right.retry_at == locked_at + 15 * 60

    clock.now = locked_at + 15 * 60
    clock.advance(31)
    await tfa.send_code("admin", "alice")  # the old code expired during the lock
    assert (await tfa.verify_code("admin", "alice", await latest_code(store))).status is VerifyStatus.APPROVED
    kinds = [e.kind for e in await event_rows.latest(store, "admin", "alice")]
    assert kinds.count("locked") == 1
    assert kinds.count("verify_failed") == 5


async def test_the_delay_grows_and_an_early_attempt_is_refused_without_counting(
    store: Store, tmp_path: Path
) -> None:
    clock = FakeClock()
    tfa = make_service(store, tmp_path, clock)
    await tfa.set_phone("admin", "alice", *PHONE, confirmed=True)
    await tfa.send_code("admin", "alice")
    code = await latest_code(store)
    assert (await tfa.verify_code("admin", "alice", wrong(code))).status is VerifyStatus.REJECTED
    early = await tfa.verify_code("admin", "alice", code)
    assert (early.status, early.retry_at) == (VerifyStatus.WAIT, clock.now + 1)
    clock.advance(1)
    assert (await tfa.verify_code("admin", "alice", wrong(code))).status is VerifyStatus.REJECTED
    clock.advance(1.5)
    assert (await tfa.verify_code("admin", "alice", code)).status is VerifyStatus.WAIT  # 2 s now
    assert await _column(store, "alice", "failures") == 2  # the refused tries did not count
    clock.advance(0.5)
    assert (await tfa.verify_code("admin", "alice", code)).status is VerifyStatus.APPROVED
    assert await _column(store, "alice", "failures") == 0  # success wipes the count


async def test_failures_count_per_account_whatever_the_address_or_session(
    store: Store, tmp_path: Path
) -> None:
    clock = FakeClock()
    tfa = make_service(store, tmp_path, clock, DEFAULTS.model_copy(update={"verify_delay_base_seconds": 0}))
    await tfa.set_phone("admin", "alice", *PHONE, confirmed=True)
    await tfa.set_phone("admin", "bob", "1", "2015550124", confirmed=True)
    await tfa.send_code("admin", "alice")
    code = await latest_code(store)
    for i in range(5):
        request = RequestInfo(ip=f"198.51.100.{i}", user_agent=f"browser {i}")
        await tfa.verify_code("admin", "alice", wrong(code), request=request)
    assert (await tfa.verify_code("admin", "alice", code)).status is VerifyStatus.LOCKED
    # Another account is untouched.
    clock.advance(31)
    await tfa.send_code("admin", "bob")
    assert (await tfa.verify_code("admin", "bob", await latest_code(store))).status is VerifyStatus.APPROVED


@pytest.mark.parametrize("limit", [5, 20])
async def test_parallel_wrong_guesses_are_each_counted_and_the_lock_lands_exactly(
    store: Store, tmp_path: Path, limit: int
) -> None:
    clock = FakeClock()
    limits = DEFAULTS.model_copy(update={"verify_max_failures": limit, "verify_delay_base_seconds": 0})
    tfa = make_service(store, tmp_path, clock, limits)
    await tfa.set_phone("admin", "alice", *PHONE, confirmed=True)
    await tfa.send_code("admin", "alice")
    code = await latest_code(store)
    outcomes = await asyncio.gather(*(tfa.verify_code("admin", "alice", wrong(code)) for _ in range(50)))
    statuses = [o.status for o in outcomes]
    assert await _column(store, "alice", "failures") == limit
    assert statuses.count(VerifyStatus.REJECTED) == limit - 1  # the last counted one reports the lock
    assert statuses.count(VerifyStatus.LOCKED) == 50 - (limit - 1)
    kinds = [e.kind for e in await event_rows.latest(store, "admin", "alice")]
    assert kinds.count("verify_failed") == limit
    assert kinds.count("locked") == 1


async def test_twenty_parallel_right_codes_give_exactly_one_success(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    tfa = make_service(store, tmp_path, clock, DEFAULTS.model_copy(update={"verify_delay_base_seconds": 0}))
    await tfa.set_phone("admin", "alice", *PHONE, confirmed=True)
    await tfa.send_code("admin", "alice")
    code = await latest_code(store)
    outcomes = await asyncio.gather(*(tfa.verify_code("admin", "alice", code) for _ in range(20)))
    assert [o.status for o in outcomes].count(VerifyStatus.APPROVED) == 1


async def test_never_more_than_the_hourly_ceiling_of_failures(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    limits = DEFAULTS.model_copy(
        update={"verify_max_failures": 20, "verify_delay_base_seconds": 0, "verify_max_failures_per_hour": 3}
    )
    tfa = make_service(store, tmp_path, clock, limits)
    await tfa.set_phone("admin", "alice", *PHONE, confirmed=True)
    await tfa.send_code("admin", "alice")
    code = await latest_code(store)
    start = clock.now
    for _ in range(3):
        assert (await tfa.verify_code("admin", "alice", wrong(code))).status is VerifyStatus.REJECTED
        clock.advance(60)
    capped = await tfa.verify_code("admin", "alice", code)
    assert (capped.status, capped.retry_at) == (VerifyStatus.LOCKED, start + 3600)
    clock.now = start + 3600
    await tfa.send_code("admin", "alice")
    assert (await tfa.verify_code("admin", "alice", await latest_code(store))).status is VerifyStatus.APPROVED


def test_the_hourly_ceiling_cannot_be_configured_above_one_hundred(tmp_path: Path) -> None:
    from tfa_middleware import ConfigError

    with pytest.raises(ConfigError) as exc:
        settings_from_mapping(config(tmp_path, limits={"verify_max_failures_per_hour": 101}))
    assert exc.value.problems == ["limits.verify_max_failures_per_hour: must be between 1 and 100, got 101"]
    with pytest.raises(ConfigError) as exc:
        settings_from_mapping(
            config(tmp_path, limits={"verify_lock_seconds": 60, "send_cooldown_seconds": 5})
        )
    assert exc.value.problems == [
        "limits.verify_lock_seconds: must be between 900 and 604800, got 60",
        "limits.send_cooldown_seconds: must be between 30 and 3600, got 5",
    ]


async def test_an_admin_unlocks_and_the_unlock_is_audited(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    tfa = make_service(store, tmp_path, clock, DEFAULTS.model_copy(update={"verify_delay_base_seconds": 0}))
    await tfa.set_phone("admin", "alice", *PHONE, confirmed=True)
    await tfa.send_code("admin", "alice")
    code = await latest_code(store)
    for _ in range(5):
        await tfa.verify_code("admin", "alice", wrong(code))
    assert (await tfa.verify_code("admin", "alice", code)).status is VerifyStatus.LOCKED
    assert await tfa.unlock("admin", "alice", request=RequestInfo(ip="10.0.0.9"))
    assert (await tfa.verify_code("admin", "alice", code)).status is VerifyStatus.REJECTED  # voided: 5 tries
    assert not await tfa.unlock("admin", "nobody")
    unlocked = [e for e in await event_rows.latest(store, "admin", "alice") if e.kind == "unlocked"]
    assert len(unlocked) == 1
    assert unlocked[0].ip == "10.0.0.9"


class BrokenProvider:
    """A provider whose service is down: every call raises."""

    name = "broken"
    supports_call = False
    needs_registration = False
    code_lengths = (6, 6)
    fingerprint = None

    # The Provider protocol's signatures; a provider that is down looks at none of its arguments.
    async def register(self, target: Target) -> str | None:
        del target
        return None

    async def send(self, target: Target, channel: str) -> SendResult:
        del target, channel
        raise ProviderUnavailable("timed out")

    async def check(self, target: Target, code: str) -> CheckResult:
        del target, code
        raise ProviderUnavailable("timed out")

    async def close(self) -> None:
        return None


async def test_a_provider_outage_counts_against_nobody(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    settings = settings_from_mapping(config(tmp_path)).model_copy(update={"limits": DEFAULTS})
    tfa = TwoFactor(settings, store, BrokenProvider(), clock=clock)
    await tfa.set_phone("admin", "alice", *PHONE, confirmed=True)
    for _ in range(8):
        with pytest.raises(ProviderUnavailable):
            await tfa.verify_code("admin", "alice", "123456")
        with pytest.raises(ProviderUnavailable):
            await tfa.send_code("admin", "alice")
    assert await _column(store, "alice", "failures") == 0
    assert (await tfa.waits("admin", "alice")).next_send_at == 0
    kinds = [e.kind for e in await event_rows.latest(store, "admin", "alice")]
    assert kinds.count("verify_error") == 8
    assert kinds.count("send_failed") == 8


# ---------------------------------------------------------------------------- send limits


async def test_resend_cooldown_then_three_per_ten_minutes_then_five_per_hour(
    store: Store, tmp_path: Path
) -> None:
    clock = FakeClock()
    tfa = make_service(store, tmp_path, clock)
    await tfa.set_phone("admin", "alice", *PHONE, confirmed=True)
    start = clock.now
    assert (await tfa.send_code("admin", "alice")).status is SendStatus.SENT
    clock.advance(10)
    early = await tfa.send_code("admin", "alice")
    assert (early.status, early.refusal, early.retry_after) == (SendStatus.REFUSED, Refusal.COOLDOWN, 20)
    for _ in range(2):
        clock.advance(30)
        assert (await tfa.send_code("admin", "alice")).status is SendStatus.SENT
    clock.advance(30)
    fourth = await tfa.send_code("admin", "alice")
    assert (fourth.refusal, fourth.retry_after) == (Refusal.ACCOUNT_LIMIT, int(start + 600 - clock.now))
    clock.now = start + 600
    assert (await tfa.send_code("admin", "alice")).status is SendStatus.SENT
    clock.now = start + 641  # the send at +40 s has left the ten-minute window
    assert (await tfa.send_code("admin", "alice")).status is SendStatus.SENT  # five this hour
    clock.now = start + 1200
    sixth = await tfa.send_code("admin", "alice")
    assert (sixth.refusal, sixth.retry_after) == (Refusal.ACCOUNT_LIMIT, 2400)
    refused = [e for e in await event_rows.latest(store, "admin", "alice") if e.kind == "send_refused"]
    assert [e.detail["reason"] for e in refused if e.detail] == ["cooldown", "account_limit", "account_limit"]


async def test_parallel_sends_for_one_account_send_exactly_one_code(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    tfa = make_service(store, tmp_path, clock)
    await tfa.set_phone("admin", "alice", *PHONE, confirmed=True)
    outcomes = await asyncio.gather(*(tfa.send_code("admin", "alice") for _ in range(12)))
    assert [o.status for o in outcomes].count(SendStatus.SENT) == 1
    assert len(await outbox_rows.latest(store, 50)) == 1


async def test_per_phone_limit_holds_across_accounts(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    tfa = make_service(store, tmp_path, clock, DEFAULTS.model_copy(update={"send_max_per_phone_per_hour": 3}))
    for user in ("u1", "u2", "u3", "u4"):
        await tfa.set_phone("admin", user, *PHONE, confirmed=True)  # one number, many accounts
    results = [await tfa.send_code("admin", user) for user in ("u1", "u2", "u3", "u4")]
    assert [r.status for r in results] == [SendStatus.SENT] * 3 + [SendStatus.REFUSED]
    assert results[3].refusal is Refusal.PHONE_LIMIT


async def test_per_address_limit_holds_across_accounts(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    tfa = make_service(store, tmp_path, clock, DEFAULTS.model_copy(update={"send_max_per_ip_per_hour": 3}))
    pumper = RequestInfo(ip="203.0.113.5")
    outcomes = []
    for i in range(4):
        await tfa.set_phone("admin", f"u{i}", "1", f"201555015{i}", confirmed=True)
        outcomes.append(await tfa.send_code("admin", f"u{i}", request=pumper))
    assert [o.refusal for o in outcomes] == [None, None, None, Refusal.IP_LIMIT]
    await tfa.set_phone("admin", "other", "1", "2015550160", confirmed=True)
    other = await tfa.send_code("admin", "other", request=RequestInfo(ip="203.0.113.6"))
    assert other.status is SendStatus.SENT


async def test_the_global_budget_refuses_sends_loudly_and_lets_nobody_in(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    tfa = make_service(
        store,
        tmp_path,
        clock,
        DEFAULTS.model_copy(update={"send_budget_per_hour": 2, "send_budget_per_day": 2}),
    )
    for user in ("u1", "u2", "u3"):
        await tfa.set_phone("admin", user, "1", f"20155501{user[1]}0", confirmed=True)
    with caplog.at_level(logging.ERROR, logger="tfa_middleware.limits"):
        outcomes = [await tfa.send_code("admin", user) for user in ("u1", "u2", "u3")]
    assert [o.refusal for o in outcomes] == [None, None, Refusal.BUDGET]
    assert any("SEND BUDGET SPENT" in r.getMessage() for r in caplog.records)
    assert (await tfa.verify_code("admin", "u3", "000000")).status is VerifyStatus.REJECTED
    [refusal] = [e for e in await event_rows.latest(store, "admin", "u3") if e.kind == "send_refused"]
    assert refusal.detail == {"reason": "budget", "to": "+1 ••• ••• 0130", "channel": "sms", "country": "US"}


async def _budget_row(store: Store) -> tuple[float, int, float, int]:
    from tfa_middleware.tables import send_budget

    async with store.reading() as conn:
        row = (await conn.execute(send_budget.select())).one()
    return row.hour_start, row.hour_count, row.day_start, row.day_count


async def test_the_budget_counts_codes_by_clock_hour_and_utc_day(store: Store, tmp_path: Path) -> None:
    clock = FakeClock(T0_DAY + 3600 * 5 + 1200)  # 05:20 UTC
    limits = DEFAULTS.model_copy(update={"send_budget_per_hour": 2, "send_budget_per_day": 3})
    tfa = make_service(store, tmp_path, clock, limits)
    for n in range(5):
        await tfa.set_phone("admin", f"u{n}", "1", f"201555014{n}", confirmed=True)
    assert [(await tfa.send_code("admin", f"u{n}")).refusal for n in range(2)] == [None, None]
    spent = await tfa.send_code("admin", "u2")
    assert (spent.refusal, spent.retry_after) == (Refusal.BUDGET, 40 * 60)  # at 06:00
    clock.now = T0_DAY + 3600 * 6  # a new hour: one code left today
    assert (await tfa.send_code("admin", "u2")).status is SendStatus.SENT
    day_spent = await tfa.send_code("admin", "u3")
    assert (day_spent.refusal, day_spent.retry_after) == (Refusal.BUDGET, 18 * 3600)  # at midnight UTC
    assert await _budget_row(store) == (T0_DAY + 3600 * 6, 1, T0_DAY, 3)
    clock.now = T0_DAY + 24 * 3600
    assert (await tfa.send_code("admin", "u3")).status is SendStatus.SENT


async def test_parallel_sends_never_spend_more_than_the_budget(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    tfa = make_service(store, tmp_path, clock, DEFAULTS.model_copy(update={"send_budget_per_hour": 5}))
    users = [f"u{n:02d}" for n in range(20)]
    for n, user in enumerate(users):
        await tfa.set_phone("admin", user, "1", f"20155501{n:02d}", confirmed=True)
    outcomes = await asyncio.gather(
        *(
            tfa.send_code("admin", user, request=RequestInfo(ip=f"198.51.100.{n}"))
            for n, user in enumerate(users)
        )
    )
    assert sorted(str(o.refusal) for o in outcomes) == ["None"] * 5 + ["budget"] * 15
    assert len(await outbox_rows.latest(store, 50)) == 5
    assert (await _budget_row(store))[1] == 5


async def test_a_send_that_fails_or_is_refused_spends_no_budget(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    limits = DEFAULTS.model_copy(update={"send_budget_per_hour": 2, "send_budget_per_day": 2})
    settings = settings_from_mapping(config(tmp_path)).model_copy(update={"limits": limits})
    broken = TwoFactor(settings, store, BrokenProvider(), clock=clock)
    await broken.set_phone("admin", "u1", "1", "2015550110", confirmed=True)
    await broken.set_phone("admin", "u2", "1", "2015550120", confirmed=True)
    for _ in range(3):
        with pytest.raises(ProviderUnavailable):
            await broken.send_code("admin", "u1")
    tfa = make_service(store, tmp_path, clock, limits)
    assert (await tfa.send_code("admin", "u1")).status is SendStatus.SENT
    assert (await tfa.send_code("admin", "u1")).refusal is Refusal.COOLDOWN  # no unit taken
    assert (await tfa.send_code("admin", "u2")).status is SendStatus.SENT
    assert (await _budget_row(store))[1] == 2


async def test_numbers_outside_the_allowed_regions_are_refused_at_enrollment(
    store: Store, tmp_path: Path
) -> None:
    clock = FakeClock()
    tfa = make_service(store, tmp_path, clock, DEFAULTS.model_copy(update={"allowed_regions": ("GB",)}))
    with pytest.raises(InvalidPhoneNumber, match=r"We can't send text messages to numbers from US \(\+1\)"):
        await tfa.set_phone("admin", "alice", *PHONE, confirmed=True)
    assert await enrollment_rows.get(store, "admin", "alice") is None
    default = make_service(store, tmp_path, clock)
    with pytest.raises(InvalidPhoneNumber, match=r"numbers from BD \(\+880\)"):
        await default.set_phone("admin", "alice", "880", "1712345678")  # not in the default list
    await default.set_phone("admin", "alice", *PHONE)  # the US is


JAMAICA = ("1", "876 210 1234")  # +1 like the US, but region JM
VIRGIN_ISLANDS = ("1", "284 300 1234")  # +1, region VG
CANADA = ("1", "506 234 5678")
JERSEY = ("44", "7797 712345")  # +44 like Great Britain, but region JE


async def test_a_shared_calling_code_does_not_let_an_unlisted_region_through(
    store: Store, tmp_path: Path
) -> None:
    """Security requirement 28: +1 is the US, Canada and 23 other regions; [US, CA] means those two."""
    clock = FakeClock()
    tfa = make_service(store, tmp_path, clock, DEFAULTS.model_copy(update={"allowed_regions": ("US", "CA")}))
    for user, number in (("jm", JAMAICA), ("vg", VIRGIN_ISLANDS)):
        with pytest.raises(
            InvalidPhoneNumber, match=r"We can't send text messages to numbers from (JM|VG) \(\+1\)"
        ):
            await tfa.set_phone("admin", user, *number, confirmed=True)
        assert await enrollment_rows.get(store, "admin", user) is None
    await tfa.set_phone("admin", "us", *PHONE, confirmed=True)
    await tfa.set_phone("admin", "ca", *CANADA, confirmed=True)
    assert (await tfa.send_code("admin", "us")).status is SendStatus.SENT
    assert (await tfa.send_code("admin", "ca")).status is SendStatus.SENT


async def test_the_send_itself_checks_the_region(store: Store, tmp_path: Path) -> None:
    """A number stored while the list was wider is refused at the next send, not only at enrollment."""
    clock = FakeClock()
    wide = make_service(store, tmp_path, clock, DEFAULTS.model_copy(update={"allowed_regions": ("*",)}))
    await wide.set_phone("admin", "alice", *JAMAICA, confirmed=True)
    narrow = make_service(
        store, tmp_path, clock, DEFAULTS.model_copy(update={"allowed_regions": ("US", "CA")})
    )
    outcome = await narrow.send_code("admin", "alice")
    assert (outcome.status, outcome.refusal) == (SendStatus.REFUSED, Refusal.COUNTRY)
    assert (await wide.send_code("admin", "alice")).status is SendStatus.SENT


@pytest.mark.parametrize("number", [JAMAICA, VIRGIN_ISLANDS, JERSEY], ids=["JM", "VG", "JE"])
async def test_the_default_regions_leave_out_what_shares_their_calling_codes(
    store: Store, tmp_path: Path, number: tuple[str, str]
) -> None:
    tfa = make_service(store, tmp_path, FakeClock())
    with pytest.raises(InvalidPhoneNumber, match="We can't send text messages to numbers from"):
        await tfa.set_phone("admin", "alice", *number, confirmed=True)
    assert {"US", "CA", "GB"} <= set(DEFAULTS.allowed_regions)


# ---------------------------------------------------------------------------- through the pages


@pytest.fixture
async def limited(make_harness: Callable[..., Awaitable[Harness]]) -> Harness:
    h = await make_harness(limits=DEFAULTS)
    await h.service.set_phone("admin", "alice", *PHONE, confirmed=True)
    return h


async def test_the_challenge_page_shows_the_cooldown_without_javascript(limited: Harness) -> None:
    alice = limited.as_user("alice")
    await limited.send(alice)
    limited.clock.advance(5)
    page = await limited.client.get("/admin/_2fa/challenge?sent=1", headers=alice)
    assert 'data-countdown="25"' in page.text
    # The paragraph's text (its data-texts attribute holds the countdown's sentences for the script).
    wait = re.search(r">You can ask for a new code in (.*?)</p>", page.text)
    assert wait
    assert re.sub(r"<[^>]+>", "", wait.group(1)).startswith("25 s")
    again = await limited.send(alice)
    assert again.status_code == 429
    assert "You can ask for a new code in 25 seconds." in again.text
    # The refusal is about the send button; the code field is not marked wrong.
    assert 'id="send-error"' in again.text
    assert 'aria-invalid="true"' not in again.text
    limited.clock.advance(25)
    page = await limited.client.get("/admin/_2fa/challenge?sent=1", headers=alice)
    assert "data-countdown" not in page.text
    assert (await limited.send(alice)).status_code == 303


async def test_a_locked_account_is_told_when_to_retry_with_the_wrong_code_status(limited: Harness) -> None:
    alice = limited.as_user("alice")
    await limited.send(alice)
    code = await limited.latest_code()
    first = await limited.verify(alice, wrong(code))
    assert first.status_code == 400
    for delay in (1, 2, 4, 8):
        limited.clock.advance(delay)
        response = await limited.verify(alice, wrong(code))
    assert response.status_code == first.status_code == 400
    assert "Too many wrong codes" in response.text
    assert "15 minutes" in response.text
    limited.clock.advance(60)
    right = await limited.verify(alice, code)  # not even checked
    assert right.status_code == 400
    assert "14 minutes" in right.text
    assert "tfa_admin" not in right.cookies
    page = await limited.client.get("/admin/_2fa/challenge", headers=alice)
    assert "Too many wrong codes" in page.text
    assert (await limited.client.get("/admin/orders", headers=alice)).status_code == 303


async def test_a_forged_forwarded_for_from_an_untrusted_peer_changes_nothing(
    make_harness: Callable[..., Awaitable[Harness]],
) -> None:
    h = await make_harness(limits=DEFAULTS.model_copy(update={"send_max_per_ip_per_hour": 2}))
    for user in ("u1", "u2", "u3"):
        await h.service.set_phone("admin", user, "1", f"20155501{user[1]}1", confirmed=True)
    statuses = []
    for i, user in enumerate(("u1", "u2", "u3")):
        headers = {**h.as_user(user), "x-forwarded-for": f"198.51.100.{i}"}
        statuses.append((await h.send(headers)).status_code)
    assert statuses == [303, 303, 429]  # all three counted against the real peer
    ips = {e.ip for e in await event_rows.latest(h.service.store) if e.kind == "code_sent"}
    assert ips == {"127.0.0.1"}


async def test_a_trusted_proxy_passes_on_the_client_address(
    make_harness: Callable[..., Awaitable[Harness]],
) -> None:
    h = await make_harness(
        limits=DEFAULTS.model_copy(update={"send_max_per_ip_per_hour": 2}), trusted_proxies=["127.0.0.1"]
    )
    for user in ("u1", "u2", "u3"):
        await h.service.set_phone("admin", user, "1", f"20155501{user[1]}2", confirmed=True)
    statuses = []
    for i, user in enumerate(("u1", "u2", "u3")):
        headers = {**h.as_user(user), "x-forwarded-for": f"198.51.100.{i}"}
        statuses.append((await h.send(headers)).status_code)
    assert statuses == [303, 303, 303]  # three clients behind the proxy
    ips = sorted(e.ip or "" for e in await event_rows.latest(h.service.store) if e.kind == "code_sent")
    assert ips == ["198.51.100.0", "198.51.100.1", "198.51.100.2"]


def test_relaxed_test_limits_are_not_what_shops_get() -> None:
    # The other test files relax the limits; this file must not, or it would test nothing.
    assert DEFAULTS != RELAXED_LIMITS
    assert DEFAULTS.send_cooldown_seconds >= 30
    assert DEFAULTS.verify_max_failures <= 5
    assert DEFAULTS.verify_lock_seconds >= 15 * 60
    assert DEFAULTS.send_max_per_10_minutes <= 3
    assert DEFAULTS.send_max_per_hour <= 5


# ---------------------------------------------------------------------------- the audit log


async def test_every_event_is_also_a_log_line_with_its_fields(
    limited: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tfa_middleware.audit")
    alice = {**limited.as_user("alice"), "user-agent": "Firefox/200"}
    await limited.send(alice)
    await limited.verify(alice, wrong(await limited.latest_code()))
    records = [r for r in caplog.records if r.name == "tfa_middleware.audit"]
    assert [r.getMessage() for r in records] == ["code_sent admin/alice", "verify_failed admin/alice"]
    fields = records[0].__dict__["tfa_event"]
    assert fields | {"at": 0} == {
        "at": 0,
        "interface": "admin",
        "user_id": "alice",
        "event": "code_sent",
        "ip": "127.0.0.1",
        "user_agent": "Firefox/200",
        "channel": "sms",
        "to": "+1 ••• ••• 0123",
        "purpose": "login",
        "country": "US",
    }
    # The formatter prints the fields once, as JSON values, not as a JSON string in a message.
    line = json.loads(JsonFormatter().format(records[0]))
    assert line == {
        **fields,
        "time": line["time"],
        "level": "INFO",
        "logger": "tfa_middleware.audit",
        "message": "code_sent admin/alice",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"])
    assert [e.kind for e in await event_rows.latest(limited.service.store, "admin", "alice")][-2:] == [
        "code_sent",
        "verify_failed",
    ]
