"""A rollout a shop can survive (issue 17): per-user exemptions (time-limited, audited, ended early
on every worker), the enrollment grace (a date or a count of logins, exact in parallel), and report
mode (nobody stopped, each would-be stop recorded once a UTC day; the other interfaces enforced)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from tests.harness import ADMIN_PHONE, Harness, config
from tests.helpers import CLI_ENV, Cli, config_file
from tests.wsgi_harness import WSGIHarness
from tfa_middleware import TwoFactor, load_settings
from tfa_middleware.errors import ConfigError, InvalidInput
from tfa_middleware.rollout import DAY, MAX_EXEMPTION_DAYS, parse_until
from tfa_middleware.settings import settings_from_mapping
from tfa_middleware.store import events as event_rows
from tfa_middleware.store import policy as policy_rows
from tfa_middleware.tables import enrollments

MANAGE = "/admin/_2fa/manage"
JAN_31_END = parse_until("2027-01-31")  # T0 is 2027-01-15 08:00 UTC


def bob() -> dict[str, str]:
    return {"x-test-user": "bob", "accept": "text/html"}


async def kinds(h: Harness, user: str) -> list[str]:
    return [e.kind for e in await event_rows.latest(h.service.store, "admin", user, limit=100)]


# ---------------------------------------------------------------------------- exemptions


async def test_an_exempt_user_passes_without_a_code_until_the_exemption_ends(harness: Harness) -> None:
    h = harness
    assert (await h.client.get("/admin/orders", headers=bob())).status_code == 303
    await h.service.rollout.exempt("admin", "bob", h.clock.now + 3600, "phone lost in Lisbon")
    page = await h.client.get("/admin/_2fa/challenge?next=/admin/orders", headers=bob())
    assert page.status_code == 303
    assert page.headers["location"] == "/admin/orders"
    cookie = page.headers["set-cookie"]
    assert "Max-Age=3600" in cookie  # the cookie goes with the exemption, not after 12 hours
    assert (await h.client.get("/admin/orders", headers=bob())).status_code == 200
    h.clock.advance(3599)
    assert (await h.client.get("/admin/orders", headers=bob())).status_code == 200
    h.clock.advance(1)  # the proof dies with the exemption, on every worker's clock
    assert (await h.client.get("/admin/orders", headers=bob())).status_code == 303
    challenge = await h.client.get("/admin/_2fa/challenge?next=/admin/orders", headers=bob())
    assert challenge.status_code == 200  # and the challenge asks for a code again
    assert "exempted" in await kinds(h, "bob")


async def test_an_exemption_longer_than_a_proof_renews_its_proof_and_never_outlives_itself(
    harness: Harness,
) -> None:
    h = harness
    await h.service.rollout.exempt("admin", "bob", h.clock.now + 2 * DAY, "on a plane")
    await h.client.get("/admin/_2fa/challenge", headers=bob())
    h.clock.advance(12 * 3600)  # the proof's own lifetime is over; the exemption is not
    assert (await h.client.get("/admin/orders", headers=bob())).status_code == 303
    again = await h.client.get("/admin/_2fa/challenge?next=/admin/orders", headers=bob())
    assert again.status_code == 303
    assert (await h.client.get("/admin/orders", headers=bob())).status_code == 200
    h.clock.advance(36 * 3600 - 60)
    renewed = await h.client.get("/admin/_2fa/challenge", headers=bob())
    assert "Max-Age=60" in renewed.headers["set-cookie"]
    h.clock.advance(60)
    assert (await h.client.get("/admin/orders", headers=bob())).status_code == 303


async def test_ending_an_exemption_early_voids_its_proof(harness: Harness) -> None:
    h = harness
    await h.service.rollout.exempt("admin", "bob", h.clock.now + DAY, "support ticket 4711")
    await h.client.get("/admin/_2fa/challenge", headers=bob())
    assert (await h.client.get("/admin/orders", headers=bob())).status_code == 200
    assert await h.service.rollout.end_exemption("admin", "bob")
    assert not await h.service.rollout.end_exemption("admin", "bob")
    h.clock.advance(h.settings.revocation_check_seconds)  # every worker looks again by then
    assert (await h.client.get("/admin/orders", headers=bob())).status_code == 303
    page = await h.client.get("/admin/_2fa/challenge", headers=bob())
    assert page.status_code == 200
    assert "exemption_ended" in await kinds(h, "bob")


async def test_an_exemption_is_time_limited_and_needs_a_reason(harness: Harness) -> None:
    rollout, now = harness.service.rollout, harness.clock.now
    for until, reason in (
        (now + MAX_EXEMPTION_DAYS * DAY + 1, "too long"),
        (now, "already over"),
        (now + 60, "   "),
        (now + 60, "x" * 201),
    ):
        with pytest.raises(InvalidInput):
            await rollout.exempt("admin", "bob", until, reason)
    assert await rollout.exemption("admin", "bob") is None
    assert await rollout.exempt("admin", "bob", now + MAX_EXEMPTION_DAYS * DAY, "the longest")
    with pytest.raises(InvalidInput, match="not a date"):
        parse_until("next tuesday")
    with pytest.raises(InvalidInput, match="time zone"):
        parse_until("2027-01-31T18:00")
    assert parse_until("2027-01-31T18:00+01:00") == JAN_31_END - 7 * 3600


async def test_an_exempt_proof_never_meets_a_step_up_rule_nor_the_fresh_proof_of_the_account_pages(
    make_harness: Callable[..., Awaitable[Harness]], tmp_path: Path
) -> None:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["step_up"] = [{"path": "/admin/orders", "max_age_seconds": 600}]
    h = await make_harness(interfaces=interfaces)
    await h.service.set_phone("admin", "bob", "1", "2015550124", confirmed=True)
    await h.service.rollout.exempt("admin", "bob", h.clock.now + DAY, "on a plane")
    await h.client.get("/admin/_2fa/challenge", headers=bob())
    assert (await h.client.get("/admin", headers=bob())).status_code == 200
    stepped = await h.client.get("/admin/orders", headers=bob())
    assert stepped.status_code == 303
    assert "reauth=1" in stepped.headers["location"]
    recheck = await h.client.get(stepped.headers["location"], headers=bob())
    assert recheck.status_code == 200  # the re-check is never passed by the exemption
    phone = await h.client.get("/admin/_2fa/phone", headers=bob())
    assert "reauth=1" in phone.headers["location"]


@pytest.fixture
async def managed(make_harness: Callable[..., Awaitable[Harness]], tmp_path: Path) -> Harness:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["manage"] = {"allow_user_ids": ["alice"]}
    h = await make_harness(interfaces=interfaces)
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await h.service.set_phone("admin", "bob", "1", "2015550124", confirmed=True)
    return h


async def _manage(h: Harness, **data: str) -> Any:
    headers = h.as_user("alice")
    url = f"{MANAGE}?interface=admin&user={data.get('user_id', 'bob')}"
    page = await h.client.get(url, headers=headers)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text[:300]
    return await h.client.post(
        url, data={"csrf_token": token.group(1), "interface": "admin", **data}, headers=headers
    )


async def test_the_management_page_exempts_and_ends_with_a_fresh_proof(managed: Harness) -> None:
    h = managed
    await h.pass_challenge("alice")
    page = await h.client.get(f"{MANAGE}?interface=admin&user=bob", headers=h.as_user("alice"))
    assert 'id="exempt"' in page.text
    done = await _manage(h, action="exempt", user_id="bob", until="2027-01-20", reason="lost phone")
    assert "bob is exempt until Jan 21, 2027, 12:00\u202fAM UTC." in done.text  # the reader's date format
    german = {**h.as_user("alice"), "accept-language": "de"}
    shown = await h.client.get(f"{MANAGE}?interface=admin&user=bob", headers=german)
    german_text = "Bis <strong>21.01.2027, 00:00 UTC</strong> vom zweiten Faktor ausgenommen: lost phone"
    assert german_text in shown.text
    assert "End the exemption now" in done.text
    exemption = await h.service.rollout.exemption("admin", "bob")
    assert exemption is not None
    assert exemption.created_by == "admin/alice"
    events = await event_rows.latest(h.service.store, "admin", "bob")
    assert ("exempted", "admin/alice") in [(e.kind, (e.detail or {}).get("by")) for e in events]
    refused = await _manage(h, action="exempt", user_id="bob", until="2027-03-20", reason="too long")
    assert refused.status_code == 400
    assert f"at most {MAX_EXEMPTION_DAYS} days" in refused.text
    own = await _manage(h, action="exempt", user_id="alice", until="2027-01-20", reason="me")
    assert own.status_code == 400
    assert await h.service.rollout.exemption("admin", "alice") is None
    ended = await _manage(h, action="end_exemption", user_id="bob")
    assert "The exemption of bob is ended." in ended.text
    assert await h.service.rollout.exemption("admin", "bob") is None

    # Lowering somebody's protection wants a code typed lately, as acting on oneself does.
    h.clock.advance(h.settings.interface("admin").phone_change_fresh_seconds + 1)
    stale = await _manage(h, action="exempt", user_id="bob", until="2027-01-20", reason="later")
    assert stale.status_code == 303
    assert "reauth=1" in stale.headers["location"]
    assert await h.service.rollout.exemption("admin", "bob") is None


async def test_the_command_line_exempts_lists_and_ends(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config_file(tmp_path)
    for name, value in CLI_ENV.items():
        monkeypatch.setenv(name, value)
    async with TwoFactor.from_settings(load_settings(path)) as tfa:
        await tfa.store.upgrade_schema()
    args = ("--interface", "admin", "--config", str(path))
    exempt = await asyncio.to_thread(
        cli, "users", "exempt", "ceo", *args, "--until", "2099-01-01", "--reason", "plane", "--json"
    )
    assert exempt.returncode == 1
    assert "at most 30 days" in exempt.stderr
    soon = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    exempt = await asyncio.to_thread(
        cli, "users", "exempt", "ceo", *args, "--until", soon, "--reason", "on a plane", "--json"
    )
    assert exempt.returncode == 0, exempt.stderr
    record = json.loads(exempt.stdout)
    assert record["reason"] == "on a plane"
    assert record["by"].startswith("cli:")
    listing = await asyncio.to_thread(cli, "users", "exemptions", *args)
    assert listing.stdout.startswith("ceo  until ")
    ended = await asyncio.to_thread(cli, "users", "end-exemption", "ceo", *args)
    assert ended.returncode == 0
    again = await asyncio.to_thread(cli, "users", "end-exemption", "ceo", *args)
    assert again.returncode == 1
    assert "no exemption in force" in again.stderr
    assert (await asyncio.to_thread(cli, "users", "exemptions", *args)).stdout == "(no exemptions)\n"
    unknown = await asyncio.to_thread(
        cli, "users", "exemptions", "--interface", "shop", "--config", str(path)
    )
    assert unknown.returncode == 1


# ---------------------------------------------------------------------------- enrollment grace


async def grace_harness(
    make_harness: Callable[..., Awaitable[Harness]], tmp_path: Path, grace: Any
) -> Harness:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["enroll_grace"] = grace
    interfaces["admin"]["step_up"] = [{"path": "/admin/orders", "max_age_seconds": 600}]
    h = await make_harness(interfaces=interfaces)
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    return h


async def skip(h: Harness, user: str = "bob") -> Any:
    headers = h.as_user(user)
    page = await h.client.get("/admin/_2fa/enroll?next=/admin", headers=headers)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    return await h.client.post(
        "/admin/_2fa/enroll?next=/admin",
        data={"csrf_token": token.group(1), "action": "skip"},
        headers=headers,
    )


async def test_a_count_of_logins_is_offered_used_and_then_over(
    make_harness: Callable[..., Awaitable[Harness]], tmp_path: Path
) -> None:
    h = await grace_harness(make_harness, tmp_path, {"logins": 2})
    page = await h.client.get("/admin/_2fa/enroll", headers=bob())
    assert "You can skip this 2 more times" in page.text
    polish = await h.client.get("/admin/_2fa/enroll", headers={**bob(), "accept-language": "pl"})
    assert "Możesz pominąć ten krok jeszcze 2 razy" in polish.text  # the language's plural form
    assert 'id="skip-enrollment"' in page.text
    assert 'name="phone"' in page.text  # "set up now" is right there
    first = await skip(h)
    assert first.status_code == 303
    assert first.headers["location"] == "/admin"
    assert (await h.client.get("/admin", headers=bob())).status_code == 200
    # A step-up rule wants a real code: the grace never meets it.
    assert "reauth=1" in (await h.client.get("/admin/orders", headers=bob())).headers["location"]
    h.client.cookies.clear()
    assert "You can skip this once more" in (await h.client.get("/admin/_2fa/enroll", headers=bob())).text
    assert (await skip(h)).status_code == 303
    h.client.cookies.clear()
    over = await h.client.get("/admin/_2fa/enroll", headers=bob())
    assert 'id="skip-enrollment"' not in over.text
    refused = await skip(h)
    assert refused.status_code == 400
    assert "please set it up now" in refused.text
    assert (await h.client.get("/admin", headers=bob())).status_code == 303
    assert (await kinds(h, "bob")).count("enrollment_skipped") == 2
    # A user with a factor is challenged as usual: no grace offered, a skip refused.
    assert (await h.client.get("/admin/_2fa/enroll", headers=h.as_user("alice"))).status_code == 303


async def test_parallel_skips_never_pass_the_count(store: Any) -> None:
    results = await asyncio.gather(
        *(policy_rows.skip_login(store, "admin", "bob", 3, 1.0) for _ in range(12))
    )
    assert sorted(r for r in results if r is not None) == [1, 2, 3]
    assert results.count(None) == 9
    assert await policy_rows.logins_skipped(store, "admin", "bob") == 3


async def test_a_date_grace_says_how_long_and_its_proof_ends_with_it(
    make_harness: Callable[..., Awaitable[Harness]], tmp_path: Path
) -> None:
    h = await grace_harness(make_harness, tmp_path, {"until": "2027-01-31"})
    page = await h.client.get("/admin/_2fa/enroll", headers=bob())
    assert "You can skip this for 16 more days" in page.text
    russian = await h.client.get("/admin/_2fa/enroll", headers={**bob(), "accept-language": "ru"})
    assert "Этот шаг можно пропускать ещё 16 дней" in russian.text
    done = await skip(h)
    assert done.status_code == 303
    assert "Max-Age=43200" in done.headers["set-cookie"]  # a whole proof's lifetime still fits
    h.clock.now = JAN_31_END - 3600
    h.client.cookies.clear()
    assert (
        "You can skip this for 60 minutes more"
        in (await h.client.get("/admin/_2fa/enroll", headers=bob())).text
    )
    late = await skip(h)
    assert "Max-Age=3600" in late.headers["set-cookie"]  # no proof outlives the grace
    h.clock.advance(3600)
    assert (await h.client.get("/admin", headers=bob())).status_code == 303
    after = await h.client.get("/admin/_2fa/enroll", headers=bob())
    assert 'id="skip-enrollment"' not in after.text
    assert (await skip(h)).status_code == 400


@pytest.mark.parametrize(
    ("grace", "expected"),
    [
        ({"until": "2027-01-31", "logins": 3}, "interfaces.admin.enroll_grace: give exactly one of until"),
        ({}, "interfaces.admin.enroll_grace: give exactly one of until"),
        ({"logins": 0}, "interfaces.admin.enroll_grace.logins: must be between 1 and 1000, got 0"),
        ({"until": "soon"}, "interfaces.admin.enroll_grace.until: "),
        ({"day": "2027-01-31"}, "interfaces.admin.enroll_grace.day: unknown key"),
    ],
)
def test_grace_settings_are_checked(tmp_path: Path, grace: Any, expected: str) -> None:
    data = config(tmp_path)
    data["interfaces"]["admin"]["enroll_grace"] = grace
    with pytest.raises(ConfigError) as exc:
        settings_from_mapping(data)
    assert any(problem.startswith(expected) for problem in exc.value.problems), exc.value.problems


# ---------------------------------------------------------------------------- report mode


@pytest.mark.parametrize("mode", ["Report", "reporting", "off", ""])
def test_a_mistyped_mode_is_an_error_never_report(tmp_path: Path, mode: str) -> None:
    data = config(tmp_path)
    data["interfaces"]["admin"]["mode"] = mode
    with pytest.raises(ConfigError) as exc:
        settings_from_mapping(data)
    assert exc.value.problems == [f"interfaces.admin.mode: must be one of enforce, report, got {mode!r}"]


async def test_report_mode_stops_nobody_and_records_each_user_once_a_day(
    make_harness: Callable[..., Awaitable[Harness]], tmp_path: Path
) -> None:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["mode"] = "report"
    h = await make_harness(interfaces=interfaces)
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await h.service.set_phone("customer", "alice", "1", "2015550125", confirmed=True)
    for _ in range(3):
        assert (await h.client.get("/admin/orders", headers=h.as_user("alice"))).status_code == 200
        assert (await h.client.post("/admin/orders", headers=bob())).status_code == 200
    # The customer interface enforces as before.
    assert (await h.client.get("/account/orders", headers=h.as_user("alice"))).status_code == 303
    assert await h.service.rollout.reported("admin", 1) == [
        ("alice", "2027-01-15", "challenge"),
        ("bob", "2027-01-15", "enroll"),
    ]
    assert (await kinds(h, "alice")).count("report_challenge") == 1
    assert (await kinds(h, "bob")).count("report_enroll") == 1
    h.clock.advance(DAY)  # a new UTC day: recorded again, once
    for _ in range(2):
        await h.client.get("/admin/orders", headers=bob())
    assert (await kinds(h, "bob")).count("report_enroll") == 2


async def test_a_day_is_recorded_once_whoever_races(store: Any) -> None:
    async def one() -> bool:
        async with store.transaction() as conn:
            return await policy_rows.report(conn, "admin", "bob", "2027-01-15", "enroll", 1.0)

    results = await asyncio.gather(*(one() for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]


async def test_the_report_command_lists_who_would_be_affected(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config_file(tmp_path)
    path.write_text(path.read_text() + "    mode: report\n")
    for name, value in CLI_ENV.items():
        monkeypatch.setenv(name, value)
    async with TwoFactor.from_settings(load_settings(path)) as tfa:
        await tfa.store.upgrade_schema()
        await tfa.set_phone("admin", "enrolled", *ADMIN_PHONE, confirmed=True)
        await tfa.set_phone("admin", "pending", "1", "2015550124", confirmed=False)
        await tfa.set_phone("admin", "locked", "1", "2015550126", confirmed=True)
        async with tfa.store.engine.begin() as conn:  # as the verify lock leaves it (limits.py)
            locked = enrollments.c.user_id == "locked"
            await conn.execute(update(enrollments).where(locked).values(locked_until=tfa.clock() + 3600))
        for user in ("enrolled", "newcomer", "pending"):
            await tfa.rollout.report("admin", user, "challenge")
    args = ("--interface", "admin", "--config", str(path))
    report = await asyncio.to_thread(cli, "report", *args, "--json")
    assert report.returncode == 0, report.stderr
    records = {r["user_id"]: r["affected"] for r in map(json.loads, report.stdout.splitlines())}
    assert records == {"locked": "locked", "newcomer": "never enrolled", "pending": "pending"}
    everyone = await asyncio.to_thread(cli, "report", *args, "--all")
    assert "enrolled  challenged" in everyone.stdout


def test_report_mode_under_the_wsgi_middleware(make_wsgi: Callable[..., WSGIHarness], tmp_path: Path) -> None:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["mode"] = "report"
    w = make_wsgi(interfaces=interfaces)
    for _ in range(3):
        answer = w.client.get("/admin/settings", headers=bob())
        assert answer.status_code == 200
        assert answer.text == "shop page /admin/settings"
    assert w.run(w.service.rollout.reported("admin", 1)) == [("bob", "2027-01-15", "enroll")]
    # Nothing else is weakened: the customer interface is enforced, the pages still work.
    assert w.client.get("/account/orders", headers=bob()).status_code == 303
    assert w.client.get("/admin/_2fa/enroll", headers=bob()).status_code == 200
