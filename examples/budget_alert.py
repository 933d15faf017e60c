"""An ``on_event`` hook that warns when 80% of the shop's daily send budget is used: once a UTC
day (per process), before the budget refuses every send and nobody can sign in with a code.

    from examples.budget_alert import BudgetAlert
    from tfa_middleware import TwoFactor, TwoFactorMiddleware

    alert = BudgetAlert(notify=page_the_operator)        # any function of one string, sync or async
    tfa = TwoFactor.from_yaml("tfa.yaml", on_event=alert)
    alert.attach(tfa)
    app = TwoFactorMiddleware(shop, service=tfa)

It reads the budget's row (one primary-key read) after each code sent, so the share is the one the
limits see, across workers and hosts. With several workers each may warn once; the Prometheus
rule in the README (``tfa_send_budget_used / tfa_send_budget_limit``) warns once for all of them.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable

from tfa_middleware import AuditEvent, TwoFactor

log = logging.getLogger("shop.alerts")
Notify = Callable[[str], Awaitable[None] | None]


class BudgetAlert:
    def __init__(self, share: float = 0.8, notify: Notify | None = None) -> None:
        self.share = share
        self.notify = notify or log.warning
        self.tfa: TwoFactor | None = None
        self._warned_day = -1.0  # the UTC day (its start) already warned about

    def attach(self, tfa: TwoFactor) -> None:
        """The service whose budget to read (made with this hook, so given afterwards)."""
        self.tfa = tfa

    async def __call__(self, event: AuditEvent) -> None:
        if event.kind != "code_sent" or self.tfa is None:
            return
        day = event.at - event.at % 86400
        if day == self._warned_day:
            return
        budget = await self.tfa.operations.budget()
        if budget.day < self.share * budget.per_day:
            return
        self._warned_day = day
        message = (
            f"SMS budget: {budget.day} of {budget.per_day} codes sent today "
            f"({budget.day_share:.0%}, UTC day {time.strftime('%Y-%m-%d', time.gmtime(day))}); "
            "at the limit every send is refused (limits.send_budget_per_day)"
        )
        result = self.notify(message)
        if inspect.isawaitable(result):
            await result
