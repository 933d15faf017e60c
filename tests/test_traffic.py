"""Issue 20's manage page traffic: the counts agree with the audit log (on SQLite and
PostgreSQL, whose hour expressions differ), and the page shows them: the chart's bars, the
numbers table, the budget, the regions, the lockouts."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.codes import other_code
from tests.harness import ADMIN_PHONE, RELAXED_LIMITS, T0, Harness, config
from tfa_middleware.pages.traffic import BAR, LEFT, SLOT
from tfa_middleware.store import AuditEvent, Store
from tfa_middleware.store import events as event_rows
from tfa_middleware.store.traffic import UNKNOWN_COUNTRY, traffic

HOUR = 3600.0
MANAGE = "/admin/_2fa/manage"
KINDS = ["code_sent", "verify_ok", "verify_failed", "locked", "send_refused", "phone_set"]


def random_events(now: float, count: int, seed: int) -> list[AuditEvent]:
    """Events over the last 60 hours (some past the window, some a second in the future), of
    three interfaces, one of them not asked about."""
    rng = random.Random(seed)
    made = []
    for n in range(count):
        kind = rng.choice(KINDS)
        at = now - rng.uniform(-0.5, 60 * HOUR)
        country = rng.choice(["US", "GB", "JM", None]) if kind == "code_sent" else None
        detail = {"country": country} if country else {}
        made.append(
            AuditEvent(at, rng.choice(["admin", "customer", "other"]), f"user{n % 37}", kind, detail=detail)
        )
    return made


async def test_the_counts_agree_with_the_audit_log(store: Store) -> None:
    now = T0 + 1234.5
    made = random_events(now, 3000, seed=20)
    await event_rows.add(store, *made)
    mine = ["admin", "customer"]
    found = await traffic(store, mine, now)

    start = now - now % HOUR - 47 * HOUR
    assert found.start == start
    expected: dict[str, list[int]] = {kind: [0] * 48 for kind in KINDS[:3]}
    for e in made:
        if e.interface in mine and e.kind in expected and start <= e.at < now + 1:
            expected[e.kind][int((e.at - start) // HOUR)] += 1
    assert list(found.sent) == expected["code_sent"]
    assert list(found.verified) == expected["verify_ok"]
    assert list(found.failed) == expected["verify_failed"]
    assert sum(found.sent) > 200  # the test has something to compare

    regions = Counter(
        (e.detail or {}).get("country") or UNKNOWN_COUNTRY
        for e in made
        if e.kind == "code_sent" and e.interface in mine and now - 24 * HOUR <= e.at < now + 1
    )
    assert dict(found.countries) == dict(regions)
    assert [n for _, n in found.countries] == sorted(regions.values(), reverse=True)

    locked = sorted(
        (e for e in made if e.kind == "locked" and e.interface in mine and e.at >= now - 7 * 24 * HOUR),
        key=lambda e: -e.at,
    )[:10]
    assert [(lk.at, lk.interface, lk.user_id) for lk in found.lockouts] == [
        (e.at, e.interface, e.user_id) for e in locked
    ]


async def test_the_manage_page_shows_the_traffic_of_the_audit_log(
    make_harness: Callable[..., Awaitable[Harness]], tmp_path: Path
) -> None:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["manage"] = {"allow_user_ids": ["alice"]}
    limits = RELAXED_LIMITS.model_copy(update={"verify_max_failures": 2, "send_budget_per_day": 40})
    h = await make_harness(interfaces=interfaces, limits=limits)
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await h.service.set_phone("admin", "bob", "44", "7400123456", confirmed=True)
    await h.service.set_phone("customer", "dave", "1", "2015550127", confirmed=True)
    # Three hours of traffic: sends, right and wrong codes, a lockout; the customer interface's
    # sends are not this page's.
    for hour in range(3):
        for _ in range(hour + 1):
            await h.send(h.as_user("bob"))
        await h.send(h.as_user("dave"), "/account")
        h.clock.advance(HOUR)
    await h.verify(h.as_user("bob"), other_code(await h.latest_code()))
    await h.verify(h.as_user("bob"), other_code(await h.latest_code()))  # locked
    await h.pass_challenge("alice")

    page = await h.client.get(MANAGE, headers=h.as_user("alice"))
    assert page.status_code == 200
    text = page.text
    events = await event_rows.latest(h.service.store, "admin", limit=1000)
    now = h.clock()
    start = now - now % HOUR - 47 * HOUR
    per_hour: dict[str, Counter[int]] = {k: Counter() for k in ("code_sent", "verify_ok", "verify_failed")}
    for e in events:
        if e.kind in per_hour:
            per_hour[e.kind][int((e.at - start) // HOUR)] += 1
    rows = re.findall(
        r"<tr><th scope=\"row\">([^<]+)</th><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td></tr>", text
    )
    assert len(rows) == 48
    for n, (_hour, sent, verified, failed) in enumerate(rows):
        assert (int(sent), int(verified), int(failed)) == (
            per_hour["code_sent"][n],
            per_hour["verify_ok"][n],
            per_hour["verify_failed"][n],
        )
    assert sum(int(r[1]) for r in rows) == 1 + 1 + 2 + 3  # alice's and bob's sends, not dave's
    # The chart: a bar for each hour with sends, its height in proportion to the number.
    sent_path = re.search(r'<path class="sent" d="([^"]*)"', text)
    assert sent_path
    bars = re.findall(rf"M(\d+) (\d+)v-([\d.]+)h{BAR}v[\d.]+z", sent_path.group(1))
    sent_per_hour = [int(r[1]) for r in rows]
    slots = {(int(x) - LEFT) // SLOT: float(height) for x, _, height in bars}
    assert set(slots) == {n for n, sent in enumerate(sent_per_hour) if sent}
    scales = {round(height / sent_per_hour[n], 6) for n, height in slots.items()}
    assert len(scales) == 1  # one scale for every bar
    assert 'class="verified" d="M' in text
    # The budget is the shop's, all interfaces: 10 codes of 40 today.
    assert "Budget used today: <strong>10 of 40</strong> codes (25%)" in text
    assert "<td>United Kingdom (+44)</td><td>6</td>" in text
    assert "<td>United States (+1)</td><td>1</td>" in text
    assert re.search(r'href="[^"]*user=bob[^"]*">bob</a> <span class="muted">\(admin\)', text)
    # In the reader's language: its words, its percent, its numbers (issue 18's catalogues).
    german = await h.client.get(MANAGE, headers={**h.as_user("alice"), "accept-language": "de"})
    assert "Heute verbrauchtes Budget: <strong>10 von 40</strong> Codes (25\xa0%)" in german.text
    assert "<h2 id=\"traffic-title\">Aktivität der letzten 48 Stunden</h2>" in german.text
    assert "<caption>Gesendete Codes und Prüfungen pro Stunde (UTC)</caption>" in german.text
    assert "<td>Vereinigtes Königreich (+44)</td><td>6</td>" in german.text  # the region's name in German
    turkish = await h.client.get(MANAGE, headers={**h.as_user("alice"), "accept-language": "tr"})
    assert "(%25)" in turkish.text  # the percent sign before the number
