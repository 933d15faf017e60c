"""examples/budget_alert.py: the on_event hook warns once a day when 80% of the daily budget is used."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from examples.budget_alert import BudgetAlert
from tests.harness import RELAXED_LIMITS, Harness

DAY = 86400.0


async def test_the_alert_warns_once_at_80_percent_of_the_day(
    make_harness: Callable[..., Awaitable[Harness]],
) -> None:
    said: list[str] = []

    async def notify(message: str) -> None:
        said.append(message)

    alert = BudgetAlert(notify=notify)
    limits = RELAXED_LIMITS.model_copy(update={"send_budget_per_day": 10, "send_budget_per_hour": 10})
    h = await make_harness(on_event=alert, limits=limits)
    alert.attach(h.service)
    for n in range(10):
        await h.service.set_phone("admin", f"u{n}", "1", f"20155501{n:02d}", confirmed=True)
    for n in range(7):
        assert (await h.service.send_code("admin", f"u{n}")).status.name == "SENT"
    assert said == []  # 7 of 10
    await h.service.send_code("admin", "u7")
    assert said == [said[0]]
    assert said[0].startswith("SMS budget: 8 of 10 codes sent today (80%, UTC day ")
    await h.service.send_code("admin", "u8")
    assert len(said) == 1  # once a day
    h.clock.advance(DAY)  # a new UTC day: the count starts again, and so does the warning
    for n in range(8):
        await h.service.send_code("admin", f"u{n}")
    assert len(said) == 2
