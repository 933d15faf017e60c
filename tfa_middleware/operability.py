"""What operators read of the service (``TwoFactor.operations``): the send budget used now, the
traffic the manage page draws, readiness for a load balancer, and the metrics' text for our own
metrics path. Nothing here knows about HTTP (``probes.py`` answers the paths)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import schema
from .errors import StoreUnavailable
from .limits import Limits
from .metrics import Metrics, PrometheusMetrics, budget_families, render
from .settings import Settings
from .store import Store
from .store.traffic import Traffic, traffic

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("tfa_middleware")


@dataclass(frozen=True, slots=True)
class Budget:
    """The shop's send budget now: codes counted this clock hour and this UTC day, and the limits."""

    hour: int
    day: int
    per_hour: int
    per_day: int

    @property
    def day_share(self) -> float:
        return self.day / self.per_day


class Operations:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        limits: Limits,
        metrics: Metrics,
        clock: Callable[[], float],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.limits = limits
        self.metrics = metrics
        self.clock = clock
        self.registry = registry

    async def budget(self) -> Budget:
        hour, day = await self.limits.budget_used(self.clock())
        s = self.settings.limits
        return Budget(hour, day, s.send_budget_per_hour, s.send_budget_per_day)

    async def traffic(self, interfaces: Sequence[str]) -> Traffic:
        """The manage page's counts for ``interfaces`` (the sends, verifies, regions, lockouts)."""
        return await traffic(self.store, interfaces, self.clock())

    async def not_ready(self) -> str | None:
        """Why this process cannot serve a sign-in now (the database unreachable, its schema not
        this release's), or None: ready. Asks the database each time: never an old answer."""
        try:
            await self.store.ping()
            found = await self.store.schema_revision()
        except StoreUnavailable as exc:
            return str(exc)
        if found != schema.head():
            return f"database schema is at {found or 'nothing'}, this release needs {schema.head()}"
        return None

    async def metrics_text(self) -> tuple[bytes, str]:
        """The metrics as a scrape of our metrics path reads them, the budget read now; (body,
        content type). The database unreachable: the counters alone, and the budget left out
        (a scrape must not fail with it: the counters say what is wrong)."""
        if not isinstance(self.metrics, PrometheusMetrics):
            raise RuntimeError("metrics are off (operations.metrics: false)")
        try:
            b = await self.budget()
            extra = budget_families(b.hour, b.day, b.per_hour, b.per_day)
        except StoreUnavailable as exc:
            log.warning("metrics: the send budget is left out: %s", exc)
            extra = []
        return render(self.metrics.registry, extra)
